//! The verdict policy's command-line flags, shared by `greenlight load` and
//! the dashboard's headless twin so both spell them the same way.

use crate::{ErrorCheck, Metric, Policy};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyArgs {
    /// Policy: error probability of each check.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Policy: fewer requests than this on a color → Inconclusive.
    #[arg(long)]
    pub min_samples: Option<u64>,
    /// Policy: largest acceptable latency shift relative to the baseline's median (0.10 = 10 %).
    #[arg(long)]
    pub latency_tolerance: Option<f64>,
    /// Policy: candidate p99 ≤ baseline p99 × this.
    #[arg(long)]
    pub p99_ratio: Option<f64>,
    /// Policy: candidate error rate ≤ baseline + this many percentage points.
    #[arg(long)]
    pub error_pp: Option<f64>,
    /// Policy: what the latency checks compare: `total` (to the last byte,
    /// the default) or `ttfb` (to the first byte: the first event of a
    /// streamed answer, a model's time to first token).
    #[arg(long)]
    pub metric: Option<Metric>,
    /// Policy: when the error-rate check passes: `not-worse` (green's rate
    /// not observed beyond the allowance and not significantly beyond it) or
    /// `non-inferior` (the interval must show it within the allowance; needs
    /// many samples when both colors have errors).
    #[arg(long, value_enum)]
    pub error_check: Option<ErrorCheck>,
}

impl PolicyArgs {
    /// `base` with every flag that was given applied on top.
    pub fn apply(&self, mut base: Policy) -> Policy {
        if let Some(v) = self.alpha {
            base.alpha = v;
        }
        if let Some(v) = self.min_samples {
            base.min_samples = v;
        }
        if let Some(v) = self.latency_tolerance {
            base.latency_tolerance = v;
        }
        if let Some(v) = self.p99_ratio {
            base.p99_ratio_max = v;
        }
        if let Some(v) = self.error_pp {
            base.error_rate_delta_max_pp = v;
        }
        if let Some(m) = self.metric {
            base.metric = m;
        }
        if let Some(v) = self.error_check {
            base.error_check = v;
        }
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_given_flags_change_the_policy() {
        let base = Policy::default();
        assert_eq!(PolicyArgs::default().apply(base.clone()), base);
        let args = PolicyArgs {
            p99_ratio: Some(1.5),
            error_pp: Some(0.5),
            metric: Some(Metric::Ttfb),
            error_check: Some(ErrorCheck::NonInferior),
            ..PolicyArgs::default()
        };
        let p = args.apply(base.clone());
        assert_eq!((p.p99_ratio_max, p.error_rate_delta_max_pp), (1.5, 0.5));
        assert_eq!(p.metric, Metric::Ttfb);
        assert_eq!(p.error_check, ErrorCheck::NonInferior);
        assert_eq!((p.alpha, p.min_samples), (base.alpha, base.min_samples));
    }
}
