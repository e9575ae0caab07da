//! The rollout state machine. Each operation takes the epoch the caller saw
//! (optimistic concurrency) and returns a new state with the epoch bumped, or
//! an error saying exactly why the change was refused.

use crate::color::Color;
use crate::state::{ChangeRecord, RolloutState, MAX_TEXT_LEN, WEIGHT_SCALE};
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

    /// Applies `op` if `expected_epoch` matches and the transition is valid.
    pub fn apply(
        &self,
        op: RolloutOp,
        expected_epoch: u64,
        meta: ChangeMeta,
    ) -> Result<RolloutState, RolloutError> {
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
        next.epoch = next_epoch;
        next.last_change = ChangeRecord {
            op: op.name().to_string(),
            actor: meta.actor,
            at_ms: meta.at_ms,
            reason: meta.reason,
        };
        Ok(next)
    }
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
