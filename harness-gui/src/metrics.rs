//! What the charts and the verdict panel show, computed off the UI thread
//! from a recorder snapshot: plot lines per color (rps, p50, p99, error
//! rate over time; the percentile distribution) and the verdicts.
//! The UI only draws these vectors, so a frame costs the same whether the
//! run holds a thousand requests or a million.

use egui_plot::PlotPoint;
use greenlight_common::Color;
use greenlight_engine::histogram::{ColorStats, OutcomeCounts, SeenColor, SummaryOf};
use greenlight_engine::recorder::{comparison_window, window, EngineCounters, Snapshot};
use greenlight_verdict::{judge, judge_sequential, ColorSummary, Judgement, Policy};
use hdrhistogram::Histogram;

/// Highest percentile the distribution plot reaches (99.999 %).
pub const MAX_NINES: f64 = 5.0;

/// The x coordinate of percentile `q` (0..1) on the distribution plot:
/// `-log10(1 - q)`, so 0 → 0, 90 % → 1, 99 % → 2 ... 99.999 % → 5.
pub fn nines(q: f64) -> f64 {
    (-(1.0 - q).max(1e-12).log10()).clamp(0.0, MAX_NINES)
}

/// The label of a distribution-plot x coordinate (`0%`, `90%`, `99.9%`...).
pub fn nines_label(x: f64) -> String {
    let q = (1.0 - 10f64.powf(-x)) * 100.0;
    let digits = (x.round() as i32 - 2).max(0) as usize;
    format!("{q:.digits$}%")
}

/// Per-color lines and totals.
#[derive(Debug, Clone, Default)]
pub struct ColorView {
    pub rps: Vec<PlotPoint>,
    pub p50_ms: Vec<PlotPoint>,
    pub p99_ms: Vec<PlotPoint>,
    /// Errors as % of that color's requests, per interval.
    pub error_pct: Vec<PlotPoint>,
    /// (nines(q), latency ms) over the whole window.
    pub distribution: Vec<PlotPoint>,
    pub requests: u64,
    pub errors: u64,
    pub outcomes: OutcomeCounts,
    /// p50, p90, p99, p99.9, max (ms).
    pub quantiles_ms: [f64; 5],
    /// Time to first byte (first event of a stream) p50 per interval (ms).
    pub ttfb_p50_ms: Vec<PlotPoint>,
    /// Time to first byte p50, p90, p99 over the window (ms).
    pub ttfb_quantiles_ms: [f64; 3],
    /// Median events per second of streamed answers (`None`: no streams).
    pub events_per_s: Option<f64>,
}

impl ColorView {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

/// Everything the charts and verdict panel need.
#[derive(Debug, Clone, Default)]
pub struct MetricsView {
    pub elapsed_s: f64,
    pub blue: ColorView,
    pub green: ColorView,
    pub unknown_requests: u64,
    pub counters: EngineCounters,
    /// Fixed-horizon judgement of the candidate against the active color.
    pub judgement: Option<Judgement>,
    /// Anytime-valid judgement (what the automated rollout watches live).
    pub sequential: Option<Judgement>,
    /// Which color was the baseline.
    pub baseline: Option<Color>,
    /// What the statistics cover ("the whole run", "since the rollout started").
    pub window: String,
    pub policy: Policy,
    /// Per location (cf-ray suffix), when the answers name locations.
    pub locations: Option<greenlight_engine::locations::LocationSummary>,
}

impl MetricsView {
    pub fn color(&self, c: Color) -> &ColorView {
        match c {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }
}

/// The percentile distribution of a histogram, HdrHistogram style.
pub fn distribution(h: &Histogram<u64>) -> Vec<PlotPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(256);
    for v in h.iter_quantiles(4) {
        let q = v.quantile_iterated_to();
        let x = nines(q);
        let y = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
        if out
            .last()
            .is_some_and(|p: &PlotPoint| (p.x - x).abs() < 1e-9 && (p.y - y).abs() < 1e-9)
        {
            continue;
        }
        out.push(PlotPoint::new(x, y));
        if x >= MAX_NINES {
            break;
        }
    }
    out
}

fn color_view(snap: &Snapshot, stats: &ColorStats, key: SeenColor) -> ColorView {
    let mut v = ColorView {
        requests: stats.requests(),
        errors: stats.outcomes.errors(),
        outcomes: stats.outcomes,
        distribution: distribution(&stats.corrected),
        ..ColorView::default()
    };
    let n = snap.series.len();
    v.rps.reserve(n);
    v.p50_ms.reserve(n);
    v.p99_ms.reserve(n);
    v.error_pct.reserve(n);
    for p in &snap.series {
        let c = p.color(key);
        v.rps.push(PlotPoint::new(p.t_s, c.rps));
        if c.requests > 0 {
            v.p50_ms.push(PlotPoint::new(p.t_s, c.p50_ms));
            v.p99_ms.push(PlotPoint::new(p.t_s, c.p99_ms));
            v.ttfb_p50_ms.push(PlotPoint::new(p.t_s, c.ttfb_p50_ms));
        }
        let e = if c.requests > 0 {
            c.errors as f64 * 100.0 / c.requests as f64
        } else {
            0.0
        };
        v.error_pct.push(PlotPoint::new(p.t_s, e));
    }
    if v.requests > 0 {
        let h = &stats.corrected;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        v.quantiles_ms = [
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1000.0,
        ];
        let ttfb = |q: f64| stats.ttfb_us(q) as f64 / 1000.0;
        v.ttfb_quantiles_ms = [ttfb(0.5), ttfb(0.9), ttfb(0.99)];
        v.events_per_s = stats.events_per_s(0.5);
    }
    v
}

/// Builds the view: lines over the whole run, statistics and verdicts over
/// the window after `base` (the current rollout step's start, when one is
/// running); with `comparison`, the verdicts judge the comparison samples.
pub fn build(
    snap: &Snapshot,
    base: Option<&Snapshot>,
    policy: &Policy,
    active: Color,
    comparison: bool,
) -> MetricsView {
    let colors = window(snap, base);
    let blue = color_view(snap, &colors[SeenColor::Blue.index()], SeenColor::Blue);
    let green = color_view(snap, &colors[SeenColor::Green.index()], SeenColor::Green);
    let judged = if comparison {
        comparison_window(snap, base)
    } else {
        colors.clone()
    };
    let (bk, ck) = (SeenColor::from(active), SeenColor::from(active.other()));
    let b = ColorSummary::of_color(&judged[bk.index()], bk);
    let c = ColorSummary::of_color(&judged[ck.index()], ck);
    let any = b.requests + c.requests > 0;
    MetricsView {
        elapsed_s: snap.elapsed.as_secs_f64(),
        blue,
        green,
        unknown_requests: colors[SeenColor::Unknown.index()].requests(),
        counters: snap.counters,
        judgement: any.then(|| judge(policy, &b, &c)),
        sequential: any.then(|| judge_sequential(policy, &b, &c)),
        baseline: Some(active),
        window: format!(
            "{}{}",
            if base.is_some() {
                "since the rollout step started"
            } else {
                "the whole run"
            },
            if comparison {
                ", comparison samples"
            } else {
                ""
            }
        ),
        policy: policy.clone(),
        locations: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_engine::histogram::{RequestOutcome, Sample};
    use greenlight_engine::recorder::Recorder;
    use std::time::Duration;

    fn sample(color: SeenColor, ms: u64, ok: bool) -> Sample {
        Sample {
            color,
            latency: Duration::from_millis(ms),
            service: Duration::from_millis(ms),
            ttfb: Duration::from_millis(ms / 2),
            events_per_s: None,
            outcome: if ok {
                RequestOutcome::Status(200)
            } else {
                RequestOutcome::Status(503)
            },
            epoch: Some(1),
        }
    }

    #[test]
    fn nines_axis() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), MAX_NINES);
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
    }

    #[test]
    fn lines_windows_and_verdicts() {
        let r = Recorder::new();
        for i in 0..1000 {
            r.record(i, &sample(SeenColor::Blue, 10 + i % 5, true));
        }
        r.tick_at(Duration::from_secs(1));
        let base = r.snapshot();
        for i in 0..1000 {
            r.record(i, &sample(SeenColor::Blue, 10 + i % 5, true));
            r.record(i, &sample(SeenColor::Green, 30 + i % 5, i % 10 != 0));
        }
        r.tick_at(Duration::from_secs(2));
        let snap = r.snapshot();
        let all = build(&snap, None, &Policy::default(), Color::Blue, false);
        assert_eq!((all.blue.requests, all.green.requests), (2000, 1000));
        assert_eq!(all.blue.rps.len(), 2);
        assert_eq!(
            all.green.p99_ms.len(),
            1,
            "no p99 point for an interval without requests"
        );
        assert!((all.green.error_pct[1].y - 10.0).abs() < 1e-9);
        assert!((all.green.error_rate() - 0.1).abs() < 1e-9);
        let d = &all.green.distribution;
        assert!(d.len() > 5 && d.windows(2).all(|w| w[0].x <= w[1].x && w[0].y <= w[1].y));
        assert!(d.last().unwrap().y >= 34.0);
        // Time to first byte beside the latency (the samples' ttfb is half).
        assert_eq!(all.green.ttfb_p50_ms.len(), 1);
        assert!((all.green.ttfb_quantiles_ms[0] - 16.0).abs() < 0.1);
        assert!(all.green.ttfb_quantiles_ms[2] < all.green.quantiles_ms[2]);
        assert_eq!(all.green.events_per_s, None);
        let j = all.judgement.as_ref().unwrap();
        assert_eq!(j.verdict, greenlight_verdict::Verdict::Fail);

        let since = build(&snap, Some(&base), &Policy::default(), Color::Blue, false);
        assert_eq!((since.blue.requests, since.green.requests), (1000, 1000));
        assert_eq!(since.window, "since the rollout step started");
        // Lines always cover the whole run.
        assert_eq!(since.blue.rps.len(), 2);
    }

    #[test]
    fn empty_snapshots_have_no_verdict() {
        let r = Recorder::new();
        let v = build(&r.snapshot(), None, &Policy::default(), Color::Blue, false);
        assert!(v.judgement.is_none() && v.blue.distribution.is_empty());
    }
}
