//! The acceptance policy: what the candidate must meet, and which time the
//! latency checks compare.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which time the latency checks compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// The whole answer: intended send to last byte (the latency).
    #[default]
    Total,
    /// Intended send to first byte: the first event of an event stream (a
    /// model's time to first token), else the first body byte.
    Ttfb,
}

impl Metric {
    pub const ALL: [Metric; 2] = [Metric::Total, Metric::Ttfb];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Total => "total",
            Metric::Ttfb => "ttfb",
        }
    }

    /// What the metric measures, for reasons and labels.
    pub fn describe(self) -> &'static str {
        match self {
            Metric::Total => "total latency (to the last byte)",
            Metric::Ttfb => "time to first byte (first event of a stream)",
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Metric, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "total" | "latency" => Ok(Metric::Total),
            "ttfb" | "ttft" => Ok(Metric::Ttfb),
            other => Err(format!("metric {other:?} is not total or ttfb")),
        }
    }
}

/// Acceptance policy (a `[verdict]` table in a scenario file, or flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Error probability of each check (intervals are at 1 - alpha).
    pub alpha: f64,
    /// Fewer requests than this on either color → Inconclusive.
    pub min_samples: u64,
    /// Largest acceptable latency shift, relative to the baseline median
    /// (0.10 = green may be 10 % slower).
    pub latency_tolerance: f64,
    /// Green p99 must not exceed blue p99 × this.
    pub p99_ratio_max: f64,
    /// Green's error rate may exceed blue's by at most this many percentage points.
    pub error_rate_delta_max_pp: f64,
    /// What the error-rate check needs before it passes.
    pub error_check: ErrorCheck,
    /// Mixture scale of the sequential test on log-latency (natural-log units).
    pub sequential_tau: f64,
    /// Which time the latency checks (shift, percentiles, sequential) compare.
    pub metric: Metric,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            alpha: 0.01,
            min_samples: 200,
            latency_tolerance: 0.10,
            p99_ratio_max: 1.10,
            error_rate_delta_max_pp: 0.1,
            error_check: ErrorCheck::default(),
            sequential_tau: 0.1,
            metric: Metric::Total,
        }
    }
}

impl Policy {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(format!("alpha must be within (0, 0.5), got {}", self.alpha));
        }
        if !(self.latency_tolerance >= 0.0 && self.latency_tolerance.is_finite()) {
            return Err(format!(
                "latency_tolerance must be ≥ 0, got {}",
                self.latency_tolerance
            ));
        }
        if !(self.p99_ratio_max >= 1.0 && self.p99_ratio_max.is_finite()) {
            return Err(format!(
                "p99_ratio_max must be ≥ 1.0, got {}",
                self.p99_ratio_max
            ));
        }
        if !(self.error_rate_delta_max_pp >= 0.0 && self.error_rate_delta_max_pp <= 100.0) {
            return Err(format!(
                "error_rate_delta_max_pp must be within 0..=100, got {}",
                self.error_rate_delta_max_pp
            ));
        }
        if !(self.sequential_tau > 0.0 && self.sequential_tau.is_finite()) {
            return Err(format!(
                "sequential_tau must be > 0, got {}",
                self.sequential_tau
            ));
        }
        Ok(())
    }
}

/// How the error-rate check passes. Both fail a green whose error rate is
/// significantly higher than blue's by more than the allowance.
///
/// Proving that two small error rates are within 0.1 pp of each other takes
/// about 16 000 requests per color at 0.1 % errors, while a 1 % rollout step
/// at 60 req/s gets about 900 comparison requests per color: under
/// `non-inferior` an equal green with a few errors on both colors stalls
/// the rollout; `not-worse` lets it pass unless it looks worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCheck {
    /// Pass when green's observed error rate is within the allowance and
    /// not significantly beyond it (a guard: the default).
    #[default]
    NotWorse,
    /// Pass only when the interval shows green within the allowance
    /// (non-inferiority: needs many samples when both colors have errors).
    NonInferior,
}

impl fmt::Display for ErrorCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorCheck::NotWorse => "not-worse",
            ErrorCheck::NonInferior => "non-inferior",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_check_is_spelled_as_in_scenario_files() {
        for check in [ErrorCheck::NotWorse, ErrorCheck::NonInferior] {
            let toml = format!("error_check = \"{check}\"");
            let p: Policy = toml::from_str(&toml).unwrap();
            assert_eq!(p.error_check, check);
        }
    }

    #[test]
    fn policy_validation_names_the_field() {
        let bad = Policy {
            p99_ratio_max: 0.9,
            ..Policy::default()
        };
        assert!(bad.validate().unwrap_err().contains("p99_ratio_max"));
        assert!(Policy::default().validate().is_ok());
    }
}
