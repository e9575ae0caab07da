//! The key-value rules against an in-memory store: one that compares on
//! swap, and one that swaps unconditionally.

use super::*;
use crate::edge::kv::{self, AtomicStore, Swap};
use crate::history::HISTORY_KEY;
use crate::http::{LAST_GOOD_KEY, STATE_KEY};
use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs a future whose awaits never wait (the memory store's pause is
/// immediate).
fn run<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[derive(Default)]
struct Memory {
    map: RefCell<HashMap<String, Vec<u8>>>,
    /// Swaps without comparing (a store that would lose updates).
    blind: bool,
    /// Written by "another instance" between a watch and its swap.
    interleave: RefCell<Option<(String, Vec<u8>)>>,
    fail_reads: bool,
}

impl AtomicStore for Memory {
    type Cas = (String, Option<Vec<u8>>);

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        if self.fail_reads {
            return Err("store down".into());
        }
        Ok(self.map.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.map.borrow_mut().insert(key.into(), value.to_vec());
        Ok(())
    }

    fn watch(&self, key: &str) -> Result<(Self::Cas, Option<Vec<u8>>), String> {
        let current = self.get(key)?;
        Ok(((key.to_string(), current.clone()), current))
    }

    fn swap(&self, (key, seen): Self::Cas, value: &[u8]) -> Result<Swap, String> {
        if key == STATE_KEY {
            if let Some((k, v)) = self.interleave.borrow_mut().take() {
                self.set(&k, &v)?;
            }
        }
        if !self.blind && self.map.borrow().get(&key) != seen.as_ref() {
            return Ok(Swap::Lost);
        }
        self.set(&key, value)?;
        Ok(Swap::Done)
    }

    fn increment(&self, key: &str, by: i64) -> Result<i64, String> {
        let now = self
            .get(key)?
            .and_then(|v| String::from_utf8(v).ok()?.parse::<i64>().ok())
            .unwrap_or(0)
            + by;
        self.set(key, now.to_string().as_bytes())?;
        Ok(now)
    }

    async fn pause(&self, _ms: u64) {}

    fn random(&self) -> u64 {
        // Distinct per call, so probes never repeat a value.
        self.map.borrow().len() as u64 ^ 0x5eed
    }
}

fn weight(store: &Memory, expected_epoch: u64, percent: u32) -> Reply {
    let call = AdminCall {
        route: AdminRoute::Weight,
        identity: "admin-token".into(),
    };
    let body = format!(r#"{{"expected_epoch":{expected_epoch},"weight_percent":{percent}}}"#);
    run(kv::commit_admin(
        store,
        &config(),
        &call,
        "POST",
        body.as_bytes(),
        NOW_MS,
    ))
}

fn stored(store: &Memory, key: &str) -> RolloutState {
    let bytes = store.map.borrow().get(key).cloned().unwrap();
    RolloutState::from_json(std::str::from_utf8(&bytes).unwrap()).unwrap()
}

#[test]
fn the_first_change_creates_the_document_and_its_backup() {
    let store = Memory::default();
    assert_eq!(weight(&store, 0, 20).status, 200);
    let state = stored(&store, STATE_KEY);
    assert_eq!((state.epoch, state.candidate_weight_bp), (1, 2_000));
    assert_eq!(stored(&store, LAST_GOOD_KEY).epoch, 1);
    assert_eq!(weight(&store, 0, 30).status, 409, "a stale epoch");
    assert_eq!(weight(&store, 1, 30).status, 200);
    assert_eq!(stored(&store, LAST_GOOD_KEY).epoch, 2);
}

fn call(store: &Memory, route: AdminRoute, method: &str, body: &str) -> Reply {
    let call = AdminCall {
        route,
        identity: "otto".into(),
    };
    run(kv::commit_admin(
        store,
        &config(),
        &call,
        method,
        body.as_bytes(),
        NOW_MS,
    ))
}

#[test]
fn every_change_is_kept_in_the_history_and_undo_restores_one() {
    use crate::history::HistoryView;
    let store = Memory::default();
    assert_eq!(weight(&store, 0, 20).status, 200);
    let evidence =
        r#"{"expected_epoch":1,"weight_percent":50,"evidence":{"verdict":"pass","p99_ms":12.5}}"#;
    assert_eq!(
        call(&store, AdminRoute::Weight, "POST", evidence).status,
        200
    );
    let view = |store: &Memory| -> HistoryView {
        let r = call(store, AdminRoute::History, "GET", "");
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).unwrap()
    };
    let h = view(&store);
    let epochs: Vec<u64> = h.changes.iter().map(|c| c.epoch).collect();
    assert_eq!(epochs, [2, 1, 0], "newest first, from the initial state");
    assert_eq!(h.changes[0].credential, "otto");
    assert_eq!(h.changes[1].credential, "admin-token");
    assert_eq!(
        h.changes[0].evidence,
        Some(serde_json::json!({"verdict": "pass", "p99_ms": 12.5}))
    );
    assert_eq!(
        h.changes[0].before.as_ref().map(|b| b.candidate_weight_bp),
        Some(2_000)
    );
    // Undo to epoch 1: its weight again, as change 3.
    let r = call(
        &store,
        AdminRoute::Undo,
        "POST",
        r#"{"expected_epoch":2,"to_epoch":1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let now = stored(&store, STATE_KEY);
    assert_eq!(
        (
            now.epoch,
            now.candidate_weight_bp,
            now.last_change.op.as_str()
        ),
        (3, 2_000, "undo")
    );
    assert_eq!(now.last_change.reason, "undo to epoch 1");
    assert_eq!(now.stickiness.salt, stored_at(&store, 1).stickiness.salt);
    assert_eq!(view(&store).changes[0].epoch, 3);
    // Not in the history, stale, or not earlier: refused, nothing changed.
    let refused = [
        (r#"{"expected_epoch":3,"to_epoch":9}"#, 404),
        (r#"{"expected_epoch":2,"to_epoch":1}"#, 409),
        (r#"{"expected_epoch":3,"to_epoch":3}"#, 409),
        (r#"{"expected_epoch":3}"#, 400),
        (r#"{"expected_epoch":3,"to_epoch":1,"weight_bp":5}"#, 400),
    ];
    for (body, status) in refused {
        let r = call(&store, AdminRoute::Undo, "POST", body);
        assert_eq!(r.status, status, "{body}: {}", r.body);
    }
    assert_eq!(stored(&store, STATE_KEY).epoch, 3);
}

/// The state the history holds for `epoch`.
fn stored_at(store: &Memory, epoch: u64) -> RolloutState {
    let bytes = store.map.borrow().get(HISTORY_KEY).cloned().unwrap();
    let h = crate::history::History::from_json(std::str::from_utf8(&bytes).ok());
    h.state_at(epoch).cloned().unwrap()
}

#[test]
fn evidence_over_its_limit_is_refused() {
    let store = Memory::default();
    let big = "x".repeat(crate::history::MAX_EVIDENCE_BYTES);
    let body = format!(r#"{{"expected_epoch":0,"weight_percent":5,"evidence":"{big}"}}"#);
    let r = call(&store, AdminRoute::Weight, "POST", &body);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("evidence"), "{}", r.body);
}

#[test]
fn a_change_that_loses_the_swap_is_a_409() {
    let store = Memory::default();
    assert_eq!(weight(&store, 0, 20).status, 200);
    // Another instance commits epoch 2 between this call's read and swap.
    let mut other = stored(&store, STATE_KEY);
    other.epoch = 2;
    *store.interleave.borrow_mut() = Some((STATE_KEY.into(), other.to_json().into_bytes()));
    assert_eq!(weight(&store, 1, 50).status, 409);
    assert_eq!(stored(&store, STATE_KEY).epoch, 2);
}

#[test]
fn a_store_that_does_not_compare_refuses_changes() {
    let store = Memory {
        blind: true,
        ..Memory::default()
    };
    store
        .set(STATE_KEY, RolloutState::initial("s").to_json().as_bytes())
        .unwrap();
    let reply = weight(&store, 0, 20);
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("compare-and-swap"), "{}", reply.body);
    assert_eq!(stored(&store, STATE_KEY).epoch, 0, "nothing written");
}

#[test]
fn routing_reads_the_document_then_the_last_good_state_then_the_backup() {
    let cfg = config();
    let store = Memory::default();
    assert_eq!(kv::read_state(Some(&store), None, &cfg).state.epoch, 0);
    assert_eq!(weight(&store, 0, 20).status, 200);
    assert_eq!(kv::read_state(Some(&store), None, &cfg).state.epoch, 1);
    store.set(STATE_KEY, b"{corrupt").unwrap();
    let backup = kv::read_state(Some(&store), None, &cfg);
    assert_eq!((backup.state.epoch, backup.degraded), (1, true));
    let mut held = RolloutState::initial("s");
    held.epoch = 7;
    let kept = kv::read_state(Some(&store), Some(&held), &cfg);
    assert_eq!((kept.state.epoch, kept.degraded), (7, true));
    let down = Memory {
        fail_reads: true,
        ..Memory::default()
    };
    let none = kv::read_state(Some(&down), None, &cfg);
    assert_eq!((none.state.epoch, none.degraded), (0, true));
    assert!(kv::read_state::<Memory>(None, None, &cfg).degraded);
}

#[test]
fn keys_are_collected_across_pages_and_a_cursor_that_never_ends_stops() {
    let pages = [vec!["a", "b"], vec!["c"]];
    let keys = kv::collect_pages(|cursor| {
        let i = cursor.map_or(0, |c| c.parse::<usize>().unwrap());
        let next = (i + 1 < pages.len()).then(|| (i + 1).to_string());
        Ok((pages[i].iter().map(|k| k.to_string()).collect(), next))
    })
    .unwrap();
    assert_eq!(keys, ["a", "b", "c"]);
    let mut calls = 0;
    let endless = kv::collect_pages(|_| {
        calls += 1;
        Ok((Vec::new(), Some("again".into())))
    });
    assert_eq!((endless.unwrap().len(), calls), (0, 10_000));
    assert!(kv::collect_pages(|_| Err("down".into())).is_err());
}

fn start_plan(store: &Memory, expected_epoch: u64) -> Reply {
    let body = format!(
        r#"{{"expected_epoch":{expected_epoch},"plan":{{"steps_bp":[1000,5000],"dwell_ms":1000,"on_failure":"rollback"}}}}"#
    );
    call(store, AdminRoute::PlanStart, "POST", &body)
}

#[test]
fn a_plan_is_started_and_controlled_through_admin_calls() {
    let store = Memory::default();
    let r = start_plan(&store, 0);
    assert_eq!(r.status, 200, "{}", r.body);
    let s = stored(&store, STATE_KEY);
    assert_eq!((s.epoch, s.candidate_weight_bp), (1, 1_000));
    assert_eq!(s.last_change.credential, "otto");
    assert_eq!(start_plan(&store, 1).status, 409, "one plan at a time");
    let control = |route, epoch: u64| {
        let body = format!(r#"{{"expected_epoch":{epoch}}}"#);
        call(&store, route, "POST", &body).status
    };
    assert_eq!(control(AdminRoute::PlanPause, 1), 200);
    assert_eq!(control(AdminRoute::PlanPause, 2), 409, "already paused");
    assert_eq!(control(AdminRoute::PlanResume, 1), 409, "stale epoch");
    assert_eq!(control(AdminRoute::PlanResume, 2), 200);
    assert_eq!(control(AdminRoute::PlanAbort, 3), 200);
    let s = stored(&store, STATE_KEY);
    assert_eq!((s.epoch, s.candidate_weight_bp), (4, 0));
    let ops: Vec<String> = {
        let r = call(&store, AdminRoute::History, "GET", "");
        let h: crate::history::HistoryView = serde_json::from_str(&r.body).unwrap();
        h.changes
            .iter()
            .map(|c| c.after.last_change.op.clone())
            .collect()
    };
    assert_eq!(
        ops,
        [
            "plan_abort",
            "plan_resume",
            "plan_pause",
            "plan_start",
            "init"
        ]
    );
    // Bodies that belong elsewhere, and plans that cannot run.
    let refused = [
        (AdminRoute::PlanStart, r#"{"expected_epoch":4}"#, 400),
        (
            AdminRoute::PlanStart,
            r#"{"expected_epoch":4,"plan":{"steps_bp":[10],"dwell_ms":5}}"#,
            400,
        ),
        (
            AdminRoute::PlanStart,
            r#"{"expected_epoch":4,"weight_bp":5,"plan":{"steps_bp":[10],"dwell_ms":5000,"on_failure":"hold"}}"#,
            400,
        ),
        (
            AdminRoute::PlanPause,
            r#"{"expected_epoch":4,"plan":{"steps_bp":[10],"dwell_ms":5000,"on_failure":"hold"}}"#,
            400,
        ),
        (
            AdminRoute::Weight,
            r#"{"expected_epoch":4,"weight_bp":5,"plan":{"steps_bp":[10],"dwell_ms":5000,"on_failure":"hold"}}"#,
            400,
        ),
        (AdminRoute::PlanPause, r#"{"expected_epoch":4}"#, 409),
        (AdminRoute::PlanStart, "", 400),
    ];
    for (route, body, status) in refused {
        let r = call(&store, route, "POST", body);
        assert_eq!(r.status, status, "{} {body}: {}", route.name(), r.body);
    }
    assert_eq!(stored(&store, STATE_KEY).epoch, 4, "nothing changed");
}

#[test]
fn the_first_request_after_a_deadline_makes_the_plans_change_once() {
    let store = Memory::default();
    assert_eq!(start_plan(&store, 0).status, 200);
    let cfg = config();
    let routing = stored(&store, STATE_KEY);
    // Before the dwell is over, nothing is read.
    *store.interleave.borrow_mut() = None;
    assert_eq!(
        kv::plan_check(Some(&store), &cfg, &routing, NOW_MS + 999),
        None
    );
    let next = kv::plan_check(Some(&store), &cfg, &routing, NOW_MS + 1_000).unwrap();
    assert_eq!((next.epoch, next.candidate_weight_bp), (2, 5_000));
    assert_eq!(stored(&store, STATE_KEY), next);
    assert_eq!(stored(&store, LAST_GOOD_KEY).epoch, 2);
    assert_eq!(stored_at(&store, 2).last_change.op, "plan_set_weight");
    // Another instance, still routing by epoch 1, finds nothing due.
    assert_eq!(
        kv::plan_check(Some(&store), &cfg, &routing, NOW_MS + 1_001),
        None
    );
    assert_eq!(stored(&store, STATE_KEY).epoch, 2);
    // One that loses the swap to a concurrent step reads it and stops.
    let mut other = next.clone();
    other.epoch = 3;
    other.plan = other.plan.map(|p| p.taken_over());
    *store.interleave.borrow_mut() = Some((STATE_KEY.into(), other.to_json().into_bytes()));
    assert_eq!(
        kv::plan_check(Some(&store), &cfg, &next, NOW_MS + 2_000),
        None
    );
    assert_eq!(stored(&store, STATE_KEY), other);
}

#[test]
fn an_unhealthy_candidate_rolls_the_plan_back_before_its_deadline() {
    use crate::failover::AttemptOutcome;
    let store = Memory::default();
    assert_eq!(start_plan(&store, 0).status, 200);
    let cfg = config();
    let mut record = None;
    for i in 0..cfg.health.threshold {
        record = Some(count_failure(
            &cfg,
            record,
            1,
            Color::Green,
            &AttemptOutcome::Answered(500),
            NOW_MS + u64::from(i),
        ));
    }
    let record = record.unwrap();
    store
        .set(crate::health::HEALTH_KEY, record.to_json().as_bytes())
        .unwrap();
    let next = kv::advance_plan(&store, &cfg, NOW_MS + 10).unwrap();
    assert_eq!((next.epoch, next.candidate_weight_bp), (2, 0));
    assert_eq!(next.last_change.op, "plan_rollback");
    assert!(
        next.last_change.reason.contains("green failed 5 times"),
        "{}",
        next.last_change.reason
    );
    assert_eq!(kv::advance_plan(&store, &cfg, NOW_MS + 20), None, "ended");
}

#[test]
fn a_harness_holds_a_lease_and_its_verdicts_decide_each_step() {
    let store = Memory::default();
    let cfg = config();
    let body = r#"{"expected_epoch":0,"plan":{"steps_bp":[1000,5000],"dwell_ms":1000,"on_failure":"rollback","lease_ms":3000,"on_missing_evidence":"rollback"}}"#;
    assert_eq!(
        call(&store, AdminRoute::PlanStart, "POST", body).status,
        200
    );
    let evidence = |epoch: u64, verdict: &str, now_ms: u64| {
        let call = AdminCall {
            route: AdminRoute::PlanEvidence,
            identity: "harness".into(),
        };
        let body = format!(r#"{{"expected_epoch":{epoch}{verdict}}}"#);
        run(kv::commit_admin(
            &store,
            &cfg,
            &call,
            "POST",
            body.as_bytes(),
            now_ms,
        ))
    };
    // A lease renewal changes no epoch; the view shows it.
    let r = evidence(1, "", NOW_MS + 10);
    assert_eq!(r.status, 200, "{}", r.body);
    let view: crate::admin::StateView = serde_json::from_str(&r.body).unwrap();
    let held = view.evidence.unwrap();
    assert_eq!(
        (held.holder.as_str(), held.lease_until_ms),
        ("harness", NOW_MS + 3_010)
    );
    assert_eq!(stored(&store, STATE_KEY).epoch, 1);
    let shown = call(&store, AdminRoute::State, "GET", "");
    assert!(
        shown.body.contains(r#""holder":"harness""#),
        "{}",
        shown.body
    );
    // Dwell over, lease held, no verdict: the plan waits.
    let routing = stored(&store, STATE_KEY);
    assert_eq!(
        kv::plan_check(Some(&store), &cfg, &routing, NOW_MS + 1_500),
        None
    );
    // A pass after the dwell moves it on at once.
    assert_eq!(
        evidence(1, r#","verdict":"pass""#, NOW_MS + 1_600).status,
        200
    );
    let s = stored(&store, STATE_KEY);
    assert_eq!((s.epoch, s.candidate_weight_bp), (2, 5_000));
    // A verdict for a step no longer in force is stale.
    assert_eq!(
        evidence(1, r#","verdict":"pass""#, NOW_MS + 1_700).status,
        409
    );
    // Nobody posts for step 2: once the lease runs out, the rule for
    // missing evidence (here rollback) applies.
    // (the pass renewed the lease to 3 s after it)
    let routing = stored(&store, STATE_KEY);
    assert_eq!(
        kv::plan_check(Some(&store), &cfg, &routing, NOW_MS + 4_599),
        None
    );
    let done = kv::plan_check(Some(&store), &cfg, &routing, NOW_MS + 4_600).unwrap();
    assert_eq!((done.epoch, done.candidate_weight_bp), (3, 0));
    assert!(
        done.last_change.reason.contains("no lease"),
        "{}",
        done.last_change.reason
    );
    // No plan in progress: evidence is refused.
    assert_eq!(evidence(3, "", NOW_MS + 3_100).status, 409);
}

#[test]
fn a_failing_verdict_rolls_back_at_once_and_evidence_needs_a_leased_plan() {
    let store = Memory::default();
    let leased = r#"{"expected_epoch":0,"plan":{"steps_bp":[1000],"dwell_ms":60000,"on_failure":"rollback","lease_ms":30000}}"#;
    assert_eq!(
        call(&store, AdminRoute::PlanStart, "POST", leased).status,
        200
    );
    let r = call(
        &store,
        AdminRoute::PlanEvidence,
        "POST",
        r#"{"expected_epoch":1,"verdict":"fail"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let s = stored(&store, STATE_KEY);
    assert_eq!((s.epoch, s.last_change.op.as_str()), (2, "plan_rollback"));
    // A plan without a lease takes no evidence; a verdict belongs only here.
    let store = Memory::default();
    assert_eq!(start_plan(&store, 0).status, 200);
    let cases = [
        (
            AdminRoute::PlanEvidence,
            r#"{"expected_epoch":1,"verdict":"pass"}"#,
            409,
        ),
        (
            AdminRoute::PlanEvidence,
            r#"{"expected_epoch":1,"weight_bp":3}"#,
            400,
        ),
        (
            AdminRoute::PlanEvidence,
            r#"{"expected_epoch":1,"verdict":"maybe"}"#,
            400,
        ),
        (
            AdminRoute::Weight,
            r#"{"expected_epoch":1,"weight_bp":3,"verdict":"pass"}"#,
            400,
        ),
        (
            AdminRoute::PlanPause,
            r#"{"expected_epoch":1,"verdict":"pass"}"#,
            400,
        ),
    ];
    for (route, body, status) in cases {
        let r = call(&store, route, "POST", body);
        assert_eq!(r.status, status, "{} {body}: {}", route.name(), r.body);
    }
    assert_eq!(stored(&store, STATE_KEY).epoch, 1);
}

#[test]
fn telemetry_batches_add_up_in_the_store_and_read_back_as_metrics() {
    use crate::telemetry::{AnswerClass, Measured, Tally, TELEMETRY_KEY};
    let store = Memory::default();
    let batch = |n: u64| {
        let mut t = Tally::default();
        for i in 0..n {
            t.record(
                Color::Green,
                4,
                &Measured {
                    class: AnswerClass::Success,
                    ttfb_us: Some(12_000),
                    total_us: None,
                    bytes: 1,
                    at_ms: NOW_MS + i,
                },
            );
        }
        t.to_json()
    };
    run(kv::add_telemetry(&store, &batch(3))).unwrap();
    run(kv::add_telemetry(&store, &batch(2))).unwrap();
    assert!(run(kv::add_telemetry(&store, "not a batch")).is_err());
    let r = call(&store, AdminRoute::Metrics, "GET", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let view: crate::telemetry::MetricsView = serde_json::from_str(&r.body).unwrap();
    assert_eq!(view.epoch(4).unwrap().colors[&Color::Green].requests, 5);
    let text = call(&store, AdminRoute::MetricsPrometheus, "GET", "");
    assert!(
        text.body
            .contains(r#"greenlight_answers_total{color="green",epoch="4",class="2xx"} 5"#),
        "{}",
        text.body
    );
    assert!(store.map.borrow().contains_key(TELEMETRY_KEY));
}
