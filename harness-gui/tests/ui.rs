//! The dashboard driven through its UI (egui_kittest, no display) against a
//! real HTTP server on 127.0.0.1 that runs the real admin handler, records
//! every admin call, and serves tagged traffic (green optionally slower).

use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use greenlight_common::rollout::RolloutOp;
use harness_gui::app::AppState;
use harness_gui::backend::{Backend, Intervals};
use harness_gui::settings::Settings;
use harness_gui::Dashboard;
use rollout::audit::{AuditFile, AuditOutcome};
use rollout::OnInconclusive;
use std::time::{Duration, Instant};

// One fake edge for the dashboard's and the headless command's tests.
#[path = "../rollout/tests/common/mod.rs"]
mod common;
use common::{FakeEdge, TOKEN};

fn dashboard(
    edge: &str,
    token: Option<&str>,
    audit: &std::path::Path,
    state_every: Duration,
) -> Dashboard {
    let backend = Backend::start(
        AuditFile::new(Some(audit.to_path_buf())),
        Intervals {
            state: state_every,
            metrics: Duration::from_millis(200),
        },
        None,
    )
    .unwrap();
    let settings = Settings {
        edge_url: edge.to_string(),
        actor: "tester@dashboard".into(),
        ..Settings::default()
    };
    let mut s = AppState::new(settings, None, token.map(str::to_string));
    s.audit_path = Some(audit.to_path_buf());
    Dashboard::new(s, backend)
}

fn harness(d: Dashboard) -> Harness<'static, Dashboard> {
    Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .with_max_steps(20)
        .build_ui_state(|ui, d: &mut Dashboard| d.ui(ui), d)
}

/// Steps the UI until `cond` holds (bounded).
fn wait_for(
    h: &mut Harness<'_, Dashboard>,
    what: &str,
    timeout: Duration,
    cond: impl Fn(&Harness<'_, Dashboard>) -> bool,
) {
    let start = Instant::now();
    loop {
        h.step();
        if cond(h) {
            h.step();
            return;
        }
        if start.elapsed() > timeout {
            let s = &h.state().state;
            panic!(
                "timed out waiting for {what}; notice {:?}; rollout {:#?}; view {:?}",
                s.notice,
                s.rollout
                    .as_ref()
                    .map(|r| (&r.headline, &r.log, &r.last_reasons)),
                s.view
                    .as_ref()
                    .map(|v| (v.state.epoch, v.state.candidate_weight_bp))
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn disabled(h: &Harness<'_, Dashboard>, label: &str) -> bool {
    h.get_by_label(label).accesskit_node().is_disabled()
}

fn shows(h: &Harness<'_, Dashboard>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

#[test]
fn promote_then_rollback_through_the_buttons() {
    let edge = FakeEdge::start(0, 0);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut h = harness(dashboard(
        &edge.url,
        Some(TOKEN),
        &audit,
        Duration::from_millis(200),
    ));
    wait_for(&mut h, "the first state", Duration::from_secs(10), |h| {
        shows(h, "epoch 0")
    });
    assert!(shows(&h, "reachable"));
    assert!(
        disabled(&h, "Rollback"),
        "nothing to roll back while stable"
    );
    assert!(!disabled(&h, "Promote"));

    h.get_by_label("Promote").click_accesskit();
    h.run();
    assert!(shows(
        &h,
        "green becomes the active color and receives 100% of users"
    ));
    assert!(
        edge.calls().is_empty(),
        "nothing is sent before the confirmation"
    );
    h.get_by_label("Confirm").click_accesskit();
    wait_for(&mut h, "the promotion", Duration::from_secs(10), |h| {
        shows(h, "epoch 1")
    });
    let calls = edge.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].method.as_str(), calls[0].route.as_str()),
        ("POST", "promote")
    );
    assert_eq!(calls[0].body["expected_epoch"], 0);
    assert!(shows(&h, "promote done: epoch 1"));
    wait_for(&mut h, "the edge's history", Duration::from_secs(5), |h| {
        shows(h, "tester@dashboard (k:test)")
    });
    assert!(shows(&h, "2 changes kept at the edge"));
    assert!(shows(&h, "promote by tester@dashboard") || shows(&h, "promote by k:test"));
    wait_for(
        &mut h,
        "buttons to follow the phase",
        Duration::from_secs(5),
        |h| disabled(h, "Promote") && !disabled(h, "Rollback"),
    );

    h.get_by_label("Rollback").click_accesskit();
    h.run();
    assert!(shows(
        &h,
        "Roll back the promotion: blue becomes the active color again"
    ));
    h.get_by_label("Confirm").click_accesskit();
    wait_for(&mut h, "the rollback", Duration::from_secs(10), |h| {
        shows(h, "epoch 2")
    });
    let calls = edge.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[1].route.as_str(), &calls[1].body["expected_epoch"]),
        ("rollback", &serde_json::json!(1))
    );
    assert_eq!(
        edge.state.lock().unwrap().active,
        greenlight_common::Color::Blue
    );

    // The audit file has both actions, with epochs before and after.
    let (entries, bad) = AuditFile::read(&audit).unwrap();
    assert_eq!(bad, 0);
    let changes: Vec<_> = entries
        .iter()
        .filter(|e| e.outcome != AuditOutcome::Info)
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (
            changes[0].action.as_str(),
            changes[0].epoch_before,
            changes[0].epoch_after
        ),
        ("promote", Some(0), Some(1))
    );
    assert_eq!(
        (
            changes[1].action.as_str(),
            changes[1].epoch_before,
            changes[1].epoch_after
        ),
        ("rollback", Some(1), Some(2))
    );
    assert!(changes
        .iter()
        .all(|e| e.outcome == AuditOutcome::Ok && e.actor == "tester@dashboard"));
    // ... and the audit panel shows them.
    assert!(shows(&h, "1->2"));
}

#[test]
fn a_plan_at_the_edge_is_started_paused_and_aborted_from_the_dashboard() {
    let edge = FakeEdge::start(0, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(dashboard(
        &edge.url,
        Some(TOKEN),
        &dir.path().join("audit.jsonl"),
        Duration::from_millis(200),
    ));
    wait_for(&mut h, "the first state", Duration::from_secs(10), |h| {
        shows(h, "epoch 0")
    });
    assert!(shows(&h, "no plan started at the edge"));
    assert!(disabled(&h, "Pause edge plan") && disabled(&h, "Abort edge plan"));
    h.get_by_label("Run at the edge").click_accesskit();
    h.run();
    assert!(
        shows(&h, "whoever is watching"),
        "the confirmation says what it does"
    );
    h.get_by_label("Confirm").click_accesskit();
    wait_for(
        &mut h,
        "the plan at the edge",
        Duration::from_secs(10),
        |h| shows(h, "edge plan running · step 1/"),
    );
    let calls = edge.calls();
    assert_eq!(calls.last().unwrap().route, "plan/start");
    assert!(calls.last().unwrap().body["plan"]["steps_bp"].is_array());
    for (button, status) in [
        ("Pause edge plan", "paused"),
        ("Abort edge plan", "aborted"),
    ] {
        wait_for(&mut h, button, Duration::from_secs(5), |h| {
            !disabled(h, button)
        });
        h.get_by_label(button).click_accesskit();
        h.run();
        h.get_by_label("Confirm").click_accesskit();
        wait_for(&mut h, status, Duration::from_secs(10), |h| {
            shows(h, &format!("edge plan {status}"))
        });
    }
    let routes: Vec<String> = edge.calls().into_iter().map(|c| c.route).collect();
    assert_eq!(routes, ["plan/start", "plan/pause", "plan/abort"]);
}

#[test]
fn a_409_refreshes_and_says_so() {
    let edge = FakeEdge::start(0, 0);
    let dir = tempfile::tempdir().unwrap();
    // Slow polling, so the dashboard's view goes stale before the click.
    let mut h = harness(dashboard(
        &edge.url,
        Some(TOKEN),
        &dir.path().join("a.jsonl"),
        Duration::from_secs(30),
    ));
    wait_for(&mut h, "the first state", Duration::from_secs(10), |h| {
        shows(h, "epoch 0")
    });
    edge.change_elsewhere(RolloutOp::SetWeight { weight_bp: 1000 });
    h.get_by_label("Promote").click_accesskit();
    h.run();
    h.get_by_label("Confirm").click_accesskit();
    wait_for(
        &mut h,
        "the conflict message",
        Duration::from_secs(10),
        |h| shows(h, "409 conflict"),
    );
    assert!(shows(&h, "rollout changed elsewhere (now at epoch 1)"));
    // The state was refreshed right away (not at the next 30 s poll).
    wait_for(&mut h, "the refresh", Duration::from_secs(5), |h| {
        shows(h, "epoch 1")
    });
    assert!(shows(&h, "10% on green"));
    let calls = edge.calls();
    assert_eq!(
        (calls.len(), calls[0].body["expected_epoch"].as_u64()),
        (1, Some(0))
    );
}

#[test]
fn unreachable_edge_and_bad_token_are_banners() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut h = harness(dashboard(
        &format!("http://127.0.0.1:{port}"),
        Some(TOKEN),
        &dir.path().join("a.jsonl"),
        Duration::from_millis(200),
    ));
    wait_for(
        &mut h,
        "the unreachable banner",
        Duration::from_secs(10),
        |h| shows(h, "Edge unreachable"),
    );
    assert!(shows(&h, "the dashboard keeps running"));
    assert!(disabled(&h, "Promote") && disabled(&h, "Start rollout"));

    let edge = FakeEdge::start(0, 0);
    let mut h = harness(dashboard(
        &edge.url,
        Some("wrong"),
        &dir.path().join("b.jsonl"),
        Duration::from_millis(200),
    ));
    wait_for(&mut h, "the 401 banner", Duration::from_secs(10), |h| {
        shows(h, "Admin token refused")
    });
    assert!(shows(&h, "GREENLIGHT_ADMIN_TOKEN"));
}

fn start_rollout(
    h: &mut Harness<'_, Dashboard>,
    edge: &FakeEdge,
    steps: &str,
    on: OnInconclusive,
    tolerance: f64,
) {
    {
        let s = &mut h.state_mut().state;
        s.settings.load.target_url = format!("{}/", edge.url);
        s.settings.load.rate = 300.0;
        s.settings.load.users = 50;
        s.steps_text = steps.into();
        s.settings.dwell_s = 2;
        s.settings.max_extensions = 1;
        s.settings.on_inconclusive = on;
        s.settings.policy.min_samples = 40;
        s.settings.policy.latency_tolerance = tolerance;
        s.settings.policy.p99_ratio_max = 1.0 + tolerance;
    }
    wait_for(h, "the first state", Duration::from_secs(10), |h| {
        shows(h, "epoch 0")
    });
    h.get_by_label("Start load").click_accesskit();
    wait_for(h, "load", Duration::from_secs(10), |h| {
        shows(h, "running: http")
    });
    // A second of baseline traffic, then the rollout.
    std::thread::sleep(Duration::from_secs(1));
    h.get_by_label("Start rollout").click_accesskit();
    h.run();
}

#[test]
fn automated_rollout_rolls_back_a_slow_green() {
    let edge = FakeEdge::start(2, 40);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut h = harness(dashboard(
        &edge.url,
        Some(TOKEN),
        &audit,
        Duration::from_millis(300),
    ));
    start_rollout(&mut h, &edge, "20, 50, 100", OnInconclusive::Pause, 0.10);
    wait_for(
        &mut h,
        "the automatic rollback",
        Duration::from_secs(40),
        |h| shows(h, "Rollout: rolled back"),
    );
    let routes: Vec<String> = edge.calls().iter().map(|c| c.route.clone()).collect();
    assert_eq!(routes.first().map(String::as_str), Some("weight"));
    assert_eq!(routes.last().map(String::as_str), Some("rollback"));
    assert!(!routes.contains(&"promote".to_string()), "{routes:?}");
    assert_eq!(edge.calls()[0].body["weight_percent"], 20.0);
    assert!(shows(&h, "FAIL"), "the verdict panel shows the failure");
    // The locations table: both "locations" answered, with their epochs.
    assert!(shows(&h, "Locations (cf-ray)") && shows(&h, "FRA") && shows(&h, "AMS"));
    let s = edge.state.lock().unwrap().clone();
    assert_eq!(
        (s.active, s.candidate_weight_bp),
        (greenlight_common::Color::Blue, 0)
    );
    h.get_by_label("Stop load").click_accesskit();
    h.run();
    let (entries, _) = AuditFile::read(&audit).unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"rollout start")
            && actions.contains(&"rollback")
            && actions.contains(&"rollout end"),
        "{actions:?}"
    );
}

/// A dashboard on `edge` whose automated rollout (50 %, then 100 %) has
/// reached its first step.
fn rollout_at_its_first_step(
    edge: &FakeEdge,
    dir: &tempfile::TempDir,
) -> Harness<'static, Dashboard> {
    let mut h = harness(dashboard(
        &edge.url,
        Some(TOKEN),
        &dir.path().join("a.jsonl"),
        Duration::from_millis(300),
    ));
    start_rollout(&mut h, edge, "50, 100", OnInconclusive::Advance, 2.0);
    wait_for(&mut h, "the first step", Duration::from_secs(10), |h| {
        shows(h, "step 1/2 at 50%")
    });
    h
}

#[test]
fn automated_rollout_promotes_a_healthy_green_and_can_be_paused() {
    let edge = FakeEdge::start(3, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut h = rollout_at_its_first_step(&edge, &dir);
    assert!(
        disabled(&h, "Promote"),
        "manual promote waits while the automation runs"
    );
    h.get_by_label("Pause").click_accesskit();
    wait_for(&mut h, "the pause", Duration::from_secs(10), |h| {
        shows(h, "Rollout: paused")
    });
    std::thread::sleep(Duration::from_secs(3));
    h.step();
    assert_eq!(edge.calls().len(), 1, "no step while paused");
    h.get_by_label("Resume").click_accesskit();
    wait_for(&mut h, "the promotion", Duration::from_secs(40), |h| {
        shows(h, "Rollout: promoted")
    });
    let routes: Vec<String> = edge.calls().iter().map(|c| c.route.clone()).collect();
    assert_eq!(routes, ["weight", "weight", "promote"]);
    assert_eq!(
        edge.state.lock().unwrap().active,
        greenlight_common::Color::Green
    );
    h.get_by_label("Stop load").click_accesskit();
    h.run();
}

#[test]
fn automated_rollout_can_be_aborted_mid_step() {
    let edge = FakeEdge::start(3, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut h = rollout_at_its_first_step(&edge, &dir);
    // The command reaches the driver while it sleeps between looks.
    h.get_by_label("Abort rollout").click_accesskit();
    wait_for(&mut h, "the abort", Duration::from_secs(10), |h| {
        shows(h, "Rollout: aborted by the operator")
    });
    let routes: Vec<String> = edge.calls().iter().map(|c| c.route.clone()).collect();
    assert_eq!(routes, ["weight", "abort"]);
    h.get_by_label("Stop load").click_accesskit();
    h.run();
}

#[test]
fn a_replica_behind_shows_in_the_replicas_panel() {
    use greenlight_common::propagation::{ReplicaTable, REGIONS};
    let dir = tempfile::tempdir().unwrap();
    let d = dashboard(
        "",
        None,
        &dir.path().join("audit.jsonl"),
        Duration::from_secs(60),
    );
    // Before any answer from a Workers edge: no panel.
    let mut h = harness(d);
    h.run();
    assert!(!shows(&h, "Replicas (edge)"));
    let mut t = ReplicaTable::default();
    t.committed(&REGIONS[..3], 7, 1_000);
    t.confirmed("wnam", 7, 1_060);
    t.confirmed("enam", 7, 1_020);
    t.failed("sam", "replica answered 503", 1_100);
    h.state_mut().state.replicas = Some(t.view(2_500));
    h.run();
    assert!(shows(&h, "Replicas (edge)"));
    assert!(shows(&h, "epoch 7: 1 of 3 replicas behind"));
    assert!(shows(&h, "BEHIND 1500 ms"));
    assert!(shows(&h, "60 ms"));
}
