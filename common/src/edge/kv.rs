//! The rollout state in a key-value store with compare-and-swap (Spin's
//! `wasi:keyvalue` store and atomics): how it is read for routing, how an
//! admin change is committed, and the backup copy every change leaves. The
//! adapter implements [`AtomicStore`] over its runtime's bindings; the
//! rules are written here once for every build that uses such a store.
//!
//! Admin changes are compare-and-swaps on the state document, so exactly one
//! of several concurrent changes at an epoch is committed and every other
//! gets `409`: the store compares the document it holds with the one the
//! change was computed from. Before a change is committed the store is
//! checked to really compare (a store that swaps unconditionally would lose
//! updates; the change is refused instead).

use super::{
    load_state, replaces_backup, run_admin, state_from_backup, AdminCall, AdminDocs, EdgeConfig,
};
use super::{LoadedState, Reply, StateLoad};
use crate::admin::TableSize;
use crate::health::HEALTH_KEY;
use crate::history::{History, HISTORY_KEY};
use crate::http::{LAST_GOOD_KEY, STATE_KEY};
use crate::jwks::CachedJwks;
use crate::plan::EVIDENCE_KEY;
use crate::state::RolloutState;
use crate::telemetry::TELEMETRY_KEY;
use crate::{admin_guard, ratelimit};
use std::future::Future;

/// Claimed (atomic increment) by the one admin call that writes the first
/// state document, so two first changes cannot both write it.
pub const CREATE_CLAIM_KEY: &str = "rollout-state.created";
/// Scratch key of the compare-and-swap check.
pub const CAS_PROBE_KEY: &str = "rollout-state.cas-probe";
/// Where a remote JWKS is cached when instances do not live long enough to
/// keep it.
pub const JWKS_KEY: &str = "jwks:cache";
/// Attempts at an admin change; after a lost swap the next attempt sees the
/// winner's epoch and answers 409.
const ADMIN_ATTEMPTS: usize = 5;
/// How long a call waits for another call to write the first document.
const CREATE_WAIT_MS: u64 = 2_000;
const CREATE_POLL_MS: u64 = 5;
/// One take-over in the claim key's high bits.
const TAKE_OVER: i64 = 1 << 32;

/// What a compare-and-swap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    Done,
    /// The value changed since it was read: nothing was written.
    Lost,
}

/// A key-value store with atomics, as the runtime offers it. Errors are
/// the runtime's message.
pub trait AtomicStore {
    /// A compare-and-swap in progress on one key.
    type Cas;
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), String>;
    /// Starts a compare-and-swap on `key`: its handle and the value read.
    fn watch(&self, key: &str) -> Result<(Self::Cas, Option<Vec<u8>>), String>;
    /// Writes `value` if the key still holds what [`AtomicStore::watch`] read.
    fn swap(&self, cas: Self::Cas, value: &[u8]) -> Result<Swap, String>;
    /// Adds `by` to the integer at `key` (0 when missing); the new value.
    fn increment(&self, key: &str, by: i64) -> Result<i64, String>;
    /// Waits `ms` milliseconds.
    fn pause(&self, ms: u64) -> impl Future<Output = ()>;
    /// A random number (the compare-and-swap probe's values).
    fn random(&self) -> u64;
}

/// The rollout state for routing, from the store's document. A store that
/// cannot be opened or read serves the initial state, flagged degraded
/// (never a 5xx); an unreadable document falls back to the backup copy
/// every admin write leaves ([`load_state`]'s rule), or to `last_good`
/// where the instance keeps one.
pub fn read_state<S: AtomicStore>(
    store: Option<&S>,
    last_good: Option<&RolloutState>,
    cfg: &EdgeConfig,
) -> LoadedState {
    match store.map(|s| s.get(STATE_KEY)) {
        Some(Ok(document)) => loaded(store, Ok(document.as_deref()), last_good, cfg),
        _ => loaded(store, Err(()), last_good, cfg),
    }
}

/// The state a read of the document gives. Bytes that are not UTF-8 count
/// as unreadable.
fn loaded<S: AtomicStore>(
    store: Option<&S>,
    document: Result<Option<&[u8]>, ()>,
    last_good: Option<&RolloutState>,
    cfg: &EdgeConfig,
) -> LoadedState {
    let text = document.map(|doc| doc.map(|d| std::str::from_utf8(d).unwrap_or("\u{0}not utf-8")));
    match load_state(text, last_good, &cfg.default_salt) {
        StateLoad::Ready(loaded) => loaded,
        StateLoad::NeedsBackup => {
            let backup = store.and_then(|s| s.get(LAST_GOOD_KEY).ok().flatten());
            let backup = backup.as_deref().and_then(|b| std::str::from_utf8(b).ok());
            state_from_backup(backup, &cfg.default_salt)
        }
    }
}

/// Runs an authorised admin call against the stored state and commits its
/// change with a compare-and-swap.
pub async fn commit_admin<S: AtomicStore>(
    store: &S,
    cfg: &EdgeConfig,
    call: &AdminCall,
    method: &str,
    body: &[u8],
    now_ms: u64,
) -> Reply {
    let unavailable = |what: &str, e: String| Reply::store_unavailable(format!("{what}: {e}"));
    for _ in 0..ADMIN_ATTEMPTS {
        let (cas, current) = match store.watch(STATE_KEY) {
            Ok(read) => read,
            Err(e) => return unavailable("reading the state", e),
        };
        let fresh = loaded(Some(store), Ok(current.as_deref()), None, cfg);
        let read = |wanted: bool, key: &str| {
            wanted
                .then(|| store.get(key).ok().flatten())
                .flatten()
                .and_then(|d| String::from_utf8(d).ok())
        };
        let health = read(call.wants_health(), HEALTH_KEY);
        let history = read(call.wants_history(), HISTORY_KEY);
        let evidence = read(call.wants_evidence(), EVIDENCE_KEY);
        let telemetry = read(call.wants_telemetry(), TELEMETRY_KEY);
        let docs = AdminDocs {
            health: health.as_deref(),
            history: history.as_deref(),
            evidence: evidence.as_deref(),
            telemetry: telemetry.as_deref(),
            replicas: None,
        };
        let outcome = run_admin(cfg, call, method, body, &fresh, docs, now_ms);
        if let Some(evidence) = &outcome.new_evidence {
            if let Err(e) = store.set(EVIDENCE_KEY, evidence.as_bytes()) {
                return unavailable("writing the plan's evidence", e);
            }
            // A failing verdict acts at once; a passing one after the
            // dwell moves the plan on now.
            advance_plan(store, cfg, now_ms);
            return Reply::from_admin(&outcome);
        }
        let Some(next) = &outcome.new_state else {
            return Reply::from_admin(&outcome);
        };
        if current.is_none() {
            // A compare-and-swap on a missing key is a plain insert in
            // Spin's stores: create the document first, once.
            if let Err(e) = create_document(store, &fresh).await {
                return unavailable("creating the state", e);
            }
            continue;
        }
        match honours_compare_and_swap(store) {
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
        match store.swap(cas, json.as_bytes()) {
            Ok(Swap::Done) => {
                write_backup(store, &json, next.epoch);
                record_history(store, &fresh.state, next, outcome.evidence.clone());
                return Reply::from_admin(&outcome);
            }
            // Another change won: the next attempt reads it (and answers 409).
            Ok(Swap::Lost) => continue,
            Err(e) => return unavailable("writing the state", e),
        }
    }
    Reply::store_unavailable("the state kept changing during this call; retry")
}

/// The request path's plan check (Spin has no alarms): when the state an
/// instance routes by shows a plan past its deadline, the plan's change
/// ([`advance_plan`]); `None` otherwise, at the cost of no store read.
pub fn plan_check<S: AtomicStore>(
    store: Option<&S>,
    cfg: &EdgeConfig,
    routing: &RolloutState,
    now_ms: u64,
) -> Option<RolloutState> {
    if !super::plan_due(routing, now_ms) {
        return None;
    }
    advance_plan(store?, cfg, now_ms)
}

/// Commits the plan's change if one is due ([`super::plan_step`]), with a
/// compare-and-swap like an admin change, so of several instances that
/// find the same deadline passed exactly one makes the change; the others
/// read it and find nothing due. The committed state, or `None` (nothing
/// due, another instance won, or the store failed: the next request tries
/// again).
pub fn advance_plan<S: AtomicStore>(
    store: &S,
    cfg: &EdgeConfig,
    now_ms: u64,
) -> Option<RolloutState> {
    for _ in 0..ADMIN_ATTEMPTS {
        let (cas, current) = store.watch(STATE_KEY).ok()?;
        let text = current
            .as_deref()
            .and_then(|d| std::str::from_utf8(d).ok())?;
        let state = RolloutState::from_json(text).ok()?;
        if !super::plan_running(&state) {
            return None;
        }
        let health = store
            .get(HEALTH_KEY)
            .ok()
            .flatten()
            .and_then(|d| String::from_utf8(d).ok());
        let evidence = super::plan_wants_evidence(&state)
            .then(|| store.get(EVIDENCE_KEY).ok().flatten())
            .flatten()
            .and_then(|d| String::from_utf8(d).ok());
        let next = super::plan_step(cfg, &state, health.as_deref(), evidence.as_deref(), now_ms)?;
        if !honours_compare_and_swap(store).ok()? {
            return None;
        }
        let json = next.to_json();
        match store.swap(cas, json.as_bytes()).ok()? {
            Swap::Done => {
                write_backup(store, &json, next.epoch);
                record_history(store, &state, &next, None);
                return Some(next);
            }
            Swap::Lost => continue,
        }
    }
    None
}

/// Attempts at adding a telemetry batch: the flush runs after the answers
/// it counts, so it may wait out the other instances' flushes.
const TELEMETRY_ATTEMPTS: usize = 50;

/// Adds an instance's telemetry batch to the sum in the store, by
/// compare-and-swap so concurrent flushes of several instances all land;
/// after a lost swap it waits 1 to 8 ms (random) and reads the sum again.
/// `Err` says why the batch was lost (a store failure, or the sum kept
/// changing): its counts, never a request.
pub async fn add_telemetry<S: AtomicStore>(store: &S, batch: &str) -> Result<(), String> {
    // A compare-and-swap on a missing key is a plain insert in Spin's
    // stores: two first flushes would both "win". The first is created
    // once, empty, by the one instance that claims it.
    if store.get(TELEMETRY_KEY)?.is_none() {
        create_telemetry(store).await?;
    }
    let mut last = String::from("the sum kept changing");
    for _ in 0..TELEMETRY_ATTEMPTS {
        // A store busy with other writers (SQLite's lock) fails a read or
        // a swap now and then: tried again like a lost swap.
        let attempt = store.watch(TELEMETRY_KEY).and_then(|(cas, current)| {
            let held = current.as_deref().and_then(|d| std::str::from_utf8(d).ok());
            let sum = crate::telemetry::Tally::merge_batch(held, batch)
                .ok_or_else(|| "the batch is unreadable".to_string())?;
            store.swap(cas, sum.as_bytes())
        });
        match attempt {
            Ok(Swap::Done) => return Ok(()),
            Ok(Swap::Lost) => {}
            Err(e) if e == "the batch is unreadable" => return Err(e),
            Err(e) => last = e,
        }
        store.pause(1 + store.random() % 8).await;
    }
    Err(format!("{last} ({TELEMETRY_ATTEMPTS} attempts)"))
}

/// Claimed (atomic increment) by the instance that writes the first,
/// empty, telemetry sum.
pub const TELEMETRY_CLAIM_KEY: &str = "rollout-telemetry.created";

/// Makes sure the telemetry sum exists before a batch is swapped in: the
/// instance that claims it first writes it empty; the others wait for it
/// (up to [`CREATE_WAIT_MS`], then write it themselves, as a writer that
/// stopped would otherwise block every flush).
async fn create_telemetry<S: AtomicStore>(store: &S) -> Result<(), String> {
    let empty = crate::telemetry::Tally::default().to_json();
    if store.increment(TELEMETRY_CLAIM_KEY, 1)? == 1 {
        return store.set(TELEMETRY_KEY, empty.as_bytes());
    }
    for _ in 0..CREATE_WAIT_MS / CREATE_POLL_MS {
        if store.get(TELEMETRY_KEY)?.is_some() {
            return Ok(());
        }
        store.pause(CREATE_POLL_MS).await;
    }
    if store.get(TELEMETRY_KEY)?.is_none() {
        store.set(TELEMETRY_KEY, empty.as_bytes())?;
    }
    Ok(())
}

/// Writes `json`, committed at `epoch`, as the backup copy unless the
/// backup already holds that epoch or a later one ([`replaces_backup`]),
/// with a compare-and-swap so two instances that committed back to back
/// cannot leave the older backup last. Best effort: the change itself is
/// stored; a store failure here leaves the previous backup.
fn write_backup<S: AtomicStore>(store: &S, json: &str, epoch: u64) {
    rewrite(store, LAST_GOOD_KEY, |held| {
        replaces_backup(held, epoch).then(|| json.to_string())
    });
}

/// Records a committed change in the history document, with a
/// compare-and-swap so two instances that committed back to back both
/// land. Best effort, like the backup: the change itself is stored, and
/// an entry this misses is recovered by the next change's record
/// ([`History::record`]).
fn record_history<S: AtomicStore>(
    store: &S,
    before: &RolloutState,
    after: &RolloutState,
    evidence: Option<serde_json::Value>,
) {
    rewrite(store, HISTORY_KEY, |held| {
        Some(History::recorded(held, before, after, evidence.clone()))
    });
}

/// Replaces the document under `key` with what `next` makes of the one
/// held (`None`: leave it), by compare-and-swap, read again when another
/// writer got in between. Best effort: gives up on a store failure.
fn rewrite<S: AtomicStore>(store: &S, key: &str, next: impl Fn(Option<&str>) -> Option<String>) {
    for _ in 0..ADMIN_ATTEMPTS {
        let Ok((cas, current)) = store.watch(key) else {
            return;
        };
        let held = current.as_deref().and_then(|d| std::str::from_utf8(d).ok());
        let Some(value) = next(held) else {
            return;
        };
        match store.swap(cas, value.as_bytes()) {
            Ok(Swap::Lost) => continue,
            Ok(Swap::Done) | Err(_) => return,
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
async fn create_document<S: AtomicStore>(store: &S, fresh: &LoadedState) -> Result<(), String> {
    let claim = store.increment(CREATE_CLAIM_KEY, 1)?;
    let initial = fresh.state.to_json();
    if claim == 1 {
        return write_initial(store, &initial, 0).inspect_err(|_| {
            // Give the claim back so a later call can try again.
            let _ = store.increment(CREATE_CLAIM_KEY, -1);
        });
    }
    for _ in 0..CREATE_WAIT_MS / CREATE_POLL_MS {
        if store.get(STATE_KEY)?.is_some() {
            return Ok(());
        }
        store.pause(CREATE_POLL_MS).await;
    }
    if store.get(STATE_KEY)?.is_none() {
        let generation = store.increment(CREATE_CLAIM_KEY, TAKE_OVER)? >> 32;
        write_initial(store, &initial, generation)?;
    }
    Ok(())
}

/// Writes the first document as the writer of take-over `generation`,
/// unless a later take-over has happened.
fn write_initial<S: AtomicStore>(store: &S, initial: &str, generation: i64) -> Result<(), String> {
    if store.increment(CREATE_CLAIM_KEY, 0)? >> 32 != generation {
        return Ok(());
    }
    if store.get(LAST_GOOD_KEY)?.is_none() {
        store.set(LAST_GOOD_KEY, initial.as_bytes())?;
    }
    store.set(STATE_KEY, initial.as_bytes())
}

/// Whether a swap over a value that changed since it was read fails, as it
/// must. Each probe writes values of its own, so concurrent probes cannot
/// make a comparing store look like one that does not compare.
fn honours_compare_and_swap<S: AtomicStore>(store: &S) -> Result<bool, String> {
    let nonce = |tag: &str| format!("{tag}-{:016x}", store.random());
    store.set(CAS_PROBE_KEY, nonce("read").as_bytes())?;
    let (cas, _) = store.watch(CAS_PROBE_KEY)?;
    store.set(CAS_PROBE_KEY, nonce("changed").as_bytes())?;
    Ok(store.swap(cas, nonce("swapped").as_bytes())? == Swap::Lost)
}

/// The configuration verifying with the remote JWKS (`JWKS_URL`), fetched
/// with `fetch` when [`CachedJwks`] says so and cached in the store. The
/// attempt is recorded before the fetch, so concurrent requests serve what
/// is cached rather than fetching too (not atomic: two instances starting
/// at once may both fetch). `fetch` gives the answer's status,
/// `cache-control` and body, or `None` when no answer came.
pub async fn remote_jwks_config<S, F>(
    store: Option<&S>,
    cfg: &EdgeConfig,
    kid: Option<&str>,
    now_ms: u64,
    fetch: impl FnOnce() -> F,
) -> EdgeConfig
where
    S: AtomicStore,
    F: Future<Output = Option<(u16, Option<String>, Vec<u8>)>>,
{
    let stored = store.and_then(|s| s.get(JWKS_KEY).ok().flatten());
    let mut cache = CachedJwks::from_json(stored.as_deref()).unwrap_or_default();
    if cache.should_fetch_for(kid, now_ms) {
        cache.attempting(now_ms);
        if let Some(store) = store {
            let _ = store.set(JWKS_KEY, cache.to_json().as_bytes());
        }
        let answer = fetch().await;
        let answer = answer
            .as_ref()
            .map(|(status, cc, body)| (*status, cc.as_deref(), body.as_slice()));
        cache = cache.after_fetch(answer, now_ms);
        if let Some(store) = store {
            let _ = store.set(JWKS_KEY, cache.to_json().as_bytes());
        }
    }
    cfg.with_remote_jwks(cache.usable(now_ms))
}

/// Counts `fwd`'s failed attempt in the stored health record
/// ([`super::count_failure`]), a read-modify-write: concurrent failures may
/// be counted once, enough to cross a threshold. A store failure counts
/// nothing.
pub fn count_failure_in<S: AtomicStore>(
    store: &S,
    cfg: &EdgeConfig,
    fwd: &super::Forward,
    outcome: &crate::failover::AttemptOutcome,
    now_ms: u64,
) {
    let Ok(stored) = store.get(HEALTH_KEY) else {
        return;
    };
    let stored = stored.as_deref().and_then(|s| std::str::from_utf8(s).ok());
    let record = super::count_failure(
        cfg,
        crate::health::HealthRecord::from_json(stored),
        fwd.decision.epoch,
        fwd.decision.color,
        outcome,
        now_ms,
    );
    if store.set(HEALTH_KEY, record.to_json().as_bytes()).is_err() {
        return;
    }
    // A running plan fails at once on an unhealthy candidate, not at its
    // next deadline: the failure that crosses the threshold judges it.
    let color = record.get(fwd.decision.color);
    if color.in_window >= cfg.health.threshold {
        advance_plan(store, cfg, now_ms);
    }
}

/// The pipeline's tables kept in the store, shared by every instance
/// (`edge::Platform` for a Spin build): per-caller tables are key-value
/// slots, the health record a stored document. Kept in the store rather
/// than in an instance even where instances are reused: Spin runs as many
/// instances as its load asks for, and a caller spread over them would get
/// each instance's limit. A store that cannot be opened counts nothing and
/// limits nothing: the limits protect origins, they must not take the edge
/// down with the store. `wasi:http` (0.2, and 0.3 as Spin 4.0 implements
/// it) has no upgrade and hides `transfer-encoding` (a forbidden field).
pub struct StoreTables<'a, S> {
    pub store: Option<&'a S>,
    pub cfg: &'a EdgeConfig,
}

impl<S: AtomicStore + ListKeys> super::Platform for StoreTables<'_, S> {
    const RUNTIME: &'static str = "spin";
    const TABLES_IN: &'static str = "store";
    const REFUSES_WEBSOCKETS: Option<&'static str> = Some("Spin (wasi:http)");
    const HIDES_TRANSFER_ENCODING: bool = true;
    const DROPS_GET_BODY: bool = false;

    /// The caller's table lives in its key-value slot. Not atomic:
    /// concurrent failures of one caller may be counted once each
    /// instance, so a caller gets at most its concurrency in extra
    /// attempts. A store that cannot be read counts nothing (an empty
    /// table).
    fn guard_admin(&mut self, action: super::Action, caller: &str, now_ms: u64) -> super::Action {
        let Some(store) = self.store else {
            return action;
        };
        let key = admin_guard::slot_key(caller);
        let stored = store.get(&key).ok().flatten();
        let mut failures = admin_guard::AdminFailures::from_json(stored.as_deref());
        let (action, changed) = super::guard_admin(
            action,
            caller,
            &mut failures,
            now_ms,
            admin_guard::CALLERS_PER_SLOT,
        );
        if changed {
            let _ = store.set(&key, failures.to_json().as_bytes());
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
        limit: ratelimit::RateLimit,
        caller: &str,
        now_ms: u64,
    ) -> Result<(), ratelimit::RetryAfter> {
        let Some(store) = self.store else {
            return Ok(());
        };
        let key = ratelimit::slot_key(caller);
        let stored = store.get(&key).ok().flatten();
        let (verdict, doc) = ratelimit::take_in_slot(stored.as_deref(), caller, limit, now_ms);
        let _ = store.set(&key, doc.as_bytes());
        verdict
    }

    /// Read-modify-write of the health document: concurrent failures may
    /// be counted once, enough to cross a threshold.
    fn count_failure(
        &mut self,
        fwd: &super::Forward,
        outcome: &crate::failover::AttemptOutcome,
        now_ms: u64,
    ) {
        if let Some(store) = self.store {
            count_failure_in(store, self.cfg, fwd, outcome, now_ms);
        }
    }

    /// Counted by listing the keys (admin only: not on a request's path).
    fn sizes(&self) -> Result<Vec<(&'static str, TableSize)>, String> {
        let store = self.store.ok_or("the store could not be opened")?;
        let keys = store
            .keys()
            .map_err(|e| format!("listing the store's keys: {e}"))?;
        let count = |prefix: &str| keys.iter().filter(|k| k.starts_with(prefix)).count() as u64;
        // In key order (readers get a map).
        Ok(vec![
            (
                "admin_failure_slots",
                TableSize {
                    entries: count(admin_guard::SLOT_PREFIX),
                    cap: admin_guard::STORED_SLOTS,
                },
            ),
            (
                "keys",
                TableSize {
                    entries: keys.len() as u64,
                    cap: ratelimit::STORED_SLOTS + admin_guard::STORED_SLOTS + FIXED_KEYS,
                },
            ),
            (
                "rate_limit_slots",
                TableSize {
                    entries: count(ratelimit::SLOT_PREFIX),
                    cap: ratelimit::STORED_SLOTS,
                },
            ),
        ])
    }
}

/// Keys other than the slots: the state, its backup, the health record,
/// the create claim, the compare-and-swap probe and the JWKS cache (and
/// room for a few more).
const FIXED_KEYS: u64 = 16;

/// A store whose keys can be listed (the isolate report's table sizes).
pub trait ListKeys {
    /// Every key (bounded by the store's own pages).
    fn keys(&self) -> Result<Vec<String>, String>;
}

/// Every key of a store that lists them a page at a time: `page(cursor)`
/// gives a page's keys and the cursor of the next (`None` after the last).
/// Bounded: a cursor that never ends stops after 10 000 pages.
pub fn collect_pages(
    mut page: impl FnMut(Option<&str>) -> Result<(Vec<String>, Option<String>), String>,
) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let (more, next) = page(cursor.as_deref())?;
        keys.extend(more);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(keys)
}
