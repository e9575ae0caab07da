//! The rollout state, health record and rate-limit buckets in Spin's
//! key-value store, through `wasi:keyvalue` (store + atomics), which Spin
//! implements since 3.0 over the same stores as `spin:key-value`.
//!
//! Admin changes are compare-and-swaps on the state document, so exactly one
//! of several concurrent changes at an epoch is committed and every other
//! gets `409`: the store compares the document it holds with the one the
//! change was computed from. Before a change is committed the store is
//! checked to really compare (a store that swaps unconditionally would lose
//! updates; the change is refused instead).

use greenlight_common::admin::TableSize;
use greenlight_common::admin_guard::{self, AdminFailures};
use greenlight_common::edge::{
    self, Action, AdminCall, EdgeConfig, Forward, LoadedState, Platform, Reply, StateLoad,
};
use greenlight_common::failover::AttemptOutcome;
use greenlight_common::health::{HealthRecord, HEALTH_KEY};
use greenlight_common::http::{LAST_GOOD_KEY, STATE_KEY};
use greenlight_common::jwks::CachedJwks;
use greenlight_common::ratelimit::{self, RateLimit, RetryAfter};
use spin_sdk::wit::wasi::keyvalue::atomics::{self, Cas, CasError};
use spin_sdk::wit::wasi::keyvalue::store::{self, Bucket};
use wasi::clocks::monotonic_clock;

/// Label of the key-value store declared in `spin.toml`.
const KV_STORE: &str = "default";
/// Claimed (atomic increment) by the one admin call that writes the first
/// state document, so two first changes cannot both write it.
const CREATE_CLAIM_KEY: &str = "rollout-state.created";
/// Scratch key of the compare-and-swap check.
const CAS_PROBE_KEY: &str = "rollout-state.cas-probe";
/// Attempts at an admin change; after a lost swap the next attempt sees the
/// winner's epoch and answers 409.
const ADMIN_ATTEMPTS: usize = 5;

pub struct Kv {
    bucket: Bucket,
}

impl Kv {
    pub fn open() -> Result<Kv, String> {
        store::open(KV_STORE)
            .map(|bucket| Kv { bucket })
            .map_err(|e| format!("{e:?}"))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.bucket.get(key).map_err(|e| format!("{e:?}"))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.bucket.set(key, value).map_err(|e| format!("{e:?}"))
    }
}

/// The store's bounded tables (`GET /__greenlight/isolate`): each request
/// runs in a fresh instance, so the per-caller tables are key-value slots;
/// counted by listing the keys (admin only: not on a request's path).
pub fn isolate_tables(kv: &Kv) -> Result<[(&'static str, TableSize); 3], String> {
    let mut rate_slots = 0u64;
    let mut guard_slots = 0u64;
    let mut keys = 0u64;
    let mut cursor: Option<String> = None;
    // Bounded: the store holds a few hundred keys; a cursor that never ends
    // stops after this many pages.
    for _ in 0..10_000 {
        let page = kv
            .bucket
            .list_keys(cursor.as_deref())
            .map_err(|e| format!("{e:?}"))?;
        for key in &page.keys {
            keys += 1;
            if key.starts_with(ratelimit::SLOT_PREFIX) {
                rate_slots += 1;
            } else if key.starts_with(admin_guard::SLOT_PREFIX) {
                guard_slots += 1;
            }
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // In key order (readers get a map).
    Ok([
        (
            "admin_failure_slots",
            TableSize {
                entries: guard_slots,
                cap: admin_guard::STORED_SLOTS,
            },
        ),
        (
            "keys",
            TableSize {
                entries: keys,
                cap: ratelimit::STORED_SLOTS + admin_guard::STORED_SLOTS + FIXED_KEYS,
            },
        ),
        (
            "rate_limit_slots",
            TableSize {
                entries: rate_slots,
                cap: ratelimit::STORED_SLOTS,
            },
        ),
    ])
}

/// Keys other than the slots: the state, its backup, the health record,
/// the create claim, the compare-and-swap probe and the JWKS cache (and
/// room for a few more).
const FIXED_KEYS: u64 = 16;

/// The rollout state for routing. A store failure serves the initial
/// state, flagged degraded (never a 5xx).
pub fn load_state(kv: Result<&Kv, &String>, cfg: &EdgeConfig) -> LoadedState {
    match kv {
        Ok(kv) => match kv.get(STATE_KEY) {
            Ok(doc) => loaded(Some(kv), Ok(doc.as_deref()), cfg),
            Err(_) => loaded(Some(kv), Err(()), cfg),
        },
        Err(_) => loaded(None, Err(()), cfg),
    }
}

/// The state a read of the document gives (`edge::load_state`'s rule).
/// Every request runs in a fresh instance, so there is no last good state
/// in memory: an unreadable document falls back to the backup copy every
/// admin write leaves. Bytes that are not UTF-8 count as unreadable.
fn loaded(kv: Option<&Kv>, document: Result<Option<&[u8]>, ()>, cfg: &EdgeConfig) -> LoadedState {
    let text = document.map(|doc| doc.map(|d| std::str::from_utf8(d).unwrap_or("\u{0}not utf-8")));
    match edge::load_state(text, None, &cfg.default_salt) {
        StateLoad::Ready(loaded) => loaded,
        StateLoad::NeedsBackup => {
            let backup = kv.and_then(|kv| kv.get(LAST_GOOD_KEY).ok().flatten());
            let backup = backup.as_deref().and_then(|b| std::str::from_utf8(b).ok());
            edge::state_from_backup(backup, &cfg.default_salt)
        }
    }
}

/// Runs an authorised admin call against the stored state and commits its
/// change with a compare-and-swap.
pub fn run_admin(
    kv: &Kv,
    cfg: &EdgeConfig,
    call: &AdminCall,
    method: &str,
    body: &[u8],
    now_ms: u64,
) -> Reply {
    let unavailable = |what: &str, e: String| Reply::store_unavailable(format!("{what}: {e}"));
    for _ in 0..ADMIN_ATTEMPTS {
        let cas = match Cas::new(&kv.bucket, STATE_KEY) {
            Ok(cas) => cas,
            Err(e) => return unavailable("reading the state", format!("{e:?}")),
        };
        let current = match cas.current() {
            Ok(current) => current,
            Err(e) => return unavailable("reading the state", format!("{e:?}")),
        };
        let fresh = loaded(Some(kv), Ok(current.as_deref()), cfg);
        let health = if call.wants_health() {
            kv.get(HEALTH_KEY).ok().flatten()
        } else {
            None
        };
        let health = health.as_deref().and_then(|h| std::str::from_utf8(h).ok());
        let outcome = edge::run_admin(cfg, call, method, body, &fresh, health, now_ms);
        let Some(next) = &outcome.new_state else {
            return Reply::from_admin(&outcome);
        };
        if current.is_none() {
            // A compare-and-swap on a missing key is a plain insert in
            // Spin's stores: create the document first, once.
            if let Err(e) = create_document(kv, &fresh) {
                return unavailable("creating the state", e);
            }
            continue;
        }
        match honours_compare_and_swap(kv) {
            Ok(true) => {}
            Ok(false) => {
                return Reply::store_unavailable(
                    "the key-value store does not honour compare-and-swap, so concurrent \
                     changes could be lost; configure a store that does (Spin's SQLite \
                     default or Redis)",
                )
            }
            Err(e) => return unavailable("checking the store", e),
        }
        let json = next.to_json();
        match atomics::swap(cas, json.as_bytes()) {
            Ok(()) => {
                write_backup(kv, &json, next.epoch);
                return Reply::from_admin(&outcome);
            }
            // Another change won: the next attempt reads it (and answers 409).
            Err(CasError::CasFailed(_)) => continue,
            Err(CasError::StoreError(e)) => {
                return unavailable("writing the state", format!("{e:?}"))
            }
        }
    }
    Reply::store_unavailable("the state kept changing during this call; retry")
}

/// Writes `json`, committed at `epoch`, as the backup copy unless the
/// backup already holds that epoch or a later one ([`edge::replaces_backup`]),
/// with a compare-and-swap so two instances that committed back to back
/// cannot leave the older backup last. Best effort: the change itself is
/// stored; a store failure here leaves the previous backup.
fn write_backup(kv: &Kv, json: &str, epoch: u64) {
    for _ in 0..ADMIN_ATTEMPTS {
        let Ok(cas) = Cas::new(&kv.bucket, LAST_GOOD_KEY) else {
            return;
        };
        let Ok(current) = cas.current() else {
            return;
        };
        let held = current.as_deref().and_then(|b| std::str::from_utf8(b).ok());
        if !edge::replaces_backup(held, epoch) {
            return;
        }
        match atomics::swap(cas, json.as_bytes()) {
            Err(CasError::CasFailed(_)) => continue,
            Ok(()) | Err(CasError::StoreError(_)) => return,
        }
    }
}

/// Makes sure the state document exists before a change is swapped in.
///
/// A compare-and-swap on a missing key is a plain insert in Spin's stores,
/// so creation is claimed instead: the claim key's low 32 bits count the
/// calls (the one answered 1 writes the document), its high bits count
/// take-overs. The others wait up to [`CREATE_WAIT_MS`]; should the
/// document still be missing (the writer died or stalled), a waiter takes
/// over with a new generation and writes it. A writer writes only while
/// its generation is still the newest, read atomically just before the
/// write: a claimer that wakes after a take-over (whose document may by
/// then carry committed changes) writes nothing. The backup copy is written
/// first, so every later backup write is an exact compare-and-swap.
fn create_document(kv: &Kv, fresh: &LoadedState) -> Result<(), String> {
    let claim = increment_claim(kv, 1)?;
    let initial = fresh.state.to_json();
    if claim == 1 {
        return write_initial(kv, &initial, 0).inspect_err(|_| {
            // Give the claim back so a later call can try again.
            let _ = increment_claim(kv, -1);
        });
    }
    for _ in 0..CREATE_WAIT_MS / CREATE_POLL_MS {
        if kv.get(STATE_KEY)?.is_some() {
            return Ok(());
        }
        monotonic_clock::subscribe_duration(CREATE_POLL_MS * 1_000_000).block();
    }
    if kv.get(STATE_KEY)?.is_none() {
        let generation = increment_claim(kv, TAKE_OVER)? >> 32;
        write_initial(kv, &initial, generation)?;
    }
    Ok(())
}

/// One take-over in the claim key's high bits.
const TAKE_OVER: i64 = 1 << 32;

fn increment_claim(kv: &Kv, by: i64) -> Result<i64, String> {
    atomics::increment(&kv.bucket, CREATE_CLAIM_KEY, by).map_err(|e| format!("{e:?}"))
}

/// Writes the first document as the writer of take-over `generation`,
/// unless a later take-over has happened.
fn write_initial(kv: &Kv, initial: &str, generation: i64) -> Result<(), String> {
    if increment_claim(kv, 0)? >> 32 != generation {
        return Ok(());
    }
    if kv.get(LAST_GOOD_KEY)?.is_none() {
        kv.set(LAST_GOOD_KEY, initial.as_bytes())?;
    }
    kv.set(STATE_KEY, initial.as_bytes())
}

/// How long a call waits for another call to write the first document.
const CREATE_WAIT_MS: u64 = 2_000;
const CREATE_POLL_MS: u64 = 5;

/// Whether a swap over a value that changed since it was read fails, as it
/// must. Each probe writes values of its own, so concurrent probes cannot
/// make a comparing store look like one that does not compare.
fn honours_compare_and_swap(kv: &Kv) -> Result<bool, String> {
    let nonce = |tag: &str| format!("{tag}-{:016x}", getrandom::u64().unwrap_or(0));
    kv.set(CAS_PROBE_KEY, nonce("read").as_bytes())?;
    let cas = Cas::new(&kv.bucket, CAS_PROBE_KEY).map_err(|e| format!("{e:?}"))?;
    cas.current().map_err(|e| format!("{e:?}"))?;
    kv.set(CAS_PROBE_KEY, nonce("changed").as_bytes())?;
    match atomics::swap(cas, nonce("swapped").as_bytes()) {
        Ok(()) => Ok(false),
        Err(CasError::CasFailed(_)) => Ok(true),
        Err(CasError::StoreError(e)) => Err(format!("{e:?}")),
    }
}

/// Where the remote JWKS cache lives: every request runs in a fresh
/// instance, so an instance's memory would fetch on every request.
const JWKS_KEY: &str = "jwks:cache";

/// The configuration verifying with the remote JWKS (`JWKS_URL`), fetched
/// when `greenlight_common::jwks` says so and cached in the store. The
/// attempt is recorded before the fetch, so concurrent requests serve
/// what is cached rather than fetching too (not atomic: two instances
/// starting at once may both fetch).
pub async fn remote_jwks_config(
    kv: Option<&Kv>,
    cfg: &EdgeConfig,
    url: &str,
    kid: Option<&str>,
    now_ms: u64,
) -> EdgeConfig {
    let stored = kv.and_then(|kv| kv.get(JWKS_KEY).ok().flatten());
    let mut cache = CachedJwks::from_json(stored.as_deref()).unwrap_or_default();
    if cache.should_fetch_for(kid, now_ms) {
        cache.attempting(now_ms);
        if let Some(kv) = kv {
            let _ = kv.set(JWKS_KEY, cache.to_json().as_bytes());
        }
        let answer = fetch_jwks(url).await;
        let answer = answer
            .as_ref()
            .map(|(status, cc, body)| (*status, cc.as_deref(), body.as_slice()));
        cache = cache.after_fetch(answer, now_ms);
        if let Some(kv) = kv {
            let _ = kv.set(JWKS_KEY, cache.to_json().as_bytes());
        }
    }
    cfg.with_remote_jwks(cache.usable(now_ms))
}

async fn fetch_jwks(url: &str) -> Option<(u16, Option<String>, Vec<u8>)> {
    let request = spin_sdk::http::Request::get(url).build();
    match spin_sdk::http::send::<_, spin_sdk::http::Response>(request).await {
        Ok(resp) => Some((
            *resp.status(),
            resp.header("cache-control")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            resp.body().to_vec(),
        )),
        Err(e) => {
            eprintln!("greenlight: JWKS fetch failed: {e}");
            None
        }
    }
}

/// A Spin instance as the pipeline's platform (`edge::Platform`). A WASIp2
/// component gets a fresh instance for every request, so its tables live
/// in the key-value store: per-caller tables are key-value slots and the
/// health record a stored document. A store that cannot be opened counts
/// nothing and limits nothing: the limits protect origins, they must not
/// take the edge down with the store. `wasi:http` 0.2 has no upgrade and
/// hides `transfer-encoding` (a forbidden field).
pub struct StoreTables<'a> {
    pub kv: Result<&'a Kv, &'a String>,
    pub cfg: &'a EdgeConfig,
}

impl Platform for StoreTables<'_> {
    const RUNTIME: &'static str = "spin";
    const TABLES_IN: &'static str = "store";
    const REFUSES_WEBSOCKETS: Option<&'static str> = Some("Spin (wasi:http 0.2)");
    const HIDES_TRANSFER_ENCODING: bool = true;
    const DROPS_GET_BODY: bool = false;

    /// The caller's table lives in its key-value slot. Not atomic:
    /// concurrent failures of one caller may be counted once each
    /// instance, so a caller gets at most its concurrency in extra
    /// attempts. A store that cannot be read counts nothing (an empty
    /// table).
    fn guard_admin(&mut self, action: Action, caller: &str, now_ms: u64) -> Action {
        let Ok(kv) = self.kv else {
            return action;
        };
        let key = admin_guard::slot_key(caller);
        let stored = kv.get(&key).ok().flatten();
        let mut failures = AdminFailures::from_json(stored.as_deref());
        let (action, changed) = edge::guard_admin(
            action,
            caller,
            &mut failures,
            now_ms,
            admin_guard::CALLERS_PER_SLOT,
        );
        if changed {
            let _ = kv.set(&key, failures.to_json().as_bytes());
        }
        action
    }

    /// Buckets are spread over a fixed number of slot keys that forget
    /// idle callers, so the keys written stay bounded. Not atomic:
    /// concurrent requests of one caller may each see the same count (the
    /// limit can be exceeded by the concurrency, never tightened). A store
    /// failure lets the request through.
    fn take_token(
        &mut self,
        limit: RateLimit,
        caller: &str,
        now_ms: u64,
    ) -> Result<(), RetryAfter> {
        let Ok(kv) = self.kv else {
            return Ok(());
        };
        let key = ratelimit::slot_key(caller);
        let stored = kv.get(&key).ok().flatten();
        let (verdict, doc) = ratelimit::take_in_slot(stored.as_deref(), caller, limit, now_ms);
        let _ = kv.set(&key, doc.as_bytes());
        verdict
    }

    /// Read-modify-write of the health document: concurrent failures may
    /// be counted once, enough to cross a threshold.
    fn count_failure(&mut self, fwd: &Forward, outcome: &AttemptOutcome, now_ms: u64) {
        let Ok(kv) = self.kv else {
            return;
        };
        let stored = kv.get(HEALTH_KEY).ok().flatten();
        let stored = stored.as_deref().and_then(|s| std::str::from_utf8(s).ok());
        let record = edge::count_failure(
            self.cfg,
            HealthRecord::from_json(stored),
            fwd.decision.epoch,
            fwd.decision.color,
            outcome,
            now_ms,
        );
        let _ = kv.set(HEALTH_KEY, record.to_json().as_bytes());
    }

    fn sizes(&self) -> Result<Vec<(&'static str, TableSize)>, String> {
        let kv = self.kv.map_err(|e| format!("opening the store: {e}"))?;
        isolate_tables(kv)
            .map(Vec::from)
            .map_err(|e| format!("listing the store's keys: {e}"))
    }
}
