//! Last-known-good configuration through both real runtimes: a state
//! document in key-value that cannot be read (corrupt, truncated, written by
//! a newer greenlight) never turns into a 5xx. The edge serves the last good
//! state it had (or, having seen none, everything on blue), says so with
//! `x-greenlight-degraded: 1` and in `GET /__greenlight/state`, still refuses
//! invalid admin writes, and a valid admin write repairs the document.
//!
//! The bad documents are planted from outside the edge, as another writer
//! or a corruption would: no route or backdoor of the edge is involved
//! (`RunningEdge::put_state_document`: `wrangler kv key put --local` into the
//! running `wrangler dev`'s persist directory; the Spin test host's
//! `--kv-file`, which it reloads when the file changes).

use greenlight_common::admin::StateView;
use greenlight_common::{Color, RolloutState};
use greenlight_e2e::rig::{header, Rig};
use greenlight_e2e::Runtime;
use serde_json::json;
use std::time::{Duration, Instant};

/// The edges' state cache lifetime here (`STATE_CACHE_TTL_MS`): short, so a
/// planted document is read within a fraction of a second.
const TTL: Duration = Duration::from_millis(200);
/// How long a planted document may take to reach a routed request.
const VISIBLE_WITHIN: Duration = Duration::from_secs(20);
/// The fallback when no good state was seen (`ROLLOUT_SALT` of the fixtures).
fn initial() -> RolloutState {
    RolloutState::initial("e2e")
}

async fn start(runtime: Runtime, document: Option<String>) -> Rig {
    start_with_backup(runtime, document, None).await
}

/// With `backup` under `LAST_GOOD_KEY` too, as an earlier admin write leaves it.
async fn start_with_backup(
    runtime: Runtime,
    document: Option<String>,
    backup: Option<String>,
) -> Rig {
    Rig::start(runtime, |setup| {
        setup
            .vars
            .insert("STATE_CACHE_TTL_MS".into(), TTL.as_millis().to_string());
        // The documents are planted in KV: Worker isolates read KV itself
        // here, not the replicas the rollout object fills (KV is their
        // fallback; "How a change reaches every location").
        if runtime == Runtime::Cloudflare {
            setup.vars.insert("STATE_SOURCE".into(), "kv".into());
        }
        setup.state_document = document;
        setup.backup_document = backup;
    })
    .await
}

/// What one ordinary request was routed by.
#[derive(Debug, PartialEq, Eq)]
struct Routed {
    color: String,
    epoch: String,
    degraded: bool,
}

/// Routes one ordinary request: it must be a 200 from the origin of the
/// color the edge names.
async fn route(rig: &Rig) -> Routed {
    let resp = rig.normal_request().await;
    let color = header(&resp, "x-greenlight-color").to_string();
    assert_eq!(
        header(&resp, "x-origin-color"),
        color,
        "the edge named another color than the origin that answered"
    );
    let degraded = match header(&resp, "x-greenlight-degraded") {
        "" => false,
        "1" => true,
        other => panic!("x-greenlight-degraded: {other:?}"),
    };
    Routed {
        color,
        epoch: header(&resp, "x-greenlight-epoch").to_string(),
        degraded,
    }
}

fn routed_by(state: &RolloutState, degraded: bool) -> Routed {
    Routed {
        color: state.active.to_string(),
        epoch: state.epoch.to_string(),
        degraded,
    }
}

/// Polls with ordinary requests until one is routed as `want`; returns how
/// long that took. Every request on the way must still be a 200.
async fn until_routed(rig: &Rig, want: &Routed, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let got = route(rig).await;
        if got == *want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < VISIBLE_WITHIN,
            "{what}: still routed as {got:?} after {VISIBLE_WITHIN:?}, want {want:?}"
        );
        tokio::time::sleep(TTL / 4).await;
    }
}

/// Routes requests for `window` (several cache lifetimes, so the edge reads
/// the store again several times) and checks every one is routed as `want`.
async fn steady(rig: &Rig, want: &Routed, window: Duration, what: &str) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < window || n < 3 {
        let got = route(rig).await;
        assert_eq!(
            got,
            *want,
            "{what}: request {n} after {:?}",
            start.elapsed()
        );
        n += 1;
        tokio::time::sleep(TTL / 4).await;
    }
}

/// The admin view must report `degraded` and the state served.
async fn check_view(rig: &Rig, state: &RolloutState, degraded: bool, what: &str) -> StateView {
    let view = rig.state().await;
    assert_eq!(view.degraded, degraded, "{what}: GET state degraded");
    assert_eq!(view.state, *state, "{what}: GET state");
    view
}

/// Invalid admin writes are still refused (400) while degraded, and do not
/// touch the store: the edge is still degraded after them.
async fn invalid_writes_refused(rig: &Rig, epoch: u64, what: &str) {
    for (route, body) in [
        (
            "weight",
            json!({"expected_epoch": epoch, "weight_percent": 101}),
        ),
        ("weight", json!({"expected_epoch": epoch, "weight_bp": -1})),
        ("promote", json!({"expected_epoch": epoch.to_string()})),
        ("rollback", json!([epoch])),
    ] {
        let resp = rig.admin_post(route, body.clone()).await;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 400, "{what}: POST {route} {body}: {text}");
    }
    assert!(
        rig.state().await.degraded,
        "{what}: an invalid write repaired the store"
    );
}

/// The bad documents, made from a good one.
fn bad_documents(good: &RolloutState) -> Vec<(&'static str, String)> {
    let text = good.to_json();
    let corrupt = {
        // Bytes overwritten in the middle: not JSON any more.
        let mid = text.len() / 2;
        format!("{}\u{0}\u{7f}#\u{fffd}{}", &text[..mid], &text[mid + 4..])
    };
    let truncated = text[..text.len() * 2 / 3].to_string();
    let future = {
        let mut doc: serde_json::Value = serde_json::from_str(&text).expect("a good document");
        doc["schema"] = json!(99);
        doc["regions"] = json!({"eu": {"active": "blue"}});
        doc.to_string()
    };
    vec![
        ("corrupt", corrupt),
        ("truncated", truncated),
        ("future schema", future),
    ]
}

async fn bad_documents_keep_the_last_good_state(runtime: Runtime) {
    let rig = start(runtime, None).await;
    // A good state, written through the admin API: green promoted, epoch 1.
    let resp = rig
        .admin_post("promote", json!({"expected_epoch": 0, "reason": "lkg"}))
        .await;
    assert_eq!(resp.status(), 200);
    let good = rig.state().await.state;
    assert_eq!((good.active, good.epoch), (Color::Green, 1));
    until_routed(&rig, &routed_by(&good, false), "after promote").await;
    // What a degraded edge serves: the last good state. The Worker isolate
    // and a reused Spin instance keep it in memory; a new Spin instance reads
    // the backup copy the promote also wrote (`LAST_GOOD_KEY`).
    let fallback = good.clone();
    let degraded = routed_by(&fallback, true);
    // How long the first planted document took to be seen, once the store
    // held it; later documents get that long (and several cache lifetimes)
    // to be read, since a degraded edge looks the same whichever bad
    // document it read.
    let mut seen_within = Duration::ZERO;
    for (i, (what, document)) in bad_documents(&good).into_iter().enumerate() {
        rig.edge
            .put_state_document(&document)
            .await
            .unwrap_or_else(|e| panic!("planting the {what} document: {e:#}"));
        if i == 0 {
            let hint = match runtime {
                Runtime::Spin => format!(
                    "{what} (a Spin test host built before it reloaded --kv-file never \
                     sees planted documents: rebuild it with scripts/build-spin.sh)"
                ),
                Runtime::Cloudflare => what.to_string(),
            };
            seen_within = until_routed(&rig, &degraded, &hint).await;
            eprintln!(
                "{}: a planted document reached routing {seen_within:?} after the store held it",
                runtime.name()
            );
        }
        // Several re-reads of the bad document: the second bad read in a
        // row must keep the last good state as the first did.
        steady(&rig, &degraded, seen_within + TTL * 5, what).await;
        check_view(&rig, &fallback, true, what).await;
        invalid_writes_refused(&rig, fallback.epoch, what).await;
        steady(&rig, &degraded, TTL * 2, what).await;
    }
    // A valid admin write repairs the store: the degraded flag goes away.
    let resp = rig
        .admin_post(
            "weight",
            json!({"expected_epoch": fallback.epoch, "weight_bp": 1, "reason": "repair"}),
        )
        .await;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "repairing write: {text}");
    let repaired: StateView = serde_json::from_str(&text).expect("a state view");
    assert!(!repaired.degraded);
    assert_eq!(repaired.state.epoch, fallback.epoch + 1);
    assert_eq!(repaired.state.active, fallback.active);
    let healthy = routed_by(&repaired.state, false);
    until_routed(&rig, &healthy, "after the repairing write").await;
    steady(&rig, &healthy, TTL * 3, "after the repairing write").await;
    check_view(&rig, &repaired.state, false, "after the repairing write").await;
}

/// A new instance (a fresh isolate, another location, a new Spin instance) that
/// finds the document unreadable serves the backup copy of the last admin
/// write, and the next admin write continues from its epoch.
async fn fresh_edge_serves_the_backup_of_the_last_write(runtime: Runtime) {
    let good = {
        let mut s = initial();
        s.active = Color::Green;
        s.candidate = Color::Blue;
        s.rollback_target = Some(Color::Blue);
        s.epoch = 7;
        s
    };
    let (_, corrupt) = bad_documents(&good).swap_remove(0);
    let rig = start_with_backup(runtime, Some(corrupt), Some(good.to_json())).await;
    let degraded = routed_by(&good, true);
    until_routed(&rig, &degraded, "first request").await;
    steady(&rig, &degraded, TTL * 3, "fresh edge with a backup").await;
    check_view(&rig, &good, true, "fresh edge with a backup").await;
    let resp = rig
        .admin_post(
            "rollback",
            json!({"expected_epoch": 7, "reason": "continue from the backup"}),
        )
        .await;
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let view = rig.state().await;
    assert_eq!(
        (view.degraded, view.state.epoch, view.state.active),
        (false, 8, Color::Blue)
    );
}

async fn fresh_edge_with_a_corrupt_document_serves_blue(runtime: Runtime) {
    let good = {
        let mut s = initial();
        s.active = Color::Green;
        s.candidate = Color::Blue;
        s.epoch = 7;
        s
    };
    let (_, corrupt) = bad_documents(&good).swap_remove(0);
    // The document is in the store before the edge starts: no good state
    // was ever seen, so everything goes to blue, flagged degraded.
    let rig = start(runtime, Some(corrupt)).await;
    let degraded = routed_by(&initial(), true);
    until_routed(&rig, &degraded, "first request").await;
    steady(&rig, &degraded, TTL * 3, "fresh edge").await;
    check_view(&rig, &initial(), true, "fresh edge").await;
    invalid_writes_refused(&rig, 0, "fresh edge").await;
    // A valid write replaces the corrupt document.
    let resp = rig
        .admin_post(
            "weight",
            json!({"expected_epoch": 0, "weight_bp": 1, "reason": "repair"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let view = rig.state().await;
    assert!(!view.degraded);
    assert_eq!(view.state.epoch, 1);
    let healthy = routed_by(&view.state, false);
    until_routed(&rig, &healthy, "after the repairing write").await;
    steady(&rig, &healthy, TTL * 3, "after the repairing write").await;
}

greenlight_e2e::for_each_runtime!(
    bad_documents_keep_the_last_good_state,
    fresh_edge_serves_the_backup_of_the_last_write,
    fresh_edge_with_a_corrupt_document_serves_blue,
);
