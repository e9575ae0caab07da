//! Failover, origin health and rate limiting, through both edge runtimes,
//! with origins on 127.0.0.1 that fail for real: a closed port (connection
//! refused), an origin that answers 500, one that answers too late.

use greenlight_common::admin::Problem;
use greenlight_common::Color;
use greenlight_e2e::fixtures::{self, APP_KEY, QA_KEY};
use greenlight_e2e::process::free_port;
use greenlight_e2e::rig::{header, Rig};
use greenlight_e2e::Runtime;
use greenlight_test_origin::{Behavior, LatencyDist};
use jsonwebtoken::Algorithm;
use reqwest::{Response, StatusCode};
use std::time::{Duration, Instant};

/// How a test origin misbehaves.
enum Health {
    Up,
    /// Nothing listens where the edge is told the origin is (the rig's
    /// origin for that color is never reached).
    Refused,
    /// Every answer is a 500.
    Errors,
    /// Answers after this long.
    Slow(Duration),
}

impl Health {
    fn behavior(&self) -> Behavior {
        match self {
            Health::Up | Health::Refused => Behavior::default(),
            Health::Errors => Behavior {
                error_rate: 1.0,
                ..Behavior::default()
            },
            Health::Slow(d) => Behavior {
                latency: LatencyDist::Fixed(*d),
                ..Behavior::default()
            },
        }
    }
}

/// The suite's rig with misbehaving origins and extra edge variables.
async fn start(runtime: Runtime, blue: Health, green: Health, vars: &[(&str, &str)]) -> Rig {
    Rig::start_with(runtime, blue.behavior(), green.behavior(), |setup| {
        for (var, health) in [("BLUE_ORIGIN", &blue), ("GREEN_ORIGIN", &green)] {
            if matches!(health, Health::Refused) {
                setup
                    .vars
                    .insert(var.into(), format!("http://127.0.0.1:{}", free_port()));
            }
        }
        for (k, v) in vars {
            setup.vars.insert(k.to_string(), v.to_string());
        }
    })
    .await
}

/// A request as the QA key asking for green (it may preview).
async fn as_green_previewer(rig: &Rig, method: reqwest::Method) -> Response {
    rig.http
        .request(method, rig.url("/api/item?x=1"))
        .header("x-api-key", QA_KEY)
        .header("x-greenlight-color", "green")
        .body("payload")
        .send()
        .await
        .unwrap()
}

async fn set_weight(rig: &Rig, percent: f64) {
    let epoch = rig.state().await.state.epoch;
    let resp = rig
        .admin_post(
            "weight",
            serde_json::json!({"expected_epoch": epoch, "weight_percent": percent}),
        )
        .await;
    assert_eq!(resp.status(), 200);
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
        let rig = start(
            runtime,
            Health::Up,
            green,
            &[("HEALTH_FAILURE_THRESHOLD", "3")],
        )
        .await;
        set_weight(&rig, 10.0).await;
        let resp = as_green_previewer(&rig, reqwest::Method::GET).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-greenlight-color"), "blue");
        assert_eq!(header(&resp, "x-greenlight-reason"), "failover");
        let served: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(served["color"], "blue", "blue's own answer");
        assert_eq!(rig.blue.hits(), 1);

        // Not idempotent: one attempt, a 502 problem, nothing sent to blue.
        for method in [reqwest::Method::POST, reqwest::Method::PUT] {
            let resp = as_green_previewer(&rig, method.clone()).await;
            assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{method}");
            let p = problem(resp).await;
            assert_eq!(p.kind, "urn:greenlight:problem:origin-failed");
            assert!(p.detail.starts_with("green origin"), "{}", p.detail);
        }
        assert_eq!(rig.blue.hits(), 1, "writes are never retried");

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
        set_weight(&rig, 20.0).await;
        assert!(!rig.state().await.health.unwrap().unhealthy);
    }
}

/// An origin that answers too late is abandoned after ORIGIN_TIMEOUT_MS and
/// the read is served by the other color, well before the slow answer.
async fn slow_origins_time_out_and_fail_over(runtime: Runtime) {
    let rig = start(
        runtime,
        Health::Up,
        Health::Slow(Duration::from_secs(20)),
        &[
            ("ORIGIN_TIMEOUT_MS", "500"),
            ("FAILOVER_DEADLINE_MS", "5000"),
        ],
    )
    .await;
    set_weight(&rig, 10.0).await;
    let started = Instant::now();
    let resp = as_green_previewer(&rig, reqwest::Method::GET).await;
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
    let rig = start(
        runtime,
        Health::Refused,
        Health::Refused,
        &[("RETRY_AFTER_S", "7")],
    )
    .await;
    let get = |method: reqwest::Method| {
        rig.http
            .request(method, rig.url("/api/item"))
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
    set_weight(&rig, 50.0).await;
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
    let rig = start(
        runtime,
        Health::Up,
        Health::Up,
        &[("RATE_LIMIT_PER_S", "1"), ("RATE_LIMIT_BURST", "3")],
    )
    .await;
    let send = |key: &'static str| {
        rig.http
            .get(rig.url("/api/item"))
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
    assert_eq!(rig.origin_hits(), ok);
    // Another caller has a bucket of its own.
    assert_eq!(send(QA_KEY).await.unwrap().status(), 200);

    // Anonymous callers without a cookie get a fresh id on every request;
    // they are counted by the address the platform reports instead
    // (cf-connecting-ip, spin-client-addr), so dropping the cookie does
    // not buy a fresh bucket.
    let mut anonymous = Vec::new();
    for _ in 0..8 {
        let resp = rig.http.get(rig.url("/public/page")).send().await.unwrap();
        anonymous.push(resp.status().as_u16());
    }
    assert_eq!(&anonymous[..3], &[200, 200, 200], "{anonymous:?}");
    assert!(anonymous.contains(&429), "{anonymous:?}");

    if runtime == Runtime::Spin {
        // Spin runs every request in a fresh instance, so buckets live in
        // the key-value store: a flood of distinct callers must not grow its
        // keys without bound (256 slot keys, see common::ratelimit).
        const CALLERS: usize = 400;
        use futures::StreamExt;
        let statuses: Vec<u16> = futures::stream::iter(0..CALLERS)
            .map(|i| {
                let token =
                    fixtures::sign(Algorithm::HS256, &fixtures::claims(&format!("flood-{i}")));
                let req = rig.http.get(rig.url("/api/item")).bearer_auth(token);
                async move { req.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        assert!(
            statuses.iter().all(|s| *s == 200),
            "every new caller starts with a full bucket: {statuses:?}"
        );
        let scratch = rig.edge._process.scratch.as_ref().expect("scratch dir");
        let keys = greenlight_e2e::spin::keys(scratch.path()).unwrap();
        let limiter: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with("ratelimit:"))
            .collect();
        assert!(
            limiter.iter().all(|k| k.starts_with("ratelimit:slot:")),
            "one key per caller: {limiter:?}"
        );
        assert!(
            limiter.len() <= greenlight_common::ratelimit::STORED_SLOTS as usize,
            "{} limiter keys for {CALLERS} callers",
            limiter.len()
        );
    }
}

greenlight_e2e::for_each_runtime!(
    idempotent_requests_fail_over_to_the_other_live_color,
    slow_origins_time_out_and_fail_over,
    no_live_origin_is_503_with_retry_after,
    callers_over_their_rate_limit_get_429,
);

/// Cloudflare: health reporting costs O(seconds) writes, not one per
/// failure. 1 000 failed attempts on green within ~10 s: the isolate sends
/// its record to the rollout object at most once a second, and the object
/// counts the writes it takes (`health.writes`); every failure is still
/// counted and the candidate still turns unhealthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_health_reports_cost_one_write_a_second() {
    const FAILURES: u64 = 1_000;
    const SENDERS: u64 = 5;
    let rig = start(Runtime::Cloudflare, Health::Up, Health::Refused, &[]).await;
    set_weight(&rig, 10.0).await;
    let started = Instant::now();
    // Paced to ~100 requests/s: 5 senders, one request each per 50 ms.
    let sends = (0..SENDERS).map(|s| {
        let rig = &rig;
        async move {
            for i in 0..FAILURES / SENDERS {
                let due = Duration::from_millis(50 * i + 10 * s);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let resp = as_green_previewer(rig, reqwest::Method::GET).await;
                assert_eq!(resp.status(), 200);
                assert_eq!(header(&resp, "x-greenlight-reason"), "failover");
            }
        }
    });
    futures::future::join_all(sends).await;
    let took = started.elapsed();
    // The last report leaves at most a second after the last failure.
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let h = rig.state().await.health.expect("GET state reports health");
        if h.green_failures >= FAILURES || Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bound = took.as_secs() + 3;
    eprintln!(
        "health_batching failures={} writes={} seconds={:.1} bound={bound}",
        health.green_failures,
        health.writes,
        took.as_secs_f64()
    );
    assert!(health.unhealthy, "{health:?}");
    assert_eq!(health.green_failures, FAILURES, "{health:?}");
    assert!(
        health.writes >= 1 && health.writes <= bound,
        "{} writes for {FAILURES} failures in {took:?}: {health:?}",
        health.writes
    );
}
