//! Verdict quality by seeded simulation (no network).
//!
//! - A/A: blue and green draw from the same latency distribution (log-normal,
//!   median 20 ms, σ 0.5, 0.1 % errors); 1000 req/s total, green at 10 %;
//!   the sequential test looks every second for 60 s. A `Fail` at any look
//!   is a false alarm. The fixed-horizon verdict at 60 s is counted too.
//! - A/B: green's latency is 20 % higher (everything else equal); the time
//!   of the first sequential `Fail` is recorded (capped at 120 s).
//!
//! Usage: verdict_quality [aa_runs=400] [ab_runs=100] [seed=42]
//! Last line: key=value figures.

use loadtest::histogram::{ColorKey, ColorStats, Outcome, Sample};
use loadtest::origin::std_normal;
use loadtest::verdict::{judge, judge_sequential, ColorSummary, Policy, Verdict};
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

fn draw(rng: &mut SmallRng, color: ColorKey, factor: f64) -> Sample {
    let ms = 20.0 * factor * (0.5 * std_normal(rng)).exp();
    let outcome = if rng.gen::<f64>() < 0.001 {
        Outcome::Status(503)
    } else {
        Outcome::Status(200)
    };
    let d = Duration::from_secs_f64(ms / 1000.0);
    Sample {
        color,
        latency: d,
        service: d,
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
                green.record(&draw(&mut rng, ColorKey::Green, green_factor));
            } else {
                blue.record(&draw(&mut rng, ColorKey::Blue, 1.0));
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

fn main() {
    let (aa_runs, ab_runs, seed) = (arg(1, 400), arg(2, 100), arg(3, 42));
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
    println!("simulated in {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "aa_false_alarm={:.3} ab_detect_s={median:.1} aa_fixed_false_alarm={:.3} aa_cs_miss={:.3} aa_runs={aa_runs} ab_runs={ab_runs}",
        aa_alarms as f64 / aa_runs.max(1) as f64,
        aa_fixed_alarms as f64 / aa_runs.max(1) as f64,
        aa_cs_miss as f64 / aa_runs.max(1) as f64
    );
}
