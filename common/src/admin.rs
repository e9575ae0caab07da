//! The admin API: its wire types and the pure handler behind
//! `/__greenlight/*`. The adapter reads the current state, calls
//! [`handle`], writes `new_state` back when there is one, and replies.

use crate::health::{assess, HealthPolicy, HealthRecord, HealthView};
use crate::history::{History, MAX_EVIDENCE_BYTES};
use crate::plan::{PlanEvidence, PlanSpec, Verdict};
use crate::rollout::{AllowedOps, ChangeMeta, Phase, PlanControl, RolloutError, RolloutOp};
use crate::state::{Population, RolloutState, WEIGHT_SCALE};
use crate::telemetry::Tally;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest admin request body accepted.
pub const MAX_ADMIN_BODY: usize = 16 * 1024;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `GET /__greenlight/state` and every successful change return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateView {
    pub state: RolloutState,
    pub phase: Phase,
    pub allowed: AllowedOps,
    /// True when the stored document was unreadable and the edge is serving
    /// from its last good (or the initial) state.
    #[serde(default)]
    pub degraded: bool,
    /// Origin failures the edges counted in this epoch (`GET state` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
    /// Who the canary's users are: whether the next canary draws new ones
    /// (`state.stickiness.population`, spelled out even when `fresh`).
    #[serde(default)]
    pub population: Population,
    /// The evidence and lease a harness holds for the plan in progress
    /// (`GET state` and `plan/evidence`, for a plan that takes evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<PlanEvidence>,
}

impl StateView {
    pub fn of(state: RolloutState, degraded: bool) -> StateView {
        StateView {
            phase: state.phase(),
            allowed: state.allowed_ops(),
            population: state.stickiness.population,
            state,
            degraded,
            health: None,
            evidence: None,
        }
    }
}

/// Body of every `POST` admin call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// The epoch the caller last saw; a mismatch is a 409.
    pub expected_epoch: u64,
    /// For `weight`: basis points (0..=10 000)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_bp: Option<u32>,
    /// ...or a percentage (0..=100, two decimals kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_percent: Option<f64>,
    /// For `weight`: `fresh` or `fixed`, kept in the state from this change
    /// on (see [`Population`]); decides the salt of a canary this call starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub population: Option<Population>,
    /// Who is acting, for the audit trail (defaults to the authenticated identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default)]
    pub reason: String,
    /// For `undo`: the epoch whose state to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_epoch: Option<u64>,
    /// What decided the change (a verdict, a link), kept in the history
    /// with it; at most [`MAX_EVIDENCE_BYTES`] serialised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<serde_json::Value>,
    /// For `plan/start`: the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSpec>,
    /// For `plan/evidence`: the verdict for the step at `expected_epoch`
    /// (none: the post only renews the lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// RFC 9457 problem details, used for every admin error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// On 409: the epoch the state is at now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_epoch: Option<u64>,
}

impl Problem {
    pub fn new(status: u16, slug: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:greenlight:problem:{slug}"),
            title: title.to_string(),
            status,
            detail: detail.into(),
            current_epoch: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRoute {
    State,
    Weight,
    Promote,
    Rollback,
    Abort,
    /// `GET isolate`: what the edge instance that took the call holds in
    /// memory ([`IsolateView`]). Answered by that instance, never by the
    /// rollout's store or object.
    Isolate,
    /// `GET history`: the last committed changes ([`crate::history`]).
    History,
    /// `POST undo`: an earlier state from the history, as a new change.
    Undo,
    /// `POST plan/start`: a rollout plan the edge carries out ([`crate::plan`]).
    PlanStart,
    /// `POST plan/pause`, `plan/resume`, `plan/abort`: the plan in progress.
    PlanPause,
    PlanResume,
    PlanAbort,
    /// `POST plan/evidence`: a harness's verdict for the step in force and
    /// the renewal of its lease ([`crate::plan::PlanEvidence`]).
    PlanEvidence,
    /// `GET metrics`: real users' answers per epoch and color
    /// ([`crate::telemetry::MetricsView`]).
    Metrics,
    /// `GET metrics/prometheus`: the same in the Prometheus text format.
    MetricsPrometheus,
    /// `GET replicas`: the Workers edge's read replicas and their lag
    /// ([`crate::propagation::ReplicasView`]), answered by the rollout
    /// object.
    Replicas,
}

impl AdminRoute {
    pub const ALL: [AdminRoute; 16] = [
        AdminRoute::State,
        AdminRoute::Weight,
        AdminRoute::Promote,
        AdminRoute::Rollback,
        AdminRoute::Abort,
        AdminRoute::Isolate,
        AdminRoute::History,
        AdminRoute::Undo,
        AdminRoute::PlanStart,
        AdminRoute::PlanPause,
        AdminRoute::PlanResume,
        AdminRoute::PlanAbort,
        AdminRoute::PlanEvidence,
        AdminRoute::Metrics,
        AdminRoute::MetricsPrometheus,
        AdminRoute::Replicas,
    ];

    /// The route for a path under the admin prefix (`rest` excludes it).
    pub fn parse(rest: &str) -> Option<AdminRoute> {
        let rest = rest.trim_end_matches('/');
        AdminRoute::ALL.into_iter().find(|r| r.name() == rest)
    }

    /// Its path under the admin prefix.
    pub fn name(self) -> &'static str {
        match self {
            AdminRoute::State => "state",
            AdminRoute::Weight => "weight",
            AdminRoute::Promote => "promote",
            AdminRoute::Rollback => "rollback",
            AdminRoute::Abort => "abort",
            AdminRoute::Isolate => "isolate",
            AdminRoute::History => "history",
            AdminRoute::Undo => "undo",
            AdminRoute::PlanStart => "plan/start",
            AdminRoute::PlanPause => "plan/pause",
            AdminRoute::PlanResume => "plan/resume",
            AdminRoute::PlanAbort => "plan/abort",
            AdminRoute::PlanEvidence => "plan/evidence",
            AdminRoute::Metrics => "metrics",
            AdminRoute::MetricsPrometheus => "metrics/prometheus",
            AdminRoute::Replicas => "replicas",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            AdminRoute::State
            | AdminRoute::Isolate
            | AdminRoute::History
            | AdminRoute::Metrics
            | AdminRoute::MetricsPrometheus
            | AdminRoute::Replicas => "GET",
            _ => "POST",
        }
    }
}

/// A reply to send, plus the state to persist first when the call changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminOutcome {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub new_state: Option<RolloutState>,
    /// The evidence the change carried, for its history entry.
    pub evidence: Option<serde_json::Value>,
    /// The plan's evidence document to store (`POST plan/evidence`), which
    /// changes no state.
    pub new_evidence: Option<String>,
}

impl AdminOutcome {
    fn ok(view: &StateView, new_state: Option<RolloutState>) -> AdminOutcome {
        AdminOutcome {
            status: 200,
            content_type: "application/json",
            body: serde_json::to_string(view).unwrap_or_default(),
            new_state,
            evidence: None,
            new_evidence: None,
        }
    }

    pub fn problem(p: Problem) -> AdminOutcome {
        AdminOutcome {
            status: p.status,
            content_type: "application/problem+json",
            body: serde_json::to_string(&p).unwrap_or_default(),
            new_state: None,
            evidence: None,
            new_evidence: None,
        }
    }

    fn json(body: String) -> AdminOutcome {
        AdminOutcome {
            status: 200,
            content_type: "application/json",
            body,
            new_state: None,
            evidence: None,
            new_evidence: None,
        }
    }
}

/// One bounded table an edge instance keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSize {
    /// Entries now (callers, forwards, or stored slots).
    pub entries: u64,
    /// The most it ever holds.
    pub cap: u64,
}

/// `GET isolate`: what the edge instance that took the call holds, so a
/// soak can watch tables that are invisible from outside (a Worker's
/// per-isolate memory). Spin runs each request in a fresh instance: there
/// the tables are the store's slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolateView {
    /// `"cloudflare"` or `"spin"`.
    pub runtime: String,
    /// Where the tables live: `"isolate"` (memory) or `"store"` (key-value).
    pub tables_in: String,
    pub tables: BTreeMap<String, TableSize>,
    /// The instance's WebAssembly linear memory (it grows, never shrinks).
    pub wasm_memory_bytes: u64,
}

/// What an adapter answers `GET isolate` with; read back as an
/// [`IsolateView`]. Borrowed slices rather than the view's map: the
/// Worker's wasm has a size budget (`cloudflare_bundle`), and building the
/// map there cost 3.9 KB gzipped (250 339 against 246 463 bytes), over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsolateReport<'a> {
    pub runtime: &'a str,
    pub tables_in: &'a str,
    /// In the order to write them (readers get a map).
    pub tables: &'a [(&'a str, TableSize)],
    pub wasm_memory_bytes: u64,
}

impl IsolateReport<'_> {
    /// The [`IsolateView`] document.
    pub fn to_json(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(96 + 64 * self.tables.len());
        out.push_str("{\"runtime\":");
        push_json_string(&mut out, self.runtime);
        out.push_str(",\"tables_in\":");
        push_json_string(&mut out, self.tables_in);
        out.push_str(",\"tables\":{");
        for (i, (name, t)) in self.tables.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, name);
            let _ = write!(out, ":{{\"entries\":{},\"cap\":{}}}", t.entries, t.cap);
        }
        let _ = write!(out, "}},\"wasm_memory_bytes\":{}}}", self.wasm_memory_bytes);
        out
    }
}

/// The answer to `GET isolate` (`405` for another method).
pub fn isolate_outcome(method: &str, report: &IsolateReport<'_>) -> AdminOutcome {
    if !method.eq_ignore_ascii_case(AdminRoute::Isolate.method()) {
        return AdminOutcome::problem(Problem::new(
            405,
            "method-not-allowed",
            "method not allowed",
            "use GET for this admin route",
        ));
    }
    AdminOutcome::json(report.to_json())
}

/// `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The WebAssembly linear memory of the running instance, in bytes (0 on
/// a native build, where there is none).
pub fn wasm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::memory_size(0) as u64 * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// What an admin call is handled against besides its request: the
/// committed state, and the documents stored beside it.
#[derive(Debug, Clone, Copy)]
pub struct AdminContext<'a> {
    pub current: &'a RolloutState,
    /// True when the edge serves from a fallback state.
    pub degraded: bool,
    /// The stored health record, judged into `GET state`'s view.
    pub health: Option<&'a HealthRecord>,
    pub policy: HealthPolicy,
    /// The stored history (`GET history`, `POST undo`).
    pub history: Option<&'a History>,
    /// The plan's evidence document (`GET state`).
    pub evidence: Option<&'a PlanEvidence>,
    /// Real users' summed counts (`GET metrics`).
    pub telemetry: Option<&'a Tally>,
    pub now_ms: u64,
}

impl<'a> AdminContext<'a> {
    /// `current` alone: no health record, no history.
    pub fn of(current: &'a RolloutState, degraded: bool, now_ms: u64) -> AdminContext<'a> {
        AdminContext {
            current,
            degraded,
            health: None,
            policy: HealthPolicy::default(),
            history: None,
            evidence: None,
            telemetry: None,
            now_ms,
        }
    }
}

/// Handles one authenticated admin call against `current`.
pub fn handle(
    route: AdminRoute,
    method: &str,
    body: &[u8],
    identity: &str,
    current: &RolloutState,
    degraded: bool,
    now_ms: u64,
) -> AdminOutcome {
    handle_in(
        route,
        method,
        body,
        identity,
        &AdminContext::of(current, degraded, now_ms),
    )
}

/// Handles one authenticated admin call in `ctx`.
pub fn handle_in(
    route: AdminRoute,
    method: &str,
    body: &[u8],
    identity: &str,
    ctx: &AdminContext<'_>,
) -> AdminOutcome {
    let AdminContext {
        current,
        degraded,
        health,
        policy,
        history,
        evidence,
        telemetry,
        now_ms,
    } = *ctx;
    if !method.eq_ignore_ascii_case(route.method()) {
        return AdminOutcome::problem(Problem::new(
            405,
            "method-not-allowed",
            "method not allowed",
            format!("use {} for this admin route", route.method()),
        ));
    }
    // `None` stands for set_weight, whose argument comes from the body.
    let fixed_op = match route {
        AdminRoute::State => {
            let mut view = StateView::of(current.clone(), degraded);
            view.health = Some(assess(health, current, policy, now_ms));
            view.evidence = evidence
                .filter(|_| current.plan_in_progress().is_some())
                .cloned();
            return AdminOutcome::ok(&view, None);
        }
        // The adapters answer it ([`isolate_outcome`]); nothing here knows
        // an instance's memory.
        AdminRoute::Isolate => {
            return AdminOutcome::problem(Problem::new(
                404,
                "not-found",
                "no such admin route here",
                "isolate is answered by the edge instance itself",
            ))
        }
        // Only a Workers edge has replicas; its rollout object answers this
        // before the call gets here.
        AdminRoute::Replicas => {
            return AdminOutcome::problem(Problem::new(
                404,
                "not-found",
                "no such admin route here",
                "replicas belong to a Workers edge's rollout object; this edge reads one store",
            ))
        }
        AdminRoute::History => {
            let view = history
                .map(History::view)
                .unwrap_or_else(|| History::default().view());
            return AdminOutcome::json(serde_json::to_string(&view).unwrap_or_default());
        }
        AdminRoute::Metrics => {
            let view = telemetry
                .map(Tally::view)
                .unwrap_or_else(|| Tally::default().view());
            return AdminOutcome::json(serde_json::to_string(&view).unwrap_or_default());
        }
        AdminRoute::MetricsPrometheus => {
            return AdminOutcome {
                content_type: PROMETHEUS_CONTENT_TYPE,
                ..AdminOutcome::json(telemetry.map(Tally::to_prometheus).unwrap_or_default())
            }
        }
        AdminRoute::Undo => return undo(body, identity, current, history, now_ms),
        AdminRoute::PlanStart => return plan_call(None, body, identity, current, now_ms),
        AdminRoute::PlanPause => {
            return plan_call(Some(PlanControl::Pause), body, identity, current, now_ms)
        }
        AdminRoute::PlanResume => {
            return plan_call(Some(PlanControl::Resume), body, identity, current, now_ms)
        }
        AdminRoute::PlanAbort => {
            return plan_call(Some(PlanControl::Abort), body, identity, current, now_ms)
        }
        AdminRoute::PlanEvidence => return plan_evidence(body, identity, current, now_ms),
        AdminRoute::Weight => None,
        AdminRoute::Promote => Some(RolloutOp::Promote),
        AdminRoute::Rollback => Some(RolloutOp::Rollback),
        AdminRoute::Abort => Some(RolloutOp::Abort),
    };
    let req = match parse_change(body) {
        Ok(r) => r,
        Err(p) => return AdminOutcome::problem(p),
    };
    if req.to_epoch.is_some() {
        return AdminOutcome::problem(Problem::new(
            400,
            "bad-request",
            "to_epoch belongs to an undo",
            "send to_epoch with POST /__greenlight/undo",
        ));
    }
    if req.plan.is_some() {
        return AdminOutcome::problem(plan_elsewhere());
    }
    if req.verdict.is_some() {
        return AdminOutcome::problem(verdict_elsewhere());
    }
    let op = match fixed_op {
        Some(op) => op,
        None => match weight_of(&req) {
            Ok(weight_bp) => RolloutOp::SetWeight { weight_bp },
            Err(p) => return AdminOutcome::problem(p),
        },
    };
    let meta = ChangeMeta {
        actor: req.actor.clone().unwrap_or_else(|| identity.to_string()),
        at_ms: now_ms,
        reason: req.reason.clone(),
    };
    // A population sent with a weight change is part of that change: it is
    // in force for the canary this call may start, and stays.
    let with_population;
    let base = match (fixed_op, req.population) {
        (None, Some(population)) => {
            with_population = RolloutState {
                stickiness: crate::state::Stickiness {
                    population,
                    ..current.stickiness.clone()
                },
                ..current.clone()
            };
            &with_population
        }
        (Some(_), Some(_)) => {
            return AdminOutcome::problem(Problem::new(
                400,
                "bad-request",
                "population belongs to a weight change",
                "send population with POST /__greenlight/weight",
            ))
        }
        _ => current,
    };
    committed(
        base.apply(op, req.expected_epoch, meta),
        identity,
        req.evidence,
    )
}

/// The answer to a change: the new state with the credential that made
/// it, and its evidence for the history.
fn committed(
    applied: Result<RolloutState, RolloutError>,
    identity: &str,
    evidence: Option<serde_json::Value>,
) -> AdminOutcome {
    match applied {
        Ok(mut next) => {
            // The declared actor is the caller's word; the credential is
            // what the edge verified.
            next.last_change.credential = identity.to_string();
            AdminOutcome {
                evidence,
                ..AdminOutcome::ok(&StateView::of(next.clone(), false), Some(next))
            }
        }
        Err(e) => AdminOutcome::problem(problem_of(&e)),
    }
}

/// `POST undo`: the state of `to_epoch`, from the history, as a new change.
fn undo(
    body: &[u8],
    identity: &str,
    current: &RolloutState,
    history: Option<&History>,
    now_ms: u64,
) -> AdminOutcome {
    let req = match parse_change(body) {
        Ok(r) => r,
        Err(p) => return AdminOutcome::problem(p),
    };
    let bad = |detail: String| {
        AdminOutcome::problem(Problem::new(400, "bad-request", "invalid undo", detail))
    };
    if req.weight_bp.is_some() || req.weight_percent.is_some() || req.population.is_some() {
        return bad("undo takes expected_epoch, to_epoch, reason, actor and evidence".into());
    }
    let Some(to_epoch) = req.to_epoch else {
        return bad("send to_epoch: the epoch whose state to restore".into());
    };
    let Some(target) = history.and_then(|h| h.state_at(to_epoch)) else {
        let kept = match history.and_then(History::span) {
            Some((first, last)) => format!("it holds epochs {first} to {last}"),
            None => "it is empty".to_string(),
        };
        return AdminOutcome::problem(Problem::new(
            404,
            "not-in-history",
            "epoch not in the history",
            format!("epoch {to_epoch} is not in the edge's history: {kept}"),
        ));
    };
    let reason = if req.reason.is_empty() {
        format!("undo to epoch {to_epoch}")
    } else {
        req.reason.clone()
    };
    let meta = ChangeMeta {
        actor: req.actor.clone().unwrap_or_else(|| identity.to_string()),
        at_ms: now_ms,
        reason,
    };
    committed(
        current.restore(target, req.expected_epoch, meta),
        identity,
        req.evidence,
    )
}

fn verdict_elsewhere() -> Problem {
    Problem::new(
        400,
        "bad-request",
        "verdict belongs to plan evidence",
        "send verdict with POST /__greenlight/plan/evidence",
    )
}

/// `POST plan/evidence`: the caller's verdict for the step at
/// `expected_epoch` (the step in force) and its lease, renewed by the
/// plan's `lease_ms` from now. Stored apart from the state: no epoch moves.
fn plan_evidence(body: &[u8], identity: &str, current: &RolloutState, now_ms: u64) -> AdminOutcome {
    let req = match parse_change(body) {
        Ok(r) => r,
        Err(p) => return AdminOutcome::problem(p),
    };
    if req.weight_bp.is_some()
        || req.weight_percent.is_some()
        || req.population.is_some()
        || req.to_epoch.is_some()
        || req.plan.is_some()
    {
        return AdminOutcome::problem(Problem::new(
            400,
            "bad-request",
            "invalid plan evidence",
            "plan evidence takes expected_epoch and verdict (pass, fail, inconclusive)",
        ));
    }
    let refused = |why: String| {
        AdminOutcome::problem(Problem::new(
            409,
            "invalid-transition",
            "invalid transition",
            format!("plan evidence is not taken now: {why}"),
        ))
    };
    if req.expected_epoch != current.epoch {
        return AdminOutcome::problem(problem_of(&RolloutError::StaleEpoch {
            expected: req.expected_epoch,
            current: current.epoch,
        }));
    }
    let Some(run) = current.plan_in_progress() else {
        return refused("no plan is in progress".into());
    };
    let Some(lease_ms) = run.spec.lease_ms else {
        return refused("this plan takes no evidence (it was started without lease_ms)".into());
    };
    let evidence = PlanEvidence {
        epoch: current.epoch,
        verdict: req.verdict,
        holder: identity.to_string(),
        lease_until_ms: now_ms.saturating_add(lease_ms),
        at_ms: now_ms,
    };
    let mut view = StateView::of(current.clone(), false);
    view.evidence = Some(evidence.clone());
    AdminOutcome {
        new_evidence: Some(evidence.to_json()),
        ..AdminOutcome::ok(&view, None)
    }
}

fn plan_elsewhere() -> Problem {
    Problem::new(
        400,
        "bad-request",
        "plan belongs to a plan start",
        "send plan with POST /__greenlight/plan/start",
    )
}

/// `POST plan/start` (`control` `None`) and the plan's pause, resume and
/// abort.
fn plan_call(
    control: Option<PlanControl>,
    body: &[u8],
    identity: &str,
    current: &RolloutState,
    now_ms: u64,
) -> AdminOutcome {
    let req = match parse_change(body) {
        Ok(r) => r,
        Err(p) => return AdminOutcome::problem(p),
    };
    let bad = |detail: &str| {
        AdminOutcome::problem(Problem::new(
            400,
            "bad-request",
            "invalid plan call",
            detail.to_string(),
        ))
    };
    if req.weight_bp.is_some()
        || req.weight_percent.is_some()
        || req.population.is_some()
        || req.to_epoch.is_some()
    {
        return bad(
            "a plan call takes expected_epoch, reason, actor, evidence and (to start) plan",
        );
    }
    if req.verdict.is_some() {
        return AdminOutcome::problem(verdict_elsewhere());
    }
    let meta = ChangeMeta {
        actor: req.actor.clone().unwrap_or_else(|| identity.to_string()),
        at_ms: now_ms,
        reason: req.reason.clone(),
    };
    let applied = match (control, req.plan) {
        (None, Some(spec)) => current.start_plan(spec, req.expected_epoch, meta),
        (None, None) => {
            return bad(
                "send plan: {\"steps_bp\": [...], \"dwell_ms\": ..., \"on_failure\": \"rollback\"|\"hold\"}",
            )
        }
        (Some(control), None) => current.control_plan(control, req.expected_epoch, meta),
        (Some(_), Some(_)) => return AdminOutcome::problem(plan_elsewhere()),
    };
    committed(applied, identity, req.evidence)
}

fn parse_change(body: &[u8]) -> Result<ChangeRequest, Problem> {
    if body.len() > MAX_ADMIN_BODY {
        return Err(Problem::new(
            413,
            "body-too-large",
            "request body too large",
            format!("admin bodies are limited to {MAX_ADMIN_BODY} bytes"),
        ));
    }
    let malformed = |why: String| {
        Problem::new(
            400,
            "bad-request",
            "malformed admin request",
            format!("expected JSON like {{\"expected_epoch\": 3, \"reason\": \"...\"}}: {why}"),
        )
    };
    // serde's derived `Deserialize` also accepts a struct as a JSON array of
    // its fields in order (`[3, 2500]` would be expected_epoch 3, weight_bp
    // 2500): only an object, whose field names are checked, is a request.
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(malformed("the body must be a JSON object".into()));
    }
    let req =
        serde_json::from_slice::<ChangeRequest>(body).map_err(|e| malformed(e.to_string()))?;
    if let Some(evidence) = &req.evidence {
        let size = serde_json::to_string(evidence).map_or(0, |t| t.len());
        if size > MAX_EVIDENCE_BYTES {
            return Err(malformed(format!(
                "evidence is {size} bytes serialised; at most {MAX_EVIDENCE_BYTES}"
            )));
        }
    }
    Ok(req)
}

fn weight_of(req: &ChangeRequest) -> Result<u16, Problem> {
    let bad = |detail: String| Problem::new(400, "bad-weight", "invalid weight", detail);
    let bp = match (req.weight_bp, req.weight_percent) {
        (Some(bp), None) => bp,
        (None, Some(pct)) => {
            if !pct.is_finite() || !(0.0..=100.0).contains(&pct) {
                return Err(bad(format!("weight_percent {pct} must be within 0..=100")));
            }
            (pct * 100.0).round() as u32
        }
        (None, None) => return Err(bad("send weight_bp or weight_percent".into())),
        (Some(_), Some(_)) => return Err(bad("send weight_bp or weight_percent, not both".into())),
    };
    if bp > u32::from(WEIGHT_SCALE) {
        return Err(bad(format!(
            "weight_bp {bp} must be within 0..={WEIGHT_SCALE}"
        )));
    }
    Ok(bp as u16)
}

fn problem_of(e: &RolloutError) -> Problem {
    match e {
        RolloutError::StaleEpoch { current, .. } => Problem {
            current_epoch: Some(*current),
            ..Problem::new(409, "stale-epoch", "stale epoch", e.to_string())
        },
        RolloutError::InvalidTransition { .. } => Problem::new(
            409,
            "invalid-transition",
            "invalid transition",
            e.to_string(),
        ),
        RolloutError::WeightOutOfRange(_) => {
            Problem::new(400, "bad-weight", "invalid weight", e.to_string())
        }
        RolloutError::TextTooLong(_) => {
            Problem::new(400, "bad-request", "malformed admin request", e.to_string())
        }
        RolloutError::InvalidPlan(_) => {
            Problem::new(400, "bad-plan", "invalid plan", e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::Color;

    fn call(route: AdminRoute, method: &str, body: &str, s: &RolloutState) -> AdminOutcome {
        handle(route, method, body.as_bytes(), "k:ops", s, false, 42)
    }

    fn problem(o: &AdminOutcome) -> Problem {
        assert_eq!(o.content_type, "application/problem+json");
        serde_json::from_str(&o.body).unwrap()
    }

    #[test]
    fn get_state_returns_view() {
        let s = RolloutState::initial("x");
        let o = call(AdminRoute::State, "GET", "", &s);
        assert_eq!(o.status, 200);
        let v: StateView = serde_json::from_str(&o.body).unwrap();
        assert_eq!((v.state, v.phase, o.new_state), (s, Phase::Stable, None));
        assert_eq!(
            call(AdminRoute::State, "POST", "", &RolloutState::initial("x")).status,
            405
        );
    }

    #[test]
    fn weight_in_bp_or_percent() {
        let s = RolloutState::initial("x");
        let o = call(
            AdminRoute::Weight,
            "POST",
            r#"{"expected_epoch":0,"weight_percent":12.5,"reason":"go"}"#,
            &s,
        );
        assert_eq!(o.status, 200, "{}", o.body);
        let next = o.new_state.unwrap();
        assert_eq!((next.candidate_weight_bp, next.epoch), (1250, 1));
        assert_eq!(
            (next.last_change.actor.as_str(), next.last_change.at_ms),
            ("k:ops", 42)
        );
        let o = call(
            AdminRoute::Weight,
            "POST",
            r#"{"expected_epoch":0,"weight_bp":300,"actor":"alice"}"#,
            &s,
        );
        assert_eq!(o.new_state.unwrap().last_change.actor, "alice");
    }

    #[test]
    fn a_weight_change_may_set_the_population_and_the_view_shows_it() {
        let s = RolloutState::initial("x");
        let o = call(
            AdminRoute::Weight,
            "POST",
            r#"{"expected_epoch":0,"weight_bp":100,"population":"fixed"}"#,
            &s,
        );
        assert_eq!(o.status, 200, "{}", o.body);
        let v: StateView = serde_json::from_str(&o.body).unwrap();
        assert_eq!(v.population, Population::Fixed);
        let next = o.new_state.unwrap();
        // Fixed from this change on: the canary it starts keeps the salt.
        assert_eq!(
            (next.stickiness.population, next.stickiness.salt.as_str()),
            (Population::Fixed, "x")
        );
        // Without it, a canary from 0 % draws a new salt, and GET says fresh.
        let o = call(
            AdminRoute::Weight,
            "POST",
            r#"{"expected_epoch":0,"weight_bp":100}"#,
            &s,
        );
        let v: StateView = serde_json::from_str(&o.body).unwrap();
        assert_eq!(v.population, Population::Fresh);
        assert!(o.body.contains(r#""population":"fresh""#), "{}", o.body);
        assert_ne!(v.state.stickiness.salt, "x");
        // Only a weight change carries one.
        for route in [AdminRoute::Promote, AdminRoute::Rollback, AdminRoute::Abort] {
            let o = call(
                route,
                "POST",
                r#"{"expected_epoch":0,"population":"fixed"}"#,
                &s,
            );
            assert_eq!((o.status, o.new_state), (400, None), "{route:?}");
        }
        let o = call(
            AdminRoute::Weight,
            "POST",
            r#"{"expected_epoch":0,"weight_bp":100,"population":"sometimes"}"#,
            &s,
        );
        assert_eq!(o.status, 400);
    }

    #[test]
    fn bad_bodies_are_400_and_change_nothing() {
        let s = RolloutState::initial("x");
        for body in [
            "",
            "{",
            r#"{"expected_epoch":"0","weight_bp":1}"#,
            r#"{"expected_epoch":-1,"weight_bp":1}"#,
            r#"{"expected_epoch":0,"weight_bp":-5}"#,
            r#"{"expected_epoch":0,"weight_bp":10001}"#,
            r#"{"expected_epoch":0,"weight_percent":100.5}"#,
            r#"{"expected_epoch":0}"#,
            r#"{"expected_epoch":0,"weight_bp":1,"weight_percent":1}"#,
            r#"{"expected_epoch":0,"weight_bp":1,"extra":true}"#,
        ] {
            let o = call(AdminRoute::Weight, "POST", body, &s);
            assert_eq!(
                (o.status, o.new_state.is_none()),
                (400, true),
                "{body}: {}",
                o.body
            );
            assert_eq!(problem(&o).status, 400);
        }
        // Positional (array) forms of the request are not requests, even
        // when their values would be valid in an object.
        for body in ["[0,300]", " \n[0, 300, null, \"a\", \"b\"]", "[0]", "[]"] {
            for route in [AdminRoute::Weight, AdminRoute::Promote] {
                let o = call(route, "POST", body, &s);
                assert_eq!((o.status, o.new_state), (400, None), "{body}: {}", o.body);
            }
        }
        assert_eq!(
            call(
                AdminRoute::Weight,
                "POST",
                " \r\n\t{\"expected_epoch\":0,\"weight_bp\":3}",
                &s
            )
            .status,
            200
        );
        let huge = format!(
            r#"{{"expected_epoch":0,"reason":"{}"}}"#,
            "x".repeat(MAX_ADMIN_BODY)
        );
        assert_eq!(call(AdminRoute::Promote, "POST", &huge, &s).status, 413);
    }

    #[test]
    fn stale_epoch_is_409_with_current_epoch() {
        let s = RolloutState::initial("x");
        let next = call(AdminRoute::Promote, "POST", r#"{"expected_epoch":0}"#, &s)
            .new_state
            .unwrap();
        assert_eq!(next.active, Color::Green);
        let o = call(
            AdminRoute::Rollback,
            "POST",
            r#"{"expected_epoch":0}"#,
            &next,
        );
        assert_eq!(o.status, 409);
        let p = problem(&o);
        assert_eq!(
            (p.current_epoch, p.kind.as_str()),
            (Some(1), "urn:greenlight:problem:stale-epoch")
        );
        let o = call(AdminRoute::Abort, "POST", r#"{"expected_epoch":1}"#, &next);
        assert_eq!(
            (o.status, problem(&o).kind.contains("invalid-transition")),
            (409, true)
        );
    }

    #[test]
    fn routes_parse() {
        assert_eq!(AdminRoute::parse("promote/"), Some(AdminRoute::Promote));
        assert_eq!(AdminRoute::parse("state"), Some(AdminRoute::State));
        assert_eq!(AdminRoute::parse("nope"), None);
        assert_eq!(AdminRoute::parse("isolate"), Some(AdminRoute::Isolate));
        assert_eq!(AdminRoute::Isolate.method(), "GET");
    }

    #[test]
    fn isolate_is_answered_by_the_instance_not_the_store() {
        let tables = [(
            "pending_forwards",
            TableSize {
                entries: 3,
                cap: 10_000,
            },
        )];
        let report = IsolateReport {
            runtime: "cloudflare",
            tables_in: "isolate",
            tables: &tables,
            wasm_memory_bytes: 1_114_112,
        };
        let o = isolate_outcome("GET", &report);
        assert_eq!((o.status, o.content_type), (200, "application/json"));
        let view: IsolateView = serde_json::from_str(&o.body).unwrap();
        assert_eq!(
            (view.runtime.as_str(), view.tables_in.as_str()),
            ("cloudflare", "isolate")
        );
        assert_eq!(view.tables["pending_forwards"], tables[0].1);
        assert_eq!(view.wasm_memory_bytes, 1_114_112);
        assert_eq!(o.new_state, None);
        assert_eq!(isolate_outcome("POST", &report).status, 405);
        // The rollout's own handler (object, store) never answers it.
        let s = RolloutState::initial("x");
        let o = call(AdminRoute::Isolate, "GET", "", &s);
        assert_eq!((o.status, o.new_state), (404, None));
        assert_eq!(wasm_memory_bytes(), 0, "no linear memory natively");
    }

    #[test]
    fn the_hand_written_isolate_json_is_what_serde_writes() {
        let odd = "a \"quoted\\ name\u{1}\u{1f}\n\r\t\u{8}\u{c}\u{7f} é";
        // In key order, as serde writes a map.
        let names = ["t0", "t1", "u \"odd\\ name\u{1}\n"];
        for n in 0..=names.len() {
            let tables: Vec<(&str, TableSize)> = names[..n]
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let i = i as u64;
                    (
                        *name,
                        TableSize {
                            entries: i,
                            cap: u64::MAX - i,
                        },
                    )
                })
                .collect();
            let report = IsolateReport {
                runtime: "spin",
                tables_in: odd,
                tables: &tables,
                wasm_memory_bytes: 65_536 << n,
            };
            let view = IsolateView {
                runtime: "spin".into(),
                tables_in: odd.into(),
                tables: tables.iter().map(|(k, t)| (k.to_string(), *t)).collect(),
                wasm_memory_bytes: 65_536 << n,
            };
            let json = report.to_json();
            assert_eq!(json, serde_json::to_string(&view).unwrap());
            assert_eq!(serde_json::from_str::<IsolateView>(&json).unwrap(), view);
        }
    }
}
