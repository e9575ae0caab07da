//! The automated rollout (the dashboard's controller, through its headless
//! twin `greenlight-rollout` run as a process) against the real Worker
//! served directly on workerd (`Runtime::start_direct`) and the Spin
//! component under `spin up`, with the twin's
//! default plan (steps 1, 5, 25, 50, 100 %) and the demo's rate, comparison
//! traffic through the preview override ([`fixtures::QA_KEY`]):
//! - a green 40 % slower is rolled back at the first step (1 %), where
//!   weighted traffic alone would give it almost no samples;
//! - a green equal to blue is promoted through every step (dwell shortened
//!   to keep CI lean; the default dwell's figures are `bench/verdict-quality`'s).
//!
//! The edge's state is read afterwards to prove it.

use greenlight_common::{Color, Phase};
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN, QA_KEY};
use greenlight_e2e::process::built_binary;
use greenlight_e2e::{RunningEdge, Runtime};
use greenlight_engine::admin_client::{AdminClient, TOKEN_ENV};
use greenlight_engine::sampling::PREVIEW_KEY_ENV;
use greenlight_test_origin::{Behavior, LatencyDist, Origin};

greenlight_e2e::for_each_runtime!(
    slower_green_is_rolled_back_at_the_first_step,
    equal_green_is_promoted_through_every_step
);

struct Setup {
    edge: RunningEdge,
    green: Origin,
    _blue: Origin,
}

async fn setup(runtime: Runtime, blue: &str, green: &str) -> Setup {
    let latency = |spec: &str| Behavior {
        latency: LatencyDist::parse(spec).unwrap(),
        ..Behavior::default()
    };
    let any = "127.0.0.1:0".parse().unwrap();
    let blue = Origin::start(any, "blue", latency(blue)).await.unwrap();
    let green = Origin::start(any, "green", latency(green)).await.unwrap();
    let edge = runtime
        .start_direct(&fixtures::edge_setup(&blue.url(), &green.url()))
        .await
        .unwrap();
    Setup {
        edge,
        green,
        _blue: blue,
    }
}

/// Runs the twin with its defaults but the edge, the target, the demo's
/// rate and `extra`; returns its exit code and output.
async fn twin(edge: &RunningEdge, extra: &[&str]) -> (Option<i32>, String) {
    let out =
        tokio::process::Command::new(built_binary("greenlight-rollout", "greenlight-rollout"))
            .args(["--edge", &edge.base_url])
            .args(["--target", &format!("{}/public/e2e", edge.base_url)])
            .args(["--rate", "60", "--timeout", "4m"])
            .args(extra)
            .env(TOKEN_ENV, ADMIN_TOKEN)
            .env(PREVIEW_KEY_ENV, QA_KEY)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), log)
}

async fn state(edge: &RunningEdge) -> greenlight_common::admin::StateView {
    AdminClient::new(&edge.base_url, Some(ADMIN_TOKEN.into()))
        .unwrap()
        .state()
        .await
        .unwrap()
}

async fn slower_green_is_rolled_back_at_the_first_step(runtime: Runtime) {
    let s = setup(runtime, "normal:40ms,4ms", "normal:56ms,5.6ms").await;
    let (code, log) = twin(&s.edge, &[]).await;
    assert_eq!(code, Some(1), "expected a rollback (exit 1):\n{log}");
    assert!(log.contains("comparison traffic"), "{log}");
    assert!(
        log.contains("rolled back: step 1/5 (1%)"),
        "rolled back at the first step:\n{log}"
    );
    let view = state(&s.edge).await;
    assert_eq!(
        (view.state.active, view.phase),
        (Color::Blue, Phase::Stable),
        "{log}"
    );
    assert_eq!(view.state.candidate_weight_bp, 0);
    assert_eq!(view.state.last_change.op, "rollback");
    assert!(
        s.green.hits() > 0,
        "green never received comparison traffic"
    );
}

async fn equal_green_is_promoted_through_every_step(runtime: Runtime) {
    let s = setup(runtime, "normal:40ms,4ms", "normal:40ms,4ms").await;
    let (code, log) = twin(&s.edge, &["--dwell", "10s"]).await;
    assert_eq!(code, Some(0), "expected a promotion (exit 0):\n{log}");
    for step in [
        "1/5 (1%)",
        "2/5 (5%)",
        "3/5 (25%)",
        "4/5 (50%)",
        "5/5 (100%)",
    ] {
        assert!(
            log.contains(&format!("step {step}: analysis PASS")),
            "step {step} passed:\n{log}"
        );
    }
    // One routing check per step, each of the epoch its step set.
    assert!(
        log.matches("routing check of epoch").count() >= 5,
        "a routing check per step:\n{log}"
    );
    assert!(!log.contains(": OFF"), "the edge splits as set:\n{log}");
    let view = state(&s.edge).await;
    assert_eq!(
        (view.state.active, view.phase),
        (Color::Green, Phase::Promoted)
    );
}
