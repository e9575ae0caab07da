//! Per-color measurements: latency histograms (µs, 3 significant digits),
//! time to first byte (the first event of a stream), the pace of streamed
//! answers, outcome counts and the rollout epochs seen.

use greenlight_verdict::stats::Bucket;
use greenlight_verdict::ColorSummary;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// Highest latency a histogram tracks (1 hour in µs); larger values saturate.
pub const MAX_TRACKABLE_US: u64 = 3_600_000_000;
/// HdrHistogram precision used everywhere.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// The color a response came from, read from `x-greenlight-color`: one of
/// the two [`greenlight_common::Color`]s, or none that the answer named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeenColor {
    Blue,
    Green,
    /// Header missing or not a known color (errors before any response, too).
    Unknown,
}

impl SeenColor {
    pub const ALL: [SeenColor; 3] = [SeenColor::Blue, SeenColor::Green, SeenColor::Unknown];

    /// Reads a header value; anything but blue/green is `Unknown`.
    pub fn from_header(value: Option<&str>) -> SeenColor {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("blue") => SeenColor::Blue,
            Some(v) if v.eq_ignore_ascii_case("green") => SeenColor::Green,
            _ => SeenColor::Unknown,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SeenColor::Blue => "blue",
            SeenColor::Green => "green",
            SeenColor::Unknown => "unknown",
        }
    }
}

impl From<greenlight_common::Color> for SeenColor {
    fn from(c: greenlight_common::Color) -> SeenColor {
        match c {
            greenlight_common::Color::Blue => SeenColor::Blue,
            greenlight_common::Color::Green => SeenColor::Green,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// An HTTP response with this status.
    Status(u16),
    /// No complete response within the request timeout.
    Timeout,
    /// The connection could not be established.
    ConnectError,
    /// Any other transport failure (reset, malformed response, body error).
    OtherError,
}

impl RequestOutcome {
    /// Server errors and transport failures count as errors; 4xx do not
    /// (they are the caller's fault and hit both colors alike).
    pub fn is_error(self) -> bool {
        !matches!(self, RequestOutcome::Status(s) if s < 500)
    }
}

/// Counts by outcome class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub s2xx: u64,
    pub s3xx: u64,
    pub s4xx: u64,
    pub s5xx: u64,
    /// 1xx or nonstandard status codes.
    pub other_status: u64,
    pub timeout: u64,
    pub connect_error: u64,
    pub other_error: u64,
}

impl OutcomeCounts {
    pub fn add(&mut self, o: RequestOutcome) {
        match o {
            RequestOutcome::Status(s) => match s {
                200..=299 => self.s2xx += 1,
                300..=399 => self.s3xx += 1,
                400..=499 => self.s4xx += 1,
                500..=599 => self.s5xx += 1,
                _ => self.other_status += 1,
            },
            RequestOutcome::Timeout => self.timeout += 1,
            RequestOutcome::ConnectError => self.connect_error += 1,
            RequestOutcome::OtherError => self.other_error += 1,
        }
    }

    pub fn merge(&mut self, o: &OutcomeCounts) {
        self.s2xx += o.s2xx;
        self.s3xx += o.s3xx;
        self.s4xx += o.s4xx;
        self.s5xx += o.s5xx;
        self.other_status += o.other_status;
        self.timeout += o.timeout;
        self.connect_error += o.connect_error;
        self.other_error += o.other_error;
    }

    /// Removes `o`'s counts (a window between two snapshots); never below 0.
    pub fn saturating_sub(&mut self, o: &OutcomeCounts) {
        self.s2xx = self.s2xx.saturating_sub(o.s2xx);
        self.s3xx = self.s3xx.saturating_sub(o.s3xx);
        self.s4xx = self.s4xx.saturating_sub(o.s4xx);
        self.s5xx = self.s5xx.saturating_sub(o.s5xx);
        self.other_status = self.other_status.saturating_sub(o.other_status);
        self.timeout = self.timeout.saturating_sub(o.timeout);
        self.connect_error = self.connect_error.saturating_sub(o.connect_error);
        self.other_error = self.other_error.saturating_sub(o.other_error);
    }

    pub fn total(&self) -> u64 {
        self.s2xx
            + self.s3xx
            + self.s4xx
            + self.s5xx
            + self.other_status
            + self.timeout
            + self.connect_error
            + self.other_error
    }

    /// 5xx plus transport failures (see [`RequestOutcome::is_error`]).
    pub fn errors(&self) -> u64 {
        self.s5xx + self.timeout + self.connect_error + self.other_error
    }
}

/// One finished request as the engine measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub color: SeenColor,
    /// From the *intended* send time to the end of the response (CO-corrected).
    pub latency: Duration,
    /// From the actual send to the end of the response (what closed-loop tools report).
    pub service: Duration,
    /// From the *intended* send time to the answer's first byte: its first
    /// event for a `text/event-stream` answer (a model's first token), else
    /// the first body byte (the head for an empty body; the end of a failure).
    /// CO-corrected like `latency`, which is the time to the last byte.
    pub ttfb: Duration,
    /// Events per second between a streamed answer's first and last event
    /// (`None`: not a stream, or fewer than two events).
    pub events_per_s: Option<f64>,
    pub outcome: RequestOutcome,
    pub epoch: Option<u64>,
}

fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: construction cannot fail; fall back to an
    // auto-resizing histogram rather than panicking if it ever did.
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, SIGNIFICANT_DIGITS)
        .or_else(|_| Histogram::new(SIGNIFICANT_DIGITS))
        .unwrap_or_else(|_| unreachable_histogram())
}

#[cold]
fn unreachable_histogram() -> Histogram<u64> {
    // `Histogram::new(3)` only fails for sigfig > 5.
    match Histogram::new(3) {
        Ok(h) => h,
        Err(e) => panic!("hdrhistogram refused sigfig 3: {e}"),
    }
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Event rates are kept in thousandths of an event per second (histograms
/// hold integers): 50 events/s is recorded as 50 000.
pub const EVENT_RATE_SCALE: f64 = 1000.0;

/// Everything measured for one color.
#[derive(Debug, Clone)]
pub struct ColorStats {
    /// Latency from the intended send time (µs): the time to the last byte.
    pub corrected: Histogram<u64>,
    /// Service time from the actual send (µs).
    pub uncorrected: Histogram<u64>,
    /// Time to the first byte (first event of a stream) from the intended
    /// send time (µs), one value per request like `corrected`.
    pub ttfb: Histogram<u64>,
    /// Events per second of each streamed answer with two events or more,
    /// in thousandths ([`EVENT_RATE_SCALE`]).
    pub event_rate: Histogram<u64>,
    pub outcomes: OutcomeCounts,
    pub epochs: BTreeSet<u64>,
}

impl Default for ColorStats {
    fn default() -> Self {
        ColorStats {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
            ttfb: new_histogram(),
            event_rate: new_histogram(),
            outcomes: OutcomeCounts::default(),
            epochs: BTreeSet::new(),
        }
    }
}

/// Adds `from` into `into`, saturating values beyond `into`'s bounds.
pub fn add_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // Same bounds on both sides: `add` cannot fail; saturate otherwise.
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

impl ColorStats {
    pub fn record(&mut self, s: &Sample) {
        self.corrected.saturating_record(us(s.latency));
        self.uncorrected.saturating_record(us(s.service));
        self.ttfb.saturating_record(us(s.ttfb));
        if let Some(rate) = s.events_per_s.filter(|r| r.is_finite() && *r > 0.0) {
            self.event_rate
                .saturating_record(((rate * EVENT_RATE_SCALE).round() as u64).max(1));
        }
        self.outcomes.add(s.outcome);
        if let Some(e) = s.epoch {
            self.epochs.insert(e);
        }
    }

    pub fn merge(&mut self, other: &ColorStats) {
        add_histogram(&mut self.corrected, &other.corrected);
        add_histogram(&mut self.uncorrected, &other.uncorrected);
        add_histogram(&mut self.ttfb, &other.ttfb);
        add_histogram(&mut self.event_rate, &other.event_rate);
        self.outcomes.merge(&other.outcomes);
        self.epochs.extend(other.epochs.iter().copied());
    }

    /// Removes what `base` (an earlier copy of the same accumulator) held,
    /// leaving what was recorded since. Epochs are kept: a set cannot be
    /// subtracted, and the epochs seen since are among them.
    pub fn subtract(&mut self, base: &ColorStats) {
        // Counts that went down (another accumulator): keep the totals.
        let _ = self.corrected.subtract(&base.corrected);
        let _ = self.uncorrected.subtract(&base.uncorrected);
        let _ = self.ttfb.subtract(&base.ttfb);
        let _ = self.event_rate.subtract(&base.event_rate);
        self.outcomes.saturating_sub(&base.outcomes);
    }

    pub fn reset(&mut self) {
        self.corrected.reset();
        self.uncorrected.reset();
        self.ttfb.reset();
        self.event_rate.reset();
        self.outcomes = OutcomeCounts::default();
        self.epochs.clear();
    }

    pub fn requests(&self) -> u64 {
        self.outcomes.total()
    }

    /// Corrected latency quantile in µs (0 when empty).
    pub fn latency_us(&self, q: f64) -> u64 {
        self.corrected.value_at_quantile(q)
    }

    /// Corrected-latency buckets in milliseconds, for the statistics.
    pub fn buckets_ms(&self) -> Vec<Bucket> {
        histogram_buckets_ms(&self.corrected)
    }

    /// Corrected time-to-first-byte quantile in µs (0 when empty).
    pub fn ttfb_us(&self, q: f64) -> u64 {
        self.ttfb.value_at_quantile(q)
    }

    /// Corrected time-to-first-byte buckets in milliseconds, for the statistics.
    pub fn ttfb_buckets_ms(&self) -> Vec<Bucket> {
        histogram_buckets_ms(&self.ttfb)
    }

    /// Events per second of the streamed answers at quantile `q` (`None`
    /// when no answer was a stream of two events or more).
    pub fn events_per_s(&self, q: f64) -> Option<f64> {
        let h = &self.event_rate;
        (!h.is_empty())
            .then(|| h.median_equivalent(h.value_at_quantile(q)) as f64 / EVENT_RATE_SCALE)
    }
}

/// A histogram's recorded buckets as `(median-equivalent value in ms, count)`.
pub fn histogram_buckets_ms(h: &Histogram<u64>) -> Vec<Bucket> {
    h.iter_recorded()
        .map(|v| {
            (
                h.median_equivalent(v.value_iterated_to()) as f64 / 1000.0,
                v.count_at_value(),
            )
        })
        .collect()
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub min: f64,
    pub mean: f64,
    pub stdev: f64,
    pub max: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |x: f64| ms(h.value_at_quantile(x));
        LatencySummary {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            stdev: h.stdev() / 1000.0,
            max: ms(h.max()),
            p50: q(0.5),
            p75: q(0.75),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
        }
    }
}

/// What the verdict reads of a color's measurements.
pub trait SummaryOf {
    /// The summary of `c`, named by role in the reasons.
    fn of(c: &ColorStats) -> Self;
    /// The summary of `c`, named `color` in the reasons.
    fn of_color(c: &ColorStats, color: SeenColor) -> Self;
}

impl SummaryOf for ColorSummary {
    fn of(c: &ColorStats) -> ColorSummary {
        ColorSummary {
            buckets_ms: c.buckets_ms(),
            ttfb_buckets_ms: c.ttfb_buckets_ms(),
            requests: c.requests(),
            errors: c.outcomes.errors(),
            label: None,
        }
    }

    fn of_color(c: &ColorStats, color: SeenColor) -> ColorSummary {
        ColorSummary {
            label: Some(color.as_str()),
            ..ColorSummary::of(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(color: SeenColor, ms: u64, outcome: RequestOutcome) -> Sample {
        Sample {
            color,
            latency: Duration::from_millis(ms),
            service: Duration::from_millis(ms / 2),
            ttfb: Duration::from_millis(ms / 4),
            events_per_s: (ms > 10).then_some(40.0),
            outcome,
            epoch: Some(3),
        }
    }

    #[test]
    fn colors_from_header() {
        assert_eq!(SeenColor::from_header(Some("Green")), SeenColor::Green);
        assert_eq!(SeenColor::from_header(Some(" blue")), SeenColor::Blue);
        assert_eq!(SeenColor::from_header(Some("red")), SeenColor::Unknown);
        assert_eq!(SeenColor::from_header(None), SeenColor::Unknown);
    }

    #[test]
    fn outcomes_are_classified() {
        let mut c = OutcomeCounts::default();
        for o in [
            RequestOutcome::Status(200),
            RequestOutcome::Status(204),
            RequestOutcome::Status(302),
            RequestOutcome::Status(404),
            RequestOutcome::Status(503),
            RequestOutcome::Status(101),
            RequestOutcome::Timeout,
            RequestOutcome::ConnectError,
            RequestOutcome::OtherError,
        ] {
            c.add(o);
        }
        assert_eq!(
            (c.s2xx, c.s3xx, c.s4xx, c.s5xx, c.other_status),
            (2, 1, 1, 1, 1)
        );
        assert_eq!((c.timeout, c.connect_error, c.other_error), (1, 1, 1));
        assert_eq!((c.total(), c.errors()), (9, 4));
        assert!(!RequestOutcome::Status(404).is_error() && RequestOutcome::Status(500).is_error());
    }

    #[test]
    fn records_and_merges() {
        let mut a = ColorStats::default();
        a.record(&sample(SeenColor::Blue, 10, RequestOutcome::Status(200)));
        let mut b = ColorStats::default();
        b.record(&sample(SeenColor::Blue, 30, RequestOutcome::Timeout));
        b.epochs.insert(4);
        a.merge(&b);
        assert_eq!(a.requests(), 2);
        assert_eq!(a.outcomes.errors(), 1);
        assert_eq!(a.epochs.iter().copied().collect::<Vec<_>>(), vec![3, 4]);
        let max = a.latency_us(1.0);
        assert!((29_990..=30_020).contains(&max), "{max}");
        assert!(a.uncorrected.max() < 16_000);
        // Time to first byte and the pace of streams merge alike.
        assert_eq!(a.ttfb.len(), 2);
        assert!(
            (6_990..=7_010).contains(&a.ttfb_us(1.0)),
            "{}",
            a.ttfb_us(1.0)
        );
        assert_eq!(a.event_rate.len(), 1, "only the streamed answer has a pace");
        let pace = a.events_per_s(0.5).unwrap();
        assert!((pace - 40.0).abs() < 0.04, "3 significant digits: {pace}");
        assert_eq!(ColorStats::default().events_per_s(0.5), None);
        let mut window = a.clone();
        window.subtract(&b);
        assert_eq!((window.ttfb.len(), window.event_rate.len()), (1, 0));
        let buckets = a.buckets_ms();
        assert_eq!(buckets.len(), 2);
        assert!((buckets[0].0 - 10.0).abs() < 0.01);
        // Huge values saturate instead of failing.
        a.record(&Sample {
            latency: Duration::from_secs(10_000),
            ..sample(SeenColor::Blue, 1, RequestOutcome::Status(200))
        });
        assert!(a.corrected.max() >= MAX_TRACKABLE_US - MAX_TRACKABLE_US / 1000);
    }
}
