//! The two verdicts side by side on seeded samples: what each passes,
//! fails or leaves open, and how the reasons read.

use crate::stats;
use crate::{judge, judge_sequential, ColorSummary, ErrorCheck, Metric, Policy, Verdict};
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
