//! The automated rollout (`greenlight-rollout` as a process) judging real
//! users only: it drives no load of its own (`--no-load --judge real`);
//! the test plays the real users, fresh anonymous callers (eight at a
//! time, about 150 a second on an idle machine), through the Worker (served directly on workerd) and the WASIp3
//! Spin build. The edge's counts (`GET /__greenlight/metrics`) are the
//! only evidence:
//! - a green 50 % slower is rolled back;
//! - a green answering 5 % errors is rolled back (the health gate is set
//!   out of reach, so the verdict alone decides);
//! - an equal green is promoted.

use greenlight_common::{Color, Phase};
use greenlight_e2e::fixtures::ADMIN_TOKEN;
use greenlight_e2e::process::built_binary;
use greenlight_e2e::rig::Rig;
use greenlight_e2e::Runtime;
use greenlight_engine::admin_client::TOKEN_ENV;
use greenlight_test_origin::{Behavior, LatencyDist};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

greenlight_e2e::for_each_runtime!(
    a_slower_green_is_rolled_back_on_real_users_alone,
    a_green_with_errors_is_rolled_back_on_real_users_alone,
    an_equal_green_is_promoted_on_real_users_alone
);

fn behaving(latency: &str, error_rate: f64) -> Behavior {
    Behavior {
        latency: LatencyDist::parse(latency).unwrap(),
        error_rate,
        ..Behavior::default()
    }
}

/// Runs the rollout (one step at 50 %, then the promote) while real users
/// call the edge; returns the rollout's exit code, its output, and the
/// edge's final state.
async fn rollout(
    runtime: Runtime,
    green: Behavior,
) -> (Option<i32>, String, greenlight_common::admin::StateView) {
    let blue = behaving("normal:20ms,3ms", 0.0);
    let tweak = |setup: &mut greenlight_e2e::edge::EdgeSetup| {
        // Out of reach: only the verdict may roll back.
        setup
            .vars
            .insert("HEALTH_FAILURE_THRESHOLD".into(), "100000".into());
    };
    let rig = Arc::new(match runtime {
        Runtime::Cloudflare => Rig::start_direct_with(runtime, blue, green, tweak).await,
        Runtime::Spin => Rig::start_with(runtime, blue, green, tweak).await,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let users = {
        let (rig, stop, sent) = (rig.clone(), stop.clone(), sent.clone());
        tokio::spawn(async move {
            // Bounded: the rollout's own timeout ends it well before.
            for _ in 0..12_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let calls = (0..8).map(|_| rig.get("/public/real").send());
                for r in futures::future::join_all(calls).await {
                    if r.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let out =
        tokio::process::Command::new(built_binary("greenlight-rollout", "greenlight-rollout"))
            .args(["--edge", &rig.edge.base_url])
            .args(["--no-load", "--judge", "real"])
            .args(["--steps", "50", "--dwell", "8s", "--max-extensions", "2"])
            .args(["--on-inconclusive", "rollback", "--timeout", "2m"])
            .env(TOKEN_ENV, ADMIN_TOKEN)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
    stop.store(true, Ordering::Relaxed);
    users.await.unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        sent.load(Ordering::Relaxed) > 300,
        "the real users sent too little: {}",
        sent.load(Ordering::Relaxed)
    );
    (out.status.code(), log, rig.state().await)
}

/// The rollout with `green` ends rolled back on the real users' verdict.
async fn rolled_back_on_real_users(runtime: Runtime, green: Behavior) {
    let (code, log, end) = rollout(runtime, green).await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("real users"), "{log}");
    assert_eq!(
        (end.phase, end.state.active),
        (Phase::Stable, Color::Blue),
        "{log}"
    );
}

async fn a_slower_green_is_rolled_back_on_real_users_alone(runtime: Runtime) {
    rolled_back_on_real_users(runtime, behaving("normal:30ms,4.5ms", 0.0)).await
}

async fn a_green_with_errors_is_rolled_back_on_real_users_alone(runtime: Runtime) {
    rolled_back_on_real_users(runtime, behaving("normal:20ms,3ms", 0.05)).await
}

async fn an_equal_green_is_promoted_on_real_users_alone(runtime: Runtime) {
    let (code, log, end) = rollout(runtime, behaving("normal:20ms,3ms", 0.0)).await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        (end.phase, end.state.active),
        (Phase::Promoted, Color::Green),
        "{log}"
    );
}
