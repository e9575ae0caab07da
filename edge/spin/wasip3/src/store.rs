//! Spin's key-value store through `wasi:keyvalue` (store + atomics), as
//! `greenlight_common::edge::kv` reads and changes it. spin-sdk 6 carries
//! that interface among its experimental bindings; Spin implements it since
//! 3.0 over the same stores as `spin:key-value`, so both builds of the
//! adapter share one store.

use greenlight_common::edge::kv::{self, AtomicStore, ListKeys, Swap};
use spin_sdk::experimental::wasi::keyvalue::atomics::{self, Cas, CasError};
use spin_sdk::experimental::wasi::keyvalue::store::{self, Bucket};
use std::cell::RefCell;
use std::rc::Rc;

/// Label of the key-value store declared in `spin.toml`.
const KV_STORE: &str = "default";

thread_local! {
    /// The bucket, opened once per instance.
    static BUCKET: RefCell<Option<Rc<Kv>>> = const { RefCell::new(None) };
}

pub struct Kv {
    bucket: Bucket,
}

impl Kv {
    /// This instance's bucket; a failure to open is retried by the next
    /// request.
    pub fn open() -> Result<Rc<Kv>, String> {
        if let Some(kv) = BUCKET.with_borrow(Clone::clone) {
            return Ok(kv);
        }
        let kv = Rc::new(Kv {
            bucket: store::open(KV_STORE).map_err(|e| format!("{e:?}"))?,
        });
        BUCKET.set(Some(kv.clone()));
        Ok(kv)
    }
}

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
        crate::body::sleep_ms(ms).await;
    }

    fn random(&self) -> u64 {
        crate::random_u64()
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
