//! The judgement: is the candidate (green) worse than the baseline (blue)
//! on the same run, with what confidence? Pure functions of per-color
//! summaries and a [`Policy`].
//!
//! Two modes:
//! - **fixed horizon** ([`judge`]): Mann-Whitney U with the Hodges-Lehmann
//!   shift and its interval against an effect-size tolerance (Kayenta's
//!   approach), percentile deltas with intervals, a two-proportion test on
//!   error rates. Valid for one look at the end of a run.
//! - **sequential** ([`judge_sequential`]): anytime-valid confidence sequences
//!   (normal mixture, as in mSPRT) on the mean log-latency difference and the
//!   error-rate difference, so a live run may look every second and stop as
//!   soon as the evidence is clear without inflating false alarms.

use crate::histogram::ColorStats;
use crate::stats::{
    self, Bucket, ConfidenceSequence, MannWhitney, QuantileDelta, Shift, TwoProportions,
};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
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

impl ColorSummary {
    pub fn of(c: &ColorStats) -> ColorSummary {
        ColorSummary {
            buckets_ms: c.buckets_ms(),
            ttfb_buckets_ms: c.ttfb_buckets_ms(),
            requests: c.requests(),
            errors: c.outcomes.errors(),
            label: None,
        }
    }

    /// [`ColorSummary::of`], named `color` in the reasons.
    pub fn of_color(c: &ColorStats, color: crate::histogram::ColorKey) -> ColorSummary {
        ColorSummary {
            label: Some(color.as_str()),
            ..ColorSummary::of(c)
        }
    }
}

/// The summaries with `buckets_ms` holding the times `metric` compares.
fn for_metric(metric: Metric, base: &ColorSummary, cand: &ColorSummary) -> [ColorSummary; 2] {
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
fn on_metric(metric: Metric, mut j: Judgement) -> Judgement {
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
fn names(base: &ColorSummary, cand: &ColorSummary) -> (&'static str, &'static str) {
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

fn combine(checks: &[Verdict]) -> Verdict {
    if checks.contains(&Verdict::Fail) {
        Verdict::Fail
    } else if checks.iter().all(|c| *c == Verdict::Pass) {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    }
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

fn too_few(
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

/// Fixed-horizon verdict of green (`cand`) against blue (`base`).
pub fn judge(policy: &Policy, base: &ColorSummary, cand: &ColorSummary) -> Judgement {
    let [b, c] = &for_metric(policy.metric, base, cand);
    on_metric(policy.metric, judge_fixed(policy, b, c))
}

fn judge_fixed(policy: &Policy, base: &ColorSummary, cand: &ColorSummary) -> Judgement {
    if let Some(j) = too_few(policy, base, cand, "fixed") {
        return j;
    }
    let level = 1.0 - policy.alpha;
    let mut checks = Vec::new();
    let mut reasons = Vec::new();
    let (b, c) = names(base, cand);

    // Latency: Mann-Whitney + Hodges-Lehmann against the tolerance.
    let latency = match (
        stats::mann_whitney(&base.buckets_ms, &cand.buckets_ms),
        stats::hodges_lehmann(&base.buckets_ms, &cand.buckets_ms, level),
        stats::quantile(&base.buckets_ms, 0.5),
    ) {
        (Some(mw), Some(shift), Some(median)) if median > 0.0 => {
            let tol = policy.latency_tolerance * median;
            let rel = |x: f64| x / median;
            let detail = format!(
                "HL shift {:+.3} ms ({}), {:.0}% CI {:+.3}..{:+.3} ms, Mann-Whitney p = {:.2e}; tolerance {} of {b}'s median {:.3} ms",
                shift.estimate,
                pct(rel(shift.estimate)),
                level * 100.0,
                shift.ci_low,
                shift.ci_high,
                mw.p_value,
                pct(policy.latency_tolerance),
                median
            );
            let v = if shift.ci_low > tol && mw.p_value < policy.alpha {
                reasons.push(format!(
                    "latency: {c} is slower than {b} beyond the tolerance: {detail}"
                ));
                Verdict::Fail
            } else if shift.ci_high <= tol {
                reasons.push(format!("latency: {c} is within the tolerance: {detail}"));
                Verdict::Pass
            } else {
                reasons.push(format!(
                    "latency: cannot tell whether {c} is within the tolerance: {detail}"
                ));
                Verdict::Inconclusive
            };
            checks.push(v);
            Some(LatencyCheck {
                mann_whitney: mw,
                shift_ms: shift,
                baseline_median_ms: median,
                relative_shift: rel(shift.estimate),
                relative_ci: (rel(shift.ci_low), rel(shift.ci_high)),
            })
        }
        _ => {
            reasons.push("latency: no latency data to compare".into());
            checks.push(Verdict::Inconclusive);
            None
        }
    };

    // Percentiles, with the p99 rule.
    let percentiles: Vec<QuantileDelta> = [0.5, 0.95, 0.99]
        .iter()
        .filter_map(|&q| stats::quantile_delta(&base.buckets_ms, &cand.buckets_ms, q, level))
        .collect();
    if let Some(d) = percentiles.iter().find(|d| d.q == 0.99) {
        let limit = (policy.p99_ratio_max - 1.0) * d.x;
        let detail = format!(
            "{c} p99 {:.3} ms vs {b} p99 {:.3} ms × {:.2} = {:.3} ms (delta {:+.3} ms, {:.0}% CI {:+.3}..{:+.3})",
            d.y,
            d.x,
            policy.p99_ratio_max,
            d.x * policy.p99_ratio_max,
            d.delta,
            level * 100.0,
            d.ci_low,
            d.ci_high
        );
        let v = if d.ci_low > limit {
            reasons.push(format!("p99: over the limit: {detail}"));
            Verdict::Fail
        } else if d.delta <= limit {
            reasons.push(format!("p99: within the limit: {detail}"));
            Verdict::Pass
        } else {
            reasons.push(format!(
                "p99: above the limit but not significantly: {detail}"
            ));
            Verdict::Inconclusive
        };
        checks.push(v);
    }

    // Errors: two-proportion test.
    let errors = stats::two_proportions(
        base.errors,
        base.requests,
        cand.errors,
        cand.requests,
        level,
    );
    if let Some(t) = &errors {
        let tol = policy.error_rate_delta_max_pp / 100.0;
        let detail = format!(
            "{c} {:.3}% vs {b} {:.3}% (delta {:+.3} pp, {:.0}% CI {:+.3}..{:+.3} pp, p = {:.2e}); allowed +{} pp",
            t.p_y * 100.0,
            t.p_x * 100.0,
            t.diff * 100.0,
            level * 100.0,
            t.ci_low * 100.0,
            t.ci_high * 100.0,
            t.p_value,
            policy.error_rate_delta_max_pp
        );
        let v = if t.ci_low > tol && t.p_value < policy.alpha {
            reasons.push(format!(
                "errors: {c}'s error rate is higher beyond the allowance: {detail}"
            ));
            Verdict::Fail
        } else if t.ci_high <= tol {
            reasons.push(format!("errors: within the allowance: {detail}"));
            Verdict::Pass
        } else if policy.error_check == ErrorCheck::NotWorse && t.diff <= tol {
            reasons.push(format!(
                "errors: not worse (within the allowance, not significantly beyond it): {detail}"
            ));
            Verdict::Pass
        } else {
            reasons.push(format!("errors: cannot tell yet: {detail}"));
            Verdict::Inconclusive
        };
        checks.push(v);
    }

    Judgement {
        verdict: combine(&checks),
        mode: "fixed".into(),
        reasons,
        baseline_requests: base.requests,
        candidate_requests: cand.requests,
        latency,
        percentiles,
        errors,
        sequential: None,
    }
}

/// Anytime-valid verdict: may be called at every look of a live run.
/// `Fail`/`Pass` mean the run can stop now; `Inconclusive` means keep going.
pub fn judge_sequential(policy: &Policy, base: &ColorSummary, cand: &ColorSummary) -> Judgement {
    let [b, c] = &for_metric(policy.metric, base, cand);
    on_metric(policy.metric, judge_anytime(policy, b, c))
}

fn judge_anytime(policy: &Policy, base: &ColorSummary, cand: &ColorSummary) -> Judgement {
    if let Some(j) = too_few(policy, base, cand, "sequential") {
        return j;
    }
    let mut checks = Vec::new();
    let mut reasons = Vec::new();
    let (_, c) = names(base, cand);
    let (mb, vb, nb) = stats::mean_var_by(&base.buckets_ms, |v| v.max(1e-3).ln());
    let (mc, vc, nc) = stats::mean_var_by(&cand.buckets_ms, |v| v.max(1e-3).ln());
    let tau2 = policy.sequential_tau * policy.sequential_tau;
    let log_latency = if nb > 1 && nc > 1 {
        stats::normal_mixture_cs(mc - mb, vb / nb as f64 + vc / nc as f64, tau2, policy.alpha)
    } else {
        stats::normal_mixture_cs(f64::NAN, 0.0, tau2, policy.alpha)
    };
    let lim = (1.0 + policy.latency_tolerance).ln();
    let rel = |x: f64| x.exp() - 1.0;
    let detail = format!(
        "geometric-mean change {} (anytime {:.0}% CS {}..{}), tolerance {}",
        pct(rel(log_latency.estimate)),
        (1.0 - policy.alpha) * 100.0,
        pct(rel(log_latency.low)),
        pct(rel(log_latency.high)),
        pct(policy.latency_tolerance)
    );
    checks.push(if log_latency.low > lim {
        reasons.push(format!(
            "latency: {c} is slower beyond the tolerance: {detail}"
        ));
        Verdict::Fail
    } else if log_latency.high < lim {
        reasons.push(format!("latency: within the tolerance: {detail}"));
        Verdict::Pass
    } else {
        reasons.push(format!("latency: undecided: {detail}"));
        Verdict::Inconclusive
    });

    // Error rates, with half a pseudo-error so a run of zeros has a variance.
    let rate = |k: u64, n: u64| (k as f64 + 0.5) / (n as f64 + 1.0);
    let (pb, pc) = (
        rate(base.errors, base.requests),
        rate(cand.errors, cand.requests),
    );
    let var = pb * (1.0 - pb) / base.requests as f64 + pc * (1.0 - pc) / cand.requests as f64;
    let error_rate = stats::normal_mixture_cs(pc - pb, var, 0.005f64.powi(2), policy.alpha);
    let tol = policy.error_rate_delta_max_pp / 100.0;
    let detail = format!(
        "delta {:+.3} pp (anytime CS {:+.3}..{:+.3} pp), allowed +{} pp",
        error_rate.estimate * 100.0,
        error_rate.low * 100.0,
        error_rate.high * 100.0,
        policy.error_rate_delta_max_pp
    );
    checks.push(if error_rate.low > tol {
        reasons.push(format!(
            "errors: {c}'s error rate is higher beyond the allowance: {detail}"
        ));
        Verdict::Fail
    } else if error_rate.high < tol {
        reasons.push(format!("errors: within the allowance: {detail}"));
        Verdict::Pass
    } else if policy.error_check == ErrorCheck::NotWorse && error_rate.estimate <= tol {
        reasons.push(format!(
            "errors: not worse (within the allowance, not significantly beyond it): {detail}"
        ));
        Verdict::Pass
    } else {
        reasons.push(format!("errors: undecided: {detail}"));
        Verdict::Inconclusive
    });

    Judgement {
        verdict: combine(&checks),
        mode: "sequential".into(),
        reasons,
        baseline_requests: base.requests,
        candidate_requests: cand.requests,
        latency: None,
        percentiles: Vec::new(),
        errors: None,
        sequential: Some(SequentialCheck {
            log_latency,
            error_rate,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// Lognormal latencies (median `median_ms`, σ 0.3) rounded to 0.01 ms.
    fn summary(rng: &mut SmallRng, n: usize, median_ms: f64, error_rate: f64) -> ColorSummary {
        let mut v = Vec::with_capacity(n);
        let mut errors = 0;
        for _ in 0..n {
            let (u1, u2): (f64, f64) = (rng.gen::<f64>().max(1e-12), rng.gen());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            v.push(((median_ms * (0.3 * z).exp()) * 100.0).round() / 100.0);
            if rng.gen::<f64>() < error_rate {
                errors += 1;
            }
        }
        ColorSummary {
            buckets_ms: stats::buckets_of(&v),
            ttfb_buckets_ms: Vec::new(),
            requests: n as u64,
            errors,
            label: None,
        }
    }

    #[test]
    fn the_metric_picks_what_is_compared() {
        let mut rng = SmallRng::seed_from_u64(12);
        // Same total time; the candidate's first byte comes 50 % later.
        let with_ttfb = |rng: &mut SmallRng, ttfb_ms: f64| ColorSummary {
            ttfb_buckets_ms: summary(rng, 3000, ttfb_ms, 0.0).buckets_ms,
            ..summary(rng, 3000, 1000.0, 0.0)
        };
        let base = with_ttfb(&mut rng, 100.0);
        let cand = with_ttfb(&mut rng, 150.0);
        let total = Policy::default();
        assert_ne!(judge(&total, &base, &cand).verdict, Verdict::Fail);
        assert_ne!(
            judge_sequential(&total, &base, &cand).verdict,
            Verdict::Fail
        );
        assert!(!judge(&total, &base, &cand)
            .reasons
            .iter()
            .any(|r| r.starts_with("metric:")));
        let ttfb = Policy {
            metric: Metric::Ttfb,
            ..Policy::default()
        };
        for j in [
            judge(&ttfb, &base, &cand),
            judge_sequential(&ttfb, &base, &cand),
        ] {
            assert_eq!(j.verdict, Verdict::Fail, "{:#?}", j.reasons);
            assert!(
                j.reasons[0].contains("time to first byte"),
                "{:?}",
                j.reasons
            );
            assert!(
                j.reasons
                    .iter()
                    .any(|r| r.starts_with("ttfb: green is slower")),
                "{:?}",
                j.reasons
            );
            assert!(!j.reasons.iter().any(|r| r.starts_with("latency:")));
        }
        let shift = judge(&ttfb, &base, &cand).latency.unwrap();
        assert!((shift.baseline_median_ms - 100.0).abs() < 5.0, "{shift:?}");
        // Spellings, and a policy table that names it.
        assert_eq!("TTFT".parse::<Metric>(), Ok(Metric::Ttfb));
        assert_eq!("total".parse::<Metric>(), Ok(Metric::Total));
        assert!("p99".parse::<Metric>().is_err());
        let p: Policy = toml::from_str("metric = \"ttfb\"").unwrap();
        assert_eq!(p.metric, Metric::Ttfb);
    }

    #[test]
    fn equal_colors_pass_or_are_inconclusive() {
        let mut rng = SmallRng::seed_from_u64(1);
        let p = Policy::default();
        for _ in 0..20 {
            let b = summary(&mut rng, 5000, 10.0, 0.001);
            let g = summary(&mut rng, 5000, 10.0, 0.001);
            assert_ne!(judge(&p, &b, &g).verdict, Verdict::Fail);
            assert_ne!(judge_sequential(&p, &b, &g).verdict, Verdict::Fail);
        }
        let b = summary(&mut rng, 20_000, 10.0, 0.0);
        let g = summary(&mut rng, 20_000, 10.0, 0.0);
        let j = judge(&p, &b, &g);
        assert_eq!(j.verdict, Verdict::Pass, "{:#?}", j.reasons);
        assert_eq!(j.percentiles.len(), 3);
    }

    #[test]
    fn reasons_name_the_colors_by_their_labels() {
        let mut rng = SmallRng::seed_from_u64(7);
        // After a promote green is the baseline and blue the candidate.
        let base = ColorSummary {
            label: Some("green"),
            ..summary(&mut rng, 2000, 10.0, 0.0)
        };
        let cand = ColorSummary {
            label: Some("blue"),
            ..summary(&mut rng, 2000, 14.0, 0.0)
        };
        let j = judge(&Policy::default(), &base, &cand);
        assert!(
            j.reasons
                .iter()
                .any(|r| r.starts_with("latency: blue is slower than green")),
            "{:?}",
            j.reasons
        );
        assert!(j
            .reasons
            .iter()
            .any(|r| r.contains("blue p99") && r.contains("vs green p99")));
    }

    #[test]
    fn slower_green_fails_with_reasons() {
        let mut rng = SmallRng::seed_from_u64(2);
        let p = Policy::default();
        let b = summary(&mut rng, 3000, 10.0, 0.0);
        let g = summary(&mut rng, 1000, 13.0, 0.0);
        let j = judge(&p, &b, &g);
        assert_eq!(j.verdict, Verdict::Fail, "{:#?}", j.reasons);
        assert!(j
            .reasons
            .iter()
            .any(|r| r.starts_with("latency: green is slower")));
        let l = j.latency.unwrap();
        assert!(
            (l.relative_shift - 0.3).abs() < 0.05,
            "{}",
            l.relative_shift
        );
        let s = judge_sequential(&p, &b, &g);
        assert_eq!(s.verdict, Verdict::Fail, "{:#?}", s.reasons);
        let cs = s.sequential.unwrap().log_latency;
        assert!(cs.low < 1.3f64.ln() && cs.high > 1.3f64.ln());
    }

    #[test]
    fn error_rate_increase_fails() {
        let mut rng = SmallRng::seed_from_u64(3);
        let p = Policy::default();
        let b = summary(&mut rng, 10_000, 10.0, 0.001);
        let g = summary(&mut rng, 10_000, 10.0, 0.02);
        let j = judge(&p, &b, &g);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(
            j.reasons
                .iter()
                .any(|r| r.starts_with("errors: green's error rate")),
            "{:#?}",
            j.reasons
        );
        assert_eq!(judge_sequential(&p, &b, &g).verdict, Verdict::Fail);
    }

    /// The error check alone (latency equal), with exact error counts:
    /// (blue errors, green errors, requests per color) → verdict under
    /// `not-worse` and `non-inferior`, for the fixed and the sequential look.
    #[test]
    fn error_checks_pass_fail_or_wait_as_documented() {
        use ErrorCheck::{NonInferior, NotWorse};
        use Verdict::{Fail, Inconclusive, Pass};
        type Case = (u64, u64, usize, Verdict, Verdict);
        let cases: [Case; 6] = [
            // A 1 % step's comparison sample, 0.1 % errors on both: only
            // the guard can pass it.
            (1, 1, 900, Pass, Inconclusive),
            (0, 0, 900, Pass, Inconclusive),
            // Green looks 0.4 pp worse but cannot be shown to be: wait.
            (1, 5, 900, Inconclusive, Inconclusive),
            // Clearly worse: both fail.
            (1, 45, 900, Fail, Fail),
            // Enough samples to prove equal rates within 0.1 pp: both pass.
            (20, 20, 40_000, Pass, Pass),
            // Green has fewer errors than blue: both pass once proven.
            (40, 0, 40_000, Pass, Pass),
        ];
        for (blue_errors, green_errors, n, not_worse, non_inferior) in cases {
            let mut rng = SmallRng::seed_from_u64(n as u64 + green_errors);
            let latencies = summary(&mut rng, n, 10.0, 0.0);
            let b = ColorSummary {
                errors: blue_errors,
                ..latencies.clone()
            };
            let g = ColorSummary {
                label: Some("green"),
                errors: green_errors,
                ..latencies
            };
            for (check, want) in [(NotWorse, not_worse), (NonInferior, non_inferior)] {
                let p = Policy {
                    error_check: check,
                    ..Policy::default()
                };
                for (look, j) in [
                    ("fixed", judge(&p, &b, &g)),
                    ("sequential", judge_sequential(&p, &b, &g)),
                ] {
                    let errors = j
                        .reasons
                        .iter()
                        .find(|r| r.starts_with("errors:"))
                        .cloned()
                        .unwrap_or_default();
                    let got = if errors.starts_with("errors: green's error rate is higher") {
                        Fail
                    } else if errors.starts_with("errors: within")
                        || errors.starts_with("errors: not worse")
                    {
                        Pass
                    } else {
                        Inconclusive
                    };
                    assert_eq!(
                        got, want,
                        "{check} {look}: blue {blue_errors}/{n}, green {green_errors}/{n}: {errors}"
                    );
                }
            }
        }
    }

    #[test]
    fn error_check_is_spelled_as_in_scenario_files() {
        for check in [ErrorCheck::NotWorse, ErrorCheck::NonInferior] {
            let toml = format!("error_check = \"{check}\"");
            let p: Policy = toml::from_str(&toml).unwrap();
            assert_eq!(p.error_check, check);
        }
    }

    #[test]
    fn too_few_samples_is_inconclusive() {
        let mut rng = SmallRng::seed_from_u64(4);
        let p = Policy::default();
        let b = summary(&mut rng, 5000, 10.0, 0.0);
        let g = summary(&mut rng, 50, 30.0, 0.5);
        let j = judge(&p, &b, &g);
        assert_eq!(j.verdict, Verdict::Inconclusive);
        assert!(
            j.reasons[0].contains("green has 50 requests"),
            "{:?}",
            j.reasons
        );
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
