//! The sequential (anytime-valid) verdict: normal-mixture confidence
//! sequences on the mean log-latency difference and the error-rate
//! difference, so a live run may look every second and stop as soon as the
//! evidence is clear without inflating false alarms.

use crate::judgement::{
    combine, for_metric, names, on_metric, pct, too_few, ColorSummary, Judgement, SequentialCheck,
    Verdict,
};
use crate::policy::{ErrorCheck, Policy};
use crate::stats;

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
