//! What a verdict reads of each color ([`ColorSummary`]) and what it says
//! ([`Judgement`]), with the pieces both modes share.

use crate::policy::{Metric, Policy};
use crate::stats::{Bucket, ConfidenceSequence, MannWhitney, QuantileDelta, Shift, TwoProportions};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Inconclusive => "INCONCLUSIVE",
        })
    }
}

/// What the verdict needs to know about one color.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColorSummary {
    /// Corrected latency buckets in ms.
    pub buckets_ms: Vec<Bucket>,
    /// Corrected time-to-first-byte buckets in ms (judged with [`Metric::Ttfb`]).
    pub ttfb_buckets_ms: Vec<Bucket>,
    pub requests: u64,
    /// 5xx and transport failures.
    pub errors: u64,
    /// The color's name in the reasons; `None`: named by role as "blue"
    /// (baseline) and "green" (candidate). After a promote the baseline is
    /// green: callers label the summaries so the reasons name them right.
    pub label: Option<&'static str>,
}

/// The summaries with `buckets_ms` holding the times `metric` compares.
pub(crate) fn for_metric(
    metric: Metric,
    base: &ColorSummary,
    cand: &ColorSummary,
) -> [ColorSummary; 2] {
    [base, cand].map(|s| match metric {
        Metric::Total => s.clone(),
        Metric::Ttfb => ColorSummary {
            buckets_ms: s.ttfb_buckets_ms.clone(),
            ..s.clone()
        },
    })
}

/// A judgement of another metric than the total latency says so: its
/// latency and p99 reasons are named for the metric (`ttfb: …`, `ttfb p99: …`),
/// after a first line saying what was compared.
pub(crate) fn on_metric(metric: Metric, mut j: Judgement) -> Judgement {
    if metric == Metric::Total {
        return j;
    }
    let name = metric.as_str();
    for r in j.reasons.iter_mut() {
        if let Some(rest) = r.strip_prefix("latency: ") {
            *r = format!("{name}: {rest}");
        } else if let Some(rest) = r.strip_prefix("p99: ") {
            *r = format!("{name} p99: {rest}");
        }
    }
    j.reasons.insert(
        0,
        format!(
            "metric: the latency checks compare the {} (--metric {name})",
            metric.describe()
        ),
    );
    j
}

/// The names of the baseline and the candidate in reasons.
pub(crate) fn names(base: &ColorSummary, cand: &ColorSummary) -> (&'static str, &'static str) {
    (base.label.unwrap_or("blue"), cand.label.unwrap_or("green"))
}

/// The latency comparison (fixed horizon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyCheck {
    pub mann_whitney: MannWhitney,
    /// Candidate minus baseline, ms.
    pub shift_ms: Shift,
    pub baseline_median_ms: f64,
    /// `shift / baseline median`.
    pub relative_shift: f64,
    pub relative_ci: (f64, f64),
}

/// The sequential (anytime-valid) state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialCheck {
    /// Difference of mean ln(latency) (candidate - baseline); exp(x) - 1 is the relative change.
    pub log_latency: ConfidenceSequence,
    /// Difference of error rates (fraction, candidate - baseline).
    pub error_rate: ConfidenceSequence,
}

/// A verdict with the numbers and the reasons behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// `"fixed"` or `"sequential"`.
    pub mode: String,
    /// One human-readable line per check.
    pub reasons: Vec<String>,
    pub baseline_requests: u64,
    pub candidate_requests: u64,
    pub latency: Option<LatencyCheck>,
    /// p50, p95, p99 deltas (candidate - baseline, ms) with intervals.
    pub percentiles: Vec<QuantileDelta>,
    pub errors: Option<TwoProportions>,
    pub sequential: Option<SequentialCheck>,
}

impl Judgement {
    /// An inconclusive verdict with nothing to judge, saying why.
    pub fn no_evidence(why: &str) -> Judgement {
        Judgement {
            verdict: Verdict::Inconclusive,
            mode: "none".into(),
            reasons: vec![why.to_string()],
            baseline_requests: 0,
            candidate_requests: 0,
            latency: None,
            percentiles: Vec::new(),
            errors: None,
            sequential: None,
        }
    }
}

pub(crate) fn combine(checks: &[Verdict]) -> Verdict {
    if checks.contains(&Verdict::Fail) {
        Verdict::Fail
    } else if checks.iter().all(|c| *c == Verdict::Pass) {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    }
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

pub(crate) fn too_few(
    policy: &Policy,
    base: &ColorSummary,
    cand: &ColorSummary,
    mode: &str,
) -> Option<Judgement> {
    let (b, c) = names(base, cand);
    let short: Vec<String> = [(b, base.requests), (c, cand.requests)]
        .iter()
        .filter(|(_, n)| *n < policy.min_samples)
        .map(|(c, n)| format!("{c} has {n} requests"))
        .collect();
    if short.is_empty() {
        return None;
    }
    Some(Judgement {
        verdict: Verdict::Inconclusive,
        mode: mode.to_string(),
        reasons: vec![format!(
            "not enough samples: {} (the policy needs at least {} per color)",
            short.join(", "),
            policy.min_samples
        )],
        baseline_requests: base.requests,
        candidate_requests: cand.requests,
        latency: None,
        percentiles: Vec::new(),
        errors: None,
        sequential: None,
    })
}
