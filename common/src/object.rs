//! The rollout object: the one place where a rollout's changes are decided,
//! one at a time, against the latest committed document.
//!
//! On Cloudflare this is a Durable Object (`RolloutObject` in
//! `edge/cloudflare/shell.js`): the edge authorises an admin call and hands
//! it to the object ([`encode_call`]); the object, which holds the document
//! in memory and in its transactional storage, checks the epoch and applies
//! the change in one synchronous call ([`change`]) with no await between
//! reading its document and replacing it, stores it, answers
//! ([`ObjectAnswer`]) and then publishes the document to key-value for the edges'
//! fast reads. Everything here is pure: storage, key-value and time are the
//! adapter's.
//!
//! Protocols (one string each way, like [`crate::shell`]):
//! - call (edge → object): `<route>\t<method>\t<identity, percent-encoded>`,
//!   the admin body as the request body.
//! - answer (object → edge): `<status>\n<committed document or empty>\n<history
//!   document or empty>\n<evidence document or empty>\n<body>`; the object
//!   stores the state and history in one transactional write, and the
//!   plan's evidence (which changes no state) on its own.

use crate::admin::{AdminOutcome, AdminRoute, StateView};
use crate::edge::{self, AdminCall, AdminDocs, EdgeConfig, LoadedState, Reply};
use crate::health::{self, HealthRecord};
use crate::history::History;
use crate::http::ADMIN_PREFIX;
use crate::propagation::ReplicaTable;
use crate::state::RolloutState;

/// The object's storage key of its document.
pub const STORAGE_STATE: &str = "state";
/// The object's storage key of the merged health record.
pub const STORAGE_HEALTH: &str = "health";
/// The one object of a rollout is found by this name.
pub const OBJECT_NAME: &str = "rollout";
/// Shortest time between two key-value writes of one key (Workers KV takes
/// about one write per second per key).
pub const PUBLISH_INTERVAL_MS: u64 = 1_000;
/// Shortest time between two health reports of one edge instance.
pub const HEALTH_REPORT_INTERVAL_MS: u64 = 1_000;

/// Percent-encodes everything but unreserved characters, so any identity
/// (a JWT `sub` may hold line feeds or non-ASCII) fits one header line.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The call line the edge sends the object (see the module docs).
pub fn encode_call(call: &AdminCall, method: &str) -> String {
    format!(
        "{}\t{}\t{}",
        call.route.name(),
        percent_encode(method),
        percent_encode(&call.identity)
    )
}

/// The admin call and method of a call line; `None` if malformed.
pub fn decode_call(line: &str) -> Option<(AdminCall, String)> {
    let mut parts = line.split('\t');
    let route = AdminRoute::parse(parts.next()?)?;
    let method = percent_decode(parts.next()?)?;
    let identity = percent_decode(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some((AdminCall { route, identity }, method))
}

/// The object's document when it starts: its own storage if it holds one;
/// otherwise (the object's first start, or a deployment from before the
/// object, whose state lived in key-value only) what key-value holds, the
/// backup copy if that is unreadable, else the initial state, flagged
/// degraded when the key-value document was unreadable.
pub fn seed(
    stored: Option<&str>,
    kv_document: Option<&str>,
    kv_backup: Option<&str>,
    default_salt: &str,
) -> LoadedState {
    if let Some(state) = stored.and_then(|s| RolloutState::from_json(s).ok()) {
        return LoadedState {
            state,
            degraded: false,
        };
    }
    match edge::load_state(Ok(kv_document), None, default_salt) {
        edge::StateLoad::Ready(loaded) => loaded,
        edge::StateLoad::NeedsBackup => edge::state_from_backup(kv_backup, default_salt),
    }
}

/// What the object answers the edge, the document it committed, and the
/// history with that change recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectAnswer {
    pub status: u16,
    /// The document the object stored (a `200` to a change), which it then
    /// publishes; every other answer changed nothing.
    pub committed: Option<String>,
    /// The history document to store with `committed` (one line of JSON).
    pub history: Option<String>,
    /// The plan's evidence document to store (one line of JSON).
    pub evidence: Option<String>,
    pub body: String,
}

impl ObjectAnswer {
    /// The answer to `outcome`; a committed change is recorded in
    /// `history` (the object's stored document) as a change from `before`.
    pub fn of(
        outcome: &AdminOutcome,
        before: &RolloutState,
        history: Option<&str>,
    ) -> ObjectAnswer {
        let recorded = outcome
            .new_state
            .as_ref()
            .map(|next| History::recorded(history, before, next, outcome.evidence.clone()));
        ObjectAnswer {
            status: outcome.status,
            committed: outcome.new_state.as_ref().map(RolloutState::to_json),
            history: recorded,
            evidence: outcome.new_evidence.clone(),
            body: outcome.body.clone(),
        }
    }

    /// An answer that changed nothing.
    pub fn refused(status: u16, body: String) -> ObjectAnswer {
        ObjectAnswer {
            status,
            committed: None,
            history: None,
            evidence: None,
            body,
        }
    }

    /// `<status>\n<committed or empty>\n<history or empty>\n<evidence or
    /// empty>\n<body>` (each document is one line of JSON).
    pub fn encode(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}",
            self.status,
            self.committed.as_deref().unwrap_or(""),
            self.history.as_deref().unwrap_or(""),
            self.evidence.as_deref().unwrap_or(""),
            self.body
        )
    }

    pub fn decode(text: &str) -> Option<ObjectAnswer> {
        let mut parts = text.splitn(5, '\n');
        let status = parts.next()?.parse().ok()?;
        let committed = parts.next()?;
        let history = parts.next()?;
        let evidence = parts.next()?;
        let body = parts.next()?.to_string();
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Some(ObjectAnswer {
            status,
            committed: some(committed),
            history: some(history),
            evidence: some(evidence),
            body,
        })
    }
}

/// What the edge makes of the object's answer to an admin call (`status`
/// 0: the object could not be reached, `body` says why): the reply to
/// send, and the state the answer shows (a `200`), which the edge caches
/// if it is newer than its own. A `GET state` also says `degraded` when
/// the answering edge itself serves from a fallback state (`degraded_here`:
/// its KV copy of the document was unreadable).
pub fn edge_answer(
    head_path: &str,
    status: u16,
    body: String,
    degraded_here: bool,
) -> (Reply, Option<RolloutState>) {
    if status == 0 {
        return (
            Reply::store_unavailable(format!("the rollout object did not answer: {body}")),
            None,
        );
    }
    let mut body = body;
    let mut shown = None;
    let route = head_path
        .strip_prefix(ADMIN_PREFIX)
        .and_then(AdminRoute::parse);
    if status == 200 {
        if let Ok(mut view) = serde_json::from_str::<StateView>(&body) {
            if route == Some(AdminRoute::State) && degraded_here && !view.degraded {
                view.degraded = true;
                body = serde_json::to_string(&view).unwrap_or(body);
            }
            shown = Some(view.state);
        }
    }
    let reply = Reply::from_admin(&AdminOutcome {
        status,
        content_type: if status == 200 && route == Some(AdminRoute::MetricsPrometheus) {
            crate::admin::PROMETHEUS_CONTENT_TYPE
        } else if status == 200 {
            "application/json"
        } else {
            "application/problem+json"
        },
        body,
        new_state: None,
        evidence: None,
        new_evidence: None,
    });
    (reply, shown)
}

/// Whether an edge instance replaces its cached state with one it just
/// read: not when it has seen a newer epoch. A read that started before a
/// change was committed (and finished after the instance learned of it),
/// or a KV location that has not caught up yet, must not move it back.
/// The same epoch replaces (a read may find the document turned bad).
pub fn replaces(cached: Option<&LoadedState>, read: &LoadedState) -> bool {
    cached.is_none_or(|c| read.state.epoch >= c.state.epoch)
}

/// Runs one admin call inside the object against its current document
/// (`loaded`), health record and history (`docs`). The caller replaces its
/// documents with [`ObjectAnswer::committed`] and
/// [`ObjectAnswer::history`] before it handles anything else.
pub fn change(
    cfg: &EdgeConfig,
    call_line: &str,
    body: &[u8],
    loaded: &LoadedState,
    docs: AdminDocs<'_>,
    now_ms: u64,
) -> ObjectAnswer {
    let Some((call, method)) = decode_call(call_line) else {
        let problem = AdminOutcome::problem(crate::admin::Problem::new(
            400,
            "bad-request",
            "malformed admin call",
            "the rollout object could not read the call",
        ));
        return ObjectAnswer::refused(problem.status, problem.body);
    };
    if call.route == AdminRoute::Replicas {
        let view = ReplicaTable::from_json(docs.replicas).view(now_ms);
        return ObjectAnswer::refused(200, serde_json::to_string(&view).unwrap_or_default());
    }
    let outcome = edge::run_admin(cfg, &call, &method, body, loaded, docs, now_ms);
    ObjectAnswer::of(&outcome, &loaded.state, docs.history)
}

/// The plan's change due at `now_ms` against the object's document and
/// health record ([`edge::plan_step`]), as an answer to commit like an
/// admin change's (status 200, its history entry recorded); `None` when
/// nothing is due. The object runs it from its alarm and after merging a
/// health report, with no await between reading its document and
/// replacing it, so a plan's change is made once.
pub fn plan_tick(
    cfg: &EdgeConfig,
    document: &str,
    docs: AdminDocs<'_>,
    now_ms: u64,
) -> Option<ObjectAnswer> {
    let before = RolloutState::from_json(document).ok()?;
    let next = edge::plan_step(cfg, &before, docs.health, docs.evidence, now_ms)?;
    let outcome = AdminOutcome {
        status: 200,
        content_type: "application/json",
        body: String::new(),
        new_state: Some(next),
        evidence: None,
        new_evidence: None,
    };
    Some(ObjectAnswer::of(&outcome, &before, docs.history))
}

/// When the object's alarm next rings: the earliest of a pending
/// key-value publish's retry, a failed push's retry in its record of the
/// replicas ([`ReplicaTable`], JSON) and the plan's next deadline (one
/// alarm per object serves all three). `None`: no alarm is needed.
pub fn next_alarm(
    document: &str,
    evidence: Option<&str>,
    publish_retry_at: Option<u64>,
    replicas: Option<&str>,
) -> Option<u64> {
    let deadline = RolloutState::from_json(document)
        .ok()
        .and_then(|state| edge::next_plan_deadline(&state, evidence));
    let push_retry_at = ReplicaTable::from_json(replicas).next_retry();
    [deadline, publish_retry_at, push_retry_at]
        .into_iter()
        .flatten()
        .min()
}

/// Merges an edge instance's health report into the object's record and
/// counts the write; `None` when the report is unreadable. The record
/// follows the epoch of the object's document (`current_epoch`), also when
/// that went down (a document rewritten by hand); see [`health::merge`].
pub fn merge_health(
    stored: Option<&str>,
    report: &str,
    current_epoch: u64,
) -> Option<HealthRecord> {
    let mine = HealthRecord::from_json(Some(report))?;
    let stored = HealthRecord::from_json(stored);
    let writes = stored
        .as_ref()
        .filter(|s| s.epoch == mine.epoch)
        .map_or(0, |s| s.writes);
    let mut merged = health::merge(stored, &mine, current_epoch);
    if merged.epoch == mine.epoch {
        merged.writes = writes.saturating_add(1);
    }
    Some(merged)
}

/// [`merge_health`] against the object's document: the epoch it holds, or
/// (a document that does not parse, which the object never commits) the
/// report's own.
pub fn merge_health_into(
    stored: Option<&str>,
    report: &str,
    document: &str,
) -> Option<HealthRecord> {
    let epoch = match RolloutState::from_json(document) {
        Ok(state) => state.epoch,
        Err(_) => HealthRecord::from_json(Some(report))?.epoch,
    };
    merge_health(stored, report, epoch)
}

/// When an edge instance sends its health record: at most once per
/// [`HEALTH_REPORT_INTERVAL_MS`], so N failures cost O(seconds) writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportThrottle {
    last_sent_ms: Option<u64>,
    scheduled: bool,
}

impl ReportThrottle {
    /// A failure was counted at `now_ms`: `Some(delay)` when a report must
    /// be scheduled `delay` ms from now, `None` when one already is.
    pub fn on_failure(&mut self, now_ms: u64) -> Option<u64> {
        if self.scheduled {
            return None;
        }
        self.scheduled = true;
        Some(match self.last_sent_ms {
            Some(at) => (at + HEALTH_REPORT_INTERVAL_MS).saturating_sub(now_ms),
            None => 0,
        })
    }

    /// The scheduled report is being sent at `now_ms`.
    pub fn sending(&mut self, now_ms: u64) {
        self.scheduled = false;
        self.last_sent_ms = Some(now_ms);
    }
}

/// When the object next writes its document to key-value: `None` when
/// key-value already holds `epoch`; else the delay that keeps writes of
/// one key [`PUBLISH_INTERVAL_MS`] apart. Documents committed in between
/// are coalesced: only the newest is written.
pub fn publish_delay(
    committed_epoch: u64,
    published_epoch: Option<u64>,
    last_publish_ms: Option<u64>,
    now_ms: u64,
) -> Option<u64> {
    if published_epoch.is_some_and(|p| p >= committed_epoch) {
        return None;
    }
    Some(match last_publish_ms {
        Some(at) => (at + PUBLISH_INTERVAL_MS).saturating_sub(now_ms),
        None => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::Color;

    fn cfg() -> EdgeConfig {
        EdgeConfig::from_lookup(|name| match name {
            "BLUE_ORIGIN" => Some("http://127.0.0.1:1".into()),
            "GREEN_ORIGIN" => Some("http://127.0.0.1:2".into()),
            "ADMIN_TOKEN" => Some("t".repeat(24)),
            _ => None,
        })
        .unwrap()
    }

    fn call(route: AdminRoute, identity: &str) -> String {
        encode_call(
            &AdminCall {
                route,
                identity: identity.into(),
            },
            route.method(),
        )
    }

    #[test]
    fn a_committed_change_comes_back_with_its_history() {
        let cfg = cfg();
        let doc = seed(None, None, None, "s");
        let line = call(AdminRoute::Weight, "otto");
        let body = br#"{"expected_epoch":0,"weight_bp":300,"evidence":{"run":7}}"#;
        let a = change(&cfg, &line, body, &doc, AdminDocs::default(), 5);
        assert_eq!(a.status, 200);
        let history = History::from_json(a.history.as_deref());
        let epochs: Vec<u64> = history.entries.iter().map(|e| e.state.epoch).collect();
        assert_eq!(epochs, [0, 1]);
        assert_eq!(
            history.entries[1].evidence,
            Some(serde_json::json!({"run": 7}))
        );
        assert_eq!(ObjectAnswer::decode(&a.encode()), Some(a.clone()));
        // Undo through the object, from the history it holds.
        let next = LoadedState {
            state: RolloutState::from_json(a.committed.as_deref().unwrap()).unwrap(),
            degraded: false,
        };
        let docs = AdminDocs {
            history: a.history.as_deref(),
            ..AdminDocs::default()
        };
        let undo = call(AdminRoute::Undo, "otto");
        let u = change(
            &cfg,
            &undo,
            br#"{"expected_epoch":1,"to_epoch":0}"#,
            &next,
            docs,
            9,
        );
        assert_eq!(u.status, 200, "{}", u.body);
        let restored = RolloutState::from_json(u.committed.as_deref().unwrap()).unwrap();
        assert_eq!((restored.epoch, restored.candidate_weight_bp), (2, 0));
        assert_eq!(History::from_json(u.history.as_deref()).entries.len(), 3);
        // A read changes nothing and stores nothing.
        let get = change(&cfg, &call(AdminRoute::History, "v"), b"", &next, docs, 9);
        assert_eq!((get.status, get.committed, get.history), (200, None, None));
    }

    #[test]
    fn the_alarm_steps_a_plan_and_is_set_for_its_next_deadline() {
        let cfg = cfg();
        let docs = |history| AdminDocs {
            history,
            ..AdminDocs::default()
        };
        let doc = seed(None, None, None, "s");
        let body = br#"{"expected_epoch":0,"plan":{"steps_bp":[2500],"dwell_ms":4000,"on_failure":"rollback"}}"#;
        let started = change(
            &cfg,
            &call(AdminRoute::PlanStart, "otto"),
            body,
            &doc,
            AdminDocs::default(),
            1_000,
        );
        assert_eq!(started.status, 200, "{}", started.body);
        let document = started.committed.clone().unwrap();
        // The alarm rings at the deadline, or at a publish retry before it.
        assert_eq!(next_alarm(&document, None, None, None), Some(5_000));
        assert_eq!(next_alarm(&document, None, Some(3_000), None), Some(3_000));
        assert_eq!(next_alarm(&document, None, Some(9_000), None), Some(5_000));
        // And at a failed push's retry before both.
        let mut replicas = ReplicaTable::default();
        replicas.failed("weur", "refused", 1_500);
        let replicas = replicas.to_json();
        assert_eq!(
            next_alarm(&document, None, Some(9_000), Some(&replicas)),
            Some(2_500)
        );
        assert_eq!(
            plan_tick(&cfg, &document, docs(started.history.as_deref()), 4_999),
            None
        );
        let done = plan_tick(&cfg, &document, docs(started.history.as_deref()), 5_000).unwrap();
        let promoted = RolloutState::from_json(done.committed.as_deref().unwrap()).unwrap();
        assert_eq!(
            (promoted.epoch, promoted.last_change.op.as_str()),
            (2, "plan_promote")
        );
        let history = History::from_json(done.history.as_deref());
        assert_eq!(
            history.entries.len(),
            3,
            "the plan's change is in the history"
        );
        // An ended plan needs no alarm; a pending publish still does.
        let document = done.committed.unwrap();
        assert_eq!(next_alarm(&document, None, None, None), None);
        assert_eq!(next_alarm(&document, None, Some(7_000), None), Some(7_000));
        assert_eq!(
            next_alarm(&document, None, None, Some(&replicas)),
            Some(2_500)
        );
        assert_eq!(
            plan_tick(&cfg, &document, AdminDocs::default(), u64::MAX),
            None
        );
        assert_eq!(
            plan_tick(&cfg, "not json", AdminDocs::default(), u64::MAX),
            None
        );
    }

    #[test]
    fn evidence_is_stored_apart_and_its_lease_moves_the_alarm() {
        let cfg = cfg();
        let doc = seed(None, None, None, "s");
        let body = br#"{"expected_epoch":0,"plan":{"steps_bp":[2500],"dwell_ms":4000,"on_failure":"rollback","lease_ms":10000}}"#;
        let started = change(
            &cfg,
            &call(AdminRoute::PlanStart, "o"),
            body,
            &doc,
            AdminDocs::default(),
            1_000,
        );
        let document = started.committed.unwrap();
        let loaded = LoadedState {
            state: RolloutState::from_json(&document).unwrap(),
            degraded: false,
        };
        let posted = change(
            &cfg,
            &call(AdminRoute::PlanEvidence, "harness"),
            br#"{"expected_epoch":1}"#,
            &loaded,
            AdminDocs::default(),
            2_000,
        );
        assert_eq!(posted.status, 200, "{}", posted.body);
        assert_eq!(
            (posted.committed.as_deref(), posted.history.as_deref()),
            (None, None)
        );
        let evidence = posted.evidence.clone().unwrap();
        assert_eq!(ObjectAnswer::decode(&posted.encode()), Some(posted));
        // Waiting on the lease: the alarm rings when it runs out.
        assert_eq!(
            next_alarm(&document, Some(&evidence), None, None),
            Some(12_000)
        );
        assert_eq!(next_alarm(&document, None, None, None), Some(5_000));
        let docs = AdminDocs {
            evidence: Some(&evidence),
            ..AdminDocs::default()
        };
        assert_eq!(plan_tick(&cfg, &document, docs, 11_999), None);
        let lapsed = plan_tick(&cfg, &document, docs, 12_000).unwrap();
        let held = RolloutState::from_json(lapsed.committed.as_deref().unwrap()).unwrap();
        assert_eq!(
            held.last_change.op, "plan_hold",
            "the default rule for missing evidence"
        );
    }

    #[test]
    fn calls_round_trip_any_identity() {
        for identity in ["admin", "s:a\nb\tc", "k:ops", "s:ünï%20", ""] {
            let line = call(AdminRoute::Weight, identity);
            assert!(!line.contains('\n'), "{line}");
            let (c, m) = decode_call(&line).unwrap();
            assert_eq!(
                (c.route, c.identity.as_str(), m.as_str()),
                (AdminRoute::Weight, identity, "POST")
            );
        }
        assert_eq!(decode_call("nope\tPOST\tx"), None);
        assert_eq!(decode_call("weight\tPOST"), None);
        assert_eq!(decode_call("weight\tPOST\t%zz"), None);
    }

    #[test]
    fn one_winner_per_epoch() {
        let cfg = cfg();
        let mut doc = LoadedState {
            state: RolloutState::initial("s"),
            degraded: false,
        };
        let line = call(AdminRoute::Weight, "k:ops");
        let mut winners = 0;
        // Fifty changes at epoch 0, handled one at a time as the object does.
        for i in 0..50u32 {
            let body = format!(r#"{{"expected_epoch":0,"weight_bp":{}}}"#, i + 1);
            let a = change(&cfg, &line, body.as_bytes(), &doc, AdminDocs::default(), 5);
            let a = ObjectAnswer::decode(&a.encode()).unwrap();
            match a.status {
                200 => {
                    winners += 1;
                    let committed = RolloutState::from_json(&a.committed.unwrap()).unwrap();
                    let view: StateView = serde_json::from_str(&a.body).unwrap();
                    assert_eq!(view.state, committed, "the answer is what was committed");
                    doc.state = committed;
                }
                409 => assert_eq!(a.committed, None),
                s => panic!("{s}"),
            }
        }
        assert_eq!(winners, 1);
        assert_eq!((doc.state.epoch, doc.state.candidate_weight_bp), (1, 1));
        let a = change(&cfg, "junk", b"{}", &doc, AdminDocs::default(), 5);
        assert_eq!((a.status, a.committed), (400, None));
    }

    #[test]
    fn the_edge_passes_answers_on_and_flags_its_own_fallback() {
        let s = RolloutState::initial("s");
        let view = serde_json::to_string(&StateView::of(s.clone(), false)).unwrap();
        let (reply, shown) = edge_answer("/__greenlight/state", 200, view.clone(), true);
        assert_eq!(shown, Some(s.clone()));
        let v: StateView = serde_json::from_str(&reply.body).unwrap();
        assert!(v.degraded, "this edge serves a fallback");
        let (reply, _) = edge_answer("/__greenlight/weight", 200, view.clone(), true);
        assert_eq!(reply.body, view, "a change's answer is passed on as is");
        let (reply, shown) = edge_answer("/__greenlight/weight", 409, "{}".into(), false);
        assert_eq!((reply.status, shown), (409, None));
        assert!(reply
            .headers
            .contains(&("content-type".into(), "application/problem+json".into())));
        let (reply, _) = edge_answer("/__greenlight/weight", 0, "gone".into(), false);
        assert_eq!(reply.status, 503);
    }

    #[test]
    fn an_edge_never_goes_back_to_an_older_epoch() {
        let at = |epoch: u64, degraded: bool| {
            let mut state = RolloutState::initial("s");
            state.epoch = epoch;
            LoadedState { state, degraded }
        };
        assert!(replaces(None, &at(0, false)));
        assert!(replaces(Some(&at(3, false)), &at(4, false)));
        assert!(replaces(Some(&at(3, false)), &at(3, true)));
        assert!(!replaces(Some(&at(4, false)), &at(3, false)));
    }

    #[test]
    fn seeding_prefers_storage_then_kv_then_its_backup() {
        let mut s = RolloutState::initial("s");
        s.epoch = 7;
        s.active = Color::Green;
        s.candidate = Color::Blue;
        let good = s.to_json();
        let seeded = seed(Some(&good), Some("{oops"), None, "s");
        assert_eq!((seeded.state.epoch, seeded.degraded), (7, false));
        let seeded = seed(None, Some(&good), None, "s");
        assert_eq!((seeded.state.epoch, seeded.degraded), (7, false));
        let seeded = seed(None, Some("{oops"), Some(&good), "s");
        assert_eq!((seeded.state.epoch, seeded.degraded), (7, true));
        let seeded = seed(None, Some("{oops"), None, "s");
        assert_eq!((seeded.state.epoch, seeded.degraded), (0, true));
        let seeded = seed(None, None, None, "s");
        assert_eq!((seeded.state.epoch, seeded.degraded), (0, false));
    }

    #[test]
    fn health_reports_are_merged_and_counted() {
        let rec = health::count_failure(None, 3, Color::Green, "x", 10, 60_000);
        let one = merge_health(None, &rec.to_json(), 3).unwrap();
        assert_eq!((one.writes, one.green.total), (1, 1));
        let rec2 = health::count_failure(Some(rec), 3, Color::Green, "y", 11, 60_000);
        let two = merge_health(Some(&one.to_json()), &rec2.to_json(), 3).unwrap();
        assert_eq!((two.writes, two.green.total), (2, 2));
        // A report of a newer epoch starts the count again.
        let newer = health::count_failure(None, 4, Color::Blue, "z", 12, 60_000);
        let three = merge_health(Some(&two.to_json()), &newer.to_json(), 4).unwrap();
        assert_eq!((three.epoch, three.writes, three.green.total), (4, 1, 0));
        assert_eq!(merge_health(None, "{oops", 4), None);
    }

    #[test]
    fn reports_and_publishes_are_spaced() {
        let mut t = ReportThrottle::default();
        assert_eq!(t.on_failure(1_000), Some(0));
        assert_eq!(t.on_failure(1_001), None, "one report is scheduled");
        t.sending(1_002);
        assert_eq!(t.on_failure(1_300), Some(702));
        assert_eq!(t.on_failure(1_400), None);
        t.sending(2_002);
        assert_eq!(t.on_failure(9_000), Some(0));
        // 1 000 failures over 10 s: at most one report a second.
        let mut t = ReportThrottle::default();
        let mut reports = 0;
        let mut due: Option<u64> = None;
        for ms in 0..10_000u64 {
            if due.is_some_and(|d| d <= ms) {
                t.sending(ms);
                reports += 1;
                due = None;
            }
            if ms % 10 == 0 {
                if let Some(delay) = t.on_failure(ms) {
                    due = Some(ms + delay);
                }
            }
        }
        assert!(reports <= 10, "{reports}");

        assert_eq!(publish_delay(3, Some(3), Some(0), 10), None);
        assert_eq!(publish_delay(3, None, None, 10), Some(0));
        assert_eq!(publish_delay(4, Some(3), Some(500), 900), Some(600));
        assert_eq!(publish_delay(4, Some(3), Some(500), 2_000), Some(0));
    }
}
