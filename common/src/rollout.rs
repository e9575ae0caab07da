//! The rollout state machine. Each operation takes the epoch the caller saw
//! (optimistic concurrency) and returns a new state with the epoch bumped, or
//! an error saying exactly why the change was refused.

use crate::color::Color;
use crate::plan::{self, Gates, PlanRun, PlanSpec, PlanStatus};
use crate::state::{ChangeRecord, Population, RolloutState, MAX_TEXT_LEN, WEIGHT_SCALE};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a rollout is, derived from the state (never stored, so it cannot
/// disagree with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Everyone on the active color, no rollback target.
    Stable,
    /// Some share of users on the candidate.
    Canary,
    /// Just promoted: everyone on the active color, the previous one kept as
    /// the instant rollback target.
    Promoted,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Stable => "stable",
            Phase::Canary => "canary",
            Phase::Promoted => "promoted",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RolloutOp {
    /// Route `weight_bp` basis points of users to the candidate.
    SetWeight { weight_bp: u16 },
    /// The candidate becomes active; the old active becomes the rollback target.
    Promote,
    /// Undo: pull a canary back to 0 %, or return to the color active before
    /// the last promote.
    Rollback,
    /// Cancel a canary in progress (weight back to 0 %).
    Abort,
}

impl RolloutOp {
    pub fn name(&self) -> &'static str {
        match self {
            RolloutOp::SetWeight { .. } => "set_weight",
            RolloutOp::Promote => "promote",
            RolloutOp::Rollback => "rollback",
            RolloutOp::Abort => "abort",
        }
    }
}

/// Who asks for a change, when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeMeta {
    pub actor: String,
    pub at_ms: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutError {
    /// The caller's view is out of date: someone changed the state since.
    StaleEpoch {
        expected: u64,
        current: u64,
    },
    /// The operation makes no sense in the current phase.
    InvalidTransition {
        op: &'static str,
        phase: Phase,
        why: String,
    },
    WeightOutOfRange(u32),
    TextTooLong(&'static str),
    /// A plan an operator sent that cannot run; says what to fix.
    InvalidPlan(String),
}

impl fmt::Display for RolloutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutError::StaleEpoch { expected, current } => write!(
                f,
                "stale epoch: you sent {expected} but the state is at {current}; reload and retry"
            ),
            RolloutError::InvalidTransition { op, phase, why } => {
                write!(f, "{op} is not valid while the rollout is {phase}: {why}")
            }
            RolloutError::WeightOutOfRange(w) => {
                write!(f, "weight {w} bp is out of range 0..={WEIGHT_SCALE}")
            }
            RolloutError::TextTooLong(field) => {
                write!(f, "{field} is longer than {MAX_TEXT_LEN} bytes")
            }
            RolloutError::InvalidPlan(why) => write!(f, "invalid plan: {why}"),
        }
    }
}

impl std::error::Error for RolloutError {}

impl RolloutState {
    pub fn phase(&self) -> Phase {
        if self.candidate_weight_bp > 0 {
            Phase::Canary
        } else if self.rollback_target.is_some() {
            Phase::Promoted
        } else {
            Phase::Stable
        }
    }

    /// Which operations are valid now (for UIs that disable buttons).
    pub fn allowed_ops(&self) -> AllowedOps {
        let phase = self.phase();
        AllowedOps {
            set_weight: true,
            promote: phase != Phase::Promoted,
            rollback: phase != Phase::Stable,
            abort: phase == Phase::Canary,
        }
    }

    /// What every change must satisfy before its own rules: the caller
    /// saw the current epoch, and its texts fit the document.
    pub(crate) fn check_change(
        &self,
        expected_epoch: u64,
        meta: &ChangeMeta,
    ) -> Result<(), RolloutError> {
        if expected_epoch != self.epoch {
            return Err(RolloutError::StaleEpoch {
                expected: expected_epoch,
                current: self.epoch,
            });
        }
        if meta.actor.len() > MAX_TEXT_LEN {
            return Err(RolloutError::TextTooLong("actor"));
        }
        if meta.reason.len() > MAX_TEXT_LEN {
            return Err(RolloutError::TextTooLong("reason"));
        }
        Ok(())
    }

    /// Undo to an earlier state: `to`'s routing (colors, weight, rollback
    /// target, stickiness and its salt, so the same users are in the canary
    /// again, preview rules) as a new change, `undo`, at the next epoch.
    pub fn restore(
        &self,
        to: &RolloutState,
        expected_epoch: u64,
        meta: ChangeMeta,
    ) -> Result<RolloutState, RolloutError> {
        self.check_change(expected_epoch, &meta)?;
        let invalid = |why: String| RolloutError::InvalidTransition {
            op: "undo",
            phase: self.phase(),
            why,
        };
        if to.epoch >= self.epoch {
            return Err(invalid(format!(
                "epoch {} is not earlier than the current epoch {}",
                to.epoch, self.epoch
            )));
        }
        let Some(next_epoch) = self.epoch.checked_add(1) else {
            return Err(invalid(
                "the epoch is at its maximum; write a state document with a lower epoch".into(),
            ));
        };
        let next = RolloutState {
            epoch: next_epoch,
            last_change: ChangeRecord {
                op: "undo".into(),
                actor: meta.actor,
                credential: String::new(),
                at_ms: meta.at_ms,
                reason: meta.reason,
            },
            // An undo restores routing, never an old plan: one in
            // progress ends here, as any operator's change ends it.
            plan: self.plan.as_ref().map(PlanRun::taken_over),
            ..to.clone()
        };
        let routing_of = |s: &RolloutState| {
            (
                s.active,
                s.candidate,
                s.candidate_weight_bp,
                s.rollback_target,
                s.stickiness.clone(),
                s.preview.clone(),
            )
        };
        if routing_of(&next) == routing_of(self) {
            return Err(invalid(format!(
                "the state already routes as it did at epoch {}",
                to.epoch
            )));
        }
        Ok(next)
    }

    /// Applies `op` if `expected_epoch` matches and the transition is valid.
    pub fn apply(
        &self,
        op: RolloutOp,
        expected_epoch: u64,
        meta: ChangeMeta,
    ) -> Result<RolloutState, RolloutError> {
        self.check_change(expected_epoch, &meta)?;
        let phase = self.phase();
        let invalid = |why: &str| RolloutError::InvalidTransition {
            op: op.name(),
            phase,
            why: why.to_string(),
        };
        // A stored document may carry any u64 epoch (e.g. hand-written); at
        // u64::MAX there is no next epoch. `+ 1` panicked in debug builds and
        // wrapped to 0 in release (the edge's profile), breaking monotonicity.
        // Found by the admin_request fuzz target (common/fuzz).
        let Some(next_epoch) = self.epoch.checked_add(1) else {
            return Err(invalid(
                "the epoch is at its maximum; write a state document with a lower epoch",
            ));
        };
        let mut next = self.clone();
        match op {
            RolloutOp::SetWeight { weight_bp } => {
                if weight_bp > WEIGHT_SCALE {
                    return Err(RolloutError::WeightOutOfRange(u32::from(weight_bp)));
                }
                if weight_bp == self.candidate_weight_bp {
                    return Err(invalid(&format!(
                        "the candidate already has {weight_bp} bp"
                    )));
                }
                next.candidate_weight_bp = weight_bp;
                if weight_bp > 0 {
                    // A new canary of the standby color: the standby is no
                    // longer the known-good release it was at promote time.
                    next.rollback_target = None;
                }
                if self.candidate_weight_bp == 0
                    && weight_bp > 0
                    && self.stickiness.population == Population::Fresh
                {
                    // A canary starting from 0 %: a new population, so the
                    // same few users do not carry the risk of every release.
                    // Steps, promote and rollback keep it (only this starts one).
                    next.stickiness.salt = next_salt(&self.stickiness.salt, next_epoch);
                }
            }
            RolloutOp::Promote => {
                if phase == Phase::Promoted {
                    return Err(invalid(
                        "the candidate is the color just replaced; use rollback to return to it",
                    ));
                }
                next.active = self.candidate;
                next.candidate = self.active;
                next.candidate_weight_bp = 0;
                next.rollback_target = Some(self.active);
            }
            RolloutOp::Rollback => match phase {
                Phase::Stable => return Err(invalid("there is nothing to roll back")),
                Phase::Canary => next.candidate_weight_bp = 0,
                Phase::Promoted => {
                    let target: Color = self.rollback_target.unwrap_or(self.candidate);
                    next.active = target;
                    next.candidate = target.other();
                    next.candidate_weight_bp = 0;
                    next.rollback_target = None;
                }
            },
            RolloutOp::Abort => {
                if phase != Phase::Canary {
                    return Err(invalid("no canary is in progress"));
                }
                next.candidate_weight_bp = 0;
            }
        }
        // An operator's change takes over from a plan in progress; the
        // plan's own steps set the plan again after this.
        next.plan = self.plan.as_ref().map(PlanRun::taken_over);
        next.epoch = next_epoch;
        next.last_change = ChangeRecord {
            op: op.name().to_string(),
            actor: meta.actor,
            credential: String::new(),
            at_ms: meta.at_ms,
            reason: meta.reason,
        };
        Ok(next)
    }
}

/// What an operator does to a plan in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanControl {
    /// Stop the clock: no step is judged until resumed.
    Pause,
    /// Go on after a pause or a hold; the step in force dwells again.
    Resume,
    /// End the plan; a canary goes back to 0 %.
    Abort,
}

impl PlanControl {
    pub fn name(self) -> &'static str {
        match self {
            PlanControl::Pause => "plan_pause",
            PlanControl::Resume => "plan_resume",
            PlanControl::Abort => "plan_abort",
        }
    }
}

/// Who makes a plan's own changes, in their change records.
pub const PLAN_ACTOR: &str = "greenlight-plan";

impl RolloutState {
    /// Whether a plan is under way (running, paused or held).
    pub fn plan_in_progress(&self) -> Option<&PlanRun> {
        self.plan.as_ref().filter(|p| !p.status.ended())
    }

    /// The next epoch's document with the same routing: a change that
    /// only concerns the plan.
    fn bump(&self, op: &str, meta: ChangeMeta) -> Result<RolloutState, RolloutError> {
        let Some(epoch) = self.epoch.checked_add(1) else {
            return Err(RolloutError::InvalidTransition {
                op: "plan",
                phase: self.phase(),
                why: "the epoch is at its maximum; write a state document with a lower epoch"
                    .into(),
            });
        };
        Ok(RolloutState {
            epoch,
            last_change: ChangeRecord {
                op: op.to_string(),
                actor: meta.actor,
                credential: String::new(),
                at_ms: meta.at_ms,
                reason: meta.reason,
            },
            ..self.clone()
        })
    }

    /// Starts `spec` at its first step, as one change: the candidate's
    /// weight becomes the first step's. Refused while another plan is in
    /// progress.
    pub fn start_plan(
        &self,
        spec: PlanSpec,
        expected_epoch: u64,
        meta: ChangeMeta,
    ) -> Result<RolloutState, RolloutError> {
        self.check_change(expected_epoch, &meta)?;
        spec.validate().map_err(RolloutError::InvalidPlan)?;
        if let Some(run) = self.plan_in_progress() {
            return Err(RolloutError::InvalidTransition {
                op: "plan_start",
                phase: self.phase(),
                why: format!(
                    "a plan is {} at step {} of {}; abort it first",
                    run.status.name(),
                    run.step + 1,
                    run.spec.steps_bp.len()
                ),
            });
        }
        let now_ms = meta.at_ms;
        let first = spec.steps_bp[0];
        let mut next = if first == self.candidate_weight_bp {
            self.bump("plan_start", meta)?
        } else {
            self.apply(
                RolloutOp::SetWeight { weight_bp: first },
                expected_epoch,
                meta,
            )?
        };
        next.last_change.op = "plan_start".into();
        next.plan = Some(PlanRun::start(spec, now_ms));
        Ok(next)
    }

    /// Pauses, resumes or aborts the plan in progress, as one change.
    pub fn control_plan(
        &self,
        control: PlanControl,
        expected_epoch: u64,
        meta: ChangeMeta,
    ) -> Result<RolloutState, RolloutError> {
        self.check_change(expected_epoch, &meta)?;
        let invalid = |why: String| RolloutError::InvalidTransition {
            op: control.name(),
            phase: self.phase(),
            why,
        };
        let Some(run) = self.plan_in_progress() else {
            return Err(invalid(match &self.plan {
                Some(ended) => format!("the plan has ended ({})", ended.status.name()),
                None => "no plan was started".into(),
            }));
        };
        let now_ms = meta.at_ms;
        let status = match (control, &run.status) {
            (PlanControl::Pause, PlanStatus::Running) => PlanStatus::Paused,
            (PlanControl::Resume, PlanStatus::Paused | PlanStatus::Held { .. }) => {
                PlanStatus::Running
            }
            (PlanControl::Abort, _) => PlanStatus::Aborted,
            (_, status) => return Err(invalid(format!("the plan is {}", status.name()))),
        };
        let mut next = if control == PlanControl::Abort && self.phase() == Phase::Canary {
            self.apply(RolloutOp::Abort, expected_epoch, meta)?
        } else {
            self.bump(control.name(), meta)?
        };
        next.last_change.op = control.name().into();
        next.plan = Some(PlanRun {
            status,
            // A resumed step dwells in full again: what it showed before
            // the pause or hold is not evidence for now.
            step_since_ms: if control == PlanControl::Resume {
                now_ms
            } else {
                run.step_since_ms
            },
            ..run.clone()
        });
        Ok(next)
    }

    /// The plan's own next change at `now_ms`, from what the gates show:
    /// a step, the promote, a rollback or a hold ([`plan::tick`]). `None`
    /// when nothing is due. A change the rollout refuses holds the plan
    /// with the reason.
    pub fn advance_plan(&self, gates: &Gates, now_ms: u64) -> Option<RolloutState> {
        let run = self.plan.as_ref()?;
        let tick = plan::tick(run, gates, now_ms)?;
        let meta = ChangeMeta {
            actor: PLAN_ACTOR.into(),
            at_ms: now_ms,
            reason: fit(&tick.why),
        };
        let (applied, op) = match tick.op {
            Some(op) => (
                self.apply(op, self.epoch, meta.clone()),
                format!("plan_{}", op.name()),
            ),
            None => (self.bump("plan_hold", meta.clone()), "plan_hold".into()),
        };
        let (mut next, run) = match applied {
            Ok(next) => (next, tick.run),
            Err(e) => {
                let reason = format!("the plan's change was refused: {e}");
                let held = PlanRun {
                    status: PlanStatus::Held {
                        reason: reason.clone(),
                    },
                    ..run.clone()
                };
                let meta = ChangeMeta {
                    reason: fit(&reason),
                    ..meta
                };
                (self.bump("plan_hold", meta).ok()?, held)
            }
        };
        if next.last_change.op != "plan_hold" {
            next.last_change.op = op;
        }
        next.plan = Some(run);
        Some(next)
    }
}

/// `text` cut to fit a change record's field, at a character boundary.
fn fit(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The salt of the canary that starts at `epoch`: derived from the previous
/// salt and the epoch, so it is new for every canary, the same on every
/// edge that applies the change (the core has no randomness), and as hard
/// to predict as the configured `ROLLOUT_SALT` it descends from.
pub fn next_salt(previous: &str, epoch: u64) -> String {
    let seed = xxhash_rust::xxh3::xxh3_64(previous.as_bytes());
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64_with_seed(&epoch.to_le_bytes(), seed)
    )
}

/// Which operations the current phase allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedOps {
    pub set_weight: bool,
    pub promote: bool,
    pub rollback: bool,
    pub abort: bool,
}

impl AllowedOps {
    pub fn allows(&self, op: &RolloutOp) -> bool {
        match op {
            RolloutOp::SetWeight { .. } => self.set_weight,
            RolloutOp::Promote => self.promote,
            RolloutOp::Rollback => self.rollback,
            RolloutOp::Abort => self.abort,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ChangeMeta {
        ChangeMeta {
            actor: "alice".into(),
            at_ms: 1_700_000_000_000,
            reason: "test".into(),
        }
    }

    fn apply(s: &RolloutState, op: RolloutOp) -> Result<RolloutState, RolloutError> {
        s.apply(op, s.epoch, meta())
    }

    fn plan(steps: &[u16]) -> PlanSpec {
        PlanSpec {
            steps_bp: steps.to_vec(),
            dwell_ms: 1_000,
            on_failure: plan::OnFailure::Rollback,
            lease_ms: None,
            on_missing_evidence: plan::OnFailure::Hold,
        }
    }

    #[test]
    fn a_plan_starts_steps_and_promotes_as_changes() {
        let t0 = meta().at_ms;
        let s0 = RolloutState::initial("s");
        let s1 = s0.start_plan(plan(&[1_000, 5_000]), 0, meta()).unwrap();
        assert_eq!((s1.epoch, s1.candidate_weight_bp), (1, 1_000));
        assert_eq!(s1.last_change.op, "plan_start");
        assert_ne!(
            s1.stickiness.salt, s0.stickiness.salt,
            "a new canary's population"
        );
        let healthy = Gates::default();
        assert_eq!(s1.advance_plan(&healthy, t0 + 999), None, "still dwelling");
        let s2 = s1.advance_plan(&healthy, t0 + 1_000).unwrap();
        assert_eq!((s2.epoch, s2.candidate_weight_bp), (2, 5_000));
        assert_eq!(s2.last_change.op, "plan_set_weight");
        assert_eq!(s2.last_change.actor, PLAN_ACTOR);
        assert_eq!(
            s2.stickiness.salt, s1.stickiness.salt,
            "steps keep the population"
        );
        let s3 = s2.advance_plan(&healthy, t0 + 2_000).unwrap();
        assert_eq!(s3.phase(), Phase::Promoted);
        assert_eq!(s3.last_change.op, "plan_promote");
        assert_eq!(s3.plan.as_ref().unwrap().status, PlanStatus::Promoted);
        assert_eq!(
            s3.advance_plan(&healthy, u64::MAX),
            None,
            "an ended plan rests"
        );
        // The document carries the plan and reads back whole.
        assert_eq!(RolloutState::from_json(&s3.to_json()).unwrap(), s3);
        // A new plan may start once the last one ended.
        assert!(s3.start_plan(plan(&[500]), 3, meta()).is_ok());
    }

    #[test]
    fn an_unhealthy_candidate_rolls_the_plan_back_at_once() {
        let s1 = RolloutState::initial("s")
            .start_plan(plan(&[1_000, 5_000]), 0, meta())
            .unwrap();
        let sick = Gates {
            unhealthy: Some("green failed".into()),
            ..Gates::default()
        };
        let s2 = s1.advance_plan(&sick, meta().at_ms + 1).unwrap();
        assert_eq!((s2.candidate_weight_bp, s2.phase()), (0, Phase::Stable));
        assert_eq!(s2.last_change.op, "plan_rollback");
        assert!(s2.last_change.reason.contains("green failed"));
        assert!(matches!(
            s2.plan.as_ref().unwrap().status,
            PlanStatus::RolledBack { .. }
        ));
        // Held instead: the weight stays, the plan waits for an operator.
        let mut spec = plan(&[1_000, 5_000]);
        spec.on_failure = plan::OnFailure::Hold;
        let h1 = RolloutState::initial("s")
            .start_plan(spec, 0, meta())
            .unwrap();
        let h2 = h1.advance_plan(&sick, meta().at_ms + 1).unwrap();
        assert_eq!(
            (h2.candidate_weight_bp, h2.last_change.op.as_str()),
            (1_000, "plan_hold")
        );
        let h3 = h2
            .control_plan(PlanControl::Resume, h2.epoch, meta())
            .unwrap();
        assert_eq!(h3.plan.as_ref().unwrap().status, PlanStatus::Running);
    }

    #[test]
    fn operators_pause_resume_abort_and_take_over() {
        let t0 = meta().at_ms;
        let s1 = RolloutState::initial("s")
            .start_plan(plan(&[1_000, 5_000]), 0, meta())
            .unwrap();
        // Only one plan at a time, and every call checks the epoch.
        assert!(matches!(
            s1.start_plan(plan(&[500]), 1, meta()),
            Err(RolloutError::InvalidTransition { .. })
        ));
        assert!(matches!(
            s1.control_plan(PlanControl::Pause, 0, meta()),
            Err(RolloutError::StaleEpoch { .. })
        ));
        let paused = s1.control_plan(PlanControl::Pause, 1, meta()).unwrap();
        assert_eq!(paused.last_change.op, "plan_pause");
        assert_eq!(paused.candidate_weight_bp, 1_000);
        assert_eq!(paused.advance_plan(&Gates::default(), u64::MAX), None);
        assert!(paused.control_plan(PlanControl::Pause, 2, meta()).is_err());
        let later = ChangeMeta {
            at_ms: t0 + 5_000,
            ..meta()
        };
        let resumed = paused.control_plan(PlanControl::Resume, 2, later).unwrap();
        assert_eq!(
            resumed.advance_plan(&Gates::default(), t0 + 5_999),
            None,
            "a resumed step dwells in full again"
        );
        let aborted = resumed.control_plan(PlanControl::Abort, 3, meta()).unwrap();
        assert_eq!(
            (aborted.candidate_weight_bp, aborted.phase()),
            (0, Phase::Stable)
        );
        assert_eq!(aborted.plan.as_ref().unwrap().status, PlanStatus::Aborted);
        assert!(aborted.control_plan(PlanControl::Abort, 4, meta()).is_err());
        // An operator's own change ends the plan it overrides.
        let manual = apply(&s1, RolloutOp::Promote).unwrap();
        assert_eq!(manual.plan.as_ref().unwrap().status, PlanStatus::Aborted);
        assert_eq!(manual.advance_plan(&Gates::default(), u64::MAX), None);
        // A bad plan is refused with the reason.
        assert!(matches!(
            RolloutState::initial("s").start_plan(plan(&[5_000, 1_000]), 0, meta()),
            Err(RolloutError::InvalidPlan(why)) if why.contains("increase")
        ));
    }

    #[test]
    fn undo_never_brings_back_an_old_plan() {
        let s1 = RolloutState::initial("s")
            .start_plan(plan(&[1_000, 5_000]), 0, meta())
            .unwrap();
        let s2 = s1.control_plan(PlanControl::Abort, 1, meta()).unwrap();
        let s3 = s2.restore(&s1, 2, meta()).unwrap();
        assert_eq!(s3.candidate_weight_bp, 1_000);
        assert_eq!(s3.plan.as_ref().unwrap().status, PlanStatus::Aborted);
        assert_eq!(s3.advance_plan(&Gates::default(), u64::MAX), None);
    }

    #[test]
    fn canary_then_promote_then_rollback() {
        let s0 = RolloutState::initial("s");
        assert_eq!(s0.phase(), Phase::Stable);
        let s1 = apply(&s0, RolloutOp::SetWeight { weight_bp: 500 }).unwrap();
        assert_eq!(
            (s1.phase(), s1.epoch, s1.candidate_weight_bp),
            (Phase::Canary, 1, 500)
        );
        assert_eq!(s1.last_change.op, "set_weight");
        assert_eq!(s1.last_change.actor, "alice");
        let s2 = apply(&s1, RolloutOp::Promote).unwrap();
        assert_eq!(s2.phase(), Phase::Promoted);
        assert_eq!((s2.active, s2.candidate), (Color::Green, Color::Blue));
        assert_eq!(s2.rollback_target, Some(Color::Blue));
        assert_eq!(s2.candidate_weight_bp, 0);
        let s3 = apply(&s2, RolloutOp::Rollback).unwrap();
        assert_eq!(
            (s3.active, s3.candidate, s3.phase()),
            (Color::Blue, Color::Green, Phase::Stable)
        );
        assert_eq!(s3.epoch, 3);
        s3.validate().unwrap();
    }

    #[test]
    fn rollback_during_canary_pulls_weight_to_zero() {
        let s1 = apply(
            &RolloutState::initial("s"),
            RolloutOp::SetWeight { weight_bp: 2500 },
        )
        .unwrap();
        let s2 = apply(&s1, RolloutOp::Rollback).unwrap();
        assert_eq!(
            (s2.active, s2.candidate_weight_bp, s2.phase()),
            (Color::Blue, 0, Phase::Stable)
        );
        let s3 = apply(&s1, RolloutOp::Abort).unwrap();
        assert_eq!(
            (s3.candidate_weight_bp, s3.last_change.op.as_str()),
            (0, "abort")
        );
    }

    #[test]
    fn instant_promote_from_stable_is_blue_green_switch() {
        let s = apply(&RolloutState::initial("s"), RolloutOp::Promote).unwrap();
        assert_eq!(s.active, Color::Green);
        assert_eq!(s.rollback_target, Some(Color::Blue));
    }

    #[test]
    fn invalid_transitions_are_errors_and_leave_epoch() {
        let s0 = RolloutState::initial("s");
        for op in [
            RolloutOp::Rollback,
            RolloutOp::Abort,
            RolloutOp::SetWeight { weight_bp: 0 },
        ] {
            assert!(
                matches!(apply(&s0, op), Err(RolloutError::InvalidTransition { .. })),
                "{op:?}"
            );
        }
        let promoted = apply(&s0, RolloutOp::Promote).unwrap();
        assert!(matches!(
            apply(&promoted, RolloutOp::Promote),
            Err(RolloutError::InvalidTransition {
                phase: Phase::Promoted,
                ..
            })
        ));
        assert!(matches!(
            apply(&promoted, RolloutOp::Abort),
            Err(RolloutError::InvalidTransition { .. })
        ));
        assert_eq!(
            apply(&s0, RolloutOp::SetWeight { weight_bp: 10_001 }),
            Err(RolloutError::WeightOutOfRange(10_001))
        );
    }

    #[test]
    fn stale_epoch_is_refused() {
        let s1 = apply(
            &RolloutState::initial("s"),
            RolloutOp::SetWeight { weight_bp: 100 },
        )
        .unwrap();
        assert_eq!(
            s1.apply(RolloutOp::Promote, 0, meta()),
            Err(RolloutError::StaleEpoch {
                expected: 0,
                current: 1
            })
        );
    }

    #[test]
    fn new_canary_after_promote_clears_rollback_target() {
        let p = apply(&RolloutState::initial("s"), RolloutOp::Promote).unwrap();
        let c = apply(&p, RolloutOp::SetWeight { weight_bp: 100 }).unwrap();
        assert_eq!(
            (c.active, c.candidate, c.rollback_target),
            (Color::Green, Color::Blue, None)
        );
        assert_eq!(c.phase(), Phase::Canary);
    }

    #[test]
    fn each_canary_from_zero_draws_a_new_population_kept_to_its_end() {
        let s0 = RolloutState::initial("s");
        let first = apply(&s0, RolloutOp::SetWeight { weight_bp: 100 }).unwrap();
        assert_ne!(first.stickiness.salt, s0.stickiness.salt, "a new canary");
        // Steps, promote and a rollback of the promote keep it.
        let step = apply(&first, RolloutOp::SetWeight { weight_bp: 2_500 }).unwrap();
        let promoted = apply(&step, RolloutOp::Promote).unwrap();
        let back = apply(&promoted, RolloutOp::Rollback).unwrap();
        for s in [&step, &promoted, &back] {
            assert_eq!(
                s.stickiness.salt, first.stickiness.salt,
                "{}",
                s.last_change.op
            );
        }
        // The next canary, whether after a promote, a rollback or an abort,
        // gets another one; no two canaries share a salt.
        let mut salts = vec![s0.stickiness.salt.clone(), first.stickiness.salt.clone()];
        let mut s = back;
        for round in 0..20 {
            s = apply(&s, RolloutOp::SetWeight { weight_bp: 500 }).unwrap();
            assert!(!salts.contains(&s.stickiness.salt), "round {round}");
            salts.push(s.stickiness.salt.clone());
            s.validate().unwrap();
            let end = [RolloutOp::Promote, RolloutOp::Rollback, RolloutOp::Abort][round % 3];
            s = apply(&s, end).unwrap();
            assert_eq!(&s.stickiness.salt, salts.last().unwrap());
        }
    }

    #[test]
    fn a_fixed_population_keeps_its_salt_across_canaries() {
        let mut s = RolloutState::initial("employees-first");
        s.stickiness.population = Population::Fixed;
        for _ in 0..3 {
            s = apply(&s, RolloutOp::SetWeight { weight_bp: 100 }).unwrap();
            assert_eq!(s.stickiness.salt, "employees-first");
            s = apply(&s, RolloutOp::Abort).unwrap();
        }
        // The setting survives the document's round trip; `fresh` is omitted.
        let text = s.to_json();
        assert!(text.contains("\"population\":\"fixed\""), "{text}");
        assert_eq!(RolloutState::from_json(&text).unwrap(), s);
        let fresh = RolloutState::initial("x").to_json();
        assert!(!fresh.contains("population"), "{fresh}");
    }

    #[test]
    fn allowed_ops_agree_with_apply() {
        let states = {
            let s0 = RolloutState::initial("s");
            let s1 = apply(&s0, RolloutOp::SetWeight { weight_bp: 300 }).unwrap();
            let s2 = apply(&s1, RolloutOp::Promote).unwrap();
            vec![s0, s1, s2]
        };
        let ops = [
            RolloutOp::SetWeight { weight_bp: 700 },
            RolloutOp::Promote,
            RolloutOp::Rollback,
            RolloutOp::Abort,
        ];
        for s in &states {
            let allowed = s.allowed_ops();
            for op in ops {
                assert_eq!(
                    allowed.allows(&op),
                    apply(s, op).is_ok(),
                    "{:?} {op:?}",
                    s.phase()
                );
            }
        }
    }

    #[test]
    fn long_text_is_refused() {
        let s = RolloutState::initial("s");
        let mut m = meta();
        m.reason = "x".repeat(MAX_TEXT_LEN + 1);
        assert_eq!(
            s.apply(RolloutOp::Promote, 0, m),
            Err(RolloutError::TextTooLong("reason"))
        );
    }
}
