//! The automated rollout (the dashboard's controller, through its headless
//! twin `greenlight-rollout`) against the real Worker under workerd and the
//! Spin component under `spin up`: a slower green is rolled back by itself,
//! with the edge's state to prove it.

use greenlight_common::{Color, Phase};
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN};
use greenlight_e2e::process::built_binary;
use greenlight_e2e::Runtime;
use loadtest::admin_client::{AdminClient, TOKEN_ENV};
use loadtest::origin::{Behavior, LatencyDist, Origin};

greenlight_e2e::for_each_runtime!(slower_green_is_rolled_back_automatically);

async fn slower_green_is_rolled_back_automatically(runtime: Runtime) {
    let latency = |spec: &str| Behavior {
        latency: LatencyDist::parse(spec).unwrap(),
        ..Behavior::default()
    };
    let any = "127.0.0.1:0".parse().unwrap();
    let blue = Origin::start(any, "blue", latency("normal:4ms,1ms"))
        .await
        .unwrap();
    let green = Origin::start(any, "green", latency("normal:16ms,2ms"))
        .await
        .unwrap();
    let edge = runtime
        .start(&fixtures::edge_setup(&blue.url(), &green.url()))
        .await
        .unwrap();
    let out =
        tokio::process::Command::new(built_binary("greenlight-rollout", "greenlight-harness-gui"))
            .args(["--edge", &edge.base_url])
            .args(["--target", &format!("{}/public/e2e", edge.base_url)])
            .args([
                "--rate",
                "40",
                "--steps",
                "20,50,100",
                "--dwell",
                "10s",
                "--timeout",
                "3m",
            ])
            .env(TOKEN_ENV, ADMIN_TOKEN)
            .output()
            .await
            .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a rollback (exit 1):\n{log}"
    );
    assert!(log.contains("rolled back"), "{log}");
    // The edge agrees: blue active, no canary, the last change a rollback.
    let view = AdminClient::new(&edge.base_url, Some(ADMIN_TOKEN.into()))
        .unwrap()
        .state()
        .await
        .unwrap();
    assert_eq!(
        (view.state.active, view.phase),
        (Color::Blue, Phase::Stable),
        "{log}"
    );
    assert_eq!(view.state.candidate_weight_bp, 0);
    assert_eq!(view.state.last_change.op, "rollback");
    assert!(green.hits() > 0, "green never received canary traffic");
}
