//! Real users' answers as the edge counted them (`GET /__greenlight/metrics`,
//! [`greenlight_common::telemetry`]), made into the summaries the verdict
//! reads, so they are judged with the same statistics as the harness's own
//! samples.

use crate::histogram::histogram_buckets_ms;
use greenlight_common::telemetry::{CountsView, MetricsView};
use greenlight_common::Color;
use greenlight_verdict::{judge, judge_sequential, ColorSummary, Judgement, Policy};
use hdrhistogram::Histogram;

/// One color's counts as a verdict summary. Time buckets are the edge's
/// HdrHistogram floors (two significant digits, µs), recorded into a
/// histogram of the same resolution. The edge times the origin's response
/// head (TTFB); where it also timed the last byte, that is the latency.
pub fn summary(c: &CountsView, color: Color) -> ColorSummary {
    let buckets = |floors: &[(u64, u64)]| {
        let mut h = match Histogram::<u64>::new(2) {
            Ok(h) => h,
            Err(_) => return Vec::new(),
        };
        for (floor, n) in floors {
            let _ = h.record_n((*floor).max(1), *n);
        }
        histogram_buckets_ms(&h)
    };
    let ttfb = buckets(&c.ttfb_buckets_us);
    let total = buckets(&c.total_buckets_us);
    ColorSummary {
        buckets_ms: if total.is_empty() {
            ttfb.clone()
        } else {
            total
        },
        ttfb_buckets_ms: ttfb,
        requests: c.requests,
        errors: c.errors,
        label: Some(match color {
            Color::Blue => "blue",
            Color::Green => "green",
        }),
    }
}

/// The judgement of the candidate against `active` on the real users of
/// `epoch`; `None` when the edge kept no counts for it. `sequential`: the
/// anytime-valid mode, for looks during a step.
pub fn judge_epoch(
    view: &MetricsView,
    epoch: u64,
    active: Color,
    policy: &Policy,
    sequential: bool,
) -> Option<Judgement> {
    let e = view.epoch(epoch)?;
    let of = |color: Color| {
        e.colors
            .get(&color)
            .map(|c| summary(c, color))
            .unwrap_or_else(|| ColorSummary {
                label: summary(&empty(), color).label,
                ..ColorSummary::default()
            })
    };
    let (base, cand) = (of(active), of(active.other()));
    Some(if sequential {
        judge_sequential(policy, &base, &cand)
    } else {
        judge(policy, &base, &cand)
    })
}

fn empty() -> CountsView {
    CountsView::of(&Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_common::telemetry::{AnswerClass, Measured, Tally};
    use greenlight_verdict::Verdict;

    fn tally(green_ms: u64, green_errors_every: u64) -> Tally {
        let mut t = Tally::default();
        for i in 0..2_000u64 {
            let jitter = i % 7;
            let ok = |ms: u64| Measured {
                class: AnswerClass::Success,
                ttfb_us: Some((ms + jitter) * 1_000),
                total_us: None,
                bytes: 10,
                at_ms: i,
            };
            t.record(Color::Blue, 5, &ok(20));
            let green = if green_errors_every > 0 && i % green_errors_every == 0 {
                Measured {
                    class: AnswerClass::ServerError,
                    ..ok(green_ms)
                }
            } else {
                ok(green_ms)
            };
            t.record(Color::Green, 5, &green);
        }
        t
    }

    #[test]
    fn real_counts_are_judged_like_samples() {
        let policy = Policy::default();
        let verdict = |t: &Tally| {
            judge_epoch(&t.view(), 5, Color::Blue, &policy, false)
                .unwrap()
                .verdict
        };
        assert_eq!(verdict(&tally(20, 0)), Verdict::Pass);
        assert_eq!(verdict(&tally(30, 0)), Verdict::Fail, "50 % slower");
        assert_eq!(verdict(&tally(20, 20)), Verdict::Fail, "5 % errors");
        assert!(judge_epoch(&tally(20, 0).view(), 9, Color::Blue, &policy, false).is_none());
        let s = summary(
            &tally(20, 0).view().epochs[0].colors[&Color::Blue],
            Color::Blue,
        );
        assert_eq!(s.requests, 2_000);
        assert_eq!(s.buckets_ms, s.ttfb_buckets_ms, "no last-byte times: TTFB");
        let median = greenlight_verdict::stats::quantile(&s.ttfb_buckets_ms, 0.5).unwrap();
        assert!((20.0..=27.0).contains(&median), "{median}");
    }
}
