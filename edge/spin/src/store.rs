//! The rollout state, health record and rate-limit buckets in Spin's
//! key-value store, through `wasi:keyvalue` (store + atomics), which Spin
//! implements since 3.0 over the same stores as `spin:key-value`. How the
//! state is read and changed is `greenlight_common::edge::kv`'s; this file
//! gives it the store.

use greenlight_common::edge::kv::{self, AtomicStore, ListKeys, Swap};
use greenlight_common::edge::EdgeConfig;
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

/// The store's keys, listed page by page (the isolate report).
impl ListKeys for Kv {
    fn keys(&self) -> Result<Vec<String>, String> {
        kv::collect_pages(|cursor| {
            let page = self
                .bucket
                .list_keys(cursor)
                .map_err(|e| format!("{e:?}"))?;
            Ok((page.keys, page.cursor))
        })
    }
}

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
