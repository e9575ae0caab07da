//! Thread-safe accumulation of samples, per color, with a per-second time
//! series that a live view can read (via [`Recorder::snapshot`]) while the
//! run goes on.
//!
//! Writers lock one of a few shards (picked by the request's sequence number),
//! so they rarely contend; [`Recorder::tick`] (called once a second by the
//! engine) drains the shards into the totals and closes one series point.

use crate::histogram::{ColorStats, Sample, SeenColor};
use crate::sampling::Purpose;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SHARDS: usize = 4;

/// One color's figures over one series interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ColorPoint {
    pub requests: u64,
    pub rps: f64,
    pub errors: u64,
    /// Corrected latency, ms (0 when there were no requests).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Corrected time to first byte (first event of a stream), ms.
    #[serde(default)]
    pub ttfb_p50_ms: f64,
    #[serde(default)]
    pub ttfb_p99_ms: f64,
}

/// The figures of one interval (normally one second) of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// End of the interval, seconds since the run started.
    pub t_s: f64,
    pub blue: ColorPoint,
    pub green: ColorPoint,
    pub unknown: ColorPoint,
}

impl SeriesPoint {
    pub fn color(&self, c: SeenColor) -> &ColorPoint {
        match c {
            SeenColor::Blue => &self.blue,
            SeenColor::Green => &self.green,
            SeenColor::Unknown => &self.unknown,
        }
    }
}

/// Counters that are not per color.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineCounters {
    /// Requests the schedule asked for.
    pub scheduled: u64,
    /// Requests sent late: more than the engine's `LATE_THRESHOLD` after
    /// their intended time (in-flight cap reached or the sender fell behind).
    pub late: u64,
    /// Of those, how many had to wait for the in-flight cap.
    pub cap_waits: u64,
    /// Requests in flight right now.
    pub in_flight: u64,
    /// Comparison requests the edge did not answer with the color asked
    /// for (preview refused or ignored); counted per color in
    /// [`Snapshot::mismatched`], neither comparison nor weighted traffic.
    #[serde(default)]
    pub preview_mismatch: u64,
}

/// A consistent copy of everything recorded so far.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub elapsed: Duration,
    /// Every request, whatever it was for.
    pub colors: [ColorStats; 3],
    /// Of those, the comparison requests (preview override, equal per color).
    pub comparison: [ColorStats; 3],
    /// Of those, the preview requests answered by another color than asked
    /// for, per color that answered.
    pub mismatched: [u64; 3],
    /// Weighted answers per rollout epoch they carried, per color: the
    /// routing check of one state counts only the answers that state routed.
    pub weighted_by_epoch: BTreeMap<u64, [u64; 3]>,
    pub series: Vec<SeriesPoint>,
    pub counters: EngineCounters,
}

impl Snapshot {
    pub fn color(&self, c: SeenColor) -> &ColorStats {
        &self.colors[c.index()]
    }

    pub fn requests(&self) -> u64 {
        self.colors.iter().map(ColorStats::requests).sum()
    }

    /// Comparison requests answered by color `c`.
    pub fn comparison(&self, c: SeenColor) -> &ColorStats {
        &self.comparison[c.index()]
    }

    /// Weighted requests (routing check or fallback) answered by color `c`.
    pub fn weighted_requests(&self, c: SeenColor) -> u64 {
        self.colors[c.index()]
            .requests()
            .saturating_sub(self.comparison[c.index()].requests())
            .saturating_sub(self.mismatched[c.index()])
    }

    /// Whether any comparison request was answered.
    pub fn has_comparison(&self) -> bool {
        self.comparison.iter().any(|c| c.requests() > 0)
    }
}

#[derive(Default)]
struct Shard {
    colors: [ColorStats; 3],
    comparison: [ColorStats; 3],
    mismatched: [u64; 3],
    weighted_by_epoch: BTreeMap<u64, [u64; 3]>,
}

/// Distinct epochs kept in [`Snapshot::weighted_by_epoch`]: one per change
/// in a run, so far more than any rollout makes; an edge that answered with
/// random epochs cannot grow it without bound.
const MAX_EPOCHS: usize = 4096;

/// The counts of `epoch` in `map`; `None` when the map is full without it.
fn epoch_counts(map: &mut BTreeMap<u64, [u64; 3]>, epoch: u64) -> Option<&mut [u64; 3]> {
    if map.len() >= MAX_EPOCHS && !map.contains_key(&epoch) {
        return None;
    }
    Some(map.entry(epoch).or_default())
}

fn add_epochs(into: &mut BTreeMap<u64, [u64; 3]>, from: &BTreeMap<u64, [u64; 3]>) {
    for (epoch, counts) in from {
        if let Some(acc) = epoch_counts(into, *epoch) {
            for (a, n) in acc.iter_mut().zip(counts) {
                *a += n;
            }
        }
    }
}

struct Totals {
    colors: [ColorStats; 3],
    comparison: [ColorStats; 3],
    mismatched: [u64; 3],
    weighted_by_epoch: BTreeMap<u64, [u64; 3]>,
    series: Vec<SeriesPoint>,
    last_tick: Duration,
    /// Scratch space for the interval being closed (kept to avoid reallocating).
    interval: [ColorStats; 3],
}

/// Shared accumulator; clone the `Arc` to read it from another task.
pub struct Recorder {
    start: Mutex<Instant>,
    shards: Vec<Mutex<Shard>>,
    totals: Mutex<Totals>,
    scheduled: AtomicU64,
    late: AtomicU64,
    cap_waits: AtomicU64,
    in_flight: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves only counters behind: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            start: Mutex::new(Instant::now()),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            totals: Mutex::new(Totals {
                colors: Default::default(),
                comparison: Default::default(),
                mismatched: [0; 3],
                weighted_by_epoch: BTreeMap::new(),
                series: Vec::new(),
                last_tick: Duration::ZERO,
                interval: Default::default(),
            }),
            scheduled: AtomicU64::new(0),
            late: AtomicU64::new(0),
            cap_waits: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        }
    }
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// Marks the start of the run (series times are relative to it).
    pub fn set_start(&self, at: Instant) {
        *lock(&self.start) = at;
    }

    pub fn start(&self) -> Instant {
        *lock(&self.start)
    }

    /// Records one finished request; `seq` spreads writers over the shards.
    pub fn record(&self, seq: u64, s: &Sample) {
        self.record_for(seq, s, Purpose::Weighted);
    }

    /// Records one finished request sent for `purpose`.
    pub fn record_for(&self, seq: u64, s: &Sample, purpose: Purpose) {
        let mut shard = lock(&self.shards[(seq as usize) % SHARDS]);
        let i = s.color.index();
        shard.colors[i].record(s);
        match purpose {
            Purpose::Comparison => shard.comparison[i].record(s),
            Purpose::PreviewMismatch => shard.mismatched[i] += 1,
            Purpose::Weighted => {
                if let Some(counts) = s
                    .epoch
                    .and_then(|e| epoch_counts(&mut shard.weighted_by_epoch, e))
                {
                    counts[i] += 1;
                }
            }
        }
    }

    pub fn count_scheduled(&self) {
        self.scheduled.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` scheduled requests at once (closed loop settles at the end).
    pub fn add_scheduled(&self, n: u64) {
        self.scheduled.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count_late(&self, waited_for_cap: bool) {
        self.late.fetch_add(1, Ordering::Relaxed);
        if waited_for_cap {
            self.cap_waits.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn in_flight_add(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn in_flight_sub(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The engine's counters; `preview_mismatch` is the snapshot's sum.
    fn counters(&self, preview_mismatch: u64) -> EngineCounters {
        EngineCounters {
            scheduled: self.scheduled.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            cap_waits: self.cap_waits.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            preview_mismatch,
        }
    }

    /// Closes the current interval: drains the shards into the totals and
    /// appends one series point. Called once per second by the engine and
    /// once at the end of the run.
    pub fn tick(&self) {
        self.tick_at(self.start().elapsed());
    }

    /// [`Recorder::tick`] with an explicit elapsed time (tests, simulations).
    pub fn tick_at(&self, elapsed: Duration) {
        let mut totals = lock(&self.totals);
        let t = &mut *totals;
        for c in t.interval.iter_mut() {
            c.reset();
        }
        for shard in &self.shards {
            let mut s = lock(shard);
            for (acc, c) in t.interval.iter_mut().zip(s.colors.iter_mut()) {
                acc.merge(c);
                c.reset();
            }
            for (acc, c) in t.comparison.iter_mut().zip(s.comparison.iter_mut()) {
                acc.merge(c);
                c.reset();
            }
            for (acc, n) in t.mismatched.iter_mut().zip(s.mismatched.iter_mut()) {
                *acc += std::mem::take(n);
            }
            add_epochs(
                &mut t.weighted_by_epoch,
                &std::mem::take(&mut s.weighted_by_epoch),
            );
        }
        let secs = elapsed.saturating_sub(t.last_tick).as_secs_f64();
        let point = |c: &ColorStats| {
            let n = c.requests();
            let ms = |us: u64| if n > 0 { us as f64 / 1000.0 } else { 0.0 };
            ColorPoint {
                ttfb_p50_ms: ms(c.ttfb_us(0.5)),
                ttfb_p99_ms: ms(c.ttfb_us(0.99)),
                requests: n,
                rps: if secs > 0.0 { n as f64 / secs } else { 0.0 },
                errors: c.outcomes.errors(),
                p50_ms: if n > 0 {
                    c.latency_us(0.5) as f64 / 1000.0
                } else {
                    0.0
                },
                p99_ms: if n > 0 {
                    c.latency_us(0.99) as f64 / 1000.0
                } else {
                    0.0
                },
            }
        };
        let sp = SeriesPoint {
            t_s: elapsed.as_secs_f64(),
            blue: point(&t.interval[0]),
            green: point(&t.interval[1]),
            unknown: point(&t.interval[2]),
        };
        if secs > 0.0 || sp.blue.requests + sp.green.requests + sp.unknown.requests > 0 {
            t.series.push(sp);
        }
        for (total, c) in t.colors.iter_mut().zip(t.interval.iter()) {
            total.merge(c);
        }
        t.last_tick = elapsed;
    }

    /// Everything so far, including what the shards hold since the last tick.
    /// The totals stay locked while the shards are read: a tick between the
    /// two would move samples from the shards into totals already copied,
    /// and the snapshot would miss them (an earlier snapshot could then hold
    /// more than a later one).
    pub fn snapshot(&self) -> Snapshot {
        let totals = lock(&self.totals);
        let mut colors = totals.colors.clone();
        let mut comparison = totals.comparison.clone();
        let mut mismatched = totals.mismatched;
        let mut weighted_by_epoch = totals.weighted_by_epoch.clone();
        let series = totals.series.clone();
        for shard in &self.shards {
            let s = lock(shard);
            for (acc, c) in colors.iter_mut().zip(s.colors.iter()) {
                acc.merge(c);
            }
            for (acc, c) in comparison.iter_mut().zip(s.comparison.iter()) {
                acc.merge(c);
            }
            for (acc, n) in mismatched.iter_mut().zip(s.mismatched.iter()) {
                *acc += n;
            }
            add_epochs(&mut weighted_by_epoch, &s.weighted_by_epoch);
        }
        drop(totals);
        Snapshot {
            elapsed: self.start().elapsed(),
            colors,
            comparison,
            mismatched,
            weighted_by_epoch,
            series,
            counters: self.counters(mismatched.iter().sum()),
        }
    }
}

/// The per-color statistics recorded after `base` (all of `now` without one).
pub fn window(now: &Snapshot, base: Option<&Snapshot>) -> [ColorStats; 3] {
    since(&now.colors, base.map(|b| &b.colors))
}

/// Weighted requests (routing check or fallback) per color after `base`.
pub fn weighted_window(now: &Snapshot, base: Option<&Snapshot>) -> [u64; 3] {
    let mut out = [0; 3];
    for (c, n) in out.iter_mut().enumerate() {
        let key = SeenColor::ALL[c];
        *n = now
            .weighted_requests(key)
            .saturating_sub(base.map_or(0, |b| b.weighted_requests(key)));
    }
    out
}

/// [`window`] of the comparison requests only.
pub fn comparison_window(now: &Snapshot, base: Option<&Snapshot>) -> [ColorStats; 3] {
    since(&now.comparison, base.map(|b| &b.comparison))
}

fn since(now: &[ColorStats; 3], base: Option<&[ColorStats; 3]>) -> [ColorStats; 3] {
    let mut out = now.clone();
    if let Some(b) = base {
        for (o, b) in out.iter_mut().zip(b.iter()) {
            o.subtract(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::RequestOutcome;

    fn s(color: SeenColor, ms: u64, outcome: RequestOutcome, epoch: u64) -> Sample {
        Sample {
            color,
            latency: Duration::from_millis(ms),
            service: Duration::from_millis(ms),
            ttfb: Duration::from_millis(ms / 2),
            events_per_s: None,
            outcome,
            epoch: Some(epoch),
        }
    }

    #[test]
    fn accounts_per_color() {
        let r = Recorder::new();
        for i in 0..90 {
            r.record(i, &s(SeenColor::Blue, 10, RequestOutcome::Status(200), 1));
        }
        for i in 0..10 {
            r.record(i, &s(SeenColor::Green, 20, RequestOutcome::Status(503), 2));
        }
        r.record(
            7,
            &s(SeenColor::Unknown, 5, RequestOutcome::ConnectError, 0),
        );
        // Visible before any tick.
        let snap = r.snapshot();
        assert_eq!(snap.requests(), 101);
        let blue = snap.color(SeenColor::Blue);
        let green = snap.color(SeenColor::Green);
        assert_eq!(
            (blue.requests(), blue.outcomes.s2xx, blue.outcomes.errors()),
            (90, 90, 0)
        );
        assert_eq!((green.requests(), green.outcomes.s5xx), (10, 10));
        assert_eq!(snap.color(SeenColor::Unknown).outcomes.connect_error, 1);
        assert_eq!(green.epochs.iter().copied().collect::<Vec<_>>(), vec![2]);
        assert!((green.latency_us(0.5) as i64 - 20_000).abs() < 20);
    }

    #[test]
    fn ticks_make_a_series_and_keep_totals() {
        let r = Recorder::new();
        for i in 0..50 {
            r.record(i, &s(SeenColor::Blue, 10, RequestOutcome::Status(200), 1));
        }
        r.tick_at(Duration::from_secs(1));
        for i in 0..20 {
            r.record(i, &s(SeenColor::Green, 40, RequestOutcome::Timeout, 1));
        }
        r.tick_at(Duration::from_millis(1500));
        let snap = r.snapshot();
        assert_eq!(snap.series.len(), 2);
        let (a, b) = (&snap.series[0], &snap.series[1]);
        assert_eq!(
            (a.blue.requests, a.blue.rps, a.green.requests),
            (50, 50.0, 0)
        );
        assert!((a.blue.p99_ms - 10.0).abs() < 0.05);
        assert!((a.blue.ttfb_p50_ms - 5.0).abs() < 0.05);
        assert_eq!(a.green.ttfb_p99_ms, 0.0);
        assert_eq!(
            (b.green.requests, b.green.rps, b.green.errors),
            (20, 40.0, 20)
        );
        assert_eq!(b.blue.requests, 0);
        assert_eq!(snap.color(SeenColor::Blue).requests(), 50);
        assert_eq!(snap.color(SeenColor::Green).requests(), 20);
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let r = Recorder::new();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000u64 {
                        let c = if i % 10 == 0 {
                            SeenColor::Green
                        } else {
                            SeenColor::Blue
                        };
                        r.record(i + t, &s(c, 1 + i % 50, RequestOutcome::Status(200), 1));
                        if i % 1000 == 0 {
                            r.tick();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        r.tick();
        let snap = r.snapshot();
        assert_eq!(snap.requests(), 20_000);
        assert_eq!(snap.color(SeenColor::Green).requests(), 2_000);
        let series_total: u64 = snap
            .series
            .iter()
            .map(|p| p.blue.requests + p.green.requests)
            .sum();
        assert_eq!(series_total, 20_000);
    }

    #[test]
    fn a_preview_answered_by_the_other_color_is_neither_comparison_nor_weighted() {
        let r = Recorder::new();
        let sample = |color| Sample {
            color,
            latency: Duration::from_millis(5),
            service: Duration::from_millis(5),
            ttfb: Duration::from_millis(2),
            events_per_s: None,
            outcome: RequestOutcome::Status(200),
            epoch: Some(3),
        };
        // Per color: 3 weighted, 5 comparison, 2 previews answered by it
        // although the other color was asked for.
        for (seq, color) in [SeenColor::Blue, SeenColor::Green].into_iter().enumerate() {
            let seq = seq as u64 * 100;
            for i in 0..3 {
                r.record_for(seq + i, &sample(color), Purpose::Weighted);
            }
            for i in 3..8 {
                r.record_for(seq + i, &sample(color), Purpose::Comparison);
            }
            for i in 8..10 {
                r.record_for(seq + i, &sample(color), Purpose::PreviewMismatch);
            }
        }
        let base = r.snapshot();
        r.tick_at(Duration::from_secs(1));
        r.record_for(500, &sample(SeenColor::Green), Purpose::PreviewMismatch);
        r.record_for(501, &sample(SeenColor::Green), Purpose::Weighted);
        let now = r.snapshot();
        for c in [SeenColor::Blue, SeenColor::Green] {
            assert_eq!(base.color(c).requests(), 10);
            assert_eq!(base.comparison(c).requests(), 5);
            assert_eq!(base.mismatched[c.index()], 2);
            assert_eq!(base.weighted_requests(c), 3);
        }
        assert_eq!(now.counters.preview_mismatch, 5);
        assert_eq!(now.weighted_requests(SeenColor::Green), 4);
        assert_eq!(weighted_window(&now, Some(&base)), [0, 1, 0]);
        assert_eq!(weighted_window(&now, None), [3, 4, 0]);
        // Only weighted answers are counted by the epoch they carried.
        assert_eq!(now.weighted_by_epoch.get(&3), Some(&[3, 4, 0]));
        assert_eq!(now.weighted_by_epoch.len(), 1);
    }

    #[test]
    fn a_snapshot_holds_every_sample_recorded_before_it_while_ticks_drain_the_shards() {
        use std::sync::atomic::AtomicU64;
        let rec = Recorder::new();
        let recorded = Arc::new(AtomicU64::new(0));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (rec, recorded, done) = (rec.clone(), recorded.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..100_000u64 {
                    rec.record(
                        i,
                        &s(SeenColor::Blue, 1 + i % 50, RequestOutcome::Status(200), 1),
                    );
                    recorded.fetch_add(1, Ordering::SeqCst);
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        // Ticks as often as it can, so some land between a snapshot's copy
        // of the totals and its read of the shards.
        let ticker = {
            let (rec, done) = (rec.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    rec.tick();
                }
            })
        };
        while !done.load(Ordering::SeqCst) {
            let floor = recorded.load(Ordering::SeqCst);
            let n = rec.snapshot().requests();
            assert!(
                n >= floor,
                "a snapshot holds {n} of at least {floor} samples"
            );
        }
        writer.join().unwrap();
        ticker.join().unwrap();
        assert_eq!(rec.snapshot().requests(), 100_000);
    }
}
