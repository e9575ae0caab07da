//! A rollout plan the edge itself carries out: steps of candidate weight,
//! a dwell per step, the gates that must hold to go on, and what to do
//! when one fails or the evidence stops arriving.
//!
//! This module is the plan's state machine and nothing else: [`tick`]
//! says, from the plan's progress, what the gates show and the time, which
//! rollout change is due (a step, the promote, a rollback) and the
//! progress after it. Where the progress is stored, who calls `tick` (a
//! Durable Object's alarm; on Spin, the first request after a deadline)
//! and how the change is committed exactly once are the adapters' and the
//! rollout document's business.

use crate::rollout::RolloutOp;
use crate::state::WEIGHT_SCALE;
use serde::{Deserialize, Serialize};

/// Fewest milliseconds a step dwells.
pub const MIN_DWELL_MS: u64 = 1_000;
/// Most steps a plan has.
pub const MAX_STEPS: usize = 20;

/// What to do when a gate fails, or when the evidence a plan waits for
/// stops arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Candidate back to 0 % (the rollout's `rollback`); the plan ends.
    Rollback,
    /// Stay at the current weight until an operator resumes or aborts.
    Hold,
}

/// The plan as an operator writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// Candidate weights in basis points, strictly increasing; reaching the
    /// end of the list promotes the candidate.
    pub steps_bp: Vec<u16>,
    /// How long each step runs before its gates are judged.
    pub dwell_ms: u64,
    /// What a failed gate does.
    pub on_failure: OnFailure,
    /// When set, each step needs evidence (a passing verdict for that
    /// step) from a harness that holds a lease; a lease that runs out
    /// without evidence applies `on_missing_evidence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    #[serde(default = "default_on_missing")]
    pub on_missing_evidence: OnFailure,
}

fn default_on_missing() -> OnFailure {
    OnFailure::Hold
}

impl PlanSpec {
    /// Checks what an operator sent; the error says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps_bp.is_empty() || self.steps_bp.len() > MAX_STEPS {
            return Err(format!("a plan has 1 to {MAX_STEPS} steps"));
        }
        if self.steps_bp.windows(2).any(|w| w[0] >= w[1]) {
            return Err("steps must increase strictly".into());
        }
        if self.steps_bp[0] == 0 || self.steps_bp.iter().any(|&w| w > WEIGHT_SCALE) {
            return Err(format!("every step is within 1..={WEIGHT_SCALE} bp"));
        }
        if self.dwell_ms < MIN_DWELL_MS {
            return Err(format!("dwell is at least {MIN_DWELL_MS} ms"));
        }
        if self.lease_ms == Some(0) {
            return Err("a lease lasts at least 1 ms".into());
        }
        Ok(())
    }
}

/// Where a plan is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PlanStatus {
    Running,
    /// Paused by an operator: no deadline runs.
    Paused,
    /// Stopped by a failed gate or missing evidence under `hold`.
    Held {
        reason: String,
    },
    Promoted,
    RolledBack {
        reason: String,
    },
    Aborted,
}

impl PlanStatus {
    /// Its name, as in the JSON.
    pub fn name(&self) -> &'static str {
        match self {
            PlanStatus::Running => "running",
            PlanStatus::Paused => "paused",
            PlanStatus::Held { .. } => "held",
            PlanStatus::Promoted => "promoted",
            PlanStatus::RolledBack { .. } => "rolled_back",
            PlanStatus::Aborted => "aborted",
        }
    }

    /// Whether the plan has ended (nothing will move it again).
    pub fn ended(&self) -> bool {
        matches!(
            self,
            PlanStatus::Promoted | PlanStatus::RolledBack { .. } | PlanStatus::Aborted
        )
    }
}

/// A plan under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRun {
    pub spec: PlanSpec,
    /// Index of the step in force.
    pub step: usize,
    /// When that step began (ms).
    pub step_since_ms: u64,
    #[serde(flatten)]
    pub status: PlanStatus,
}

/// A verdict a harness posted for one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// Where the evidence document is stored beside the state (Spin's store;
/// the rollout object's storage).
pub const EVIDENCE_KEY: &str = "rollout-evidence";

/// What a harness posted for the step in force (`POST plan/evidence`):
/// its verdict, and the lease it holds while it drives the plan. Kept
/// apart from the state document: renewing a lease changes no routing and
/// bumps no epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanEvidence {
    /// The epoch the verdict is for: a plan's step is one epoch, so a
    /// verdict never counts for a later step.
    pub epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The credential that holds the lease.
    pub holder: String,
    /// Until when it holds it (ms); each post renews it by the plan's
    /// `lease_ms`.
    pub lease_until_ms: u64,
    /// When it was posted (ms).
    pub at_ms: u64,
}

impl PlanEvidence {
    /// The stored document; `None` when missing or unreadable (no lease).
    pub fn from_json(doc: Option<&str>) -> Option<PlanEvidence> {
        doc.and_then(|d| serde_json::from_str(d).ok())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// What the gates see at `epoch`: the verdict when it is for that
    /// step, and the lease whatever the step.
    pub fn gates_at(evidence: Option<&PlanEvidence>, epoch: u64) -> Gates {
        Gates {
            unhealthy: None,
            verdict: evidence
                .filter(|e| e.epoch == epoch)
                .and_then(|e| e.verdict),
            lease_until_ms: evidence.map(|e| e.lease_until_ms),
        }
    }
}

/// What the gates show when the plan is judged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gates {
    /// Why the candidate is unhealthy at the edge (origin failures over
    /// the health threshold), if it is.
    pub unhealthy: Option<String>,
    /// The latest verdict posted for the step in force.
    pub verdict: Option<Verdict>,
    /// Until when the harness that posts evidence holds its lease (ms).
    pub lease_until_ms: Option<u64>,
}

/// What [`tick`] decided: the rollout change to commit (if any), the
/// progress after it, and why, for the change's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub op: Option<RolloutOp>,
    pub run: PlanRun,
    pub why: String,
}

impl PlanRun {
    /// A plan that starts now at its first step.
    pub fn start(spec: PlanSpec, now_ms: u64) -> PlanRun {
        PlanRun {
            spec,
            step: 0,
            step_since_ms: now_ms,
            status: PlanStatus::Running,
        }
    }

    /// The plan after an operator's change took over from it: one in
    /// progress is aborted, an ended one stays as it ended.
    pub fn taken_over(&self) -> PlanRun {
        PlanRun {
            status: if self.status.ended() {
                self.status.clone()
            } else {
                PlanStatus::Aborted
            },
            ..self.clone()
        }
    }

    /// The weight of the step in force.
    pub fn weight_bp(&self) -> u16 {
        self.spec.steps_bp.get(self.step).copied().unwrap_or(0)
    }

    /// When the plan next needs judging: the end of the step's dwell, or,
    /// once that has passed while evidence is awaited, the end of the
    /// lease. `None` while it does not run.
    pub fn deadline_ms(&self, lease_until_ms: Option<u64>) -> Option<u64> {
        if self.status != PlanStatus::Running {
            return None;
        }
        let dwell_end = self.step_since_ms.saturating_add(self.spec.dwell_ms);
        match (self.spec.lease_ms, lease_until_ms) {
            (Some(_), Some(until)) => Some(dwell_end.max(until)),
            _ => Some(dwell_end),
        }
    }
}

/// Judges a running plan at `now_ms`: `None` when nothing is due. A
/// candidate found unhealthy fails the step at once; otherwise the step is
/// judged when its dwell is over: with evidence required, a passing
/// verdict moves on, a failing one fails, and without one the plan waits
/// while the lease holds and applies `on_missing_evidence` once it ran out.
pub fn tick(run: &PlanRun, gates: &Gates, now_ms: u64) -> Option<Tick> {
    if run.status != PlanStatus::Running {
        return None;
    }
    if let Some(why) = &gates.unhealthy {
        return Some(fail(
            run,
            run.spec.on_failure,
            format!("health gate: {why}"),
        ));
    }
    if run.spec.lease_ms.is_some() && gates.verdict == Some(Verdict::Fail) {
        return Some(fail(
            run,
            run.spec.on_failure,
            format!("step {} verdict: fail", run.step + 1),
        ));
    }
    if now_ms < run.step_since_ms.saturating_add(run.spec.dwell_ms) {
        return None;
    }
    if run.spec.lease_ms.is_some() && gates.verdict != Some(Verdict::Pass) {
        if gates.lease_until_ms.is_some_and(|until| now_ms < until) {
            return None;
        }
        return Some(fail(
            run,
            run.spec.on_missing_evidence,
            format!("no passing verdict for step {} and no lease", run.step + 1),
        ));
    }
    let next = run.step + 1;
    if let Some(&weight_bp) = run.spec.steps_bp.get(next) {
        return Some(Tick {
            op: Some(RolloutOp::SetWeight { weight_bp }),
            run: PlanRun {
                step: next,
                step_since_ms: now_ms,
                ..run.clone()
            },
            why: format!("plan step {} of {}", next + 1, run.spec.steps_bp.len()),
        });
    }
    Some(Tick {
        op: Some(RolloutOp::Promote),
        run: PlanRun {
            status: PlanStatus::Promoted,
            ..run.clone()
        },
        why: format!("plan done after {} steps", run.spec.steps_bp.len()),
    })
}

fn fail(run: &PlanRun, rule: OnFailure, reason: String) -> Tick {
    match rule {
        OnFailure::Rollback => Tick {
            op: Some(RolloutOp::Rollback),
            run: PlanRun {
                status: PlanStatus::RolledBack {
                    reason: reason.clone(),
                },
                ..run.clone()
            },
            why: format!("plan rolled back: {reason}"),
        },
        OnFailure::Hold => Tick {
            op: None,
            run: PlanRun {
                status: PlanStatus::Held {
                    reason: reason.clone(),
                },
                ..run.clone()
            },
            why: format!("plan held: {reason}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(lease_ms: Option<u64>) -> PlanSpec {
        PlanSpec {
            steps_bp: vec![500, 2_500, 5_000],
            dwell_ms: 10_000,
            on_failure: OnFailure::Rollback,
            lease_ms,
            on_missing_evidence: OnFailure::Hold,
        }
    }

    fn healthy() -> Gates {
        Gates::default()
    }

    #[test]
    fn an_equal_green_steps_through_and_is_promoted() {
        let mut run = PlanRun::start(spec(None), 0);
        assert_eq!(run.weight_bp(), 500);
        assert_eq!(tick(&run, &healthy(), 9_999), None, "still dwelling");
        assert_eq!(run.deadline_ms(None), Some(10_000));
        let mut ops = Vec::new();
        let mut now = 10_000;
        while let Some(t) = tick(&run, &healthy(), now) {
            ops.push(t.op);
            run = t.run;
            now += 10_000;
        }
        assert_eq!(
            ops,
            [
                Some(RolloutOp::SetWeight { weight_bp: 2_500 }),
                Some(RolloutOp::SetWeight { weight_bp: 5_000 }),
                Some(RolloutOp::Promote),
            ]
        );
        assert_eq!(run.status, PlanStatus::Promoted);
        assert!(run.status.ended());
        assert_eq!(run.deadline_ms(None), None);
    }

    #[test]
    fn an_unhealthy_candidate_is_rolled_back_at_once_or_held() {
        let run = PlanRun::start(spec(None), 0);
        let sick = Gates {
            unhealthy: Some("green: 5 failures in 60 s".into()),
            ..Gates::default()
        };
        let t = tick(&run, &sick, 1).unwrap();
        assert_eq!(t.op, Some(RolloutOp::Rollback));
        assert!(matches!(t.run.status, PlanStatus::RolledBack { .. }));
        assert!(t.why.contains("health gate"), "{}", t.why);
        let hold = PlanRun::start(
            PlanSpec {
                on_failure: OnFailure::Hold,
                ..spec(None)
            },
            0,
        );
        let t = tick(&hold, &sick, 1).unwrap();
        assert_eq!(t.op, None, "hold changes no weight");
        assert!(matches!(t.run.status, PlanStatus::Held { .. }));
        assert_eq!(tick(&t.run, &sick, 99_999), None, "a held plan waits");
    }

    #[test]
    fn with_a_lease_each_step_waits_for_its_verdict() {
        let run = PlanRun::start(spec(Some(5_000)), 0);
        let leased = |verdict, until| Gates {
            verdict,
            lease_until_ms: Some(until),
            ..Gates::default()
        };
        // Dwell over, lease held, no verdict yet: wait for it.
        assert_eq!(tick(&run, &leased(None, 12_000), 10_000), None);
        assert_eq!(run.deadline_ms(Some(12_000)), Some(12_000));
        // A pass moves on.
        let t = tick(&run, &leased(Some(Verdict::Pass), 12_000), 10_000).unwrap();
        assert_eq!(t.op, Some(RolloutOp::SetWeight { weight_bp: 2_500 }));
        // A fail fails at once, dwell or not.
        let t = tick(&run, &leased(Some(Verdict::Fail), 12_000), 1).unwrap();
        assert_eq!(t.op, Some(RolloutOp::Rollback));
        // Inconclusive is not a pass: wait while the lease holds.
        assert_eq!(
            tick(&run, &leased(Some(Verdict::Inconclusive), 12_000), 11_000),
            None
        );
        // The lease ran out without a pass: the rule for missing evidence.
        let t = tick(&run, &leased(None, 12_000), 12_000).unwrap();
        assert_eq!(t.op, None);
        assert!(
            matches!(&t.run.status, PlanStatus::Held { reason } if reason.contains("no lease")),
            "{:?}",
            t.run.status
        );
        let rollback = PlanRun::start(
            PlanSpec {
                on_missing_evidence: OnFailure::Rollback,
                ..spec(Some(5_000))
            },
            0,
        );
        let t = tick(&rollback, &Gates::default(), 10_000).unwrap();
        assert_eq!(t.op, Some(RolloutOp::Rollback));
    }

    #[test]
    fn a_paused_or_ended_plan_never_moves() {
        let mut run = PlanRun::start(spec(None), 0);
        for status in [
            PlanStatus::Paused,
            PlanStatus::Aborted,
            PlanStatus::Promoted,
            PlanStatus::RolledBack { reason: "r".into() },
        ] {
            run.status = status;
            assert_eq!(tick(&run, &healthy(), u64::MAX), None);
            assert_eq!(run.deadline_ms(None), None);
        }
    }

    #[test]
    fn bad_plans_are_refused_with_the_reason() {
        let with = |f: &dyn Fn(&mut PlanSpec)| {
            let mut s = spec(None);
            f(&mut s);
            s.validate()
        };
        assert_eq!(with(&|_| {}), Ok(()));
        type Edit<'a> = &'a dyn Fn(&mut PlanSpec);
        let cases: [(Edit, &str); 6] = [
            (&|s| s.steps_bp.clear(), "1 to"),
            (&|s| s.steps_bp = vec![500, 500], "increase"),
            (&|s| s.steps_bp = vec![0, 500], "within"),
            (&|s| s.steps_bp = vec![500, 10_001], "within"),
            (&|s| s.dwell_ms = 999, "dwell"),
            (&|s| s.lease_ms = Some(0), "lease"),
        ];
        for (f, why) in cases {
            let e = with(f).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        assert!(with(&|s| s.steps_bp = (1..=21).collect()).is_err());
    }

    #[test]
    fn the_progress_round_trips_as_json() {
        let run = PlanRun {
            status: PlanStatus::Held {
                reason: "why".into(),
            },
            ..PlanRun::start(spec(Some(3_000)), 7)
        };
        let text = serde_json::to_string(&run).unwrap();
        assert!(text.contains(r#""status":"held""#), "{text}");
        assert_eq!(serde_json::from_str::<PlanRun>(&text).unwrap(), run);
    }
}
