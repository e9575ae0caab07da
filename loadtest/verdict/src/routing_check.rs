//! The routing check: does the edge split weighted traffic the way its
//! weight says? The observed candidate share of weighted requests against
//! the set weight, with an exact (Clopper-Pearson) binomial interval. A
//! weight outside the interval flags the split (wrong bucket math, a
//! location serving a stale state). It checks the edge, it is not the
//! verdict's evidence.
//!
//! The interval assumes independent requests: true for fresh anonymous
//! identities (each request a new caller with a new bucket); with a fixed
//! set of sticky users, requests of one user are not independent and the
//! interval is too narrow.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, ContinuousCDF};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingCheck {
    /// The candidate weight the edge was set to, percent.
    pub weight_percent: f64,
    /// Weighted requests answered by the candidate.
    pub candidate: u64,
    /// Weighted requests answered by either color.
    pub total: u64,
    pub observed_percent: f64,
    /// Interval at `level`, percent.
    pub ci_low_percent: f64,
    pub ci_high_percent: f64,
    pub level: f64,
    /// The set weight lies outside the interval.
    pub off: bool,
    /// The rollout epoch whose answers were counted (`None`: every
    /// weighted answer in the window, whatever state routed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Weighted answers in the window that carried another epoch (a
    /// location still on the state before, or already on the next): left
    /// out, since another weight routed them.
    #[serde(default)]
    pub other_epochs: u64,
}

impl RoutingCheck {
    /// `None` without any weighted answer.
    pub fn of(weight_percent: f64, candidate: u64, total: u64, alpha: f64) -> Option<RoutingCheck> {
        if total == 0 || candidate > total {
            return None;
        }
        let (low, high) = clopper_pearson(candidate, total, alpha);
        let w = weight_percent / 100.0;
        // Exactly 0 % or 100 % set: any other answer at all is off.
        let off = w < low - 1e-12 || w > high + 1e-12;
        Some(RoutingCheck {
            weight_percent,
            candidate,
            total,
            observed_percent: candidate as f64 * 100.0 / total as f64,
            ci_low_percent: low * 100.0,
            ci_high_percent: high * 100.0,
            level: 1.0 - alpha,
            off,
            epoch: None,
            other_epochs: 0,
        })
    }

    /// The check of one state: `candidate` of `total` are the answers that
    /// carried `epoch`; `other_epochs` answers in the same window did not.
    pub fn of_epoch(
        weight_percent: f64,
        epoch: u64,
        candidate: u64,
        total: u64,
        other_epochs: u64,
        alpha: f64,
    ) -> Option<RoutingCheck> {
        RoutingCheck::of(weight_percent, candidate, total, alpha).map(|c| RoutingCheck {
            epoch: Some(epoch),
            other_epochs,
            ..c
        })
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        let of_state = match self.epoch {
            Some(e) => format!(" of epoch {e}"),
            None => String::new(),
        };
        let left_out = match self.other_epochs {
            0 => String::new(),
            n => format!(" ({n} answers of other epochs left out)"),
        };
        format!(
            "routing check{of_state}: {:.2}% of {} weighted requests on the candidate{left_out} ({:.0}% CI {:.2}..{:.2}%) against a weight of {}%{}",
            self.observed_percent,
            self.total,
            self.level * 100.0,
            self.ci_low_percent,
            self.ci_high_percent,
            self.weight_percent,
            if self.off {
                ": OFF, the edge does not split as its weight says (wrong bucket math, or a location serving another state)"
            } else {
                ": as set"
            }
        )
    }
}

/// Exact two-sided interval for a binomial proportion `k / n` at `1 - alpha`.
pub fn clopper_pearson(k: u64, n: u64, alpha: f64) -> (f64, f64) {
    let (kf, nf) = (k as f64, n as f64);
    let low = if k == 0 {
        0.0
    } else {
        Beta::new(kf, nf - kf + 1.0)
            .map(|b| b.inverse_cdf(alpha / 2.0))
            .unwrap_or(0.0)
    };
    let high = if k == n {
        1.0
    } else {
        Beta::new(kf + 1.0, nf - kf)
            .map(|b| b.inverse_cdf(1.0 - alpha / 2.0))
            .unwrap_or(1.0)
    };
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_interval_matches_known_values() {
        // 5 of 100 at 95 %: 1.64 %..11.28 % (standard tables).
        let (l, h) = clopper_pearson(5, 100, 0.05);
        assert!(
            (l - 0.0164).abs() < 2e-4 && (h - 0.1128).abs() < 2e-4,
            "{l} {h}"
        );
        assert_eq!(clopper_pearson(0, 10, 0.05).0, 0.0);
        assert_eq!(clopper_pearson(10, 10, 0.05).1, 1.0);
    }

    #[test]
    fn flags_a_split_that_is_off() {
        let ok = RoutingCheck::of(5.0, 48, 1000, 0.01).unwrap();
        assert!(!ok.off, "{}", ok.describe());
        let off = RoutingCheck::of(5.0, 150, 1000, 0.01).unwrap();
        assert!(off.off && off.describe().contains("OFF"));
        // Stable (0 %) with candidate answers, and 100 % with blue ones.
        assert!(RoutingCheck::of(0.0, 1, 1000, 0.01).unwrap().off);
        assert!(RoutingCheck::of(100.0, 999, 1000, 0.01).unwrap().off);
        assert!(!RoutingCheck::of(0.0, 0, 1000, 0.01).unwrap().off);
        assert!(RoutingCheck::of(1.0, 0, 0, 0.01).is_none());
    }

    #[test]
    fn a_check_of_one_epoch_says_which_and_what_it_left_out() {
        let c = RoutingCheck::of_epoch(25.0, 7, 24, 100, 9, 0.01).unwrap();
        assert!(!c.off);
        assert_eq!((c.epoch, c.other_epochs), (Some(7), 9));
        let line = c.describe();
        assert!(
            line.starts_with("routing check of epoch 7: 24.00% of 100")
                && line.contains("(9 answers of other epochs left out)")
                && line.ends_with(": as set"),
            "{line}"
        );
        assert!(RoutingCheck::of_epoch(25.0, 7, 0, 0, 9, 0.01).is_none());
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            (json["epoch"].as_u64(), json["other_epochs"].as_u64()),
            (Some(7), Some(9))
        );
    }
}
