//! The plan's clock at the edge: when a plan in the state document is due
//! a change, and that change, judged from the stored health record. The
//! adapters commit it like an admin change (one winner per epoch): the
//! rollout object from its alarm and its health merges, a Spin edge from
//! the first request or admin call after a deadline and from a failure
//! that crosses the health threshold.

use super::EdgeConfig;
use crate::health::{assess, HealthRecord};
use crate::plan::{PlanEvidence, PlanStatus};
use crate::state::RolloutState;

/// Whether the plan in `state` may be due a change at `now_ms`: it runs
/// and its step's dwell is over. Cheap (no stored document read): the
/// request path asks it before anything is read for the plan.
pub fn plan_due(state: &RolloutState, now_ms: u64) -> bool {
    next_plan_deadline(state, None).is_some_and(|at| now_ms >= at)
}

/// When the plan in `state` is next judged (ms), `None` while none runs:
/// the end of its step's dwell, or of the lease of the `evidence`
/// document (its JSON) when the plan waits for evidence.
pub fn next_plan_deadline(state: &RolloutState, evidence: Option<&str>) -> Option<u64> {
    let run = state.plan.as_ref()?;
    let lease = run
        .spec
        .lease_ms
        .and_then(|_| PlanEvidence::from_json(evidence))
        .map(|e| e.lease_until_ms);
    run.deadline_ms(lease)
}

/// Whether judging the plan in `state` needs the evidence document.
pub fn plan_wants_evidence(state: &RolloutState) -> bool {
    state
        .plan
        .as_ref()
        .is_some_and(|run| run.spec.lease_ms.is_some() && !run.status.ended())
}

/// Whether a plan is running in `state`, so a health change can fail it.
pub fn plan_running(state: &RolloutState) -> bool {
    state
        .plan
        .as_ref()
        .is_some_and(|run| run.status == PlanStatus::Running)
}

/// The plan's change at `now_ms`, judged against the stored health
/// `record` and `evidence` documents (their JSON): `None` when nothing is
/// due.
pub fn plan_step(
    cfg: &EdgeConfig,
    state: &RolloutState,
    record: Option<&str>,
    evidence: Option<&str>,
    now_ms: u64,
) -> Option<RolloutState> {
    if !plan_running(state) {
        return None;
    }
    let record = HealthRecord::from_json(record);
    let view = assess(record.as_ref(), state, cfg.health, now_ms);
    let evidence = PlanEvidence::from_json(evidence);
    let gates = crate::plan::Gates {
        unhealthy: view.unhealthy.then(|| {
            format!(
                "{} failed {} times within {} s (threshold {}){}",
                view.under_test,
                view.recent_failures,
                cfg.health.window_ms / 1_000,
                cfg.health.threshold,
                view.last_failure
                    .map(|last| format!("; last: {last}"))
                    .unwrap_or_default()
            )
        }),
        ..PlanEvidence::gates_at(evidence.as_ref(), state.epoch)
    };
    state.advance_plan(&gates, now_ms)
}
