//! Failed admin authentications, counted per caller address.
//!
//! A caller may fail [`FAILURE_BURST`] times in a row; after that one more
//! failure is allowed every [`FORGIVE_MS`], and every admin request from
//! that address in between is answered 429 with `Retry-After` before any
//! credential is looked at (so guessing gets no faster by being refused
//! differently). Only failures count: an operator's successful calls cost
//! nothing, and an operator calling from another address is never slowed
//! by someone else's failures.
//!
//! Each caller is one number (GCRA): the time at which its failures are all
//! forgiven. Plain data, so the Worker keeps a table per isolate and the
//! Spin edge keeps tables in key-value slots (each request runs in a fresh
//! instance there).

use crate::ratelimit::RetryAfter;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Failures in a row before a caller waits.
pub const FAILURE_BURST: u64 = 10;
/// One failure is forgiven per this many milliseconds (10 a minute).
pub const FORGIVE_MS: u64 = 6_000;
/// Slot keys the Spin edge spreads callers over, and callers per slot.
pub const STORED_SLOTS: u64 = 64;
pub const CALLERS_PER_SLOT: usize = 64;

/// Callers with unforgiven failures: caller key → time (ms) when all of
/// its failures are forgiven.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminFailures {
    forgiven_at: HashMap<String, u64>,
}

impl AdminFailures {
    /// A stored table; junk or nothing is an empty one.
    pub fn from_json(doc: Option<&[u8]>) -> AdminFailures {
        doc.and_then(|d| serde_json::from_slice(d).ok())
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether `caller` may try to authenticate now, or how long it waits.
    pub fn check(&self, caller: &str, now_ms: u64) -> Result<(), RetryAfter> {
        let Some(&at) = self.forgiven_at.get(caller) else {
            return Ok(());
        };
        // Blocked while more than BURST - 1 failures are unforgiven.
        let allowed_debt = (FAILURE_BURST - 1) * FORGIVE_MS;
        let debt = at.saturating_sub(now_ms);
        if debt <= allowed_debt {
            Ok(())
        } else {
            Err(RetryAfter {
                seconds: (debt - allowed_debt).div_ceil(1_000).max(1),
            })
        }
    }

    /// Counts one failure of `caller`; keeps at most `max_callers`,
    /// forgetting the fully forgiven first, then those closest to it.
    pub fn record_failure(&mut self, caller: &str, now_ms: u64, max_callers: usize) {
        if !self.forgiven_at.contains_key(caller) && self.forgiven_at.len() >= max_callers {
            self.forgiven_at.retain(|_, at| *at > now_ms);
            while self.forgiven_at.len() >= max_callers.max(1) {
                let Some(first) = self
                    .forgiven_at
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.forgiven_at.remove(&first);
            }
        }
        let at = self.forgiven_at.entry(caller.to_string()).or_insert(now_ms);
        *at = (*at).max(now_ms).saturating_add(FORGIVE_MS);
    }

    pub fn len(&self) -> usize {
        self.forgiven_at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.forgiven_at.is_empty()
    }
}

/// What every slot's key begins with.
pub const SLOT_PREFIX: &str = "admin-failures:slot:";

/// The key-value slot that holds `caller`'s entry on the Spin edge.
pub fn slot_key(caller: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(caller.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("{SLOT_PREFIX}{}", u64::from_le_bytes(first) % STORED_SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_then_one_per_interval() {
        let mut t = AdminFailures::default();
        for i in 0..FAILURE_BURST {
            assert_eq!(t.check("ip:a", 0), Ok(()), "failure {i}");
            t.record_failure("ip:a", 0, 100);
        }
        assert_eq!(t.check("ip:a", 0), Err(RetryAfter { seconds: 6 }));
        assert_eq!(t.check("ip:a", 5_999), Err(RetryAfter { seconds: 1 }));
        assert_eq!(t.check("ip:a", 6_000), Ok(()));
        t.record_failure("ip:a", 6_000, 100);
        assert!(t.check("ip:a", 6_000).is_err());
        // Another caller is not affected.
        assert_eq!(t.check("ip:b", 0), Ok(()));
        // All forgiven after BURST intervals of quiet.
        assert_eq!(t.check("ip:a", 72_000), Ok(()));
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_most_indebted() {
        let mut t = AdminFailures::default();
        for _ in 0..FAILURE_BURST {
            t.record_failure("ip:attacker", 0, 8);
        }
        for i in 0..100 {
            t.record_failure(&format!("ip:{i}"), 0, 8);
            assert!(t.len() <= 8);
        }
        assert!(t.check("ip:attacker", 0).is_err());
    }

    #[test]
    fn stored_form_round_trips_and_junk_is_empty() {
        let mut t = AdminFailures::default();
        t.record_failure("ip:a", 5, 10);
        let back = AdminFailures::from_json(Some(t.to_json().as_bytes()));
        assert_eq!(back, t);
        assert!(AdminFailures::from_json(Some(b"{nope")).is_empty());
        assert!(slot_key("ip:a").starts_with("admin-failures:slot:"));
    }
}
