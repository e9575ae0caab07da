use super::action::Action;
use super::config::EdgeConfig;
use super::reply::Reply;
use super::request::{caller_ip, caller_key, RequestHead};
use super::state::LoadedState;
use crate::admin::{self, AdminContext, AdminOutcome, AdminRoute};
use crate::admin_guard::AdminFailures;
use crate::health::HealthRecord;
use crate::history::History;
use crate::http::ADMIN_NAMESPACE;
use crate::path::{self};
use crate::plan::PlanEvidence;
use crate::telemetry::Tally;

/// An admin call that passed authorisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCall {
    pub route: AdminRoute,
    pub identity: String,
}

/// The caller key an admin request's authentication failures count under
/// (see [`crate::admin_guard`]), when `action` is that request's admin call
/// or its refusal: `None` for every other request, so ordinary traffic
/// never touches the table.
pub fn admin_guard_key(cfg: &EdgeConfig, req: &RequestHead<'_>, action: &Action) -> Option<String> {
    match action {
        Action::Admin(_) => {}
        Action::Reply(r) if r.status == 401 => {}
        _ => return None,
    }
    let path = path::normalize(req.path, cfg.paths).ok()?;
    if !path::in_namespace(&path, ADMIN_NAMESPACE) {
        return None;
    }
    Some(match caller_ip(cfg, req) {
        Some(ip) => caller_key(ip),
        None => "ip:unknown".to_string(),
    })
}

/// Applies the admin failure limit to `action` (the admin request of
/// `caller`, see [`admin_guard_key`]): a caller over the limit gets 429
/// whatever it sent; a refused authentication is counted. Returns the action
/// to follow and whether `failures` changed (to store).
pub fn guard_admin(
    action: Action,
    caller: &str,
    failures: &mut AdminFailures,
    now_ms: u64,
    max_callers: usize,
) -> (Action, bool) {
    if let Err(wait) = failures.check(caller, now_ms) {
        return (Action::Reply(Reply::rate_limited(wait)), false);
    }
    match &action {
        Action::Reply(r) if r.status == 401 => {
            failures.record_failure(caller, now_ms, max_callers);
            (action, true)
        }
        _ => (action, false),
    }
}

/// The stored documents an admin call may need beside the state, as the
/// adapter read them ([`AdminCall::wants_health`], [`AdminCall::wants_history`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct AdminDocs<'a> {
    /// The health document ([`crate::health`]).
    pub health: Option<&'a str>,
    /// The history document ([`crate::history`]).
    pub history: Option<&'a str>,
    /// The plan's evidence document ([`crate::plan::PlanEvidence`]).
    pub evidence: Option<&'a str>,
    /// Real users' summed counts ([`crate::telemetry::Tally`]).
    pub telemetry: Option<&'a str>,
    /// The rollout object's record of its replicas
    /// ([`crate::propagation::ReplicaTable`]).
    pub replicas: Option<&'a str>,
}

/// Runs an authorised admin call. The adapter persists `new_state` (if any)
/// before replying, and records it in the history
/// ([`crate::history::History::record`]).
pub fn run_admin(
    cfg: &EdgeConfig,
    call: &AdminCall,
    method: &str,
    body: &[u8],
    loaded: &LoadedState,
    docs: AdminDocs<'_>,
    now_ms: u64,
) -> AdminOutcome {
    let health = HealthRecord::from_json(docs.health);
    // The history and the telemetry sum run to tens of KiB: each document
    // is read only by the calls that use it (the rollout object passes all
    // of them to every call).
    let history = call
        .wants_history()
        .then(|| docs.history.map(|h| History::from_json(Some(h))))
        .flatten();
    let evidence = call
        .wants_evidence()
        .then(|| PlanEvidence::from_json(docs.evidence))
        .flatten();
    let telemetry = call
        .wants_telemetry()
        .then(|| docs.telemetry.and_then(Tally::from_json))
        .flatten();
    admin::handle_in(
        call.route,
        method,
        body,
        &call.identity,
        &AdminContext {
            current: &loaded.state,
            degraded: loaded.degraded,
            health: health.as_ref(),
            policy: cfg.health,
            history: history.as_ref(),
            evidence: evidence.as_ref(),
            telemetry: telemetry.as_ref(),
            now_ms,
        },
    )
}

impl AdminCall {
    /// Whether the call reports health, so the adapter reads that document.
    pub fn wants_health(&self) -> bool {
        self.route == AdminRoute::State
    }

    /// Whether the call reads the history, so the adapter reads that
    /// document.
    pub fn wants_history(&self) -> bool {
        matches!(self.route, AdminRoute::History | AdminRoute::Undo)
    }

    /// Whether the call shows the plan's evidence, so the adapter reads
    /// that document.
    pub fn wants_evidence(&self) -> bool {
        self.route == AdminRoute::State
    }

    /// Whether the call shows real users' counts, so the adapter reads
    /// that document.
    pub fn wants_telemetry(&self) -> bool {
        matches!(
            self.route,
            AdminRoute::Metrics | AdminRoute::MetricsPrometheus
        )
    }
}
