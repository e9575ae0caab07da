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
}

/// The counts of one color in one epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub answers: BTreeMap<AnswerClass, u64>,
    /// Bucket floor (µs) → count; see [`bucket_floor`].
    pub ttfb_us: BTreeMap<u64, u64>,
    pub total_us: BTreeMap<u64, u64>,
    pub bytes: u64,
}

impl Counts {
    pub fn record(&mut self, m: &Measured) {
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
