//! The fixed-horizon verdict: one look at the end of a run. The latency
//! shift (Mann-Whitney U with the Hodges-Lehmann interval) against the
//! tolerance, the p99 rule, and a two-proportion test on error rates.

use crate::judgement::{
    combine, for_metric, names, on_metric, pct, too_few, ColorSummary, Judgement, LatencyCheck,
    Verdict,
};
use crate::policy::{ErrorCheck, Policy};
use crate::stats::{self, QuantileDelta, TwoProportions};

/// Fixed-horizon verdict of green (`cand`) against blue (`base`).
pub fn judge(policy: &Policy, base: &ColorSummary, cand: &ColorSummary) -> Judgement {
    let [b, c] = &for_metric(policy.metric, base, cand);
    on_metric(policy.metric, judge_fixed(policy, b, c))
}

/// One check's outcome and the reason line that explains it.
type Checked = (Verdict, String);

/// What every check needs besides the two summaries.
struct Judging<'a> {
    policy: &'a Policy,
    /// Confidence level of the intervals (1 - alpha).
    level: f64,
    /// The baseline's and the candidate's names in reasons.
    b: &'static str,
    c: &'static str,
}

fn judge_fixed(policy: &Policy, base: &ColorSummary, cand: &ColorSummary) -> Judgement {
    if let Some(j) = too_few(policy, base, cand, "fixed") {
        return j;
    }
    let (b, c) = names(base, cand);
    let judging = Judging {
        policy,
        level: 1.0 - policy.alpha,
        b,
        c,
    };
    let (latency_checked, latency) = latency_shift(&judging, base, cand);
    let percentiles: Vec<QuantileDelta> = [0.5, 0.95, 0.99]
        .iter()
        .filter_map(|&q| {
            stats::quantile_delta(&base.buckets_ms, &cand.buckets_ms, q, judging.level)
        })
        .collect();
    let p99_checked = percentiles
        .iter()
        .find(|d| d.q == 0.99)
        .map(|d| p99_rule(&judging, d));
    let errors = stats::two_proportions(
        base.errors,
        base.requests,
        cand.errors,
        cand.requests,
        judging.level,
    );
    let errors_checked = errors.as_ref().map(|t| error_rate_rule(&judging, t));
    let (checks, reasons): (Vec<Verdict>, Vec<String>) =
        [Some(latency_checked), p99_checked, errors_checked]
            .into_iter()
            .flatten()
            .unzip();
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

/// Latency: Mann-Whitney + Hodges-Lehmann against the tolerance.
fn latency_shift(
    judging: &Judging,
    base: &ColorSummary,
    cand: &ColorSummary,
) -> (Checked, Option<LatencyCheck>) {
    let (policy, level, b, c) = (judging.policy, judging.level, judging.b, judging.c);
    let (Some(mw), Some(shift), Some(median)) = (
        stats::mann_whitney(&base.buckets_ms, &cand.buckets_ms),
        stats::hodges_lehmann(&base.buckets_ms, &cand.buckets_ms, level),
        stats::quantile(&base.buckets_ms, 0.5),
    ) else {
        return (no_latency_data(), None);
    };
    if median <= 0.0 {
        return (no_latency_data(), None);
    }
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
    let checked = if shift.ci_low > tol && mw.p_value < policy.alpha {
        (
            Verdict::Fail,
            format!("latency: {c} is slower than {b} beyond the tolerance: {detail}"),
        )
    } else if shift.ci_high <= tol {
        (
            Verdict::Pass,
            format!("latency: {c} is within the tolerance: {detail}"),
        )
    } else {
        (
            Verdict::Inconclusive,
            format!("latency: cannot tell whether {c} is within the tolerance: {detail}"),
        )
    };
    let check = LatencyCheck {
        mann_whitney: mw,
        shift_ms: shift,
        baseline_median_ms: median,
        relative_shift: rel(shift.estimate),
        relative_ci: (rel(shift.ci_low), rel(shift.ci_high)),
    };
    (checked, Some(check))
}

fn no_latency_data() -> Checked {
    (
        Verdict::Inconclusive,
        "latency: no latency data to compare".into(),
    )
}

/// The p99 rule: the candidate's p99 within the baseline's × `p99_ratio_max`.
fn p99_rule(judging: &Judging, d: &QuantileDelta) -> Checked {
    let (policy, level, b, c) = (judging.policy, judging.level, judging.b, judging.c);
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
    if d.ci_low > limit {
        (Verdict::Fail, format!("p99: over the limit: {detail}"))
    } else if d.delta <= limit {
        (Verdict::Pass, format!("p99: within the limit: {detail}"))
    } else {
        (
            Verdict::Inconclusive,
            format!("p99: above the limit but not significantly: {detail}"),
        )
    }
}

/// Errors: the two-proportion test against the allowance.
fn error_rate_rule(judging: &Judging, t: &TwoProportions) -> Checked {
    let (policy, level, b, c) = (judging.policy, judging.level, judging.b, judging.c);
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
    if t.ci_low > tol && t.p_value < policy.alpha {
        (
            Verdict::Fail,
            format!("errors: {c}'s error rate is higher beyond the allowance: {detail}"),
        )
    } else if t.ci_high <= tol {
        (
            Verdict::Pass,
            format!("errors: within the allowance: {detail}"),
        )
    } else if policy.error_check == ErrorCheck::NotWorse && t.diff <= tol {
        (
            Verdict::Pass,
            format!(
                "errors: not worse (within the allowance, not significantly beyond it): {detail}"
            ),
        )
    } else {
        (
            Verdict::Inconclusive,
            format!("errors: cannot tell yet: {detail}"),
        )
    }
}
