//! How a committed change reaches every location of a Workers edge within
//! seconds.
//!
//! The rollout object (the primary, [`crate::object`]) decides every change
//! in one place. Reading it from every isolate would send the whole world's
//! reads to one location, and Workers KV alone takes up to a minute to
//! show a change elsewhere. Between them:
//!
//! - the primary pushes every commit, in parallel, to one read replica per
//!   region (a Durable Object created with that region's `locationHint`),
//!   and retries a push that failed ([`ReplicaTable`]); a replica also
//!   pulls the primary's document itself when it has heard nothing for
//!   [`REPLICA_RESYNC_MS`] ([`resync_due`]);
//! - each location keeps the document in its Cache API for a short period
//!   ([`ReadPath::location_cache_s`]) under a synthetic key ([`Place`]), so
//!   a replica is read at most about once per location per period, not once
//!   per isolate;
//! - each isolate keeps the document in memory and, once it is older than
//!   `STATE_CACHE_TTL_MS`, refreshes it in the background (the request that
//!   notices goes on with what the isolate holds): the location's cache,
//!   else its region's replica, else KV, the fallback, which marks the
//!   isolate degraded until the fast path answers again.
//!
//! Everything here is pure: the Worker's shell does the reads and writes.

use crate::config_error::ConfigError;
use crate::edge::config::Vars;
use crate::state::RolloutState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Durable Object region (`locationHint`) and a point inside it, to find
/// the region nearest a location.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub name: &'static str,
    pub latitude: f64,
    pub longitude: f64,
}

/// The nine `locationHint` regions Durable Objects can be created in, each
/// with a city near its middle (Cloudflare's list of hints).
pub const REGIONS: [Region; 9] = [
    Region {
        name: "wnam",
        latitude: 37.4,
        longitude: -122.1,
    }, // San Jose
    Region {
        name: "enam",
        latitude: 39.0,
        longitude: -77.5,
    }, // Ashburn
    Region {
        name: "sam",
        latitude: -23.5,
        longitude: -46.6,
    }, // São Paulo
    Region {
        name: "weur",
        latitude: 50.1,
        longitude: 8.7,
    }, // Frankfurt
    Region {
        name: "eeur",
        latitude: 52.2,
        longitude: 21.0,
    }, // Warsaw
    Region {
        name: "apac",
        latitude: 1.35,
        longitude: 103.8,
    }, // Singapore
    Region {
        name: "oc",
        latitude: -33.9,
        longitude: 151.2,
    }, // Sydney
    Region {
        name: "afr",
        latitude: -26.2,
        longitude: 28.0,
    }, // Johannesburg
    Region {
        name: "me",
        latitude: 25.3,
        longitude: 55.3,
    }, // Dubai
];

/// A replica that heard nothing from the primary for this long pulls the
/// primary's document on its next read (it may have missed pushes while
/// unreachable).
pub const REPLICA_RESYNC_MS: u64 = 5_000;

/// A replica out of touch with the primary for this long (no push
/// confirmed, no pull answered) pulls before it answers a read, and
/// answers `503` if that fails too: in a partition between the primary and
/// a region, the region's locations then fall back to KV, and say so,
/// rather than serve a copy that may be far behind without a sign.
pub const REPLICA_STALE_MS: u64 = 30_000;

/// The first retry of a failed push, doubled per consecutive failure up to
/// [`PUSH_RETRY_MAX_MS`].
pub const PUSH_RETRY_MS: u64 = 1_000;
pub const PUSH_RETRY_MAX_MS: u64 = 30_000;

/// How long an isolate waits for a background refresh before it starts
/// another (one that never finished: its request was cancelled).
pub const REFRESH_TIMEOUT_MS: u64 = 5_000;

/// The default Cache API period of the state at a location (seconds: the
/// Cache API's `max-age` counts whole seconds).
pub const DEFAULT_LOCATION_CACHE_S: u32 = 1;

/// The path of the Cache API key under which a location keeps the state
/// (a synthetic URL on the edge's own host; no client request is ever
/// answered from it).
pub const CACHE_PATH: &str = "/__greenlight/location-state/";

/// Where isolates read the rollout state from (`STATE_SOURCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSource {
    /// The location's cache, filled from the region's replica; KV when
    /// that fails (the default).
    Replicas,
    /// Workers KV only, as the primary publishes it.
    Kv,
    /// The primary itself, from every isolate (small deployments only).
    Object,
}

/// How a Workers edge reads its state: the source, the regions that hold
/// a replica, and the location cache's period.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPath {
    pub source: StateSource,
    /// Regions with a replica (`REPLICA_REGIONS`: all nine by default).
    pub regions: Vec<Region>,
    pub location_cache_s: u32,
}

impl ReadPath {
    /// From `STATE_SOURCE` (`replicas`, `kv` or `object`),
    /// `REPLICA_REGIONS` (comma-separated hints) and `LOCATION_CACHE_TTL_S`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<ReadPath, ConfigError> {
        let vars = Vars(lookup);
        let var = |name: &str| vars.nonempty(name);
        let source = match var("STATE_SOURCE").as_deref() {
            None | Some("replicas") => StateSource::Replicas,
            Some("kv") => StateSource::Kv,
            Some("object") => StateSource::Object,
            Some(other) => {
                return Err(ConfigError(format!(
                    "STATE_SOURCE {other:?} is not one of replicas, kv, object"
                )))
            }
        };
        let regions = match var("REPLICA_REGIONS") {
            None => REGIONS.to_vec(),
            Some(list) => {
                let mut regions = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let Some(region) = REGIONS.iter().find(|r| r.name == name) else {
                        let known: Vec<&str> = REGIONS.iter().map(|r| r.name).collect();
                        return Err(ConfigError(format!(
                            "REPLICA_REGIONS names {name:?}, not one of {}",
                            known.join(", ")
                        )));
                    };
                    if !regions.contains(region) {
                        regions.push(*region);
                    }
                }
                regions
            }
        };
        if source == StateSource::Replicas && regions.is_empty() {
            return Err(ConfigError(
                "REPLICA_REGIONS is empty: name at least one region, or set STATE_SOURCE = \"kv\""
                    .into(),
            ));
        }
        let location_cache_s = match var("LOCATION_CACHE_TTL_S") {
            None => DEFAULT_LOCATION_CACHE_S,
            Some(v) => match v.parse::<u32>() {
                Ok(s) if (1..=60).contains(&s) => s,
                _ => {
                    return Err(ConfigError(format!(
                        "LOCATION_CACHE_TTL_S {v:?} is not a whole number of seconds from 1 to 60"
                    )))
                }
            },
        };
        Ok(ReadPath {
            source,
            regions,
            location_cache_s,
        })
    }

    /// Where a location reads the state: its cache key and the replica of
    /// the configured region nearest it. `origin` is the edge's own
    /// `scheme://host`; `colo` the location's code (`request.cf.colo`);
    /// the coordinates those of the location (`request.cf`), unknown in
    /// local development (the first configured region then). `None` when
    /// isolates do not read replicas.
    pub fn place(
        &self,
        origin: &str,
        colo: Option<&str>,
        latitude: Option<f64>,
        longitude: Option<f64>,
    ) -> Option<Place> {
        if self.source != StateSource::Replicas {
            return None;
        }
        let region = match (latitude, longitude) {
            (Some(lat), Some(lon)) if lat.is_finite() && lon.is_finite() => {
                nearest(&self.regions, lat, lon)?
            }
            _ => *self.regions.first()?,
        };
        // The colo is part of the key although each location has a cache
        // of its own: a cache shared by several locations (a test's single
        // runtime) must not let one location's entry serve another.
        let colo: String = colo
            .unwrap_or("local")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(16)
            .collect();
        Some(Place {
            cache_key: format!("{}{CACHE_PATH}{colo}", origin.trim_end_matches('/')),
            region: region.name,
            cache_s: self.location_cache_s,
        })
    }
}

/// The region among `regions` nearest a point (great-circle distance).
pub fn nearest(regions: &[Region], latitude: f64, longitude: f64) -> Option<Region> {
    let distance = |r: &Region| {
        let (p1, p2) = (latitude.to_radians(), r.latitude.to_radians());
        let dp = p2 - p1;
        let dl = (r.longitude - longitude).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        a.sqrt().asin()
    };
    regions
        .iter()
        .copied()
        .min_by(|a, b| distance(a).total_cmp(&distance(b)))
}

/// Where one location reads the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The Cache API key of the location's copy.
    pub cache_key: String,
    /// The region whose replica fills it.
    pub region: &'static str,
    /// The copy's `max-age`.
    pub cache_s: u32,
}

impl Place {
    /// For the shell: `<cache key>\n<region>\n<max-age>`.
    pub fn encode(&self) -> String {
        format!("{}\n{}\n{}", self.cache_key, self.region, self.cache_s)
    }
}

/// Where an isolate's last read of the state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The location's cache or the region's replica: the fast path.
    Fast,
    /// KV, because the fast path failed: the isolate is degraded until
    /// the fast path answers again.
    Fallback,
}

impl ReadFrom {
    /// The shell's name of the source it read: `cache` and `replica` are
    /// the fast path, anything else (`kv`) the fallback.
    pub fn parse(source: &str) -> ReadFrom {
        match source {
            "cache" | "replica" => ReadFrom::Fast,
            _ => ReadFrom::Fallback,
        }
    }
}

/// An isolate's background refresh: when one is due and whether one runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refresh {
    /// When the refresh in flight started (ms); `None`: none is.
    started_ms: Option<u64>,
}

impl Refresh {
    /// Whether a request at `now_ms`, serving a state read at `read_ms`,
    /// starts a refresh: the state is older than `ttl_ms` and no refresh
    /// is running (or the one running is given up on). Starting one is
    /// noted.
    pub fn start(&mut self, read_ms: u64, ttl_ms: u64, now_ms: u64) -> bool {
        if now_ms.saturating_sub(read_ms) < ttl_ms {
            return false;
        }
        if self
            .started_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < REFRESH_TIMEOUT_MS)
        {
            return false;
        }
        self.started_ms = Some(now_ms);
        true
    }

    /// The refresh finished (its state is remembered by then).
    pub fn finished(&mut self) {
        self.started_ms = None;
    }
}

/// Whether a replica holding a document of epoch `held` (from the
/// primary's `held_incarnation`) takes `pushed` from the primary's
/// `incarnation`: when `pushed` parses and either comes from a later
/// incarnation of the primary (a restarted primary is the authority, also
/// when its epoch went down: a document rewritten by hand) or is newer. A
/// replica holding nothing takes any readable document. Returns the pushed
/// epoch when it is taken. Pushes and pulls of one incarnation can arrive
/// out of order (a retry after a later commit): a replica never goes back
/// within one.
///
/// An incarnation is when the primary started (ms): a later start has a
/// larger one, so a push still in flight from a primary that has since
/// restarted does not undo the new one's.
pub fn accepts(held: Option<(u64, u64)>, pushed: &str, incarnation: u64) -> Option<u64> {
    let epoch = RolloutState::from_json(pushed).ok()?.epoch;
    let take = match held {
        None => true,
        Some((held_epoch, held_incarnation)) => {
            incarnation > held_incarnation
                || (incarnation == held_incarnation && epoch > held_epoch)
        }
    };
    take.then_some(epoch)
}

/// Whether a replica last in touch with the primary at `synced_ms` pulls
/// the primary's document now.
pub fn resync_due(synced_ms: Option<u64>, now_ms: u64) -> bool {
    synced_ms.is_none_or(|at| now_ms.saturating_sub(at) >= REPLICA_RESYNC_MS)
}

/// Whether a replica last in touch with the primary at `synced_ms` may
/// answer a read with its copy without pulling first.
pub fn fresh_enough(synced_ms: Option<u64>, now_ms: u64) -> bool {
    synced_ms.is_some_and(|at| now_ms.saturating_sub(at) < REPLICA_STALE_MS)
}

/// The primary's record of its replicas: what each confirmed, and the
/// retries of failed pushes. Kept in the primary's memory; a restarted
/// primary pushes its document to every replica again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaTable {
    /// The primary's newest epoch and when it was committed (or first
    /// pushed, after a restart).
    pub epoch: u64,
    pub committed_at_ms: u64,
    pub replicas: BTreeMap<String, ReplicaRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// The newest epoch the replica confirmed holding.
    pub epoch: Option<u64>,
    /// When it confirmed `epoch`.
    pub confirmed_at_ms: Option<u64>,
    /// How long the push of `epoch` took, from the commit to the replica's
    /// answer.
    pub lag_ms: Option<u64>,
    /// Failed pushes since the last success.
    pub failures: u32,
    pub last_error: Option<String>,
    /// When the failed push is tried again.
    pub retry_at_ms: Option<u64>,
}

impl ReplicaTable {
    pub fn from_json(json: Option<&str>) -> ReplicaTable {
        json.and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The primary committed `epoch` at `now_ms`: every replica in
    /// `regions` is pushed it now (returned), retries included.
    pub fn committed(&mut self, regions: &[Region], epoch: u64, now_ms: u64) -> Vec<&'static str> {
        if epoch != self.epoch || self.committed_at_ms == 0 {
            self.epoch = epoch;
            self.committed_at_ms = now_ms;
        }
        self.replicas
            .retain(|name, _| regions.iter().any(|r| r.name == name));
        for region in regions {
            let record = self.replicas.entry(region.name.to_string()).or_default();
            record.retry_at_ms = None;
        }
        self.behind(regions)
    }

    /// The regions whose replica has not confirmed the primary's epoch.
    fn behind(&self, regions: &[Region]) -> Vec<&'static str> {
        regions
            .iter()
            .filter(|r| {
                self.replicas
                    .get(r.name)
                    .and_then(|rec| rec.epoch)
                    .is_none_or(|e| e < self.epoch)
            })
            .map(|r| r.name)
            .collect()
    }

    /// `region`'s replica answered a push: it holds `epoch` (a newer one
    /// than the push's, if it pulled in between).
    pub fn confirmed(&mut self, region: &str, epoch: u64, now_ms: u64) {
        let committed_at = self.committed_at_ms;
        let current = self.epoch;
        let record = self.replicas.entry(region.to_string()).or_default();
        if record.epoch.is_some_and(|e| e > epoch) {
            return;
        }
        record.epoch = Some(epoch);
        record.confirmed_at_ms = Some(now_ms);
        if epoch >= current {
            record.lag_ms = Some(now_ms.saturating_sub(committed_at));
            record.failures = 0;
            record.last_error = None;
            record.retry_at_ms = None;
        }
    }

    /// A push to `region` failed (`error` says how): it is retried after a
    /// back-off that doubles with each consecutive failure.
    pub fn failed(&mut self, region: &str, error: &str, now_ms: u64) {
        let record = self.replicas.entry(region.to_string()).or_default();
        record.failures = record.failures.saturating_add(1);
        let backoff = PUSH_RETRY_MS
            .saturating_mul(1 << record.failures.saturating_sub(1).min(16))
            .min(PUSH_RETRY_MAX_MS);
        record.retry_at_ms = Some(now_ms + backoff);
        record.last_error = Some(error.chars().take(200).collect());
    }

    /// When the next retry is due (ms), if one is pending.
    pub fn next_retry(&self) -> Option<u64> {
        self.replicas.values().filter_map(|r| r.retry_at_ms).min()
    }

    /// The regions whose retry is due at `now_ms` (their retry is then
    /// cleared until the push fails again).
    pub fn due(&mut self, now_ms: u64) -> Vec<String> {
        let mut due = Vec::new();
        for (name, record) in &mut self.replicas {
            if record.retry_at_ms.is_some_and(|at| at <= now_ms) {
                record.retry_at_ms = None;
                due.push(name.clone());
            }
        }
        due
    }

    /// The admin API's view (`GET replicas`).
    pub fn view(&self, now_ms: u64) -> ReplicasView {
        let replicas = self
            .replicas
            .iter()
            .map(|(name, r)| {
                let current = r.epoch.is_some_and(|e| e >= self.epoch);
                ReplicaView {
                    region: name.clone(),
                    epoch: r.epoch,
                    current,
                    // Caught up: how long the push took; behind: how long
                    // it has been behind so far.
                    lag_ms: if current {
                        r.lag_ms
                    } else {
                        Some(now_ms.saturating_sub(self.committed_at_ms))
                    },
                    confirmed_at_ms: r.confirmed_at_ms,
                    failures: r.failures,
                    last_error: r.last_error.clone(),
                    retry_at_ms: r.retry_at_ms,
                }
            })
            .collect::<Vec<_>>();
        ReplicasView {
            epoch: self.epoch,
            committed_at_ms: self.committed_at_ms,
            behind: replicas.iter().filter(|r| !r.current).count(),
            replicas,
        }
    }
}

/// `GET /__greenlight/replicas`: each region's replica and how far behind
/// the primary it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicasView {
    pub epoch: u64,
    pub committed_at_ms: u64,
    /// Replicas that have not confirmed `epoch`.
    pub behind: usize,
    pub replicas: Vec<ReplicaView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub region: String,
    pub epoch: Option<u64>,
    pub current: bool,
    pub lag_ms: Option<u64>,
    pub confirmed_at_ms: Option<u64>,
    pub failures: u32,
    pub last_error: Option<String>,
    pub retry_at_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(vars: &[(&str, &str)]) -> Result<ReadPath, ConfigError> {
        ReadPath::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    fn doc(epoch: u64) -> String {
        let mut state = RolloutState::initial("salt");
        state.epoch = epoch;
        state.to_json()
    }

    #[test]
    fn the_default_read_path_is_all_nine_replicas_and_a_one_second_cache() {
        let p = path(&[]).unwrap();
        assert_eq!(p.source, StateSource::Replicas);
        assert_eq!(p.regions.len(), 9);
        assert_eq!(p.location_cache_s, 1);
    }

    #[test]
    fn bad_read_path_settings_are_refused_with_the_variable_named() {
        let e = path(&[("STATE_SOURCE", "disk")]).unwrap_err();
        assert!(e.0.contains("STATE_SOURCE"), "{e:?}");
        let e = path(&[("REPLICA_REGIONS", "weur,mars")]).unwrap_err();
        assert!(e.0.contains("mars") && e.0.contains("wnam"), "{e:?}");
        let e = path(&[("REPLICA_REGIONS", " , ")]).unwrap_err();
        assert!(e.0.contains("empty"), "{e:?}");
        for bad in ["0", "61", "1.5", "soon"] {
            let e = path(&[("LOCATION_CACHE_TTL_S", bad)]).unwrap_err();
            assert!(e.0.contains("LOCATION_CACHE_TTL_S"), "{e:?}");
        }
        // No replicas are needed when isolates read KV.
        let p = path(&[("STATE_SOURCE", "kv"), ("REPLICA_REGIONS", "")]).unwrap();
        assert_eq!(p.source, StateSource::Kv);
        let p = path(&[("REPLICA_REGIONS", "weur, apac,weur")]).unwrap();
        let names: Vec<_> = p.regions.iter().map(|r| r.name).collect();
        assert_eq!(names, ["weur", "apac"]);
    }

    #[test]
    fn a_location_reads_the_replica_of_the_nearest_region() {
        let p = path(&[]).unwrap();
        let at = |lat, lon| {
            p.place("https://edge", Some("X"), Some(lat), Some(lon))
                .unwrap()
                .region
        };
        assert_eq!(at(48.9, 2.4), "weur"); // Paris
        assert_eq!(at(35.7, 139.7), "apac"); // Tokyo
        assert_eq!(at(-37.8, 145.0), "oc"); // Melbourne
        assert_eq!(at(40.7, -74.0), "enam"); // New York
        assert_eq!(at(47.6, -122.3), "wnam"); // Seattle
        assert_eq!(at(-34.6, -58.4), "sam"); // Buenos Aires
        assert_eq!(at(6.5, 3.4), "afr"); // Lagos
        assert_eq!(at(24.7, 46.7), "me"); // Riyadh
        assert_eq!(at(50.4, 30.5), "eeur"); // Kyiv
                                            // Only the configured regions are candidates.
        let p = path(&[("REPLICA_REGIONS", "enam,weur")]).unwrap();
        let place = p
            .place("https://edge", Some("SYD"), Some(-33.9), Some(151.2))
            .unwrap();
        assert!(["enam", "weur"].contains(&place.region));
    }

    #[test]
    fn a_place_keys_its_cache_by_location_on_the_edges_own_host() {
        let p = path(&[("LOCATION_CACHE_TTL_S", "2")]).unwrap();
        let place = p
            .place("https://edge.example/", Some("FRA"), None, None)
            .unwrap();
        assert_eq!(
            place.cache_key,
            "https://edge.example/__greenlight/location-state/FRA"
        );
        // No coordinates (local development): the first configured region.
        assert_eq!(place.region, "wnam");
        assert_eq!(place.encode(), format!("{}\nwnam\n2", place.cache_key));
        let odd = p.place("http://e", Some("a/b?c\nd"), None, None).unwrap();
        assert_eq!(odd.cache_key, "http://e/__greenlight/location-state/abcd");
        let local = p
            .place("http://e", None, Some(f64::NAN), Some(1.0))
            .unwrap();
        assert!(local.cache_key.ends_with("/local"));
        assert_eq!(
            path(&[("STATE_SOURCE", "kv")])
                .unwrap()
                .place("http://e", None, None, None),
            None
        );
    }

    #[test]
    fn only_the_cache_and_a_replica_are_the_fast_path() {
        assert_eq!(ReadFrom::parse("cache"), ReadFrom::Fast);
        assert_eq!(ReadFrom::parse("replica"), ReadFrom::Fast);
        assert_eq!(ReadFrom::parse("kv"), ReadFrom::Fallback);
        assert_eq!(ReadFrom::parse(""), ReadFrom::Fallback);
    }

    #[test]
    fn one_background_refresh_at_a_time_once_the_state_is_old() {
        let mut r = Refresh::default();
        assert!(!r.start(1_000, 500, 1_400), "still fresh");
        assert!(r.start(1_000, 500, 1_500));
        assert!(!r.start(1_000, 500, 1_600), "one is running");
        r.finished();
        assert!(r.start(1_000, 500, 1_700));
        // A refresh that never reports back is given up on.
        assert!(!r.start(1_000, 500, 1_700 + REFRESH_TIMEOUT_MS - 1));
        assert!(r.start(1_000, 500, 1_700 + REFRESH_TIMEOUT_MS));
    }

    #[test]
    fn a_replica_takes_only_a_newer_readable_document_of_one_primary() {
        assert_eq!(accepts(None, &doc(3), 7), Some(3));
        assert_eq!(accepts(Some((2, 7)), &doc(3), 7), Some(3));
        assert_eq!(accepts(Some((3, 7)), &doc(3), 7), None);
        assert_eq!(accepts(Some((4, 7)), &doc(3), 7), None, "a late retry");
        assert_eq!(accepts(Some((2, 7)), "{", 9), None);
        assert_eq!(accepts(None, "{", 9), None);
    }

    #[test]
    fn a_restarted_primary_is_the_authority_even_on_a_lower_epoch() {
        // A document rewritten by hand while the primary was stopped.
        assert_eq!(accepts(Some((4, 7)), &doc(1), 9), Some(1));
        // A push from an earlier incarnation, arriving late, does not
        // undo the new one's.
        assert_eq!(accepts(Some((1, 9)), &doc(5), 7), None);
    }

    #[test]
    fn a_replica_pulls_after_hearing_nothing_for_a_while() {
        assert!(resync_due(None, 0));
        assert!(!resync_due(Some(10_000), 10_000 + REPLICA_RESYNC_MS - 1));
        assert!(resync_due(Some(10_000), 10_000 + REPLICA_RESYNC_MS));
    }

    #[test]
    fn a_replica_long_out_of_touch_pulls_before_it_answers() {
        assert!(!fresh_enough(None, 0));
        assert!(fresh_enough(Some(1_000), 1_000 + REPLICA_STALE_MS - 1));
        assert!(!fresh_enough(Some(1_000), 1_000 + REPLICA_STALE_MS));
        // Resyncing in the background comes well before that.
        const { assert!(REPLICA_RESYNC_MS < REPLICA_STALE_MS) };
    }

    #[test]
    fn the_primary_pushes_every_commit_to_every_replica_and_retries_failures() {
        let regions = &REGIONS[..3];
        let mut t = ReplicaTable::default();
        assert_eq!(t.committed(regions, 5, 1_000), ["wnam", "enam", "sam"]);
        t.confirmed("wnam", 5, 1_040);
        t.confirmed("enam", 5, 1_010);
        t.failed("sam", "timed out", 1_100);
        assert_eq!(t.next_retry(), Some(1_100 + PUSH_RETRY_MS));
        let v = t.view(1_500);
        assert_eq!(v.behind, 1);
        let sam = v.replicas.iter().find(|r| r.region == "sam").unwrap();
        assert_eq!(
            (sam.current, sam.lag_ms, sam.failures),
            (false, Some(500), 1)
        );
        assert_eq!(sam.last_error.as_deref(), Some("timed out"));
        let wnam = v.replicas.iter().find(|r| r.region == "wnam").unwrap();
        assert_eq!((wnam.current, wnam.lag_ms), (true, Some(40)));
        // Nothing due before the retry; then once.
        assert!(t.due(1_500).is_empty());
        assert_eq!(t.due(2_100), ["sam"]);
        assert!(t.due(2_100).is_empty());
        // Failing again doubles the wait, up to the cap.
        t.failed("sam", "timed out", 2_200);
        assert_eq!(t.next_retry(), Some(2_200 + 2 * PUSH_RETRY_MS));
        for _ in 0..20 {
            t.failed("sam", "down", 3_000);
        }
        assert_eq!(t.next_retry(), Some(3_000 + PUSH_RETRY_MAX_MS));
        // The retry succeeds: caught up, the failures forgotten.
        t.confirmed("sam", 5, 4_000);
        let v = t.view(4_000);
        assert_eq!(v.behind, 0);
        assert_eq!(t.next_retry(), None);
        // The next commit pushes to all again; only those behind are named.
        t.confirmed("wnam", 6, 4_100); // it pulled 6 itself
        t.epoch = 5;
        assert_eq!(t.committed(regions, 6, 4_200), ["enam", "sam"]);
        // A late answer for an older epoch never moves a replica back.
        t.confirmed("wnam", 5, 4_300);
        assert_eq!(t.replicas["wnam"].epoch, Some(6));
    }

    #[test]
    fn a_region_taken_out_of_the_configuration_leaves_the_table() {
        let mut t = ReplicaTable::default();
        t.committed(&REGIONS, 1, 10);
        assert_eq!(t.replicas.len(), 9);
        t.committed(&REGIONS[..2], 2, 20);
        assert_eq!(t.replicas.len(), 2);
        let back = ReplicaTable::from_json(Some(&t.to_json()));
        assert_eq!(back, t);
        assert_eq!(ReplicaTable::from_json(Some("{")), ReplicaTable::default());
    }
}
