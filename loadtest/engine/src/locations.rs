//! Per-location convergence: a deployed edge answers from many points of
//! presence, and a change reaches each of them at its own time. The location
//! of each answer is read from a header (Cloudflare: the suffix of `cf-ray`,
//! `8c2d4e6f7a8b9c0d-FRA`; any other platform: `--location-header NAME`,
//! its whole value), and per location the tracker keeps requests per color
//! and when each epoch was first and last seen. For a change made during the
//! run (acknowledged by the admin API, [`LocationTracker::mark_change`]) or,
//! failing that, a new epoch first seen somewhere, the summary says per
//! location how long after it the new epoch was first seen and the old one
//! last seen.

use crate::histogram::SeenColor;
use greenlight_common::http::CF_RAY;
use hyper::header::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where an answer's location is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationSource {
    /// The suffix of `cf-ray` (`…-FRA`).
    CfRay,
    /// The whole (trimmed) value of this header.
    Header(HeaderName),
}

impl LocationSource {
    /// `--location-header NAME`; `cf-ray` means its suffix.
    pub fn parse(name: &str) -> Result<LocationSource, String> {
        let n = name.trim().to_ascii_lowercase();
        if n == CF_RAY {
            return Ok(LocationSource::CfRay);
        }
        HeaderName::from_bytes(n.as_bytes())
            .map(LocationSource::Header)
            .map_err(|_| format!("--location-header {name:?} is not a header name"))
    }

    pub fn name(&self) -> &str {
        match self {
            LocationSource::CfRay => CF_RAY,
            LocationSource::Header(h) => h.as_str(),
        }
    }

    /// The location an answer came from, if it says.
    pub fn read(&self, headers: &HeaderMap) -> Option<String> {
        match self {
            LocationSource::CfRay => {
                let v = headers.get(CF_RAY)?.to_str().ok()?.trim();
                let (_, code) = v.rsplit_once('-')?;
                (!code.is_empty()
                    && code.len() <= 8
                    && code.bytes().all(|b| b.is_ascii_alphanumeric()))
                .then(|| code.to_ascii_uppercase())
            }
            LocationSource::Header(h) => {
                let v = headers.get(h)?.to_str().ok()?.trim();
                (!v.is_empty()).then(|| v.chars().take(64).collect())
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct EpochSeen {
    first: Duration,
    last: Duration,
}

#[derive(Debug, Clone, Default)]
struct Location {
    requests: [u64; 3],
    epochs: BTreeMap<u64, EpochSeen>,
}

#[derive(Debug, Default)]
struct Inner {
    locations: BTreeMap<String, Location>,
    /// Acknowledged changes: (new epoch, when).
    changes: Vec<(u64, Duration)>,
}

/// Locations seen during a run; shared by the engine and whoever makes
/// changes (dashboard, rollout) or shows them.
#[derive(Debug)]
pub struct LocationTracker {
    source: LocationSource,
    start: OnceLock<Instant>,
    inner: Mutex<Inner>,
}

/// Most locations kept (a misbehaving header cannot grow memory without bound).
const MAX_LOCATIONS: usize = 1024;

impl LocationTracker {
    pub fn new(source: LocationSource) -> LocationTracker {
        LocationTracker {
            source,
            start: OnceLock::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Offsets are measured from the first call (the engine calls it at the
    /// start of the run).
    pub fn set_start(&self, at: Instant) {
        let _ = self.start.set(at);
    }

    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(*self.start.get_or_init(|| at))
    }

    /// Records one answer (nothing when it names no location).
    pub fn observe(&self, headers: &HeaderMap, color: SeenColor, epoch: Option<u64>) {
        let Some(name) = self.source.read(headers) else {
            return;
        };
        self.observe_at(&name, color, epoch, Instant::now());
    }

    pub fn observe_at(&self, location: &str, color: SeenColor, epoch: Option<u64>, at: Instant) {
        let t = self.offset(at);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if !inner.locations.contains_key(location) && inner.locations.len() >= MAX_LOCATIONS {
            return;
        }
        let loc = inner.locations.entry(location.to_string()).or_default();
        loc.requests[color.index()] += 1;
        if let Some(e) = epoch {
            let seen = loc
                .epochs
                .entry(e)
                .or_insert(EpochSeen { first: t, last: t });
            seen.last = seen.last.max(t);
        }
    }

    /// A change to `new_epoch` was acknowledged now.
    pub fn mark_change(&self, new_epoch: u64) {
        self.mark_change_at(new_epoch, Instant::now());
    }

    pub fn mark_change_at(&self, new_epoch: u64, at: Instant) {
        let t = self.offset(at);
        if let Ok(mut inner) = self.inner.lock() {
            inner.changes.push((new_epoch, t));
        }
    }

    pub fn summary(&self) -> LocationSummary {
        let Ok(inner) = self.inner.lock() else {
            return LocationSummary::default();
        };
        // Changes: the acknowledged ones, else each epoch that appeared
        // after the first one seen, at its first sighting anywhere.
        let mut changes: Vec<Change> = inner
            .changes
            .iter()
            .map(|(e, t)| Change {
                epoch: *e,
                at_s: t.as_secs_f64(),
                acknowledged: true,
            })
            .collect();
        if changes.is_empty() {
            let mut first: BTreeMap<u64, Duration> = BTreeMap::new();
            for loc in inner.locations.values() {
                for (e, seen) in &loc.epochs {
                    let f = first.entry(*e).or_insert(seen.first);
                    *f = (*f).min(seen.first);
                }
            }
            changes = first
                .into_iter()
                .skip(1)
                .map(|(epoch, t)| Change {
                    epoch,
                    at_s: t.as_secs_f64(),
                    acknowledged: false,
                })
                .collect();
        }
        let locations = inner
            .locations
            .iter()
            .map(|(name, loc)| {
                let requests = SeenColor::ALL
                    .iter()
                    .filter(|c| loc.requests[c.index()] > 0)
                    .map(|c| (*c, loc.requests[c.index()]))
                    .collect();
                let convergence = changes.iter().map(|c| converge(loc, c)).collect();
                (
                    name.clone(),
                    LocationReport {
                        requests,
                        epochs: loc.epochs.keys().copied().collect(),
                        convergence,
                    },
                )
            })
            .collect();
        LocationSummary {
            header: self.source.name().to_string(),
            changes,
            locations,
        }
    }
}

fn converge(loc: &Location, change: &Change) -> Convergence {
    let at = change.at_s;
    let first_new = loc
        .epochs
        .range(change.epoch..)
        .map(|(_, s)| s.first.as_secs_f64())
        .reduce(f64::min);
    let last_old = loc
        .epochs
        .range(..change.epoch)
        .map(|(_, s)| s.last.as_secs_f64())
        .reduce(f64::max)
        .filter(|t| *t >= at);
    Convergence {
        epoch: change.epoch,
        new_first_seen_s: first_new.map(|t| t - at),
        old_last_seen_s: last_old.map(|t| t - at),
    }
}

/// A change the convergence is measured from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The epoch the change made.
    pub epoch: u64,
    /// Seconds since the start of the run.
    pub at_s: f64,
    /// True: the admin API acknowledged it at `at_s`; false: `at_s` is when
    /// the epoch was first seen at any location.
    pub acknowledged: bool,
}

/// How one location followed one change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Convergence {
    pub epoch: u64,
    /// Seconds after the change that this location first answered with the
    /// new (or a later) epoch; `None`: never during the run. Slightly
    /// negative values happen: an answer carrying the new epoch can reach
    /// the load generator before the acknowledgement reaches its caller.
    pub new_first_seen_s: Option<f64>,
    /// Seconds after the change that it last answered with an older epoch;
    /// `None`: not after the change.
    pub old_last_seen_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationReport {
    pub requests: BTreeMap<SeenColor, u64>,
    pub epochs: Vec<u64>,
    /// One entry per change, in the order of [`LocationSummary::changes`].
    pub convergence: Vec<Convergence>,
}

/// The locations of a run (JSON report key `locations`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocationSummary {
    /// Where locations were read from (`cf-ray` or the `--location-header`).
    pub header: String,
    pub changes: Vec<Change>,
    pub locations: BTreeMap<String, LocationReport>,
}

impl LocationSummary {
    /// A table for terminals (empty when no answer named a location).
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if self.locations.is_empty() {
            return out;
        }
        let _ = write!(
            out,
            "\nper location ({}):\n{:<10}{:>8}{:>8}  {:<12}",
            self.header, "location", "blue", "green", "epochs"
        );
        for c in &self.changes {
            let _ = write!(
                out,
                "  → epoch {} ({} {:.1} s): new first / old last",
                c.epoch,
                if c.acknowledged {
                    "acked at"
                } else {
                    "first seen at"
                },
                c.at_s
            );
        }
        out.push('\n');
        let secs = |v: Option<f64>| match v {
            Some(s) => format!("{s:+.2} s"),
            None => "-".into(),
        };
        for (name, loc) in &self.locations {
            let n = |c: SeenColor| loc.requests.get(&c).copied().unwrap_or(0);
            let epochs: Vec<String> = loc.epochs.iter().map(u64::to_string).collect();
            let _ = write!(
                out,
                "{name:<10}{:>8}{:>8}  {:<12}",
                n(SeenColor::Blue),
                n(SeenColor::Green),
                epochs.join(",")
            );
            for c in &loc.convergence {
                let _ = write!(
                    out,
                    "  {:>36}",
                    format!("{} / {}", secs(c.new_first_seen_s), secs(c.old_last_seen_s))
                );
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(name: &'static str, v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn reads_cf_ray_suffix_and_custom_headers() {
        let cf = LocationSource::parse("CF-Ray").unwrap();
        assert_eq!(
            cf.read(&headers("cf-ray", "8c2d4e6f7a8b9c0d-fra"))
                .as_deref(),
            Some("FRA")
        );
        assert_eq!(cf.read(&headers("cf-ray", "8c2d4e6f7a8b9c0d")), None);
        assert_eq!(cf.read(&headers("cf-ray", "x-not a code")), None);
        assert_eq!(cf.read(&HeaderMap::new()), None);
        let pop = LocationSource::parse("x-served-by").unwrap();
        assert_eq!(
            pop.read(&headers("x-served-by", " cache-ams1 ")).as_deref(),
            Some("cache-ams1")
        );
        assert!(LocationSource::parse("bad header").is_err());
    }

    #[test]
    fn convergence_per_location_from_the_acknowledgement() {
        let t = LocationTracker::new(LocationSource::CfRay);
        let t0 = Instant::now();
        t.set_start(t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        t.observe_at("FRA", SeenColor::Blue, Some(4), at(100));
        t.observe_at("AMS", SeenColor::Blue, Some(4), at(150));
        t.mark_change_at(5, at(1000));
        t.observe_at("FRA", SeenColor::Green, Some(5), at(1200));
        t.observe_at("AMS", SeenColor::Blue, Some(4), at(1500));
        t.observe_at("AMS", SeenColor::Green, Some(5), at(2000));
        let s = t.summary();
        assert_eq!(s.changes.len(), 1);
        assert!(s.changes[0].acknowledged);
        let fra = &s.locations["FRA"].convergence[0];
        assert!((fra.new_first_seen_s.unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(fra.old_last_seen_s, None);
        let ams = &s.locations["AMS"];
        assert_eq!(ams.epochs, vec![4, 5]);
        assert_eq!(ams.requests[&SeenColor::Blue], 2);
        assert!((ams.convergence[0].new_first_seen_s.unwrap() - 1.0).abs() < 1e-9);
        assert!((ams.convergence[0].old_last_seen_s.unwrap() - 0.5).abs() < 1e-9);
        let text = s.text();
        assert!(
            text.contains("per location (cf-ray)") && text.contains("AMS"),
            "{text}"
        );
        assert!(text.contains("+1.00 s / +0.50 s"), "{text}");
    }

    #[test]
    fn without_acknowledgement_the_first_sighting_is_the_reference() {
        let t = LocationTracker::new(LocationSource::CfRay);
        let t0 = Instant::now();
        t.set_start(t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        t.observe_at("FRA", SeenColor::Blue, Some(7), at(0));
        t.observe_at("FRA", SeenColor::Green, Some(8), at(400));
        t.observe_at("SIN", SeenColor::Blue, Some(7), at(900));
        t.observe_at("SIN", SeenColor::Green, Some(8), at(1400));
        let s = t.summary();
        assert_eq!(s.changes.len(), 1);
        assert!(!s.changes[0].acknowledged && (s.changes[0].at_s - 0.4).abs() < 1e-9);
        assert_eq!(
            s.locations["FRA"].convergence[0].new_first_seen_s,
            Some(0.0)
        );
        let sin = &s.locations["SIN"].convergence[0];
        assert!((sin.new_first_seen_s.unwrap() - 1.0).abs() < 1e-9);
        assert!((sin.old_last_seen_s.unwrap() - 0.5).abs() < 1e-9);
    }
}
