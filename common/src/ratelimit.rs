//! Per-caller rate limiting: a token bucket.
//!
//! Written here rather than taken from a crate (e.g. `governor`) because the
//! bucket must be plain data: the Spin edge keeps it in key-value, shared by
//! its instances (each serves up to 128 requests), the Worker in isolate
//! memory, and the core never reads a clock: time is passed in.

use crate::config_error::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Fixed-point scale of the token count (1 token = 1 000 milli-tokens), so
/// fractional refill needs no floats in the stored form.
const MILLI: u64 = 1_000;

/// A limit: `per_s` requests a second on average, bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_s: u32,
    pub burst: u32,
}

impl RateLimit {
    /// From `RATE_LIMIT_PER_S` and `RATE_LIMIT_BURST` (default: one second's
    /// worth). `None` when no limit is set; 0 is refused (use no limit).
    pub fn from_vars(
        per_s: Option<&str>,
        burst: Option<&str>,
    ) -> Result<Option<RateLimit>, ConfigError> {
        let Some(per_s) = per_s else {
            return Ok(None);
        };
        let number = |name: &str, v: &str| -> Result<u32, ConfigError> {
            match v.trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(ConfigError(format!(
                    "{name} {v:?} must be a whole number above 0"
                ))),
            }
        };
        let per_s = number("RATE_LIMIT_PER_S", per_s)?;
        let burst = match burst {
            Some(b) => number("RATE_LIMIT_BURST", b)?,
            None => per_s,
        };
        Ok(Some(RateLimit { per_s, burst }))
    }

    fn capacity(self) -> u64 {
        u64::from(self.burst) * MILLI
    }
}

/// One caller's bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    /// Milli-tokens available at `at_ms`.
    pub milli_tokens: u64,
    pub at_ms: u64,
}

impl TokenBucket {
    pub fn full(limit: RateLimit, now_ms: u64) -> TokenBucket {
        TokenBucket {
            milli_tokens: limit.capacity(),
            at_ms: now_ms,
        }
    }

    fn refill(&mut self, limit: RateLimit, now_ms: u64) {
        // A clock that went backwards refills nothing (and never panics).
        let elapsed = now_ms.saturating_sub(self.at_ms);
        let added = elapsed.saturating_mul(u64::from(limit.per_s));
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(added)
            .min(limit.capacity());
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Takes one token, or says how many whole seconds until one is there.
    pub fn take(&mut self, limit: RateLimit, now_ms: u64) -> Result<(), RetryAfter> {
        self.refill(limit, now_ms);
        if self.milli_tokens >= MILLI {
            self.milli_tokens -= MILLI;
            Ok(())
        } else {
            let missing = MILLI - self.milli_tokens;
            let wait_ms = missing.div_ceil(u64::from(limit.per_s).max(1));
            Err(RetryAfter {
                seconds: wait_ms.div_ceil(1_000).max(1),
            })
        }
    }

    /// True when the bucket is full at `now_ms`: an idle caller whose bucket
    /// can be forgotten without changing any answer.
    fn is_full(&self, limit: RateLimit, now_ms: u64) -> bool {
        let mut b = *self;
        b.refill(limit, now_ms);
        b.milli_tokens >= limit.capacity()
    }

    pub fn from_json(doc: Option<&[u8]>) -> Option<TokenBucket> {
        doc.and_then(|d| serde_json::from_slice(d).ok())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The request was over the limit; retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    pub seconds: u64,
}

/// Takes a token from a stored bucket (or a full one when nothing is
/// stored or the stored form is unreadable) and returns the bucket to store.
pub fn take_stored(
    stored: Option<&[u8]>,
    limit: RateLimit,
    now_ms: u64,
) -> (Result<(), RetryAfter>, TokenBucket) {
    let mut bucket =
        TokenBucket::from_json(stored).unwrap_or_else(|| TokenBucket::full(limit, now_ms));
    let verdict = bucket.take(limit, now_ms);
    (verdict, bucket)
}

/// The key-value key a caller's bucket is stored under: a digest, so any
/// caller id (a JWT subject is client-chosen text) becomes a short, safe key.
pub fn storage_key(caller: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(caller.as_bytes());
    format!("ratelimit:{}", hex::encode(&digest[..16]))
}

/// How many key-value keys a stored limiter spreads its callers over (Spin:
/// every request runs in a fresh instance, so buckets live in the store).
/// A fixed number of slots bounds the keys the limiter ever writes, however
/// many distinct callers come and go.
pub const STORED_SLOTS: u64 = 256;
/// Callers one slot remembers; idle (full) buckets are dropped first.
pub const CALLERS_PER_SLOT: usize = 64;

/// What every slot's key begins with.
pub const SLOT_PREFIX: &str = "ratelimit:slot:";

/// The key-value key of the slot `caller` belongs to.
pub fn slot_key(caller: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(caller.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("{SLOT_PREFIX}{}", u64::from_le_bytes(first) % STORED_SLOTS)
}

/// Takes a token for `caller` from the slot document `stored` (one of
/// [`STORED_SLOTS`], see [`slot_key`]) and returns the document to store
/// back: the slot's buckets with idle ones forgotten and at most
/// [`CALLERS_PER_SLOT`] kept, so both the number of keys and each value stay
/// bounded. An unreadable document starts empty (every caller full).
pub fn take_in_slot(
    stored: Option<&[u8]>,
    caller: &str,
    limit: RateLimit,
    now_ms: u64,
) -> (Result<(), RetryAfter>, String) {
    let buckets: HashMap<String, TokenBucket> = stored
        .and_then(|d| serde_json::from_slice(d).ok())
        .unwrap_or_default();
    let mut limiter = Limiter {
        limit,
        max_callers: CALLERS_PER_SLOT,
        buckets,
    };
    limiter.buckets.retain(|_, b| !b.is_full(limit, now_ms));
    let id = storage_key(caller);
    let verdict = limiter.take(&id, now_ms);
    let doc = serde_json::to_string(&limiter.buckets).unwrap_or_default();
    (verdict, doc)
}

/// Buckets kept in memory (the Worker's per-isolate limiter), bounded in
/// size so a flood of distinct callers cannot grow it without end.
#[derive(Debug, Clone)]
pub struct Limiter {
    limit: RateLimit,
    max_callers: usize,
    buckets: HashMap<String, TokenBucket>,
}

impl Limiter {
    pub fn new(limit: RateLimit, max_callers: usize) -> Limiter {
        Limiter {
            limit,
            max_callers: max_callers.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Callers with a bucket now (at most the `max_callers` given).
    pub fn callers(&self) -> usize {
        self.buckets.len()
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    pub fn take(&mut self, key: &str, now_ms: u64) -> Result<(), RetryAfter> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_callers {
            self.make_room(now_ms);
        }
        let limit = self.limit;
        self.buckets
            .entry(key.to_string())
            .or_insert_with(|| TokenBucket::full(limit, now_ms))
            .take(limit, now_ms)
    }

    /// Forgets idle (full) buckets; if every caller is active, forgets the
    /// least recently refilled half. Forgetting a bucket can only be
    /// generous (the caller starts full again), never unfair.
    fn make_room(&mut self, now_ms: u64) {
        let limit = self.limit;
        self.buckets.retain(|_, b| !b.is_full(limit, now_ms));
        if self.buckets.len() >= self.max_callers {
            let mut ages: Vec<u64> = self.buckets.values().map(|b| b.at_ms).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.buckets.retain(|_, b| b.at_ms > cut);
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: RateLimit = RateLimit {
        per_s: 10,
        burst: 20,
    };

    #[test]
    fn a_burst_then_the_steady_rate() {
        let mut b = TokenBucket::full(TEN, 0);
        for i in 0..20 {
            assert_eq!(b.take(TEN, 0), Ok(()), "burst token {i}");
        }
        assert_eq!(b.take(TEN, 0), Err(RetryAfter { seconds: 1 }));
        // 10/s: one token every 100 ms.
        assert!(b.take(TEN, 99).is_err());
        assert_eq!(b.take(TEN, 100), Ok(()));
        // Over ten seconds at most 10 × 10 more get through.
        let allowed = (101..=10_100).filter(|t| b.take(TEN, *t).is_ok()).count();
        assert_eq!(allowed, 100);
    }

    #[test]
    fn retry_after_is_whole_seconds_and_never_zero() {
        let slow = RateLimit { per_s: 1, burst: 1 };
        let mut b = TokenBucket::full(slow, 0);
        assert!(b.take(slow, 0).is_ok());
        assert_eq!(b.take(slow, 0), Err(RetryAfter { seconds: 1 }));
        assert_eq!(b.take(slow, 999), Err(RetryAfter { seconds: 1 }));
        assert_eq!(b.take(slow, 1_000), Ok(()));
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut b = TokenBucket::full(TEN, 5_000);
        for _ in 0..20 {
            b.take(TEN, 5_000).unwrap();
        }
        assert!(b.take(TEN, 0).is_err());
        assert!(
            b.take(TEN, 5_050).is_err(),
            "time did not move past 5 000 + 100"
        );
    }

    #[test]
    fn stored_buckets_round_trip_and_junk_starts_full() {
        let (first, bucket) = take_stored(None, TEN, 0);
        assert!(first.is_ok());
        assert_eq!(bucket.milli_tokens, 19_000);
        let stored = bucket.to_json();
        let (_, again) = take_stored(Some(stored.as_bytes()), TEN, 0);
        assert_eq!(again.milli_tokens, 18_000);
        let (ok, fresh) = take_stored(Some(b"\xff junk"), TEN, 0);
        assert!(ok.is_ok());
        assert_eq!(fresh.milli_tokens, 19_000);
    }

    #[test]
    fn limits_are_per_caller_and_memory_is_bounded() {
        let one = RateLimit { per_s: 1, burst: 1 };
        let mut l = Limiter::new(one, 100);
        assert!(l.take("alice", 0).is_ok());
        assert!(l.take("alice", 0).is_err());
        assert!(l.take("bob", 0).is_ok(), "bob has his own bucket");
        for i in 0..10_000u64 {
            let _ = l.take(&format!("caller-{i}"), i / 10);
            assert!(l.len() <= 100);
        }
        // An active caller that was forgotten starts full: generous, never stricter.
        assert!(l.take("alice", 1_000).is_ok());
    }

    #[test]
    fn storage_keys_are_short_and_distinct() {
        let a = storage_key("s:alice");
        assert_eq!(a.len(), "ratelimit:".len() + 32);
        assert_ne!(a, storage_key("s:alice "));
        assert_eq!(a, storage_key("s:alice"));
        assert_eq!(storage_key(&"x".repeat(10_000)).len(), a.len());
    }

    #[test]
    fn slots_bound_the_keys_and_each_document() {
        let one = RateLimit { per_s: 1, burst: 2 };
        let mut keys = std::collections::HashSet::new();
        let mut docs: HashMap<String, String> = HashMap::new();
        for i in 0..20_000u64 {
            let caller = format!("caller-{i}");
            let key = slot_key(&caller);
            let (verdict, doc) =
                take_in_slot(docs.get(&key).map(|d| d.as_bytes()), &caller, one, i);
            assert!(verdict.is_ok(), "a new caller starts with a full bucket");
            let entries: HashMap<String, TokenBucket> = serde_json::from_str(&doc).unwrap();
            assert!(entries.len() <= CALLERS_PER_SLOT);
            keys.insert(key.clone());
            docs.insert(key, doc);
        }
        assert!(keys.len() as u64 <= STORED_SLOTS, "{} keys", keys.len());
    }

    #[test]
    fn a_slot_limits_each_of_its_callers() {
        let one = RateLimit { per_s: 1, burst: 2 };
        let mut doc: Option<String> = None;
        let mut take = |caller: &str, now: u64| {
            let (v, d) = take_in_slot(doc.as_deref().map(str::as_bytes), caller, one, now);
            doc = Some(d);
            v
        };
        assert!(take("alice", 0).is_ok());
        assert!(take("alice", 0).is_ok());
        assert_eq!(take("alice", 0), Err(RetryAfter { seconds: 1 }));
        assert!(take("alice", 1_000).is_ok(), "refilled after a second");
        // Junk in the store starts the slot over rather than failing.
        let (v, _) = take_in_slot(Some(b"not json"), "alice", one, 0);
        assert!(v.is_ok());
    }

    #[test]
    fn configuration_is_checked() {
        assert_eq!(RateLimit::from_vars(None, Some("5")).unwrap(), None);
        assert_eq!(
            RateLimit::from_vars(Some("50"), None).unwrap(),
            Some(RateLimit {
                per_s: 50,
                burst: 50
            })
        );
        assert_eq!(
            RateLimit::from_vars(Some(" 5 "), Some("100")).unwrap(),
            Some(RateLimit {
                per_s: 5,
                burst: 100
            })
        );
        for (rate, burst) in [("0", None), ("-1", None), ("fast", None), ("5", Some("0"))] {
            assert!(
                RateLimit::from_vars(Some(rate), burst).is_err(),
                "{rate} {burst:?}"
            );
        }
    }
}
