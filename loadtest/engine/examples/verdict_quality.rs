//! Verdict quality by seeded simulation (no network).
//!
//! - A/A: blue and green draw from the same latency distribution (log-normal,
//!   median 20 ms, σ 0.5, 0.1 % errors); 1000 req/s total, green at 10 %;
//!   the sequential test looks every second for 60 s. A `Fail` at any look
//!   is a false alarm. The fixed-horizon verdict at 60 s is counted too.
//! - A/B: green's latency is 20 % higher (everything else equal); the time
//!   of the first sequential `Fail` is recorded (capped at 120 s).
//!
//! - A rollout step at 1 % and 60 req/s, as the automated rollout runs it
//!   (live sequential looks every second, acting on `Fail`; the fixed-horizon
//!   analysis at the end of the 30 s dwell, up to two 30 s extensions while
//!   inconclusive): with comparison traffic (90 % of requests in blue/green
//!   pairs through the preview override, 10 % weighted) and, as the baseline
//!   of the same run, with every request weighted (1 % to green). Green 20 %
//!   slower: median seconds to the decision (`step1_decide_s`, target ≤ the
//!   30 s dwell; 120 = none); equal: the share of runs that end in `Fail`
//!   (`step1_aa_false_alarm`, target ≤ 1 %) and in `Pass` (`step1_aa_pass`
//!   under the default `not-worse` error check, `step1_aa_pass_non_inferior`
//!   under the strict one). A green with 2 % errors (blue 0.1 %): the share
//!   of steps that fail (`step1_err2pct_fail`) and pass
//!   (`step1_err2pct_pass`); with 0.5 %: the share that pass
//!   (`step1_err05pct_pass`).
//!
//! Usage: verdict_quality [aa_runs=400] [ab_runs=100] [seed=42] [step_runs=200]
//! Last line: key=value figures.

use greenlight_engine::histogram::{ColorStats, RequestOutcome, Sample, SeenColor, SummaryOf};
use greenlight_test_origin::std_normal;
use greenlight_verdict::{judge, judge_sequential, ColorSummary, ErrorCheck, Policy, Verdict};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

const RPS: usize = 1000;
const GREEN_SHARE: f64 = 0.10;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Blue's (and by default green's) error rate.
const ERROR_RATE: f64 = 0.001;

fn draw(rng: &mut SmallRng, color: SeenColor, factor: f64) -> Sample {
    draw_with(rng, color, factor, ERROR_RATE)
}

fn draw_with(rng: &mut SmallRng, color: SeenColor, factor: f64, error_rate: f64) -> Sample {
    let ms = 20.0 * factor * (0.5 * std_normal(rng)).exp();
    let outcome = if rng.gen::<f64>() < error_rate {
        RequestOutcome::Status(503)
    } else {
        RequestOutcome::Status(200)
    };
    let d = Duration::from_secs_f64(ms / 1000.0);
    Sample {
        color,
        latency: d,
        service: d,
        ttfb: d / 2,
        events_per_s: None,
        outcome,
        epoch: Some(1),
    }
}

/// One simulated run: returns (first sequential Fail second, fixed verdict at
/// the end, whether the latency confidence sequence ever excluded the true
/// log-ratio — a stricter check of anytime validity than false Fails).
fn simulate(
    seed: u64,
    green_factor: f64,
    max_s: u64,
    stop_at_fail: bool,
    policy: &Policy,
) -> (Option<u64>, Verdict, bool) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut blue, mut green) = (ColorStats::default(), ColorStats::default());
    let mut first_fail = None;
    let mut missed = false;
    let truth = green_factor.ln();
    for s in 1..=max_s {
        for _ in 0..RPS {
            if rng.gen::<f64>() < GREEN_SHARE {
                green.record(&draw(&mut rng, SeenColor::Green, green_factor));
            } else {
                blue.record(&draw(&mut rng, SeenColor::Blue, 1.0));
            }
        }
        let j = judge_sequential(policy, &ColorSummary::of(&blue), &ColorSummary::of(&green));
        if let Some(cs) = j.sequential.as_ref().map(|q| q.log_latency) {
            missed |= cs.low > truth || cs.high < truth;
        }
        if j.verdict == Verdict::Fail && first_fail.is_none() {
            first_fail = Some(s);
            if stop_at_fail {
                break;
            }
        }
    }
    let fixed = judge(policy, &ColorSummary::of(&blue), &ColorSummary::of(&green)).verdict;
    (first_fail, fixed, missed)
}

/// How one automated-rollout step ends: (seconds to the decision, verdict);
/// 120 s and Inconclusive when there is none after the extensions.
fn simulate_step(
    seed: u64,
    green_factor: f64,
    green_error_rate: f64,
    comparison: bool,
    policy: &Policy,
) -> (u64, Verdict) {
    const STEP_RPS: usize = 60;
    const WEIGHT: f64 = 0.01;
    const WEIGHTED_SHARE: f64 = 0.1;
    const DWELL_S: u64 = 30;
    const EXTENSIONS: u64 = 2;
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut blue, mut green) = (ColorStats::default(), ColorStats::default());
    let mut pair_first = true;
    let mut pair_is_comparison = false;
    for s in 1..=DWELL_S * (EXTENSIONS + 1) {
        for _ in 0..STEP_RPS {
            // Pairs: both halves comparison (one per color) or both weighted.
            if pair_first {
                pair_is_comparison = comparison && rng.gen::<f64>() >= WEIGHTED_SHARE;
            }
            let to_green = if pair_is_comparison {
                !pair_first
            } else {
                rng.gen::<f64>() < WEIGHT
            };
            // With comparison traffic only the comparison samples are judged.
            if !comparison || pair_is_comparison {
                if to_green {
                    green.record(&draw_with(
                        &mut rng,
                        SeenColor::Green,
                        green_factor,
                        green_error_rate,
                    ));
                } else {
                    blue.record(&draw(&mut rng, SeenColor::Blue, 1.0));
                }
            }
            pair_first = !pair_first;
        }
        let (b, g) = (ColorSummary::of(&blue), ColorSummary::of(&green));
        if judge_sequential(policy, &b, &g).verdict == Verdict::Fail {
            return (s, Verdict::Fail);
        }
        if s % DWELL_S == 0 {
            let v = judge(policy, &b, &g).verdict;
            if v != Verdict::Inconclusive {
                return (s, v);
            }
        }
    }
    (120, Verdict::Inconclusive)
}

fn median_of(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2] as f64,
        n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0,
    }
}

fn main() {
    let (aa_runs, ab_runs, seed) = (arg(1, 400), arg(2, 100), arg(3, 42));
    let step_runs = arg(4, 200);
    let policy = Policy::default();
    let started = std::time::Instant::now();
    let (mut aa_alarms, mut aa_fixed_alarms, mut aa_cs_miss) = (0u64, 0u64, 0u64);
    for r in 0..aa_runs {
        let (fail, fixed, missed) = simulate(
            seed.wrapping_mul(1_000_003).wrapping_add(r),
            1.0,
            60,
            false,
            &policy,
        );
        aa_alarms += u64::from(fail.is_some());
        aa_fixed_alarms += u64::from(fixed == Verdict::Fail);
        aa_cs_miss += u64::from(missed);
    }
    let mut detect: Vec<u64> = (0..ab_runs)
        .map(|r| {
            let s = seed.wrapping_mul(7_000_003).wrapping_add(r + 1_000_000);
            simulate(s, 1.2, 120, true, &policy).0.unwrap_or(120)
        })
        .collect();
    detect.sort_unstable();
    let median = if detect.is_empty() {
        f64::NAN
    } else if detect.len() % 2 == 1 {
        detect[detect.len() / 2] as f64
    } else {
        (detect[detect.len() / 2 - 1] + detect[detect.len() / 2]) as f64 / 2.0
    };
    let never = detect.iter().filter(|&&d| d >= 120).count();
    println!(
        "policy: alpha {} tolerance {} (sequential: normal-mixture CS on mean log-latency, tau {}), min {} samples/color",
        policy.alpha, policy.latency_tolerance, policy.sequential_tau, policy.min_samples
    );
    println!(
        "A/A: {aa_runs} runs x 60 looks: {aa_alarms} sequential false alarms, {aa_fixed_alarms} fixed-horizon false alarms; the latency CS excluded the truth in {aa_cs_miss} runs (bound: alpha)"
    );
    println!(
        "A/B (+20 % at 10 % of 1000 req/s): {ab_runs} runs, detection s: min {} median {median} max {} ({never} not detected in 120 s)",
        detect.first().copied().unwrap_or(0),
        detect.last().copied().unwrap_or(0)
    );
    // One rollout step at 1 % of 60 req/s, with and without comparison traffic.
    let step_with = |policy: &Policy,
                     comparison: bool,
                     factor: f64,
                     green_errors: f64,
                     salt: u64|
     -> Vec<(u64, Verdict)> {
        (0..step_runs)
            .map(|r| {
                let s = seed.wrapping_mul(11_000_003).wrapping_add(r + salt);
                simulate_step(s, factor, green_errors, comparison, policy)
            })
            .collect()
    };
    let step = |comparison: bool, factor: f64, salt: u64| {
        step_with(&policy, comparison, factor, ERROR_RATE, salt)
    };
    let share = |runs: &[(u64, Verdict)], v: Verdict| {
        runs.iter().filter(|(_, x)| *x == v).count() as f64 / runs.len().max(1) as f64
    };
    let ab_cmp = step(true, 1.2, 3_000_000);
    let ab_weighted = step(false, 1.2, 3_000_000);
    let aa_cmp = step(true, 1.0, 5_000_000);
    // The same A/A steps under the strict error check, and a green with
    // 2 % errors (blue 0.1 %) under the default one.
    let strict = Policy {
        error_check: ErrorCheck::NonInferior,
        ..policy.clone()
    };
    let aa_strict = step_with(&strict, true, 1.0, ERROR_RATE, 5_000_000);
    let errors_cmp = step_with(&policy, true, 1.0, 0.02, 7_000_000);
    let errors_half = step_with(&policy, true, 1.0, 0.005, 9_000_000);
    let step1_decide_s = median_of(ab_cmp.iter().map(|(s, _)| *s).collect());
    let step1_weighted_decide_s = median_of(ab_weighted.iter().map(|(s, _)| *s).collect());
    println!(
        "1 % step at 60 req/s (dwell 30 s, 2 extensions), green +20 %: with comparison traffic median {step1_decide_s} s to a decision ({:.0} % Fail); all weighted: median {step1_weighted_decide_s} s ({:.0} % Fail)",
        share(&ab_cmp, Verdict::Fail) * 100.0,
        share(&ab_weighted, Verdict::Fail) * 100.0
    );
    println!(
        "1 % step, A/A with comparison traffic (error check {}): {:.1} % Fail, {:.1} % Pass, {:.1} % still inconclusive after the extensions; under {}: {:.1} % Pass (0.1 % errors on both: proving them within 0.1 pp needs many samples)",
        policy.error_check,
        share(&aa_cmp, Verdict::Fail) * 100.0,
        share(&aa_cmp, Verdict::Pass) * 100.0,
        share(&aa_cmp, Verdict::Inconclusive) * 100.0,
        strict.error_check,
        share(&aa_strict, Verdict::Pass) * 100.0
    );
    println!(
        "1 % step, green with 2 % errors (blue 0.1 %, latency equal): {:.1} % Fail (median {} s), {:.1} % Pass; with 0.5 % errors: {:.1} % Fail, {:.1} % Pass, {:.1} % waiting",
        share(&errors_cmp, Verdict::Fail) * 100.0,
        median_of(errors_cmp.iter().map(|(s, _)| *s).collect()),
        share(&errors_cmp, Verdict::Pass) * 100.0,
        share(&errors_half, Verdict::Fail) * 100.0,
        share(&errors_half, Verdict::Pass) * 100.0,
        share(&errors_half, Verdict::Inconclusive) * 100.0
    );
    println!("simulated in {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "aa_false_alarm={:.3} ab_detect_s={median:.1} aa_fixed_false_alarm={:.3} aa_cs_miss={:.3} step1_decide_s={step1_decide_s:.1} step1_weighted_decide_s={step1_weighted_decide_s:.1} step1_aa_false_alarm={:.3} step1_aa_pass={:.3} step1_aa_pass_non_inferior={:.3} step1_err2pct_fail={:.3} step1_err2pct_pass={:.3} step1_err05pct_pass={:.3} aa_runs={aa_runs} ab_runs={ab_runs} step_runs={step_runs}",
        aa_alarms as f64 / aa_runs.max(1) as f64,
        aa_fixed_alarms as f64 / aa_runs.max(1) as f64,
        aa_cs_miss as f64 / aa_runs.max(1) as f64,
        share(&aa_cmp, Verdict::Fail),
        share(&aa_cmp, Verdict::Pass),
        share(&aa_strict, Verdict::Pass),
        share(&errors_cmp, Verdict::Fail),
        share(&errors_cmp, Verdict::Pass),
        share(&errors_half, Verdict::Pass)
    );
}
