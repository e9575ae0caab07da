//! The rollout state, health record and rate-limit buckets in Spin's
//! key-value store, through `wasi:keyvalue` (store + atomics), which Spin
//! implements since 3.0 over the same stores as `spin:key-value`. How the
//! state is read and changed is `greenlight_common::edge::kv`'s; this file
//! gives it the store.

use greenlight_common::admin::TableSize;
use greenlight_common::admin_guard::{self, AdminFailures};
use greenlight_common::edge::kv::{self, AtomicStore, Swap};
use greenlight_common::edge::{self, Action, EdgeConfig, Forward, Platform};
use greenlight_common::failover::AttemptOutcome;
use greenlight_common::ratelimit::{self, RateLimit, RetryAfter};
use spin_sdk::wit::wasi::keyvalue::atomics::{self, Cas, CasError};
use spin_sdk::wit::wasi::keyvalue::store::{self, Bucket};
use wasi::clocks::monotonic_clock;

/// Label of the key-value store declared in `spin.toml`.
const KV_STORE: &str = "default";

pub struct Kv {
    bucket: Bucket,
}

impl Kv {
    pub fn open() -> Result<Kv, String> {
        store::open(KV_STORE)
            .map(|bucket| Kv { bucket })
            .map_err(|e| format!("{e:?}"))
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

/// The store as `edge::kv` reads and changes it.
impl AtomicStore for Kv {
    type Cas = Cas;

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.bucket.get(key).map_err(|e| format!("{e:?}"))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.bucket.set(key, value).map_err(|e| format!("{e:?}"))
    }

    fn watch(&self, key: &str) -> Result<(Cas, Option<Vec<u8>>), String> {
        let cas = Cas::new(&self.bucket, key).map_err(|e| format!("{e:?}"))?;
        let current = cas.current().map_err(|e| format!("{e:?}"))?;
        Ok((cas, current))
    }

    fn swap(&self, cas: Cas, value: &[u8]) -> Result<Swap, String> {
        match atomics::swap(cas, value) {
            Ok(()) => Ok(Swap::Done),
            Err(CasError::CasFailed(_)) => Ok(Swap::Lost),
            Err(CasError::StoreError(e)) => Err(format!("{e:?}")),
        }
    }

    fn increment(&self, key: &str, by: i64) -> Result<i64, String> {
        atomics::increment(&self.bucket, key, by).map_err(|e| format!("{e:?}"))
    }

    async fn pause(&self, ms: u64) {
        monotonic_clock::subscribe_duration(ms * 1_000_000).block();
    }

    fn random(&self) -> u64 {
        getrandom::u64().unwrap_or(0)
    }
}

/// The configuration verifying with the remote JWKS (`JWKS_URL`): every
/// request runs in a fresh instance, so the key set is cached in the store
/// (`edge::kv::remote_jwks_config`).
pub async fn remote_jwks_config(
    kv: Option<&Kv>,
    cfg: &EdgeConfig,
    url: &str,
    kid: Option<&str>,
    now_ms: u64,
) -> EdgeConfig {
    kv::remote_jwks_config(kv, cfg, kid, now_ms, || fetch_jwks(url)).await
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

    fn count_failure(&mut self, fwd: &Forward, outcome: &AttemptOutcome, now_ms: u64) {
        if let Ok(kv) = self.kv {
            kv::count_failure_in(kv, self.cfg, fwd, outcome, now_ms);
        }
    }

    fn sizes(&self) -> Result<Vec<(&'static str, TableSize)>, String> {
        let kv = self.kv.map_err(|e| format!("opening the store: {e}"))?;
        isolate_tables(kv)
            .map(Vec::from)
            .map_err(|e| format!("listing the store's keys: {e}"))
    }
}
