//! The headless twin, `greenlight-rollout`, as a CI pipeline runs it.

mod common;
use common::{FakeEdge, TOKEN};
use std::process::Command;

fn run_headless(edge: &FakeEdge, audit: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_greenlight-rollout"))
        .args([
            "--edge",
            &edge.url,
            "--rate",
            "300",
            "--users",
            "50",
            "--min-samples",
            "40",
        ])
        .args(["--max-extensions", "1", "--timeout", "60s", "--actor", "ci"])
        .arg("--audit")
        .arg(audit)
        .args(extra)
        .env("GREENLIGHT_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("runs greenlight-rollout");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rolls_back_a_slow_green_and_exits_1() {
    let edge = FakeEdge::start(2, 40);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let (code, stdout, stderr) =
        run_headless(&edge, &audit, &["--steps", "20,50,100", "--dwell", "2s"]);
    assert_eq!(code, 1, "stdout {stdout}\nstderr {stderr}");
    assert!(stdout.contains("rollout rolled back"), "{stdout}");
    let routes: Vec<String> = edge.calls().iter().map(|c| c.route.clone()).collect();
    assert_eq!(routes.first().map(String::as_str), Some("weight"));
    assert_eq!(routes.last().map(String::as_str), Some("rollback"));
    assert!(edge.calls().iter().all(|c| c.body["actor"] == "ci"));
    let (entries, bad) = rollout::audit::AuditFile::read(&audit).unwrap();
    assert_eq!(bad, 0);
    assert!(entries
        .iter()
        .any(|e| e.action == "rollback" && e.outcome == rollout::audit::AuditOutcome::Ok));
}

#[test]
fn promotes_a_healthy_green_and_exits_0() {
    let edge = FakeEdge::start(3, 3);
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_headless(
        &edge,
        &dir.path().join("a.jsonl"),
        &[
            "--steps",
            "50,100",
            "--dwell",
            "1s",
            "--on-inconclusive",
            "advance",
            "--latency-tolerance",
            "2",
            "--p99-ratio",
            "3",
        ],
    );
    assert_eq!(code, 0, "stdout {stdout}\nstderr {stderr}");
    assert!(stdout.contains("rollout promoted"), "{stdout}");
    let routes: Vec<String> = edge.calls().iter().map(|c| c.route.clone()).collect();
    assert_eq!(routes, ["weight", "weight", "promote"]);
}

#[test]
fn bad_input_exits_2() {
    let edge = FakeEdge::start(0, 0);
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_headless(&edge, &dir.path().join("a.jsonl"), &["--steps", "50,10"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("increasing"), "{stderr}");
    // The metric is total or ttfb; a scenario must be readable.
    let (code, _, stderr) = run_headless(&edge, &dir.path().join("a.jsonl"), &["--metric", "p99"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not total or ttfb"), "{stderr}");
    let missing = dir.path().join("none.toml");
    let (code, _, stderr) = run_headless(
        &edge,
        &dir.path().join("a.jsonl"),
        &["--scenario", missing.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("none.toml"), "{stderr}");
    assert!(edge.calls().is_empty());
}
