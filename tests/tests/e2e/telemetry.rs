//! Real users' telemetry through the real runtimes (the Worker served
//! directly on workerd, the WASIp3 Spin build under `spin up`): requests
//! from fresh anonymous users at a 50 % canary, a green origin slower than
//! blue or failing. Within the flush interval `GET /__greenlight/metrics`
//! counts every attempt per color and epoch (each request once, plus the
//! failed attempt of each one retried on blue): exactly on the Worker; on
//! Spin never more, and at least 80 % (an instance's last batch is flushed
//! by a task Spin stops driving once the instance has no request in
//! flight: README, "Real users' telemetry"). Green's time to first byte is
//! the slower, its errors are its own, and the Prometheus text parses with
//! a real parser and agrees.

use greenlight_common::telemetry::{AnswerClass, MetricsView};
use greenlight_common::Color;
use greenlight_e2e::fixtures::VIEWER_TOKEN;
use greenlight_e2e::rig::Rig;
use greenlight_e2e::Runtime;
use greenlight_test_origin::{Behavior, LatencyDist};
use std::time::{Duration, Instant};

greenlight_e2e::for_each_runtime!(
    a_slower_green_shows_in_the_metrics,
    a_failing_greens_errors_are_its_own
);

const REQUESTS: u64 = 600;

fn latency(spec: &str) -> Behavior {
    Behavior {
        latency: LatencyDist::parse(spec).unwrap(),
        ..Behavior::default()
    }
}

async fn start(runtime: Runtime, blue: Behavior, green: Behavior) -> Rig {
    let rig = match runtime {
        Runtime::Cloudflare => Rig::start_direct_with(runtime, blue, green, |_| {}).await,
        Runtime::Spin => Rig::start_with(runtime, blue, green, |_| {}).await,
    };
    let epoch = rig.state().await.state.epoch;
    let resp = rig
        .admin_post(
            "weight",
            serde_json::json!({"expected_epoch": epoch, "weight_percent": 50}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    rig
}

/// Sends `REQUESTS` requests from fresh anonymous users, eight at a time.
async fn traffic(rig: &Rig) {
    let mut left = REQUESTS;
    while left > 0 {
        let batch = left.min(8);
        let calls = (0..batch).map(|_| rig.get("/public/telemetry").send());
        for resp in futures::future::join_all(calls).await {
            assert_eq!(resp.expect("a request").status(), 200);
        }
        left -= batch;
    }
}

async fn metrics(rig: &Rig) -> MetricsView {
    let resp = rig
        .get("/__greenlight/metrics")
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// Reads the metrics until the epoch in force counts `want` attempts (the
/// flush interval plus its jitter, and a margin); returns them and how long
/// after the last answer they were complete. On Spin, after 6 s, at least
/// 80 % will do (see the module's documentation).
async fn counted(rig: &Rig, want: u64) -> (MetricsView, Duration) {
    let epoch = rig.state().await.state.epoch;
    let sent = Instant::now();
    loop {
        let view = metrics(rig).await;
        let have: u64 = view
            .epoch(epoch)
            .map(|e| e.colors.values().map(|c| c.requests).sum())
            .unwrap_or(0);
        assert!(have <= want, "counted {have} of {want}: {view:#?}");
        if have == want {
            return (view, sent.elapsed());
        }
        if rig.edge.runtime == Runtime::Spin && sent.elapsed() > Duration::from_secs(6) {
            assert!(have * 10 >= want * 8, "counted {have} of {want} after 6 s");
            eprintln!(
                "telemetry runtime=spin counted={have} of={want} lost={}",
                want - have
            );
            return (view, sent.elapsed());
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "counted {have} of {want} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the counts must be exact: the Worker's are.
fn exact(rig: &Rig) -> bool {
    rig.edge.runtime == Runtime::Cloudflare
}

async fn a_slower_green_shows_in_the_metrics(runtime: Runtime) {
    let rig = start(runtime, latency("fixed:5ms"), latency("fixed:40ms")).await;
    traffic(&rig).await;
    let (view, lag) = counted(&rig, REQUESTS).await;
    let epoch = rig.state().await.state.epoch;
    let e = view.epoch(epoch).unwrap();
    let (blue, green) = (&e.colors[&Color::Blue], &e.colors[&Color::Green]);
    assert_eq!(rig.blue.hits() + rig.green.hits(), REQUESTS);
    if exact(&rig) {
        assert_eq!(blue.requests + green.requests, REQUESTS);
        assert_eq!(
            green.requests,
            rig.green.hits(),
            "each attempt counted once"
        );
    }
    assert!(blue.requests <= rig.blue.hits() && green.requests <= rig.green.hits());
    assert!(
        blue.requests > 150 && green.requests > 150,
        "{blue:?} {green:?}"
    );
    assert_eq!((blue.errors, green.errors), (0, 0));
    let (b50, g50) = (blue.ttfb_p50_ms.unwrap(), green.ttfb_p50_ms.unwrap());
    assert!(g50 >= 40.0 && b50 < 30.0, "ttfb p50 blue {b50} green {g50}");
    assert!(e.from_ms.is_some() && e.to_ms >= e.from_ms);
    // The same counts in the Prometheus text, read by a real parser.
    let text = rig
        .get("/__greenlight/metrics/prometheus")
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 200);
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        text.headers()
    );
    let text = text.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let answered = |color: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == "greenlight_answers_total"
                    && s.labels.get("color") == Some(color)
                    && s.labels.get("epoch") == Some(&epoch.to_string())
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(answered("blue") as u64, blue.requests);
    assert_eq!(answered("green") as u64, green.requests);
    // `greenlight load --judge real` fails green on these counts alone: its
    // own load goes to blue's origin directly, so it has no verdict of its
    // own to give.
    let out = tokio::process::Command::new(greenlight_e2e::process::greenlight_bin())
        .args(["load", &format!("{}/direct", rig.blue.url())])
        .args(["--rate", "20", "--duration", "1s", "--quiet"])
        .args(["--judge", "real", "--edge", &rig.edge.base_url])
        .env(greenlight_engine::admin_client::TOKEN_ENV, VIEWER_TOKEN)
        .env("HOME", "/nonexistent")
        .output()
        .await
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(printed.contains("real users"), "{printed}");
    eprintln!(
        "telemetry runtime={} requests={REQUESTS} blue={} green={} ttfb_p50_blue_ms={b50} ttfb_p50_green_ms={g50} complete_after_ms={}",
        runtime.name(),
        blue.requests,
        green.requests,
        lag.as_millis()
    );
}

async fn a_failing_greens_errors_are_its_own(runtime: Runtime) {
    let failing = Behavior {
        error_rate: 1.0,
        ..Behavior::default()
    };
    let rig = start(runtime, Behavior::default(), failing).await;
    traffic(&rig).await;
    // Every green attempt failed and was retried on blue: blue answered
    // every request, green's attempts are all errors.
    let green_attempts = rig.green.hits();
    assert!(green_attempts > 40, "{green_attempts}");
    let (view, _) = counted(&rig, REQUESTS + green_attempts).await;
    let epoch = rig.state().await.state.epoch;
    let e = view.epoch(epoch).unwrap();
    let (blue, green) = (&e.colors[&Color::Blue], &e.colors[&Color::Green]);
    if exact(&rig) {
        assert_eq!(blue.requests, REQUESTS);
        assert_eq!(green.requests, green_attempts);
    }
    assert_eq!((blue.errors, green.errors), (0, green.requests));
    assert_eq!(
        green.answers.get(&AnswerClass::ServerError),
        Some(&green.requests)
    );
    assert_eq!(green.error_rate, 1.0);
}
