//! The automated-rollout plan: the steps, how long to dwell at each, and
//! what to do when a step stays inconclusive. Validated once, then read-only.

use greenlight_verdict::Judge;
use greenlight_verdict::Policy;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What to do when a step's analysis stays inconclusive after its extensions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInconclusive {
    /// Hold the current weight and wait for a human (Resume to go on).
    #[default]
    Pause,
    /// Treat as a pass and go to the next step.
    Advance,
    /// Treat as a failure and roll back.
    Rollback,
}

impl OnInconclusive {
    pub const ALL: [OnInconclusive; 3] = [
        OnInconclusive::Pause,
        OnInconclusive::Advance,
        OnInconclusive::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OnInconclusive::Pause => "pause",
            OnInconclusive::Advance => "advance",
            OnInconclusive::Rollback => "rollback",
        }
    }
}

/// A validated automated-rollout plan.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPlan {
    /// Candidate weights in percent, strictly increasing, each in (0, 100].
    pub steps: Vec<f64>,
    pub dwell: Duration,
    pub max_extensions: u32,
    pub on_inconclusive: OnInconclusive,
    pub policy: Policy,
    pub actor: String,
    /// Which evidence each step is judged on (real users can veto by
    /// default: [`Judge::Both`]).
    pub judge: Judge,
}

impl RolloutPlan {
    pub fn new(
        steps: Vec<f64>,
        dwell: Duration,
        max_extensions: u32,
        on_inconclusive: OnInconclusive,
        policy: Policy,
        actor: String,
    ) -> Result<RolloutPlan, String> {
        if steps.is_empty() {
            return Err("the rollout needs at least one step".into());
        }
        for (i, s) in steps.iter().enumerate() {
            if !(s.is_finite() && *s > 0.0 && *s <= 100.0) {
                return Err(format!("step {s} must be within (0, 100] percent"));
            }
            // The edge keeps basis points: 0.01 % is the finest step.
            if (s * 100.0 - (s * 100.0).round()).abs() > 1e-6 {
                return Err(format!("step {s} has more than two decimals"));
            }
            if i > 0 && *s <= steps[i - 1] {
                return Err(format!(
                    "steps must be increasing: {} then {s}",
                    steps[i - 1]
                ));
            }
        }
        if dwell.is_zero() {
            return Err("the dwell time must be greater than 0".into());
        }
        policy.validate()?;
        Ok(RolloutPlan {
            steps,
            dwell,
            max_extensions,
            on_inconclusive,
            policy,
            actor,
            judge: Judge::default(),
        })
    }

    /// Longest time the rollout can take without pauses (for time limits).
    pub fn max_duration(&self) -> Duration {
        self.dwell * (self.steps.len() as u32) * (self.max_extensions + 1)
    }
}

/// Parses `"1, 5, 25, 50, 100"` (also `→`, `->`, spaces or `%`) into percents.
pub fn parse_steps(text: &str) -> Result<Vec<f64>, String> {
    let cleaned = text.replace("->", ",").replace(['→', '%', ';'], ",");
    let mut out = Vec::new();
    for part in cleaned.split([',', ' ']).filter(|p| !p.trim().is_empty()) {
        let v: f64 = part
            .trim()
            .parse()
            .map_err(|_| format!("step {part:?} is not a number"))?;
        out.push(v);
    }
    if out.is_empty() {
        return Err("give at least one step, e.g. 1, 5, 25, 50, 100".into());
    }
    Ok(out)
}

/// `[1.0, 5.0, 100.0]` → `"1, 5, 100"`.
pub fn format_steps(steps: &[f64]) -> String {
    steps
        .iter()
        .map(|s| format!("{s}"))
        .collect::<Vec<_>>()
        .join(", ")
}
