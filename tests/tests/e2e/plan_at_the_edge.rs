//! A rollout plan the edge carries out by itself, through the real
//! runtimes: `greenlight rollout start --watch` starts it and is killed
//! (SIGKILL) at its first step; the plan then finishes on its own.
//! - An equal green is promoted through every step. On Cloudflare nothing
//!   but the rollout object's alarm moves it (no traffic, only state
//!   reads); on Spin, which has no alarms, traffic flows and the first
//!   request after each deadline makes the change.
//! - A green that answers 500 is rolled back by the health gate, before
//!   its first step's dwell is over.
//! - A plan that needs evidence: a harness holds its lease
//!   (`greenlight rollout evidence --hold`) and a passing verdict moves the
//!   first step on; the holder is killed, its lease runs out, and the
//!   plan's rule for missing evidence (rollback) applies. Nothing but admin
//!   reads reach the edge meanwhile (on Spin, the admin call after a
//!   deadline makes the change).
//! - Two operators pausing the plan at once: one winner, the others 409; a
//!   viewer changes nothing.

use greenlight_common::admin::StateView;
use greenlight_common::plan::PlanStatus;
use greenlight_common::rollout::PLAN_ACTOR;
use greenlight_common::Phase;
use greenlight_e2e::fixtures::{OPERATOR_NAME, OPERATOR_TOKEN, VIEWER_TOKEN};
use greenlight_e2e::process::greenlight_bin;
use greenlight_e2e::rig::Rig;
use greenlight_e2e::Runtime;
use greenlight_engine::admin_client::TOKEN_ENV;
use greenlight_test_origin::Behavior;
use std::time::{Duration, Instant};

greenlight_e2e::for_each_runtime!(
    a_killed_harness_leaves_an_equal_green_promoted,
    a_killed_harness_leaves_a_failing_green_rolled_back,
    a_lease_that_runs_out_applies_the_plans_rule,
    two_operators_pausing_at_once_get_one_winner
);

/// Runs `greenlight` with `args` against the rig's edge as the operator;
/// returns its exit code and output.
async fn cli(rig: &Rig, args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(greenlight_bin())
        .args(args)
        .args(["--edge", &rig.edge.base_url])
        .env(TOKEN_ENV, OPERATOR_TOKEN)
        .env("HOME", "/nonexistent")
        .output()
        .await
        .expect("running greenlight");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Starts `greenlight rollout start --watch` with `plan` and kills it
/// (SIGKILL) once the edge shows the plan at its first step. Returns what
/// it printed before it died.
async fn start_and_kill_the_harness(rig: &Rig, plan: &[&str]) -> String {
    let mut harness = tokio::process::Command::new(greenlight_bin())
        .args(["rollout", "start", "--watch", "--reason", "e2e plan"])
        .args(plan)
        .args(["--edge", &rig.edge.base_url])
        .env(TOKEN_ENV, OPERATOR_TOKEN)
        .env("HOME", "/nonexistent")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting greenlight rollout start");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = rig.state().await;
        if view.state.plan.is_some() {
            assert_eq!(view.state.last_change.op, "plan_start");
            assert_eq!(view.state.last_change.credential, OPERATOR_NAME);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the harness never started the plan"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    harness.start_kill().expect("SIGKILL");
    let out = harness
        .wait_with_output()
        .await
        .expect("the killed harness");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "killed, not exited: {out:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Reads the state until the plan has ended, sending anonymous requests
/// (a new user each, so both colors get some) at about 40 a second when
/// `traffic`. Bounded by `limit`.
async fn until_the_plan_ends(rig: &Rig, traffic: bool, limit: Duration) -> StateView {
    let deadline = Instant::now() + limit;
    loop {
        let view = rig.state().await;
        if view
            .state
            .plan
            .as_ref()
            .is_some_and(|p| p.status.ended() || matches!(p.status, PlanStatus::Held { .. }))
        {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "the plan did not end within {limit:?}: {:?}",
            view.state.plan
        );
        for _ in 0..if traffic { 10 } else { 1 } {
            if traffic {
                let resp = rig.get("/public/plan").send().await.expect("a request");
                assert!(
                    resp.status().is_success(),
                    "a request during the plan: {}",
                    resp.status()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The ops of the changes the plan itself made (actor `greenlight-plan`),
/// oldest first, as the edge's history recorded them.
async fn plan_ops(rig: &Rig) -> Vec<String> {
    let resp = rig
        .get("/__greenlight/history")
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let view: greenlight_common::history::HistoryView = resp.json().await.unwrap();
    view.changes
        .iter()
        .rev()
        .filter(|c| c.after.last_change.actor == PLAN_ACTOR)
        .map(|c| c.after.last_change.op.clone())
        .collect()
}

async fn a_killed_harness_leaves_an_equal_green_promoted(runtime: Runtime) {
    let rig = Rig::start(runtime, |_| {}).await;
    let printed = start_and_kill_the_harness(&rig, &["--steps", "10,50", "--dwell", "2s"]).await;
    assert!(printed.contains("plan_start"), "{printed}");
    // Cloudflare: the object's alarm alone. Spin: requests carry the clock.
    let traffic = runtime == Runtime::Spin;
    let started = Instant::now();
    let end = until_the_plan_ends(&rig, traffic, Duration::from_secs(30)).await;
    let took = started.elapsed();
    let plan = end.state.plan.as_ref().unwrap();
    assert_eq!(plan.status, PlanStatus::Promoted, "{plan:?}");
    assert_eq!(end.phase, Phase::Promoted);
    assert_eq!(end.state.active, greenlight_common::Color::Green);
    assert_eq!(end.state.last_change.actor, PLAN_ACTOR);
    let plan_ops = plan_ops(&rig).await;
    assert_eq!(
        plan_ops,
        ["plan_set_weight", "plan_promote"],
        "exactly once each"
    );
    // Two dwells of 2 s from the start, and not much later.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    eprintln!(
        "plan_at_the_edge runtime={} outcome=promoted seconds_after_kill={:.1}",
        runtime.name(),
        took.as_secs_f64()
    );
}

async fn a_killed_harness_leaves_a_failing_green_rolled_back(runtime: Runtime) {
    let failing = Behavior {
        error_rate: 1.0,
        ..Behavior::default()
    };
    let rig = Rig::start_with(runtime, Behavior::default(), failing, |_| {}).await;
    start_and_kill_the_harness(&rig, &["--steps", "20,50", "--dwell", "20s"]).await;
    let started = Instant::now();
    let end = until_the_plan_ends(&rig, true, Duration::from_secs(40)).await;
    let took = started.elapsed();
    let plan = end.state.plan.as_ref().unwrap();
    let PlanStatus::RolledBack { reason } = &plan.status else {
        panic!("not rolled back: {plan:?}");
    };
    assert!(reason.contains("health gate"), "{reason}");
    assert_eq!(
        plan.step, 0,
        "rolled back at the first step, before its dwell"
    );
    assert_eq!(
        (end.phase, end.state.candidate_weight_bp),
        (Phase::Stable, 0)
    );
    assert_eq!(end.state.last_change.op, "plan_rollback");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // Everyone is on blue again.
    for _ in 0..5 {
        let resp = rig.get("/public/after").send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("x-greenlight-color")
                .and_then(|v| v.to_str().ok()),
            Some("blue")
        );
    }
    eprintln!(
        "plan_at_the_edge runtime={} outcome=rolled_back seconds_after_kill={:.1}",
        runtime.name(),
        took.as_secs_f64()
    );
}

async fn two_operators_pausing_at_once_get_one_winner(runtime: Runtime) {
    let rig = Rig::start(runtime, |_| {}).await;
    let post = |route: &str, token: &str, body: serde_json::Value| {
        rig.post(&format!("/__greenlight/{route}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let plan =
        serde_json::json!({"steps_bp": [1000, 5000], "dwell_ms": 600000, "on_failure": "rollback"});
    let resp = post(
        "plan/start",
        VIEWER_TOKEN,
        serde_json::json!({"expected_epoch": 0, "plan": plan}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403, "a viewer starts nothing");
    let resp = post(
        "plan/start",
        OPERATOR_TOKEN,
        serde_json::json!({"expected_epoch": 0, "plan": plan}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let calls = (0..4).map(|_| {
        post(
            "plan/pause",
            OPERATOR_TOKEN,
            serde_json::json!({"expected_epoch": 1}),
        )
    });
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let wins = statuses.iter().filter(|s| **s == 200).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((wins, conflicts), (1, 3), "{statuses:?}");
    let view = rig.state().await;
    assert_eq!(view.state.epoch, 2);
    assert_eq!(view.state.plan.as_ref().unwrap().status, PlanStatus::Paused);
    let resp = post(
        "plan/abort",
        VIEWER_TOKEN,
        serde_json::json!({"expected_epoch": 2}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403, "a viewer aborts nothing");
    assert_eq!(rig.state().await.state.epoch, 2);
}

async fn a_lease_that_runs_out_applies_the_plans_rule(runtime: Runtime) {
    let rig = Rig::start(runtime, |_| {}).await;
    let (code, out) = cli(
        &rig,
        &[
            "rollout",
            "start",
            "--steps",
            "10,50",
            "--dwell",
            "1s",
            "--lease",
            "2s",
            "--on-missing-evidence",
            "rollback",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    let mut holder = tokio::process::Command::new(greenlight_bin())
        .args(["rollout", "evidence", "--hold", "--every", "300ms"])
        .args(["--edge", &rig.edge.base_url])
        .env(TOKEN_ENV, OPERATOR_TOKEN)
        .env("HOME", "/nonexistent")
        .kill_on_drop(true)
        .spawn()
        .expect("the lease holder");
    // The holder's lease shows in the state; the dwell passes, and without
    // a verdict the plan waits on the lease.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let view = rig.state().await;
    let held = view.evidence.as_ref().expect("the lease in the state");
    assert_eq!(held.holder, OPERATOR_NAME);
    assert_eq!(
        view.state.epoch, 1,
        "no verdict, no step: {:?}",
        view.state.plan
    );
    // A passing verdict moves the first step on at once.
    let (code, out) = cli(&rig, &["rollout", "evidence", "--verdict", "pass"]).await;
    assert_eq!(code, Some(0), "{out}");
    let view = rig.state().await;
    assert_eq!(
        (view.state.epoch, view.state.candidate_weight_bp),
        (2, 5_000),
        "{out}"
    );
    // The harness dies; its lease runs out 2 s after its last renewal.
    holder.start_kill().expect("SIGKILL");
    let _ = holder.wait().await;
    let killed = Instant::now();
    let end = until_the_plan_ends(&rig, false, Duration::from_secs(20)).await;
    let took = killed.elapsed();
    let plan = end.state.plan.as_ref().unwrap();
    let PlanStatus::RolledBack { reason } = &plan.status else {
        panic!("not rolled back: {plan:?}");
    };
    assert!(reason.contains("no lease"), "{reason}");
    assert_eq!((plan.step, end.state.candidate_weight_bp), (1, 0));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let plan_ops = plan_ops(&rig).await;
    assert_eq!(plan_ops, ["plan_set_weight", "plan_rollback"]);
    eprintln!(
        "plan_at_the_edge runtime={} outcome=lease_ran_out seconds_after_kill={:.1}",
        runtime.name(),
        took.as_secs_f64()
    );
}
