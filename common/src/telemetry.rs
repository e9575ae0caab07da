//! Real users' requests as the edge saw them, per color and rollout epoch:
//! answers by class, the time to the origin's first byte and to the last
//! byte, and bytes.
//!
//! Times are kept as HdrHistogram buckets (two significant digits, in
//! microseconds): [`bucket_floor`] is the lowest value of the bucket a
//! time falls in, exactly as a `hdrhistogram::Histogram` with two
//! significant digits computes it, so a reader rebuilds a real histogram
//! by recording each floor with its count. A [`Tally`] is what an edge
//! instance keeps between flushes, and what the place that sums them
//! keeps: [`Tally::merge`] adds one into another. Nothing here reads a
//! clock or a store.

use crate::color::Color;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// HdrHistogram's resolution for the edge's times: two significant digits
/// (256 sub-buckets, values in microseconds from 1).
pub const SIGNIFICANT_DIGITS: u8 = 2;
/// `64 - log2(sub-bucket count)` for two significant digits.
const LEADING_ZERO_BASE: u32 = 64 - 8;
const SUB_BUCKET_MASK: u64 = 255;

/// The lowest value of the HdrHistogram bucket (two significant digits,
/// lowest discernible value 1) that `value` falls in.
pub fn bucket_floor(value: u64) -> u64 {
    let bucket = LEADING_ZERO_BASE - (value | SUB_BUCKET_MASK).leading_zeros();
    (value >> bucket) << bucket
}

/// How an answer ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AnswerClass {
    #[serde(rename = "2xx")]
    Success,
    #[serde(rename = "3xx")]
    Redirect,
    #[serde(rename = "4xx")]
    ClientError,
    #[serde(rename = "5xx")]
    ServerError,
    /// No answer from the origin (unreachable, timed out, cut off).
    #[serde(rename = "origin_failure")]
    OriginFailure,
    /// Answered by the edge itself without an origin (refused
    /// credentials, rate limits, bad paths).
    #[serde(rename = "refused")]
    Refused,
}

impl AnswerClass {
    pub const ALL: [AnswerClass; 6] = [
        AnswerClass::Success,
        AnswerClass::Redirect,
        AnswerClass::ClientError,
        AnswerClass::ServerError,
        AnswerClass::OriginFailure,
        AnswerClass::Refused,
    ];

    /// The class of an origin's status (1xx counts with 2xx: the exchange
    /// went on).
    pub fn of_status(status: u16) -> AnswerClass {
        match status {
            0..=299 => AnswerClass::Success,
            300..=399 => AnswerClass::Redirect,
            400..=499 => AnswerClass::ClientError,
            _ => AnswerClass::ServerError,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AnswerClass::Success => "2xx",
            AnswerClass::Redirect => "3xx",
            AnswerClass::ClientError => "4xx",
            AnswerClass::ServerError => "5xx",
            AnswerClass::OriginFailure => "origin_failure",
            AnswerClass::Refused => "refused",
        }
    }

    /// Whether it counts as an error in an error rate (the origin's 5xx
    /// and its failures; the client's own 4xx and the edge's refusals do
    /// not say anything about a color).
    pub fn is_error(self) -> bool {
        matches!(self, AnswerClass::ServerError | AnswerClass::OriginFailure)
    }
}

/// One request the edge answered, as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub class: AnswerClass,
    /// From the edge's send to the origin's response head (µs).
    pub ttfb_us: Option<u64>,
    /// From the edge's send to the body's last byte (µs).
    pub total_us: Option<u64>,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// When it was answered (Unix ms): the window of a series.
    pub at_ms: u64,
}

/// The counts of one color in one epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub answers: BTreeMap<AnswerClass, u64>,
    /// Bucket floor (µs) → count; see [`bucket_floor`].
    pub ttfb_us: BTreeMap<u64, u64>,
    pub total_us: BTreeMap<u64, u64>,
    pub bytes: u64,
    /// The first and last answer counted (Unix ms): the window the counts
    /// cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
}

impl Counts {
    pub fn record(&mut self, m: &Measured) {
        self.first_ms = Some(self.first_ms.map_or(m.at_ms, |f| f.min(m.at_ms)));
        self.last_ms = Some(self.last_ms.map_or(m.at_ms, |l| l.max(m.at_ms)));
        *self.answers.entry(m.class).or_default() += 1;
        if let Some(t) = m.ttfb_us {
            *self.ttfb_us.entry(bucket_floor(t.max(1))).or_default() += 1;
        }
        if let Some(t) = m.total_us {
            *self.total_us.entry(bucket_floor(t.max(1))).or_default() += 1;
        }
        self.bytes = self.bytes.saturating_add(m.bytes);
    }

    pub fn merge(&mut self, other: &Counts) {
        for (class, n) in &other.answers {
            *self.answers.entry(*class).or_default() += n;
        }
        for (mine, theirs) in [
            (&mut self.ttfb_us, &other.ttfb_us),
            (&mut self.total_us, &other.total_us),
        ] {
            for (floor, n) in theirs {
                *mine.entry(*floor).or_default() += n;
            }
        }
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.first_ms = match (self.first_ms, other.first_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ms = self.last_ms.max(other.last_ms);
    }

    /// Every answer counted.
    pub fn requests(&self) -> u64 {
        self.answers.values().sum()
    }

    /// Answers that count as errors ([`AnswerClass::is_error`]).
    pub fn errors(&self) -> u64 {
        self.answers
            .iter()
            .filter(|(c, _)| c.is_error())
            .map(|(_, n)| n)
            .sum()
    }
}

/// The value at quantile `q` (0..=1) of bucketed times: the floor of the
/// bucket that holds it, `None` when there are none.
pub fn quantile(buckets: &BTreeMap<u64, u64>, q: f64) -> Option<u64> {
    let total: u64 = buckets.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    buckets.iter().find_map(|(floor, n)| {
        seen += n;
        (seen >= rank).then_some(*floor)
    })
}

/// Counts per color and rollout epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub series: BTreeMap<(Color, u64), Counts>,
}

/// One series as it travels: its color and epoch spelled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Series {
    color: Color,
    epoch: u64,
    counts: Counts,
}

impl Tally {
    pub fn record(&mut self, color: Color, epoch: u64, m: &Measured) {
        self.series.entry((color, epoch)).or_default().record(m);
    }

    pub fn merge(&mut self, other: &Tally) {
        for (key, counts) in &other.series {
            self.series.entry(*key).or_default().merge(counts);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// One line of JSON: a list of series.
    pub fn to_json(&self) -> String {
        let list: Vec<Series> = self
            .series
            .iter()
            .map(|((color, epoch), counts)| Series {
                color: *color,
                epoch: *epoch,
                counts: counts.clone(),
            })
            .collect();
        serde_json::to_string(&list).unwrap_or_default()
    }

    /// A batch as [`Tally::to_json`] writes it; `None` when unreadable.
    pub fn from_json(text: &str) -> Option<Tally> {
        let list: Vec<Series> = serde_json::from_str(text).ok()?;
        let mut tally = Tally::default();
        for s in list {
            tally
                .series
                .entry((s.color, s.epoch))
                .or_default()
                .merge(&s.counts);
        }
        Some(tally)
    }

    /// The Prometheus text exposition (version 0.0.4): answers as a
    /// counter per color, epoch and class; both times as histograms with
    /// fixed bounds in seconds (each HdrHistogram bucket counted under the
    /// first bound at or above its floor, so within its 1 % width); bytes
    /// as a counter.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP greenlight_answers_total Answers to real users' requests, by color, rollout epoch and class.\n\
             # TYPE greenlight_answers_total counter\n",
        );
        for ((color, epoch), c) in &self.series {
            for class in AnswerClass::ALL {
                let n = c.answers.get(&class).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "greenlight_answers_total{{color=\"{color}\",epoch=\"{epoch}\",class=\"{}\"}} {n}",
                    class.name()
                );
            }
        }
        for (name, help, pick) in [
            (
                "greenlight_ttfb_seconds",
                "Time from the edge's send to the origin's response head.",
                (|c: &Counts| &c.ttfb_us) as fn(&Counts) -> &BTreeMap<u64, u64>,
            ),
            (
                "greenlight_duration_seconds",
                "Time from the edge's send to the answer's last byte.",
                |c: &Counts| &c.total_us,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for ((color, epoch), c) in &self.series {
                histogram(&mut out, name, *color, *epoch, pick(c));
            }
        }
        for (name, help, pick) in [
            (
                "greenlight_window_start_seconds",
                "When the first answer counted in the series was sent (Unix time).",
                (|c: &Counts| c.first_ms) as fn(&Counts) -> Option<u64>,
            ),
            (
                "greenlight_window_end_seconds",
                "When the last answer counted in the series was sent (Unix time).",
                |c: &Counts| c.last_ms,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for ((color, epoch), c) in &self.series {
                if let Some(ms) = pick(c) {
                    let _ = writeln!(
                        out,
                        "{name}{{color=\"{color}\",epoch=\"{epoch}\"}} {}",
                        ms as f64 / 1_000.0
                    );
                }
            }
        }
        out.push_str(
            "# HELP greenlight_response_bytes_total Body bytes sent to real users.\n\
             # TYPE greenlight_response_bytes_total counter\n",
        );
        for ((color, epoch), c) in &self.series {
            let _ = writeln!(
                out,
                "greenlight_response_bytes_total{{color=\"{color}\",epoch=\"{epoch}\"}} {}",
                c.bytes
            );
        }
        out
    }
}

/// Where the summed counts are stored (Spin's store; the rollout object's
/// storage).
pub const TELEMETRY_KEY: &str = "rollout-telemetry";
/// Epochs whose counts are kept where they are summed: the one in force
/// and the ones before it, so a comparison of the last steps stays
/// readable and the document stays bounded.
pub const KEPT_EPOCHS: usize = 8;
/// Shortest time between two flushes of one edge instance.
pub const FLUSH_INTERVAL_MS: u64 = 1_000;
/// Most extra delay added to a flush, so instances started together do
/// not flush together.
pub const FLUSH_JITTER_MS: u64 = 250;

impl Tally {
    /// Drops every epoch but the latest `epochs`.
    pub fn keep_latest(&mut self, epochs: usize) {
        let mut seen: Vec<u64> = self.series.keys().map(|(_, e)| *e).collect();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() > epochs {
            let oldest_kept = seen[seen.len() - epochs];
            self.series.retain(|(_, e), _| *e >= oldest_kept);
        }
    }

    /// A batch added to the stored sum (`None`: nothing stored yet, or
    /// unreadable, which starts over), bounded to [`KEPT_EPOCHS`]. `None`
    /// when the batch is unreadable: the stored sum stays.
    pub fn merge_batch(stored: Option<&str>, batch: &str) -> Option<String> {
        let batch = Tally::from_json(batch)?;
        let mut sum = stored.and_then(Tally::from_json).unwrap_or_default();
        sum.merge(&batch);
        sum.keep_latest(KEPT_EPOCHS);
        Some(sum.to_json())
    }

    /// What `GET /__greenlight/metrics` shows.
    pub fn view(&self) -> MetricsView {
        let mut epochs: BTreeMap<u64, EpochView> = BTreeMap::new();
        for ((color, epoch), c) in &self.series {
            let e = epochs.entry(*epoch).or_insert_with(|| EpochView {
                epoch: *epoch,
                from_ms: c.first_ms,
                to_ms: c.last_ms,
                colors: BTreeMap::new(),
            });
            e.from_ms = match (e.from_ms, c.first_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            e.to_ms = e.to_ms.max(c.last_ms);
            e.colors.insert(*color, CountsView::of(c));
        }
        MetricsView {
            kept_epochs: KEPT_EPOCHS,
            epochs: epochs.into_values().rev().collect(),
        }
    }
}

/// `GET /__greenlight/metrics`: real users' answers per epoch (newest
/// first) and color.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsView {
    pub kept_epochs: usize,
    pub epochs: Vec<EpochView>,
}

impl MetricsView {
    /// The counts of `epoch`, if kept.
    pub fn epoch(&self, epoch: u64) -> Option<&EpochView> {
        self.epochs.iter().find(|e| e.epoch == epoch)
    }
}

/// One epoch's counts: the window they cover (first and last answer, Unix
/// ms) and each color's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochView {
    pub epoch: u64,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub colors: BTreeMap<Color, CountsView>,
}

/// One color's counts in one epoch, with the figures a reader wants and
/// the buckets to judge from (`[floor µs, count]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountsView {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub answers: BTreeMap<AnswerClass, u64>,
    pub ttfb_p50_ms: Option<f64>,
    pub ttfb_p99_ms: Option<f64>,
    pub total_p50_ms: Option<f64>,
    pub total_p99_ms: Option<f64>,
    pub bytes: u64,
    pub ttfb_buckets_us: Vec<(u64, u64)>,
    pub total_buckets_us: Vec<(u64, u64)>,
}

impl CountsView {
    pub fn of(c: &Counts) -> CountsView {
        let ms = |b: &BTreeMap<u64, u64>, q| quantile(b, q).map(|us| us as f64 / 1_000.0);
        let requests = c.requests();
        CountsView {
            requests,
            errors: c.errors(),
            error_rate: if requests == 0 {
                0.0
            } else {
                c.errors() as f64 / requests as f64
            },
            answers: c.answers.clone(),
            ttfb_p50_ms: ms(&c.ttfb_us, 0.5),
            ttfb_p99_ms: ms(&c.ttfb_us, 0.99),
            total_p50_ms: ms(&c.total_us, 0.5),
            total_p99_ms: ms(&c.total_us, 0.99),
            bytes: c.bytes,
            ttfb_buckets_us: c.ttfb_us.iter().map(|(f, n)| (*f, *n)).collect(),
            total_buckets_us: c.total_us.iter().map(|(f, n)| (*f, *n)).collect(),
        }
    }
}

/// The jitter of a flush scheduled at `now_ms` (0..=[`FLUSH_JITTER_MS`]):
/// a hash of the time, which spreads instances that count at different
/// moments without a call to the host's random source on every request
/// (no secret rides on it).
pub fn flush_jitter_ms(now_ms: u64) -> u64 {
    (now_ms.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17) % (FLUSH_JITTER_MS + 1)
}

/// When an edge instance flushes its counts: at most once per
/// [`FLUSH_INTERVAL_MS`], plus up to [`FLUSH_JITTER_MS`], however many
/// requests it answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushThrottle {
    last_flush_ms: Option<u64>,
    scheduled: bool,
}

impl FlushThrottle {
    /// An answer was counted at `now_ms`: `Some(delay)` when a flush must
    /// be scheduled `delay` ms from now ([`flush_jitter_ms`] included),
    /// `None` when one already is.
    pub fn on_record(&mut self, now_ms: u64) -> Option<u64> {
        if self.scheduled {
            return None;
        }
        self.scheduled = true;
        let due = match self.last_flush_ms {
            Some(at) => (at + FLUSH_INTERVAL_MS).saturating_sub(now_ms),
            None => 0,
        };
        Some(due + flush_jitter_ms(now_ms))
    }

    /// The scheduled flush runs at `now_ms`.
    pub fn flushing(&mut self, now_ms: u64) {
        self.scheduled = false;
        self.last_flush_ms = Some(now_ms);
    }

    /// Whether a flush is due at `now_ms` for an instance that flushes at
    /// the end of a request rather than on a timer (Spin).
    pub fn due(&self, now_ms: u64) -> bool {
        self.last_flush_ms
            .is_none_or(|at| now_ms >= at + FLUSH_INTERVAL_MS)
    }
}

/// What an edge instance keeps between flushes: its counts since the
/// last flush and when the next one is due. A flush that fails loses the
/// batch's counts, never a request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pending {
    tally: Tally,
    throttle: FlushThrottle,
}

impl Pending {
    /// Counts an answer; `Some(delay)`: schedule a flush `delay` ms from
    /// now ([`FlushThrottle::on_record`]).
    pub fn record(&mut self, color: Color, epoch: u64, m: &Measured) -> Option<u64> {
        self.tally.record(color, epoch, m);
        self.throttle.on_record(m.at_ms)
    }

    /// The batch to send now (one line of JSON), and a clean slate; `None`
    /// when nothing was counted.
    pub fn take(&mut self, now_ms: u64) -> Option<String> {
        self.throttle.flushing(now_ms);
        if self.tally.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.tally).to_json())
    }

    /// Series held, for the instance report.
    pub fn series(&self) -> usize {
        self.tally.series.len()
    }
}

/// The bounds (seconds) of the exported histograms.
pub const EXPORT_BOUNDS_S: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn histogram(out: &mut String, name: &str, color: Color, epoch: u64, buckets: &BTreeMap<u64, u64>) {
    let labels = format!("color=\"{color}\",epoch=\"{epoch}\"");
    let count: u64 = buckets.values().sum();
    for bound in EXPORT_BOUNDS_S {
        let bound_us = (bound * 1e6) as u64;
        let under: u64 = buckets.range(..=bound_us).map(|(_, n)| n).sum();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {under}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let sum_s: f64 = buckets
        .iter()
        .map(|(floor, n)| *floor as f64 * *n as f64)
        .sum::<f64>()
        / 1e6;
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum_s}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ttfb_us: u64, total_us: u64, bytes: u64) -> Measured {
        Measured {
            class: AnswerClass::Success,
            ttfb_us: Some(ttfb_us),
            total_us: Some(total_us),
            bytes,
            at_ms: 0,
        }
    }

    #[test]
    fn bucket_floors_follow_hdrhistograms_two_digit_buckets() {
        // Exact below 256, then buckets twice as wide per power of two.
        assert_eq!(bucket_floor(0), 0);
        assert_eq!(bucket_floor(255), 255);
        assert_eq!(bucket_floor(256), 256);
        assert_eq!(bucket_floor(257), 256);
        assert_eq!(bucket_floor(511), 510);
        assert_eq!(bucket_floor(512), 512);
        assert_eq!(bucket_floor(515), 512);
        assert_eq!(bucket_floor(1_000_003), 999_424);
        for v in [1u64, 300, 12_345, 987_654, 59_999_999, u64::MAX / 3] {
            let f = bucket_floor(v);
            assert!(
                f <= v && (v - f) as f64 <= (v as f64) / 128.0 + 1.0,
                "{v} -> {f}"
            );
            assert_eq!(bucket_floor(f), f, "a floor is its own floor");
        }
    }

    #[test]
    fn bucket_floors_are_the_ones_hdrhistogram_computes() {
        let h = hdrhistogram::Histogram::<u64>::new(SIGNIFICANT_DIGITS).unwrap();
        let mut v = 1u64;
        while v < u64::MAX / 4 {
            for probe in [v, v + 1, v + v / 3, v.saturating_mul(3) / 2] {
                assert_eq!(bucket_floor(probe), h.lowest_equivalent(probe), "{probe}");
            }
            v = v * 2 + 1;
        }
    }

    #[test]
    fn answers_are_classed_and_errors_are_the_colors_own() {
        let classes: Vec<&str> = [100, 200, 204, 301, 404, 429, 500, 503]
            .iter()
            .map(|s| AnswerClass::of_status(*s).name())
            .collect();
        assert_eq!(
            classes,
            ["2xx", "2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx"]
        );
        let mut c = Counts::default();
        for class in AnswerClass::ALL {
            c.record(&Measured {
                class,
                ttfb_us: None,
                total_us: None,
                bytes: 0,
                at_ms: 0,
            });
        }
        assert_eq!((c.requests(), c.errors()), (6, 2));
    }

    #[test]
    fn tallies_add_up_exactly_across_merges_and_the_wire() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        for i in 0..1_000u64 {
            let t = if i % 2 == 0 { &mut a } else { &mut b };
            t.record(Color::Blue, 3, &ok(1_000 + i, 2_000 + i, 10));
            if i % 10 == 0 {
                t.record(Color::Green, 3, &ok(5_000, 9_000, 7));
            }
        }
        let mut sum = Tally::from_json(&a.to_json()).unwrap();
        sum.merge(&Tally::from_json(&b.to_json()).unwrap());
        let blue = &sum.series[&(Color::Blue, 3)];
        let green = &sum.series[&(Color::Green, 3)];
        assert_eq!((blue.requests(), blue.bytes), (1_000, 10_000));
        assert_eq!((green.requests(), green.bytes), (100, 700));
        assert_eq!(blue.ttfb_us.values().sum::<u64>(), 1_000);
        let p50 = quantile(&blue.ttfb_us, 0.5).unwrap();
        assert!((1_490..=1_500).contains(&p50), "{p50}");
        assert_eq!(quantile(&green.total_us, 0.99), Some(bucket_floor(9_000)));
        assert_eq!(quantile(&BTreeMap::new(), 0.5), None);
        assert_eq!(Tally::from_json("not json"), None);
    }

    #[test]
    fn the_sum_keeps_the_latest_epochs_and_shows_each_window() {
        let mut stored: Option<String> = None;
        for epoch in 1..=10u64 {
            let mut batch = Tally::default();
            for i in 0..3u64 {
                let m = Measured {
                    at_ms: 1_000 * epoch + i,
                    ..ok(2_000, 3_000, 5)
                };
                batch.record(Color::Blue, epoch, &m);
                batch.record(Color::Green, epoch, &m);
            }
            stored = Tally::merge_batch(stored.as_deref(), &batch.to_json());
            assert!(stored.is_some());
        }
        assert_eq!(Tally::merge_batch(stored.as_deref(), "not a batch"), None);
        let sum = Tally::from_json(stored.as_deref().unwrap()).unwrap();
        let view = sum.view();
        let epochs: Vec<u64> = view.epochs.iter().map(|e| e.epoch).collect();
        assert_eq!(
            epochs,
            (3..=10).rev().collect::<Vec<_>>(),
            "newest first, 8 kept"
        );
        let e = view.epoch(10).unwrap();
        assert_eq!((e.from_ms, e.to_ms), (Some(10_000), Some(10_002)));
        let blue = &e.colors[&Color::Blue];
        assert_eq!((blue.requests, blue.errors, blue.bytes), (3, 0, 15));
        assert_eq!(blue.ttfb_p50_ms, Some(bucket_floor(2_000) as f64 / 1_000.0));
        assert_eq!(blue.ttfb_buckets_us, vec![(bucket_floor(2_000), 3)]);
        // A stored sum that cannot be read starts over rather than block.
        assert!(Tally::merge_batch(Some("{"), &Tally::default().to_json()).is_some());
    }

    #[test]
    fn an_instance_flushes_at_most_once_a_second_with_jitter() {
        let mut p = Pending::default();
        let m = |at_ms| Measured {
            at_ms,
            ..ok(1, 1, 1)
        };
        // The first answer schedules a flush at once (plus jitter).
        let first = p.record(Color::Blue, 1, &m(10_000)).unwrap();
        assert_eq!(first, flush_jitter_ms(10_000));
        assert!(first <= FLUSH_JITTER_MS, "{first}");
        assert_eq!(
            p.record(Color::Blue, 1, &m(10_001)),
            None,
            "one is scheduled"
        );
        assert_eq!(p.series(), 1);
        let batch = p.take(10_100).unwrap();
        assert_eq!(
            Tally::from_json(&batch).unwrap().series[&(Color::Blue, 1)].requests(),
            2
        );
        assert_eq!(p.take(10_200), None, "nothing counted since");
        // The next is due a second after the last flush.
        let next = p.record(Color::Green, 1, &m(10_300)).unwrap();
        assert_eq!(
            next,
            10_200 + FLUSH_INTERVAL_MS - 10_300 + flush_jitter_ms(10_300)
        );
        // The jitter spreads: consecutive milliseconds land far apart.
        let spread: std::collections::BTreeSet<u64> = (0..64).map(flush_jitter_ms).collect();
        assert!(spread.len() > 32, "{spread:?}");
        let mut t = FlushThrottle::default();
        assert!(t.due(0));
        t.flushing(5_000);
        assert!(!t.due(5_999) && t.due(6_000));
    }

    #[test]
    fn the_prometheus_text_has_every_series_and_cumulative_buckets() {
        let mut t = Tally::default();
        t.record(Color::Blue, 4, &ok(800, 3_000, 100));
        t.record(Color::Blue, 4, &ok(40_000, 2_000_000, 100));
        t.record(
            Color::Green,
            4,
            &Measured {
                class: AnswerClass::OriginFailure,
                ttfb_us: None,
                total_us: None,
                bytes: 0,
                at_ms: 0,
            },
        );
        let text = t.to_prometheus();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
                .to_string()
        };
        assert!(
            line("greenlight_answers_total{color=\"blue\",epoch=\"4\",class=\"2xx\"}")
                .ends_with(" 2")
        );
        assert!(line(
            "greenlight_answers_total{color=\"green\",epoch=\"4\",class=\"origin_failure\"}"
        )
        .ends_with(" 1"));
        assert!(
            line("greenlight_ttfb_seconds_bucket{color=\"blue\",epoch=\"4\",le=\"0.001\"}")
                .ends_with(" 1")
        );
        assert!(
            line("greenlight_ttfb_seconds_bucket{color=\"blue\",epoch=\"4\",le=\"0.05\"}")
                .ends_with(" 2")
        );
        assert!(line("greenlight_ttfb_seconds_count{color=\"green\",epoch=\"4\"}").ends_with(" 0"));
        assert!(
            line("greenlight_duration_seconds_bucket{color=\"blue\",epoch=\"4\",le=\"+Inf\"}")
                .ends_with(" 2")
        );
        assert!(
            line("greenlight_response_bytes_total{color=\"blue\",epoch=\"4\"}").ends_with(" 200")
        );
        // A real parser reads it: counters as counters, each time series as
        // one histogram with every bound.
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
        let find = |metric: &str, color: &str, class: Option<&str>| {
            scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == metric
                        && s.labels.get("color") == Some(color)
                        && s.labels.get("epoch") == Some("4")
                        && class.is_none_or(|c| s.labels.get("class") == Some(c))
                })
                .map(|s| s.value.clone())
                .unwrap_or_else(|| panic!("{metric} {color} {class:?}"))
        };
        assert!(matches!(
            find("greenlight_answers_total", "blue", Some("2xx")),
            prometheus_parse::Value::Counter(n) if n == 2.0
        ));
        match find("greenlight_ttfb_seconds", "blue", None) {
            prometheus_parse::Value::Histogram(buckets) => {
                assert_eq!(buckets.len(), EXPORT_BOUNDS_S.len() + 1);
                assert_eq!(buckets.last().map(|b| b.count), Some(2.0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            scrape
                .docs
                .get("greenlight_answers_total")
                .map(String::as_str),
            Some("Answers to real users' requests, by color, rollout epoch and class.")
        );
    }
}
