//! The dashboard's automated rollout driven through its UI (egui_kittest,
//! no display) against the real Worker under workerd and the Spin component
//! under `spin up`, with the dashboard's default settings but the demo's
//! target and rate (`scripts/demo.sh`) and the demo's preview key: a green
//! 40 % slower is rolled back at the first step (1 %); a green equal to
//! blue is promoted through every step (dwell shortened to keep CI lean).
//! The origins name a location (`cf-ray`), so each change the rollout makes
//! is measured per location from its acknowledgement.
//!
//! The Worker is served directly on workerd (`Runtime::start_direct`, as in
//! the other load suites) and the four rollouts run one at a time: with two
//! debug dashboards and two edges on a 2-core CI machine, an equal green's
//! p99 was 135–230 ms against an origin's 40 ms, and one step stayed
//! inconclusive through both extensions (p99 ratios 1.12–1.20, no bias:
//! the same load measured blue and green alike, 40 s runs, p99 within 4 %).

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use greenlight_common::Color;
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN, QA_KEY};
use greenlight_e2e::Runtime;
use greenlight_engine::admin_client::AdminClient;
use greenlight_engine::sampling::PreviewCredential;
use greenlight_test_origin::{Behavior, LatencyDist, Origin};
use harness_gui::app::AppState;
use harness_gui::backend::{Backend, Intervals};
use harness_gui::settings::Settings;
use harness_gui::Dashboard;
use rollout::audit::AuditFile;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One rollout at a time (see the module's comment).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn shows(h: &Harness<'_, Dashboard>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
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
                "timed out waiting for {what}; notice {:?}; rollout {:#?}",
                s.notice,
                s.rollout.as_ref().map(|r| (&r.headline, &r.log)),
            );
        }
        // Each step draws the whole dashboard (a debug build): not too often.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs the dashboard's rollout against a real edge in front of origins
/// with these latencies; returns the rollout's log and the edge's state.
fn rollout(
    runtime: Runtime,
    green_latency: &str,
    dwell_s: Option<u64>,
    until: &str,
    changes: usize,
) -> (
    Vec<String>,
    greenlight_common::admin::StateView,
    greenlight_engine::locations::LocationSummary,
) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let latency = |spec: &str| Behavior {
        latency: LatencyDist::parse(spec).unwrap(),
        ..Behavior::default()
    };
    let any = "127.0.0.1:0".parse().unwrap();
    let (blue, green, edge) = rt.block_on(async {
        let blue = Origin::start(any, "blue", latency("normal:40ms,4ms"))
            .await
            .unwrap();
        let green = Origin::start(any, "green", latency(green_latency))
            .await
            .unwrap();
        let edge = runtime
            .start_direct(&fixtures::edge_setup(&blue.url(), &green.url()))
            .await
            .unwrap();
        blue.set_location("FRA");
        green.set_location("FRA");
        (blue, green, edge)
    });
    let dir = tempfile::tempdir().unwrap();
    let audit = AuditFile::new(Some(dir.path().join("audit.jsonl")));
    // The charts' statistics are CPU work in a debug build, beside the edge
    // on the same cores: computed every 2 s instead of every 0.5 s.
    let intervals = Intervals {
        state: Duration::from_secs(1),
        metrics: Duration::from_secs(2),
    };
    let backend = Backend::start(audit, intervals, None).unwrap();
    let mut settings = Settings {
        edge_url: edge.base_url.clone(),
        ..Settings::default()
    };
    // What scripts/demo.sh passes: the target and the rate.
    settings.load.target_url = format!("{}/public/demo", edge.base_url);
    settings.load.rate = 60.0;
    if let Some(d) = dwell_s {
        settings.dwell_s = d;
    }
    let mut state = AppState::new(settings, None, Some(ADMIN_TOKEN.into()));
    state.preview = Some(PreviewCredential::api_key(QA_KEY).unwrap());
    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .with_max_steps(20)
        .build_ui_state(
            |ui, d: &mut Dashboard| d.ui(ui),
            Dashboard::new(state, backend),
        );
    wait_for(&mut h, "the first state", Duration::from_secs(20), |h| {
        shows(h, "epoch 0")
    });
    h.get_by_label("Start load").click_accesskit();
    wait_for(&mut h, "the load", Duration::from_secs(20), |h| {
        shows(h, "comparison traffic")
    });
    h.get_by_label("Start rollout").click_accesskit();
    wait_for(&mut h, until, Duration::from_secs(150), |h| {
        shows(h, &format!("Rollout: {until}"))
    });
    let log = h
        .state()
        .state
        .rollout
        .as_ref()
        .map(|r| r.log.clone())
        .unwrap_or_default();
    // The metrics view (refreshed every 2 s) then has the last change too.
    let acknowledged = |h: &Harness<'_, Dashboard>| {
        h.state()
            .state
            .metrics
            .as_ref()
            .and_then(|m| m.locations.clone())
            .unwrap_or_default()
    };
    // ...and an answer of its epoch from the location (under load the
    // first one can come a refresh after the acknowledgement).
    wait_for(
        &mut h,
        "the last change per location",
        Duration::from_secs(20),
        |h| {
            let l = acknowledged(h);
            l.changes.len() >= changes && served_the_last_change(&l)
        },
    );
    let locations = acknowledged(&h);
    h.get_by_label("Stop load").click_accesskit();
    h.run();
    let view = rt.block_on(async {
        AdminClient::new(&edge.base_url, Some(ADMIN_TOKEN.into()))
            .unwrap()
            .state()
            .await
            .unwrap()
    });
    assert!(green.hits() > 0 && blue.hits() > 0);
    drop(h);
    drop(edge);
    (log, view, locations)
}

/// Every change the rollout made is measured from its acknowledgement at
/// the one location, which then served the new epoch.
fn changes_are_acknowledged(
    locations: &greenlight_engine::locations::LocationSummary,
    changes: usize,
) {
    assert!(locations.changes.len() >= changes, "{locations:#?}");
    assert!(
        locations.changes.iter().all(|c| c.acknowledged),
        "{locations:#?}"
    );
    assert!(served_the_last_change(locations), "{locations:#?}");
}

/// FRA answered with the epoch of the last change.
fn served_the_last_change(locations: &greenlight_engine::locations::LocationSummary) -> bool {
    let last = locations.changes.last().map(|c| c.epoch).unwrap_or(0);
    locations.locations.get("FRA").is_some_and(|fra| {
        fra.convergence
            .iter()
            .any(|c| c.epoch == last && c.new_first_seen_s.is_some())
    })
}

fn slower_green_is_rolled_back_at_the_first_step(runtime: Runtime) {
    let (log, view, locations) = rollout(runtime, "normal:56ms,5.6ms", None, "rolled back", 2);
    // Weight 1 %, then the rollback.
    changes_are_acknowledged(&locations, 2);
    assert!(
        log.iter().any(|l| l.contains("rolled back: step 1/5 (1%)")),
        "{log:#?}"
    );
    assert_eq!(
        (view.state.active, view.state.candidate_weight_bp),
        (Color::Blue, 0)
    );
    assert_eq!(view.state.last_change.op, "rollback");
}

fn equal_green_is_promoted_through_every_step(runtime: Runtime) {
    let (log, view, locations) = rollout(runtime, "normal:40ms,4ms", Some(10), "promoted", 6);
    // Five weights, then the promote.
    changes_are_acknowledged(&locations, 6);
    for step in [
        "1/5 (1%)",
        "2/5 (5%)",
        "3/5 (25%)",
        "4/5 (50%)",
        "5/5 (100%)",
    ] {
        assert!(
            log.iter()
                .any(|l| l.contains(&format!("step {step}: analysis PASS"))),
            "step {step}: {log:#?}"
        );
    }
    assert_eq!(view.state.active, Color::Green);
}

mod cloudflare {
    #[test]
    fn slower_green_is_rolled_back_at_the_first_step() {
        super::slower_green_is_rolled_back_at_the_first_step(greenlight_e2e::Runtime::Cloudflare)
    }
    #[test]
    fn equal_green_is_promoted_through_every_step() {
        super::equal_green_is_promoted_through_every_step(greenlight_e2e::Runtime::Cloudflare)
    }
}

mod spin {
    #[test]
    fn slower_green_is_rolled_back_at_the_first_step() {
        super::slower_green_is_rolled_back_at_the_first_step(greenlight_e2e::Runtime::Spin)
    }
    #[test]
    fn equal_green_is_promoted_through_every_step() {
        super::equal_green_is_promoted_through_every_step(greenlight_e2e::Runtime::Spin)
    }
}
