//! One user, one color, through both edge runtimes: a browser-like client
//! that loads public assets, signs in and calls the API sees one color
//! through a canary; a previewer can browse the public pages; each canary
//! draws a new population unless it is fixed; the origin-health record
//! follows the state's epoch after a hand edit that lowers it.

use futures::StreamExt;
use greenlight_common::admin::StateView;
use greenlight_common::decide::bucket;
use greenlight_common::http::STICKY_COOKIE;
use greenlight_common::state::Population;
use greenlight_common::{Color, RolloutState};
use greenlight_e2e::fixtures::{self, APP_KEY, QA_KEY};
use greenlight_e2e::rig::{header, Rig};
use greenlight_e2e::Runtime;
use greenlight_test_origin::Behavior;
use jsonwebtoken::Algorithm;
use reqwest::Response;
use std::time::{Duration, Instant};

/// Simulated users per canary step.
const USERS_PER_STEP: usize = 1_000;
/// Requests in flight at once.
const IN_FLIGHT: usize = 16;

async fn set_weight(rig: &Rig, body: serde_json::Value) -> StateView {
    let epoch = rig.state().await.state.epoch;
    let mut body = body;
    body["expected_epoch"] = epoch.into();
    let resp = rig.admin_post("weight", body).await;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn change(rig: &Rig, route: &str) -> StateView {
    let epoch = rig.state().await.state.epoch;
    let resp = rig
        .admin_post(route, serde_json::json!({ "expected_epoch": epoch }))
        .await;
    assert_eq!(resp.status(), 200, "{route}");
    resp.json().await.unwrap()
}

/// The cookie a response sets (`greenlight-id=<id>`), if any.
fn set_cookie(resp: &Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{STICKY_COOKIE}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
}

/// How a simulated user reaches the site.
#[derive(Clone, Copy, Debug)]
enum Journey {
    /// Public assets anonymously, then login and the API, then assets.
    BrowseThenLogIn,
    /// Login first (the API answer sets the cookie), then assets.
    LogInThenBrowse,
    /// An API client without a cookie jar, on API and public routes.
    NoCookieJar,
}

/// Runs one user's journey; returns the colors it was served.
async fn journey(rig: &Rig, user: usize, kind: Journey) -> Vec<Color> {
    let token = format!(
        "Bearer {}",
        fixtures::sign(
            Algorithm::HS256,
            &fixtures::claims(&format!("one-color-user-{user}"))
        )
    );
    let mut jar: Option<String> = None;
    let steps: &[(&str, bool)] = match kind {
        Journey::BrowseThenLogIn => &[
            ("/public/app.js", false),
            ("/public/style.css", false),
            ("/api/me", true),
            ("/api/cart", true),
            ("/public/logo.png", false),
        ],
        Journey::LogInThenBrowse => &[
            ("/api/me", true),
            ("/public/app.js", false),
            ("/api/cart", true),
            ("/public/logo.png", false),
        ],
        Journey::NoCookieJar => &[
            ("/api/me", true),
            ("/public/feed.json", true),
            ("/api/cart", true),
            ("/public/feed.json", true),
        ],
    };
    let keeps_cookies = !matches!(kind, Journey::NoCookieJar);
    let mut colors = Vec::new();
    for (path, signed_in) in steps {
        let mut req = rig.get(path);
        if *signed_in {
            req = req.header("authorization", &token);
        }
        if let Some(c) = jar.as_ref().filter(|_| keeps_cookies) {
            req = req.header("cookie", c);
        }
        let resp = req.send().await.expect("a user's request");
        assert_eq!(resp.status(), 200, "{path} for user {user}");
        if let Some(c) = set_cookie(&resp) {
            jar = Some(c);
        }
        colors.push(
            header(&resp, "x-greenlight-color")
                .parse()
                .expect("a color header"),
        );
    }
    colors
}

/// Through a canary at 1 %, 25 % and 50 %, thousands of simulated users
/// (three kinds of journey), each keeps one color for its whole session.
async fn a_user_keeps_one_color_across_routes_and_login(runtime: Runtime) {
    let rig = Rig::start(runtime, |_| {}).await;
    let kinds = [
        Journey::BrowseThenLogIn,
        Journey::LogInThenBrowse,
        Journey::NoCookieJar,
    ];
    let mut report = Vec::new();
    let mut user = 0;
    for percent in [1.0, 25.0, 50.0] {
        let view = set_weight(&rig, serde_json::json!({ "weight_percent": percent })).await;
        let candidate = view.state.candidate;
        let first = user;
        let sessions: Vec<Vec<Color>> = futures::stream::iter(first..first + USERS_PER_STEP)
            .map(|u| journey(&rig, u, kinds[u % kinds.len()]))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        user += USERS_PER_STEP;
        let mixed = sessions
            .iter()
            .filter(|s| s.iter().any(|c| *c != s[0]))
            .count();
        let on_candidate = sessions.iter().filter(|s| s[0] == candidate).count();
        report.push(format!(
            "{percent} %: {mixed} mixed of {} sessions, {on_candidate} on the candidate",
            sessions.len()
        ));
        eprintln!("{}: {}", runtime.name(), report[report.len() - 1]);
        assert_eq!(mixed, 0, "{report:?}");
        if percent >= 25.0 {
            // Not vacuous: the canary splits the users.
            let share = on_candidate as f64 / sessions.len() as f64;
            assert!(
                (share - percent / 100.0).abs() < 0.08,
                "{share} on the candidate at {percent} %: {report:?}"
            );
        }
    }
}

/// A previewer can browse the public pages in the color they preview; a
/// preview from anyone else is ignored there (normal routing, no 403),
/// and refused as before on the routes that need credentials.
async fn a_preview_on_a_public_route_is_checked_or_ignored(runtime: Runtime) {
    let rig = Rig::start(runtime, |_| {}).await;
    let preview_cookie = "greenlight-preview=green";
    let page = |key: Option<&'static str>| {
        let mut req = rig.get("/public/page").header("cookie", preview_cookie);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        req.send()
    };
    for key in [None, Some(APP_KEY), Some("not-a-key")] {
        let resp = page(key).await.unwrap();
        assert_eq!(resp.status(), 200, "{key:?}");
        assert_eq!(
            (
                header(&resp, "x-greenlight-color"),
                header(&resp, "x-greenlight-reason")
            ),
            ("blue", "stable"),
            "{key:?}"
        );
    }
    let resp = page(Some(QA_KEY)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        (
            header(&resp, "x-greenlight-color"),
            header(&resp, "x-greenlight-reason")
        ),
        ("green", "override")
    );
    let resp = rig
        .get("/api/x")
        .header("cookie", preview_cookie)
        .header("x-api-key", APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

/// Each canary from 0 % draws a new salt, kept through its steps, promote
/// and rollback, and the edge routes by it; `population: fixed` keeps it.
async fn each_canary_draws_a_new_population_unless_fixed(runtime: Runtime) {
    let rig = Rig::start(runtime, |_| {}).await;
    let s0 = rig.state().await;
    assert_eq!(s0.population, Population::Fresh);
    let salt = |v: &StateView| v.state.stickiness.salt.clone();
    let c1 = set_weight(&rig, serde_json::json!({ "weight_percent": 50 })).await;
    assert_ne!(salt(&c1), salt(&s0), "a new canary, a new population");
    // The edge routes anonymous users by the new salt.
    for i in 0..40 {
        let id = format!("population-user-{i:04}");
        let resp = rig
            .get("/public/x")
            .header("cookie", format!("{STICKY_COOKIE}={id}"))
            .send()
            .await
            .unwrap();
        let expected = if bucket(&salt(&c1), &format!("c:{id}")) < c1.state.candidate_weight_bp {
            c1.state.candidate
        } else {
            c1.state.active
        };
        assert_eq!(
            header(&resp, "x-greenlight-color"),
            expected.to_string(),
            "{id}"
        );
    }
    let step = set_weight(&rig, serde_json::json!({ "weight_percent": 75 })).await;
    let promoted = change(&rig, "promote").await;
    let back = change(&rig, "rollback").await;
    for v in [&step, &promoted, &back] {
        assert_eq!(salt(v), salt(&c1), "{}", v.state.last_change.op);
    }
    let c2 = set_weight(&rig, serde_json::json!({ "weight_percent": 5 })).await;
    assert!(![salt(&s0), salt(&c1)].contains(&salt(&c2)));
    change(&rig, "abort").await;
    // A fixed population: the next canaries keep the salt.
    let fixed = set_weight(
        &rig,
        serde_json::json!({ "weight_percent": 5, "population": "fixed" }),
    )
    .await;
    assert_eq!(
        (fixed.population, salt(&fixed)),
        (Population::Fixed, salt(&c2))
    );
    change(&rig, "abort").await;
    let again = set_weight(&rig, serde_json::json!({ "weight_percent": 5 })).await;
    assert_eq!(
        (again.population, salt(&again)),
        (Population::Fixed, salt(&c2))
    );
    assert_eq!(rig.state().await.population, Population::Fixed);
}

/// Green's failures, as a previewer (the request fails over to blue).
async fn fail_green(rig: &Rig, times: usize) {
    for _ in 0..times {
        let resp = rig
            .get("/api/item")
            .header("x-api-key", QA_KEY)
            .header("x-greenlight-color", "green")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-greenlight-reason"), "failover");
    }
}

/// Polls `GET state` until green is reported unhealthy (up to 10 s: a
/// Worker reports its failures after answering, at most once a second).
async fn until_unhealthy(rig: &Rig) -> StateView {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = rig.state().await;
        if v.health.as_ref().is_some_and(|h| h.unhealthy) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A state document rewritten by hand with a lower epoch: the stored
/// health record (of the higher epoch) no longer counts, and the
/// candidate's new failures make it unhealthy again.
async fn health_follows_the_epoch_after_a_hand_edit(runtime: Runtime) {
    let erroring = Behavior {
        error_rate: 1.0,
        ..Behavior::default()
    };
    let rig = Rig::start_with(runtime, Behavior::default(), erroring, |setup| {
        setup
            .vars
            .insert("HEALTH_FAILURE_THRESHOLD".into(), "3".into());
    })
    .await;
    for percent in [10, 20, 30, 40] {
        set_weight(&rig, serde_json::json!({ "weight_percent": percent })).await;
    }
    fail_green(&rig, 3).await;
    let before = until_unhealthy(&rig).await;
    assert_eq!(before.state.epoch, 4);
    assert!(before.health.as_ref().unwrap().unhealthy, "{before:?}");

    // The hand edit: a canary at epoch 1.
    let mut edited: RolloutState = before.state.clone();
    edited.epoch = 1;
    edited.candidate_weight_bp = 1_000;
    let document = edited.to_json();
    // The edit is made the way an operator can, between two runs of the
    // edge (a running Spin instance never serves an older epoch than one
    // it served).
    let Rig {
        blue,
        green,
        edge,
        http,
    } = rig;
    let scratch = edge.stop().unwrap();
    let edge = match runtime {
        // The store's document rewritten, its health record kept.
        Runtime::Spin => {
            use greenlight_e2e::spin;
            spin::put_state_document(scratch.path(), &document).unwrap();
            spin::serve(scratch).await.unwrap()
        }
        // The rollout object holds the document: the object's copy
        // removed, KV's rewritten, so the object takes it over on its next
        // start, with its health record (epoch 4) kept.
        Runtime::Cloudflare => {
            use greenlight_e2e::cloudflare;
            let keys = cloudflare::object_keys(scratch.path()).unwrap();
            assert!(keys.contains(&"health".to_string()), "{keys:?}");
            assert_eq!(
                cloudflare::delete_object_key(scratch.path(), "state").unwrap(),
                1
            );
            cloudflare::put_state_document(scratch.path(), &document)
                .await
                .unwrap();
            cloudflare::serve(scratch).await.unwrap()
        }
    };
    let rig = Rig {
        blue,
        green,
        edge,
        http,
    };
    let now = rig.state().await;
    assert_eq!(now.state.epoch, 1, "the edge serves the edited document");
    assert!(!now.health.as_ref().unwrap().unhealthy, "{now:?}");
    fail_green(&rig, 3).await;
    let after = until_unhealthy(&rig).await;
    assert_eq!(after.state.epoch, 1);
    let health = after.health.unwrap();
    assert!(health.unhealthy, "{health:?}");
    assert!(health.green_failures >= 3, "{health:?}");
}

greenlight_e2e::for_each_runtime!(
    a_user_keeps_one_color_across_routes_and_login,
    a_preview_on_a_public_route_is_checked_or_ignored,
    each_canary_draws_a_new_population_unless_fixed,
    health_follows_the_epoch_after_a_hand_edit,
);
