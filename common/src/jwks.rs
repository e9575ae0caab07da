//! Remote JWKS (`JWKS_URL`): when to fetch the identity provider's keys,
//! how long to keep them and what to do when the provider fails. Pure: the
//! adapters fetch and store, this decides.
//!
//! - A fetched set is fresh for its `Cache-Control: max-age`, kept within
//!   [`MIN_TTL_MS`]..[`MAX_TTL_MS`] ([`DEFAULT_TTL_MS`] without one).
//! - After that it is refetched; while the provider is down (error, non-200,
//!   garbage) the last good set keeps verifying for up to [`MAX_STALE_MS`]
//!   past its expiry, then tokens needing it are refused.
//! - A token naming a `kid` the set does not have triggers a refetch (a
//!   rotation) at most once per [`REFETCH_INTERVAL_MS`], so forged `kid`s
//!   cannot make the edge hammer the provider; failed fetches are retried
//!   no more often either.
//! - Only the configured URL is fetched: a token's `jku` / `x5u` never are.

use crate::auth::JwkSet;
use crate::config_error::ConfigError;
use serde::{Deserialize, Serialize};

pub const MIN_TTL_MS: u64 = 60_000;
pub const DEFAULT_TTL_MS: u64 = 300_000;
pub const MAX_TTL_MS: u64 = 86_400_000;
/// How long past its expiry a set keeps verifying while refetches fail.
pub const MAX_STALE_MS: u64 = 6 * 3_600_000;
/// At most one fetch per this interval beyond expiries.
pub const REFETCH_INTERVAL_MS: u64 = 5_000;
/// A larger answer is garbage, not a key set.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// `JWKS_ORIGIN` set to this means none (Spin's manifest default, see
/// `EdgeConfig::from_lookup`).
pub const UNSET_URL: &str = "https://jwks.invalid";

/// Checks a `JWKS_URL`: `https://`, or `http://` to a loopback host (tests
/// and local providers).
pub fn check_url(url: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| Err(ConfigError(format!("JWKS_URL {url:?}: {why}")));
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return bad("must be https (plain http only to a loopback host)");
        }
        rest
    } else {
        return bad("must be an https URL");
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') || url.bytes().any(|b| b <= b' ') {
        return bad("needs a host, no userinfo and no spaces");
    }
    Ok(())
}

/// How long a set fetched with this `Cache-Control` stays fresh:
/// `max-age` within bounds; `no-cache`, `no-store` or `max-age=0` give the
/// minimum (the provider still cannot make every request a fetch).
pub fn ttl_ms(cache_control: Option<&str>) -> u64 {
    let Some(cc) = cache_control else {
        return DEFAULT_TTL_MS;
    };
    let mut ttl = None;
    for directive in cc.split(',').map(str::trim) {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => return MIN_TTL_MS,
            "max-age" => {
                ttl = value
                    .trim()
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(|s| s.saturating_mul(1_000));
            }
            _ => {}
        }
    }
    ttl.unwrap_or(DEFAULT_TTL_MS).clamp(MIN_TTL_MS, MAX_TTL_MS)
}

/// What an edge remembers of the remote set (in isolate memory on the
/// Worker, in key-value on Spin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedJwks {
    /// The last good set, as fetched.
    pub document: Option<String>,
    pub fetched_at_ms: u64,
    pub expires_at_ms: u64,
    /// The last fetch, good or not.
    pub attempted_at_ms: u64,
}

impl CachedJwks {
    pub fn from_json(doc: Option<&[u8]>) -> Option<CachedJwks> {
        doc.and_then(|d| serde_json::from_slice(d).ok())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The set to verify with now: fresh, or stale within [`MAX_STALE_MS`].
    pub fn usable(&self, now_ms: u64) -> Option<&str> {
        self.document
            .as_deref()
            .filter(|_| now_ms < self.expires_at_ms.saturating_add(MAX_STALE_MS))
    }

    /// Whether to fetch before verifying: nothing cached or expired, or a
    /// token names a `kid` the set lacks; never twice within
    /// [`REFETCH_INTERVAL_MS`].
    pub fn should_fetch(&self, now_ms: u64, unknown_kid: bool) -> bool {
        let waited = self.attempted_at_ms == 0
            || now_ms.saturating_sub(self.attempted_at_ms) >= REFETCH_INTERVAL_MS;
        let stale = self.document.is_none() || now_ms >= self.expires_at_ms;
        waited && (stale || unknown_kid)
    }

    /// Whether to fetch for a request whose token names `kid` (`None`: a
    /// token without one): the set is missing, expired, or has no such
    /// key, and the last attempt is [`REFETCH_INTERVAL_MS`] old.
    pub fn should_fetch_for(&self, kid: Option<&str>, now_ms: u64) -> bool {
        let unknown = match (self.usable(now_ms), kid) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(doc), Some(kid)) => serde_json::from_str::<JwkSet>(doc)
                .map(|set| !has_kid(&set, kid))
                .unwrap_or(true),
        };
        self.should_fetch(now_ms, unknown)
    }

    /// Records that a fetch starts now, so concurrent requests do not
    /// start another.
    pub fn attempting(&mut self, now_ms: u64) {
        self.attempted_at_ms = now_ms.max(1);
    }

    /// The cache after a fetch at `now_ms`: a good answer (200, a JSON key
    /// set within [`MAX_JWKS_BYTES`] whose keys decode) replaces the set;
    /// anything else keeps the old one (served stale) and only records the
    /// attempt.
    pub fn after_fetch(
        mut self,
        answer: Option<(u16, Option<&str>, &[u8])>,
        now_ms: u64,
    ) -> CachedJwks {
        self.attempted_at_ms = now_ms.max(1);
        if let Some((200, cache_control, body)) = answer {
            if let Some(text) = parse(body) {
                self.document = Some(text);
                self.fetched_at_ms = now_ms;
                self.expires_at_ms = now_ms.saturating_add(ttl_ms(cache_control));
            }
        }
        self
    }
}

/// A fetched body as a key set greenlight can use, or `None` for garbage:
/// too large, not JSON, not a JWKS, a key that does not decode, or no key
/// greenlight could verify with.
pub fn parse(body: &[u8]) -> Option<String> {
    if body.len() > MAX_JWKS_BYTES {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let set: JwkSet = serde_json::from_str(text).ok()?;
    crate::auth::check_jwks(&set).ok()?;
    Some(text.to_string())
}

/// Whether `set` has a key named `kid`.
pub fn has_kid(set: &JwkSet, kid: &str) -> bool {
    set.keys
        .iter()
        .any(|k| k.common.key_id.as_deref() == Some(kid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = include_str!("../../tests/fixtures/jwks.json");

    #[test]
    fn urls() {
        assert!(check_url("https://idp.example.com/.well-known/jwks.json").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        for bad in [
            "http://idp.example.com/jwks",
            "http://127.0.0.1.evil.test/jwks",
            "ftp://idp/jwks",
            "https://",
            "https://user@idp/jwks",
            "https://idp/ jwks",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_control_within_bounds() {
        assert_eq!(ttl_ms(None), DEFAULT_TTL_MS);
        assert_eq!(ttl_ms(Some("public, max-age=600")), 600_000);
        assert_eq!(ttl_ms(Some("max-age=1")), MIN_TTL_MS);
        assert_eq!(ttl_ms(Some("max-age=0")), MIN_TTL_MS);
        assert_eq!(ttl_ms(Some("no-store")), MIN_TTL_MS);
        assert_eq!(ttl_ms(Some("max-age=99999999999")), MAX_TTL_MS);
        assert_eq!(ttl_ms(Some("max-age=soon")), DEFAULT_TTL_MS);
    }

    #[test]
    fn fetch_rotate_go_down_and_answer_garbage() {
        let c = CachedJwks::default();
        assert!(c.should_fetch(1_000, false), "nothing cached");
        assert_eq!(c.usable(1_000), None);
        let c = c.after_fetch(Some((200, Some("max-age=120"), JWKS.as_bytes())), 1_000);
        assert!(c.usable(1_000).is_some());
        assert!(!c.should_fetch(2_000, false), "fresh");
        // A forged kid: one refetch per interval, no more.
        assert!(!c.should_fetch(2_000, true), "fetched 1 s ago");
        assert!(c.should_fetch(1_000 + REFETCH_INTERVAL_MS, true));
        // Expired: refetch; the provider is down, then answers garbage.
        let t = 1_000 + 120_000;
        assert!(c.should_fetch(t, false));
        let c = c.after_fetch(None, t);
        assert!(!c.should_fetch(t + 1, false), "no retry storm");
        let c = c.after_fetch(Some((200, None, b"<html>")), t + REFETCH_INTERVAL_MS);
        let c = c.after_fetch(
            Some((500, None, JWKS.as_bytes())),
            t + 2 * REFETCH_INTERVAL_MS,
        );
        let c = c.after_fetch(
            Some((200, None, br#"{"keys":[]}"#)),
            t + 3 * REFETCH_INTERVAL_MS,
        );
        assert_eq!(
            c.usable(t + 3 * REFETCH_INTERVAL_MS),
            Some(JWKS),
            "served stale"
        );
        assert_eq!(c.usable(t + MAX_STALE_MS), None, "stale for too long");
        // The provider is back.
        let c = c.after_fetch(Some((200, None, JWKS.as_bytes())), t + MAX_STALE_MS);
        assert_eq!(c.expires_at_ms, t + MAX_STALE_MS + DEFAULT_TTL_MS);
        assert!(c.usable(t + MAX_STALE_MS).is_some());
        let back = CachedJwks::from_json(Some(c.to_json().as_bytes()));
        assert_eq!(back.as_ref(), Some(&c));
    }

    #[test]
    fn unknown_kids_refetch_once_per_interval() {
        let c = CachedJwks::default().after_fetch(Some((200, None, JWKS.as_bytes())), 1_000);
        assert!(!c.should_fetch_for(Some("rsa-1"), 2_000));
        assert!(!c.should_fetch_for(None, 2_000));
        assert!(!c.should_fetch_for(Some("forged"), 2_000));
        assert!(c.should_fetch_for(Some("forged"), 1_000 + REFETCH_INTERVAL_MS));
        let mut c = c;
        c.attempting(1_000 + REFETCH_INTERVAL_MS);
        assert!(!c.should_fetch_for(Some("forged"), 1_001 + REFETCH_INTERVAL_MS));
        assert_eq!(check_url(UNSET_URL), Ok(()));
    }

    #[test]
    fn garbage_is_not_a_key_set() {
        assert!(parse(JWKS.as_bytes()).is_some());
        assert!(parse(br#"{"keys":[]}"#).is_none());
        assert!(parse(b"null").is_none());
        assert!(parse(&vec![b' '; MAX_JWKS_BYTES + 1]).is_none());
        assert!(parse(br#"{"keys":[{"kty":"EC","crv":"P-256","x":"***","y":"AA"}]}"#).is_none());
        let set: JwkSet = serde_json::from_str(JWKS).unwrap();
        assert!(has_kid(&set, "rsa-1") && !has_kid(&set, "rsa-404"));
    }
}
