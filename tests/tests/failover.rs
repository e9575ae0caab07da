//! Failover, origin health and rate limiting, through both edge runtimes,
//! with origins on 127.0.0.1 that fail for real: a closed port (connection
//! refused), an origin that answers 500, one that answers too late.

use greenlight_common::admin::{Problem, StateView};
use greenlight_common::Color;
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN, APP_KEY, QA_KEY};
use greenlight_e2e::process::free_port;
use greenlight_e2e::{RunningEdge, Runtime};
use loadtest::origin::{Behavior, LatencyDist, Origin};
use reqwest::{Client, Response, StatusCode};
use std::time::{Duration, Instant};

/// How a test origin misbehaves.
enum Health {
    Up,
    /// Nothing listens on its port.
    Refused,
    /// Every answer is a 500.
    Errors,
    /// Answers after this long.
    Slow(Duration),
}

struct Rig {
    /// `None` for a refused origin.
    blue: Option<Origin>,
    green: Option<Origin>,
    edge: RunningEdge,
    http: Client,
}

async fn origin(color: &str, health: &Health) -> (Option<Origin>, String) {
    let any = "127.0.0.1:0".parse().unwrap();
    let behavior = match health {
        Health::Up | Health::Refused => Behavior::default(),
        Health::Errors => Behavior {
            error_rate: 1.0,
            ..Behavior::default()
        },
        Health::Slow(d) => Behavior {
            latency: LatencyDist::Fixed(*d),
            ..Behavior::default()
        },
    };
    if matches!(health, Health::Refused) {
        return (None, format!("http://127.0.0.1:{}", free_port()));
    }
    let o = Origin::start(any, color, behavior).await.unwrap();
    let url = o.url();
    (Some(o), url)
}

impl Rig {
    async fn start(runtime: Runtime, blue: Health, green: Health, vars: &[(&str, &str)]) -> Rig {
        let (blue, blue_url) = origin("blue", &blue).await;
        let (green, green_url) = origin("green", &green).await;
        let mut setup = fixtures::edge_setup(&blue_url, &green_url);
        for (k, v) in vars {
            setup.vars.insert(k.to_string(), v.to_string());
        }
        let edge = runtime
            .start(&setup)
            .await
            .unwrap_or_else(|e| panic!("starting the {} edge: {e:#}", runtime.name()));
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Rig {
            blue,
            green,
            edge,
            http,
        }
    }

    fn hits(o: &Option<Origin>) -> u64 {
        o.as_ref().map_or(0, Origin::hits)
    }

    /// A request as the QA key asking for green (it may preview).
    async fn as_green_previewer(&self, method: reqwest::Method) -> Response {
        self.http
            .request(method, format!("{}/api/item?x=1", self.edge.base_url))
            .header("x-api-key", QA_KEY)
            .header("x-greenlight-color", "green")
            .body("payload")
            .send()
            .await
            .unwrap()
    }

    async fn state(&self) -> StateView {
        let resp = self
            .http
            .get(format!("{}/__greenlight/state", self.edge.base_url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn set_weight(&self, percent: f64) {
        let epoch = self.state().await.state.epoch;
        let resp = self
            .http
            .post(format!("{}/__greenlight/weight", self.edge.base_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"expected_epoch": epoch, "weight_percent": percent}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

fn header<'a>(resp: &'a Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn problem(resp: Response) -> Problem {
    assert_eq!(header(&resp, "content-type"), "application/problem+json");
    resp.json().await.unwrap()
}

/// Green refused/erroring during a canary: reads are retried on blue and
/// tagged `failover`; writes are not retried (502 problem); the edge counts
/// green's failures until the state reports it unhealthy.
async fn idempotent_requests_fail_over_to_the_other_live_color(runtime: Runtime) {
    for green in [Health::Refused, Health::Errors] {
        let rig = Rig::start(
            runtime,
            Health::Up,
            green,
            &[("HEALTH_FAILURE_THRESHOLD", "3")],
        )
        .await;
        rig.set_weight(10.0).await;
        let resp = rig.as_green_previewer(reqwest::Method::GET).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-greenlight-color"), "blue");
        assert_eq!(header(&resp, "x-greenlight-reason"), "failover");
        let served: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(served["color"], "blue", "blue's own answer");
        assert_eq!(Rig::hits(&rig.blue), 1);

        // Not idempotent: one attempt, a 502 problem, nothing sent to blue.
        for method in [reqwest::Method::POST, reqwest::Method::PUT] {
            let resp = rig.as_green_previewer(method.clone()).await;
            assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{method}");
            let p = problem(resp).await;
            assert_eq!(p.kind, "urn:greenlight:problem:origin-failed");
            assert!(p.detail.starts_with("green origin"), "{}", p.detail);
        }
        assert_eq!(Rig::hits(&rig.blue), 1, "writes are never retried");

        // Failures so far: GET + POST + PUT = 3 ≥ the threshold. Workers
        // write the count after responding (waitUntil): poll briefly.
        let deadline = Instant::now() + Duration::from_secs(10);
        let health = loop {
            let h = rig.state().await.health.expect("GET state reports health");
            if h.unhealthy || Instant::now() > deadline {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(health.under_test, Color::Green);
        assert!(health.unhealthy, "{health:?}");
        assert!(health.green_failures >= 3, "{health:?}");
        assert_eq!(health.blue_failures, 0);
        assert!(
            health
                .last_failure
                .as_deref()
                .is_some_and(|f| f.starts_with("green origin")),
            "{health:?}"
        );
        // A new step (epoch) starts a fresh count.
        rig.set_weight(20.0).await;
        assert!(!rig.state().await.health.unwrap().unhealthy);
    }
}

/// An origin that answers too late is abandoned after ORIGIN_TIMEOUT_MS and
/// the read is served by the other color, well before the slow answer.
async fn slow_origins_time_out_and_fail_over(runtime: Runtime) {
    let rig = Rig::start(
        runtime,
        Health::Up,
        Health::Slow(Duration::from_secs(20)),
        &[
            ("ORIGIN_TIMEOUT_MS", "500"),
            ("FAILOVER_DEADLINE_MS", "5000"),
        ],
    )
    .await;
    rig.set_weight(10.0).await;
    let started = Instant::now();
    let resp = rig.as_green_previewer(reqwest::Method::GET).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-greenlight-color"), "blue");
    assert_eq!(header(&resp, "x-greenlight-reason"), "failover");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );
}

/// With no live origin answering, reads get 503 + Retry-After and writes 502;
/// a candidate at 0 % is not live, so blue alone being down is a 503 too.
async fn no_live_origin_is_503_with_retry_after(runtime: Runtime) {
    let rig = Rig::start(
        runtime,
        Health::Refused,
        Health::Refused,
        &[("RETRY_AFTER_S", "7")],
    )
    .await;
    let get = |method: reqwest::Method| {
        rig.http
            .request(method, format!("{}/api/item", rig.edge.base_url))
            .header("x-api-key", APP_KEY)
            .send()
    };
    // Stable: blue is the only live color.
    let resp = get(reqwest::Method::GET).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&resp, "retry-after"), "7");
    let p = problem(resp).await;
    assert_eq!(p.kind, "urn:greenlight:problem:no-live-origin");
    // Canary: both live, both down.
    rig.set_weight(50.0).await;
    let resp = get(reqwest::Method::HEAD).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&resp, "retry-after"), "7");
    let resp = get(reqwest::Method::DELETE).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(header(&resp, "retry-after"), "");
}

/// Each caller has its own token bucket; over the limit → 429 with
/// Retry-After, the origin sees nothing; other callers are unaffected.
async fn callers_over_their_rate_limit_get_429(runtime: Runtime) {
    let rig = Rig::start(
        runtime,
        Health::Up,
        Health::Up,
        &[("RATE_LIMIT_PER_S", "1"), ("RATE_LIMIT_BURST", "3")],
    )
    .await;
    let send = |key: &'static str| {
        rig.http
            .get(format!("{}/api/item", rig.edge.base_url))
            .header("x-api-key", key)
            .send()
    };
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let resp = send(APP_KEY).await.unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = header(&resp, "retry-after").parse().unwrap();
            assert!((1..=2).contains(&wait), "retry-after {wait}");
            let p = problem(resp).await;
            assert_eq!(p.kind, "urn:greenlight:problem:rate-limited");
            statuses.push(429);
        } else {
            statuses.push(resp.status().as_u16());
        }
    }
    let elapsed_s = started.elapsed().as_secs();
    let ok = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert_eq!(&statuses[..3], &[200, 200, 200], "the burst passes");
    // The burst plus at most one token per second since.
    assert!(ok <= 3 + elapsed_s + 1, "{statuses:?} in {elapsed_s} s");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));
    assert_eq!(Rig::hits(&rig.blue) + Rig::hits(&rig.green), ok);
    // Another caller has a bucket of its own.
    assert_eq!(send(QA_KEY).await.unwrap().status(), 200);

    // Anonymous callers without a cookie get a fresh id on every request;
    // they are counted by the address the platform reports instead
    // (cf-connecting-ip, spin-client-addr), so dropping the cookie does
    // not buy a fresh bucket.
    let mut anonymous = Vec::new();
    for _ in 0..8 {
        let resp = rig
            .http
            .get(format!("{}/public/page", rig.edge.base_url))
            .send()
            .await
            .unwrap();
        anonymous.push(resp.status().as_u16());
    }
    assert_eq!(&anonymous[..3], &[200, 200, 200], "{anonymous:?}");
    assert!(anonymous.contains(&429), "{anonymous:?}");
}

greenlight_e2e::for_each_runtime!(
    idempotent_requests_fail_over_to_the_other_live_color,
    slow_origins_time_out_and_fail_over,
    no_live_origin_is_503_with_retry_after,
    callers_over_their_rate_limit_get_429,
);
