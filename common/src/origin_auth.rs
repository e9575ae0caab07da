//! Origin authentication: the edge signs every request it forwards, so an
//! origin can refuse traffic that bypassed the edge, and replays outside a
//! short window.
//!
//! Signature: hex HMAC-SHA256 over `v1\n<METHOD>\n<path?query>\n<unix s>\n<nonce>`
//! with a secret shared by the edge (`ORIGIN_SIGNING_SECRET`) and the origins.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt;

pub const HEADER_TIMESTAMP: &str = "x-greenlight-timestamp";
pub const HEADER_NONCE: &str = "x-greenlight-nonce";
pub const HEADER_SIGNATURE: &str = "x-greenlight-signature";
/// The headers this module owns; an edge drops client-sent copies.
pub const HEADERS: [&str; 3] = [HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE];
/// How far a request's timestamp may be from the origin's clock.
pub const DEFAULT_WINDOW_S: u64 = 30;

/// `None` never happens for HMAC (any key length is accepted); the Option
/// keeps request paths free of panics all the same.
fn mac(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    ts: u64,
    nonce: &str,
) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    for part in ["v1", method, path_and_query, &ts.to_string(), nonce] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    Some(mac)
}

/// The three headers to add to a forwarded request.
pub fn sign(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    now_s: u64,
    nonce: &str,
) -> [(String, String); 3] {
    let sig = mac(secret, method, path_and_query, now_s, nonce)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    [
        (HEADER_TIMESTAMP.to_string(), now_s.to_string()),
        (HEADER_NONCE.to_string(), nonce.to_string()),
        (HEADER_SIGNATURE.to_string(), sig),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginAuthError {
    /// A signing header is absent or malformed.
    Missing,
    /// The signature does not match (wrong secret, or a changed method/path).
    BadSignature,
    /// The timestamp is outside the window.
    Stale,
    /// This nonce was already seen inside the window.
    Replayed,
}

impl fmt::Display for OriginAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OriginAuthError::Missing => "missing edge signature",
            OriginAuthError::BadSignature => "bad edge signature",
            OriginAuthError::Stale => "edge signature outside the time window",
            OriginAuthError::Replayed => "replayed edge signature",
        })
    }
}

/// Remembers nonces for one window so a captured request cannot be replayed.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashMap<String, u64>,
}

impl ReplayGuard {
    fn check_and_insert(&mut self, nonce: &str, ts: u64, now_s: u64, window_s: u64) -> bool {
        // Forget what can no longer pass the time check anyway.
        self.seen
            .retain(|_, t| now_s.saturating_sub(*t) <= window_s);
        if self.seen.contains_key(nonce) {
            return false;
        }
        self.seen.insert(nonce.to_string(), ts);
        true
    }
}

/// Verifies a request's signing headers (`header` looks one up by name).
pub fn verify<'a>(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    header: impl Fn(&str) -> Option<&'a str>,
    now_s: u64,
    window_s: u64,
    guard: &mut ReplayGuard,
) -> Result<(), OriginAuthError> {
    let ts: u64 = header(HEADER_TIMESTAMP)
        .and_then(|v| v.trim().parse().ok())
        .ok_or(OriginAuthError::Missing)?;
    let nonce = header(HEADER_NONCE)
        .filter(|n| (8..=64).contains(&n.len()))
        .ok_or(OriginAuthError::Missing)?;
    let sig = header(HEADER_SIGNATURE)
        .and_then(|s| hex::decode(s.trim()).ok())
        .ok_or(OriginAuthError::Missing)?;
    mac(secret, method, path_and_query, ts, nonce)
        .ok_or(OriginAuthError::BadSignature)?
        .verify_slice(&sig)
        .map_err(|_| OriginAuthError::BadSignature)?;
    if ts.abs_diff(now_s) > window_s {
        return Err(OriginAuthError::Stale);
    }
    if !guard.check_and_insert(nonce, ts, now_s, window_s) {
        return Err(OriginAuthError::Replayed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"origin-secret";
    const NOW: u64 = 1_800_000_000;

    fn check(
        h: &[(String, String)],
        method: &str,
        path: &str,
        now: u64,
        g: &mut ReplayGuard,
    ) -> Result<(), OriginAuthError> {
        let lookup = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        verify(SECRET, method, path, lookup, now, DEFAULT_WINDOW_S, g)
    }

    #[test]
    fn signed_requests_verify_once() {
        let h = sign(SECRET, "GET", "/a?b=1", NOW, "nonce-0001").to_vec();
        let mut g = ReplayGuard::default();
        assert_eq!(check(&h, "GET", "/a?b=1", NOW + 5, &mut g), Ok(()));
        assert_eq!(
            check(&h, "GET", "/a?b=1", NOW + 6, &mut g),
            Err(OriginAuthError::Replayed)
        );
    }

    #[test]
    fn tampering_staleness_and_absence_are_refused() {
        let h = sign(SECRET, "GET", "/a", NOW, "nonce-0002").to_vec();
        let mut g = ReplayGuard::default();
        assert_eq!(
            check(&h, "POST", "/a", NOW, &mut g),
            Err(OriginAuthError::BadSignature)
        );
        assert_eq!(
            check(&h, "GET", "/b", NOW, &mut g),
            Err(OriginAuthError::BadSignature)
        );
        assert_eq!(
            check(&h, "GET", "/a", NOW + 31, &mut g),
            Err(OriginAuthError::Stale)
        );
        assert_eq!(
            check(&h, "GET", "/a", NOW - 31, &mut g),
            Err(OriginAuthError::Stale)
        );
        let other = sign(b"other-secret", "GET", "/a", NOW, "nonce-0002").to_vec();
        assert_eq!(
            check(&other, "GET", "/a", NOW, &mut g),
            Err(OriginAuthError::BadSignature)
        );
        assert_eq!(
            check(&[], "GET", "/a", NOW, &mut g),
            Err(OriginAuthError::Missing)
        );
        let mut bad = h.clone();
        bad[2].1 = "zz".into();
        assert_eq!(
            check(&bad, "GET", "/a", NOW, &mut g),
            Err(OriginAuthError::Missing)
        );
        // None of the refused attempts used up the nonce.
        assert_eq!(check(&h, "GET", "/a", NOW, &mut g), Ok(()));
    }

    #[test]
    fn the_guard_forgets_after_the_window() {
        let mut g = ReplayGuard::default();
        for i in 0..1_000u64 {
            let h = sign(SECRET, "GET", "/", NOW + i, &format!("nonce-{i:05}")).to_vec();
            assert_eq!(check(&h, "GET", "/", NOW + i, &mut g), Ok(()));
        }
        assert!(g.seen.len() <= 32, "guard kept {} nonces", g.seen.len());
    }
}
