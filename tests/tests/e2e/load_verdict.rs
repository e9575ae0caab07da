//! `greenlight load` through the real Worker (served directly on workerd:
//! `Runtime::start_direct`, no `wrangler dev` proxy to measure) and the Spin
//! component (`spin up`) against two `greenlight origin` processes: a 30 %
//! slower green must be judged `Fail` with a non-zero exit; equal origins
//! never `Fail`, and exit 0 on a pass and 4 when inconclusive.

use greenlight_e2e::fixtures::{self, ADMIN_TOKEN};
use greenlight_e2e::process::{free_port, greenlight_bin, wait_ready, ProcessGroup};
use greenlight_e2e::Runtime;
use std::process::Command;
use std::time::Duration;

async fn origin(color: &str, latency: &str) -> (ProcessGroup, String) {
    let port = free_port();
    let mut cmd = Command::new(greenlight_bin());
    cmd.args([
        "origin",
        "--color",
        color,
        "--port",
        &port.to_string(),
        "--latency",
        latency,
    ]);
    let process = ProcessGroup::spawn(cmd).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&url, Duration::from_secs(20)).await.unwrap();
    (process, url)
}

/// Runs a 50 % canary under load; returns (exit code, verdict string). The
/// rate is modest: local workerd is one thread, and on a busy 2-core CI
/// machine a higher rate measures queueing at the edge, not the origins.
async fn run(runtime: Runtime, green_latency: &str) -> (i32, String) {
    let (_blue, blue_url) = origin("blue", "normal:12ms,1ms").await;
    let (_green, green_url) = origin("green", green_latency).await;
    let edge = runtime
        .start_direct(&fixtures::edge_setup(&blue_url, &green_url))
        .await
        .unwrap();
    let admin =
        greenlight_engine::admin_client::AdminClient::new(&edge.base_url, Some(ADMIN_TOKEN.into()))
            .unwrap();
    admin
        .set_weight(50.0, None, "load verdict e2e")
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("report.json");
    let status = tokio::task::spawn_blocking({
        let url = format!("{}/public/items", edge.base_url);
        let json = json.clone();
        move || {
            Command::new(greenlight_bin())
                .args([
                    "load",
                    &url,
                    "--rate",
                    "40",
                    "--duration",
                    "30s",
                    "--users",
                    "400",
                    "--quiet",
                ])
                .arg("--json")
                .arg(&json)
                .status()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let verdict = report["verdict"]["verdict"]
        .as_str()
        .unwrap_or("none")
        .to_ascii_lowercase();
    eprintln!(
        "verdict: {}",
        serde_json::to_string_pretty(&report["verdict"]).unwrap_or_default()
    );
    (status.code().unwrap_or(-1), verdict)
}

greenlight_e2e::for_each_runtime!(slower_green_fails_the_run, equal_origins_never_fail);

async fn slower_green_fails_the_run(runtime: Runtime) {
    let (code, verdict) = run(runtime, "normal:15.6ms,1.3ms").await;
    assert_eq!(verdict, "fail");
    assert_eq!(code, 1, "a Fail verdict must exit non-zero");
}

async fn equal_origins_never_fail(runtime: Runtime) {
    let (code, verdict) = run(runtime, "normal:12ms,1ms").await;
    // An inconclusive run is not a pass: it has its own exit code, so a
    // gate fails closed.
    let expected = match verdict.as_str() {
        "pass" => 0,
        "inconclusive" => 4,
        other => panic!("verdict {other}"),
    };
    assert_eq!(code, expected, "verdict {verdict}");
}
