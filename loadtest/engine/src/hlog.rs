//! Several load agents, one verdict: each run can write the standard
//! HdrHistogram interval log (`--hlog FILE`: base64 V2-deflate compressed
//! histograms, values in µs, one tag per color and kind), which HdrHistogram's
//! own tools (`HistogramLogProcessor`, the plotters) read, and `greenlight
//! report merge` adds the logs of several agents into one snapshot, judged
//! and reported exactly like a single run.
//!
//! Tags: `<color>` is the corrected latency (from the intended send time),
//! `<color>-service` the service time, `<color>-ttfb` the corrected time to
//! first byte (first event of a stream), `<color>-events-per-s` the pace of
//! streamed answers in thousandths of an event per second (written only when
//! there were streams). The outcome counts and epochs the
//! verdict also needs ride along as one comment line (`#greenlight-outcomes
//! {json}`), which other readers skip. A run writes one interval per tag
//! for each look of its watcher (every second), holding what was recorded
//! since the previous look, so the log plots over time; a merge adds every
//! interval of every log.

use crate::histogram::{ColorStats, OutcomeCounts, SeenColor};
use crate::recorder::{EngineCounters, Snapshot};
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, SystemTime};

const OUTCOMES: &str = "greenlight-outcomes ";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Extra {
    outcomes: OutcomeCounts,
    epochs: BTreeSet<u64>,
}

/// Which histogram of a color a tag names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Corrected,
    Service,
    Ttfb,
    EventRate,
}

impl Kind {
    const ALL: [(Kind, &'static str); 4] = [
        (Kind::Corrected, ""),
        (Kind::Service, "-service"),
        (Kind::Ttfb, "-ttfb"),
        (Kind::EventRate, "-events-per-s"),
    ];

    fn get(self, s: &ColorStats) -> &Histogram<u64> {
        match self {
            Kind::Corrected => &s.corrected,
            Kind::Service => &s.uncorrected,
            Kind::Ttfb => &s.ttfb,
            Kind::EventRate => &s.event_rate,
        }
    }

    fn of(self, s: &mut ColorStats) -> &mut Histogram<u64> {
        match self {
            Kind::Corrected => &mut s.corrected,
            Kind::Service => &mut s.uncorrected,
            Kind::Ttfb => &mut s.ttfb,
            Kind::EventRate => &mut s.event_rate,
        }
    }
}

fn tag_color(tag: &str) -> Option<(SeenColor, Kind)> {
    SeenColor::ALL.into_iter().find_map(|c| {
        let suffix = tag.strip_prefix(c.as_str())?;
        Kind::ALL
            .iter()
            .find(|(_, s)| *s == suffix)
            .map(|(k, _)| (c, *k))
    })
}

/// Writes the interval log of a run (started at `started`) to `out` from
/// its cumulative snapshots in the order they were taken, the last one at
/// the end of the run: each interval holds what was recorded between two
/// snapshots (histograms subtract exactly), and the last snapshot's outcome
/// counts and epochs close the log.
pub fn write_intervals<W: Write>(
    out: &mut W,
    started: SystemTime,
    snapshots: impl IntoIterator<Item = Snapshot>,
) -> Result<(), String> {
    let mut serializer = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("greenlight load: latency in microseconds; tag <color> = corrected (from the intended send time), <color>-service = from the actual send, <color>-ttfb = corrected time to first byte; <color>-events-per-s = events per second of streamed answers x 1000")
        .with_start_time(started)
        .with_base_time(started)
        .with_max_value_divisor(1000.0)
        .begin_log_with(out, &mut serializer)
        .map_err(|e| e.to_string())?;
    let mut prev: Option<Snapshot> = None;
    for snap in snapshots {
        let from = prev.as_ref().map(|p| p.elapsed).unwrap_or_default();
        let length = snap.elapsed.saturating_sub(from);
        for c in SeenColor::ALL {
            for (kind, suffix) in Kind::ALL {
                let mut h = kind.get(snap.color(c)).clone();
                if let Some(p) = &prev {
                    h.subtract(kind.get(p.color(c)))
                        .map_err(|e| format!("snapshots out of order: {e:?}"))?;
                }
                if h.is_empty() {
                    continue;
                }
                let tag = format!("{}{suffix}", c.as_str());
                log.write_histogram(&h, from, length, Tag::new(&tag))
                    .map_err(|e| format!("{e:?}"))?;
            }
        }
        prev = Some(snap);
    }
    let mut extra = BTreeMap::new();
    for c in SeenColor::ALL {
        let Some(s) = prev.as_ref().map(|p| p.color(c)) else {
            continue;
        };
        if s.requests() > 0 {
            extra.insert(
                c.as_str(),
                Extra {
                    outcomes: s.outcomes,
                    epochs: s.epochs.clone(),
                },
            );
        }
    }
    let json = serde_json::to_string(&extra).map_err(|e| e.to_string())?;
    log.write_comment(&format!("{OUTCOMES}{json}"))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Adds the log `text` (from `name`) into `into`; returns when its last
/// interval ended (from the log's base time).
fn add_log(name: &str, text: &[u8], into: &mut [ColorStats; 3]) -> Result<Duration, String> {
    let mut longest = Duration::ZERO;
    let mut deserializer = Deserializer::new();
    let mut histograms = 0;
    for entry in IntervalLogIterator::new(text) {
        let entry =
            entry.map_err(|e| format!("{name}: not an HdrHistogram interval log ({e:?})"))?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let Some((color, kind)) = interval.tag().and_then(|t| tag_color(t.as_str())) else {
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| format!("{name}: bad histogram encoding: {e}"))?;
        let h: Histogram<u64> = deserializer
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| format!("{name}: bad histogram: {e:?}"))?;
        crate::histogram::add_histogram(kind.of(&mut into[color.index()]), &h);
        longest = longest.max(interval.start_timestamp() + interval.duration());
        histograms += 1;
    }
    if histograms == 0 {
        return Err(format!("{name}: no greenlight histogram in the log"));
    }
    let text = String::from_utf8_lossy(text);
    let extra = text
        .lines()
        .find_map(|l| l.strip_prefix('#').and_then(|l| l.strip_prefix(OUTCOMES)))
        .ok_or_else(|| {
            format!("{name}: no #{OUTCOMES}line (not written by greenlight load --hlog)")
        })?;
    let extra: BTreeMap<String, Extra> =
        serde_json::from_str(extra).map_err(|e| format!("{name}: bad outcomes line: {e}"))?;
    for (color, x) in extra {
        let Some((c, _)) = tag_color(&color) else {
            continue;
        };
        let stats = &mut into[c.index()];
        stats.outcomes.merge(&x.outcomes);
        stats.epochs.extend(x.epochs);
    }
    Ok(longest)
}

/// Merges the logs of agents that ran side by side: the histograms of all
/// their intervals and the counts add up; the duration is the longest
/// run's (the agents ran at the same time).
pub fn merge(logs: &[(String, Vec<u8>)]) -> Result<Snapshot, String> {
    let mut colors: [ColorStats; 3] = Default::default();
    let mut elapsed = Duration::ZERO;
    for (name, text) in logs {
        elapsed = elapsed.max(add_log(name, text, &mut colors)?);
    }
    Ok(Snapshot {
        elapsed,
        colors,
        // Interval logs carry no purpose: merged runs are judged on all samples.
        comparison: Default::default(),
        mismatched: [0; 3],
        weighted_by_epoch: Default::default(),
        series: Vec::new(),
        counters: EngineCounters::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::SummaryOf;
    use crate::histogram::{RequestOutcome, Sample};
    use crate::recorder::Recorder;
    use greenlight_verdict::{judge, ColorSummary, Policy};

    fn sample(i: u64, color: SeenColor) -> Sample {
        let ms = match color {
            SeenColor::Green => 12 + i % 7,
            _ => 10 + i % 5,
        };
        Sample {
            color,
            latency: Duration::from_micros(ms * 1000 + i % 997),
            service: Duration::from_micros(ms * 900),
            ttfb: Duration::from_micros(ms * 300 + i % 13),
            events_per_s: (color == SeenColor::Green).then_some(30.0 + (i % 11) as f64),
            outcome: if i.is_multiple_of(101) {
                RequestOutcome::Status(503)
            } else {
                RequestOutcome::Status(200)
            },
            epoch: Some(3 + i / 1500),
        }
    }

    fn verdict_of(snap: &Snapshot) -> String {
        let b = ColorSummary::of(snap.color(SeenColor::Blue));
        let c = ColorSummary::of(snap.color(SeenColor::Green));
        serde_json::to_string(&judge(&Policy::default(), &b, &c)).unwrap()
    }

    fn one_interval(snap: Snapshot, started: SystemTime) -> Vec<u8> {
        let mut out = Vec::new();
        write_intervals(&mut out, started, [snap]).unwrap();
        out
    }

    /// `merged` holds what the run `whole` recorded, and is judged alike.
    fn assert_merges_into(merged: &Snapshot, whole: &Snapshot) {
        for c in [SeenColor::Blue, SeenColor::Green] {
            let (m, w) = (merged.color(c), whole.color(c));
            assert_eq!(m.corrected, w.corrected);
            assert_eq!(m.uncorrected, w.uncorrected);
            assert_eq!(m.ttfb, w.ttfb);
            assert_eq!(m.event_rate, w.event_rate);
            assert_eq!(m.outcomes, w.outcomes);
            assert_eq!(m.epochs, w.epochs);
        }
        assert_eq!(verdict_of(merged), verdict_of(whole));
    }

    #[test]
    fn two_agents_merge_into_what_one_run_would_report() {
        let (one, a, b) = (Recorder::new(), Recorder::new(), Recorder::new());
        for i in 0..3000u64 {
            let color = if i.is_multiple_of(3) {
                SeenColor::Green
            } else {
                SeenColor::Blue
            };
            let s = sample(i, color);
            one.record(i, &s);
            if i.is_multiple_of(2) { &a } else { &b }.record(i, &s);
        }
        let t0 = SystemTime::now();
        let logs = vec![
            ("a.hlog".to_string(), one_interval(a.snapshot(), t0)),
            ("b.hlog".to_string(), one_interval(b.snapshot(), t0)),
        ];
        let text = String::from_utf8(logs[0].1.clone()).unwrap();
        assert!(
            text.contains("#[BaseTime:")
                && text.contains("Tag=green-service,")
                && text.contains("Tag=blue-ttfb,")
                && text.contains("Tag=green-events-per-s,")
                && !text.contains("Tag=blue-events-per-s,"),
            "{text}"
        );
        let merged = merge(&logs).unwrap();
        assert_merges_into(&merged, &one.snapshot());
        let e = merge(&[("x".into(), b"not a log\n".to_vec())]).unwrap_err();
        assert!(e.starts_with("x: "), "{e}");
    }

    #[test]
    fn a_run_logs_one_interval_per_look_and_they_add_up_to_the_run() {
        let rec = Recorder::new();
        let mut looks = Vec::new();
        for phase in 0..3u64 {
            for i in phase * 1000..(phase + 1) * 1000 {
                let color = if i % 4 == 0 {
                    SeenColor::Green
                } else {
                    SeenColor::Blue
                };
                rec.record(i, &sample(i, color));
            }
            std::thread::sleep(Duration::from_millis(5));
            looks.push(rec.snapshot());
        }
        // A look with nothing new writes no interval.
        looks.push(rec.snapshot());
        let mut out = Vec::new();
        write_intervals(&mut out, SystemTime::now(), looks).unwrap();
        let mut starts = Vec::new();
        for entry in IntervalLogIterator::new(&out) {
            if let Ok(LogEntry::Interval(i)) = entry {
                if i.tag().map(|t| t.as_str()) == Some("blue") {
                    starts.push(i.start_timestamp());
                }
            }
        }
        assert_eq!(starts.len(), 3, "{}", String::from_utf8_lossy(&out));
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
        let merged = merge(&[("run.hlog".into(), out)]).unwrap();
        assert_merges_into(&merged, &rec.snapshot());
        assert!(
            merged.elapsed >= Duration::from_millis(15),
            "{:?}",
            merged.elapsed
        );
    }
}
