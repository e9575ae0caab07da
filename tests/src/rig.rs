//! Two counting origins on 127.0.0.1 and an edge runtime in front of them:
//! the setup the hostile-input and last-known-good suites share.

use crate::fixtures::{self, ADMIN_TOKEN, APP_KEY};
use crate::runtime::{EdgeSetup, RunningEdge, Runtime};
use greenlight_common::admin::StateView;
use greenlight_test_origin::{Behavior, Origin};
use reqwest::{Client, RequestBuilder, Response};
use std::time::Duration;

pub struct Rig {
    pub blue: Origin,
    pub green: Origin,
    pub edge: RunningEdge,
    pub http: Client,
}

impl Rig {
    /// The suite's standard edge (`fixtures::edge_setup`), with `tweak`
    /// applied to its setup before it starts.
    pub async fn start(runtime: Runtime, tweak: impl FnOnce(&mut EdgeSetup)) -> Rig {
        Rig::start_with(runtime, Behavior::default(), Behavior::default(), tweak).await
    }

    /// [`Rig::start`] with origins that behave as given (slow, erroring...).
    pub async fn start_with(
        runtime: Runtime,
        blue: Behavior,
        green: Behavior,
        tweak: impl FnOnce(&mut EdgeSetup),
    ) -> Rig {
        Rig::start_served(runtime, false, blue, green, tweak).await
    }

    /// [`Rig::start_with`] with the edge started by
    /// [`Runtime::start_direct`] (the Worker served directly on workerd).
    pub async fn start_direct_with(
        runtime: Runtime,
        blue: Behavior,
        green: Behavior,
        tweak: impl FnOnce(&mut EdgeSetup),
    ) -> Rig {
        Rig::start_served(runtime, true, blue, green, tweak).await
    }

    async fn start_served(
        runtime: Runtime,
        direct: bool,
        blue: Behavior,
        green: Behavior,
        tweak: impl FnOnce(&mut EdgeSetup),
    ) -> Rig {
        let any = "127.0.0.1:0".parse().expect("loopback address");
        let blue = Origin::start(any, "blue", blue)
            .await
            .expect("starting the blue origin");
        let green = Origin::start(any, "green", green)
            .await
            .expect("starting the green origin");
        let mut setup = fixtures::edge_setup(&blue.url(), &green.url());
        tweak(&mut setup);
        let started = if direct {
            runtime.start_direct(&setup).await
        } else {
            runtime.start(&setup).await
        };
        let edge =
            started.unwrap_or_else(|e| panic!("starting the {} edge: {e:#}", runtime.name()));
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Rig {
            blue,
            green,
            edge,
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.edge.base_url)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path))
    }

    /// Requests both origins have received so far.
    pub fn origin_hits(&self) -> u64 {
        self.blue.hits() + self.green.hits()
    }

    /// What both origins recorded since their last reset (blue's first).
    pub fn received(&self) -> Vec<greenlight_test_origin::RecordedRequest> {
        let mut all = self.blue.recent();
        all.extend(self.green.recent());
        all
    }

    /// Forgets what both origins recorded.
    pub fn reset_origins(&self) {
        self.blue.reset();
        self.green.reset();
    }

    /// `GET /__greenlight/state` with the admin token; panics unless 200.
    pub async fn state(&self) -> StateView {
        let resp = self
            .get("/__greenlight/state")
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("GET state");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "GET state: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("state view {text}: {e}"))
    }

    /// Posts `body` to admin `route` with the admin token.
    pub async fn admin_post(&self, route: &str, body: serde_json::Value) -> Response {
        self.post(&format!("/__greenlight/{route}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {route}: {e}"))
    }

    /// An ordinary authenticated request (`GET /api/normal` with the app
    /// key): it must be served by an origin. Returns the response.
    pub async fn normal_request(&self) -> Response {
        let before = self.origin_hits();
        let resp = self
            .get("/api/normal")
            .header("x-api-key", APP_KEY)
            .send()
            .await
            .expect("a normal request");
        assert_eq!(resp.status(), 200, "a normal request was not served");
        assert_eq!(
            self.origin_hits(),
            before + 1,
            "a normal request did not reach exactly one origin"
        );
        resp
    }
}

/// The value of response header `name`, or "" when absent or not text.
pub fn header<'a>(resp: &'a Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// An origin that also serves the test-only scripted routes
/// (`Behavior::scripts`: chosen statuses, redirects, slow bodies...).
pub fn scripted() -> Behavior {
    Behavior {
        scripts: true,
        ..Behavior::default()
    }
}
