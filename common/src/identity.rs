//! Who a request belongs to, for stickiness: one identity per user on every
//! route, before and after login, so a user sees one release and not a mix
//! (green assets talking to a blue API).
//!
//! Every identity is an id of the edge's first-party cookie
//! ([`crate::http::STICKY_COOKIE`]), bucketed as `c:<id>`. A credential
//! (API key id, JWT `sub`) maps to the id [`credential_id`] derives from it,
//! and the edge hands that id out as the cookie when the caller has none:
//! a browser that signs in before it loads a public asset keeps the
//! credential's bucket on the public routes too, and a client without a
//! cookie jar gets the same bucket on every request that carries its
//! credential. Which source wins when both are present is the
//! [`IdentityOrder`].

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// Which identity wins when a request carries both the cookie and a
/// credential (`STICKY_IDENTITY`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityOrder {
    /// The cookie, for everyone; a credential only for callers without it
    /// (default). One color per browser on every route, before and after
    /// login. Tradeoff: one account on two browsers may see two colors.
    #[default]
    Cookie,
    /// The credential; the cookie only for callers without one. One color
    /// per account on every device; the edge rewrites the cookie to the
    /// account's id, so the public routes follow. Tradeoff: a browser that
    /// was anonymous may switch color once, at login.
    Credential,
}

impl IdentityOrder {
    pub fn parse(v: &str) -> Option<IdentityOrder> {
        match v.trim().to_ascii_lowercase().as_str() {
            "cookie" => Some(IdentityOrder::Cookie),
            "credential" => Some(IdentityOrder::Credential),
            _ => None,
        }
    }
}

/// Where a request's identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// The edge's cookie the caller sent.
    Cookie,
    /// The verified credential.
    Credential,
    /// Neither: a new id, which the response sets as the cookie.
    Fresh,
}

/// The identity a request is bucketed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyIdentity {
    /// The bucketing key, `c:<id>` whatever the source.
    pub key: String,
    /// An id the response must set as the cookie (the caller has none, or
    /// another one than the order gives).
    pub set_cookie: Option<String>,
    pub source: IdentitySource,
}

/// The cookie id of a credential: 16 hex digits of a hash of the
/// principal's namespaced id. Not a secret and not a proof of anything:
/// like any cookie value it only chooses a bucket.
pub fn credential_id(principal_id: &str) -> String {
    format!("{:016x}", xxh3_64(principal_id.as_bytes()))
}

/// The identity of one request. `cookie_id` is the edge cookie's value
/// when it is well formed, `principal_id` the verified credential's id,
/// `random` fresh bits naming a new user.
pub fn sticky_identity(
    order: IdentityOrder,
    cookie_id: Option<&str>,
    principal_id: Option<&str>,
    random: u64,
) -> StickyIdentity {
    let from_cookie = |id: &str| StickyIdentity {
        key: format!("c:{id}"),
        set_cookie: None,
        source: IdentitySource::Cookie,
    };
    let from_credential = |principal: &str| {
        let id = credential_id(principal);
        StickyIdentity {
            key: format!("c:{id}"),
            set_cookie: (cookie_id != Some(id.as_str())).then(|| id.clone()),
            source: IdentitySource::Credential,
        }
    };
    match (order, cookie_id, principal_id) {
        (IdentityOrder::Cookie, Some(id), _) => from_cookie(id),
        (IdentityOrder::Credential, _, Some(p)) | (IdentityOrder::Cookie, None, Some(p)) => {
            from_credential(p)
        }
        (IdentityOrder::Credential, Some(id), None) => from_cookie(id),
        (_, None, None) => {
            let id = format!("{random:016x}");
            StickyIdentity {
                key: format!("c:{id}"),
                set_cookie: Some(id),
                source: IdentitySource::Fresh,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::bucket;

    /// A browser's session: what it sends on each request (cookie from the
    /// previous answers, credential once logged in), in cookie order.
    fn session(order: IdentityOrder, steps: &[Option<&str>], first_random: u64) -> Vec<String> {
        let mut jar: Option<String> = None;
        let mut keys = Vec::new();
        for (i, principal) in steps.iter().enumerate() {
            let id = sticky_identity(order, jar.as_deref(), *principal, first_random + i as u64);
            if let Some(set) = &id.set_cookie {
                jar = Some(set.clone());
            }
            keys.push(id.key);
        }
        keys
    }

    #[test]
    fn a_browser_keeps_one_identity_across_public_routes_and_login() {
        // Anonymous assets, then login, then API calls, then assets again.
        let steps = [None, None, Some("s:alice"), Some("s:alice"), None];
        let keys = session(IdentityOrder::Cookie, &steps, 7);
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        // Signing in first, then loading assets: the credential's id.
        let steps = [Some("s:bob"), None, Some("s:bob"), None];
        let keys = session(IdentityOrder::Cookie, &steps, 9);
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        assert_eq!(keys[0], format!("c:{}", credential_id("s:bob")));
    }

    #[test]
    fn a_client_without_a_cookie_jar_is_its_credential() {
        let a = sticky_identity(IdentityOrder::Cookie, None, Some("k:app"), 1);
        let b = sticky_identity(IdentityOrder::Cookie, None, Some("k:app"), 2);
        assert_eq!(a.key, b.key);
        assert_eq!(a.source, IdentitySource::Credential);
        // ...and an anonymous one without a jar is new every time.
        let a = sticky_identity(IdentityOrder::Cookie, None, None, 1);
        let b = sticky_identity(IdentityOrder::Cookie, None, None, 2);
        assert_ne!(a.key, b.key);
        assert_eq!(a.set_cookie.as_deref(), Some("0000000000000001"));
    }

    #[test]
    fn credential_order_follows_the_account_and_moves_the_cookie_once() {
        let steps = [None, None, Some("s:carol"), None, Some("s:carol"), None];
        let keys = session(IdentityOrder::Credential, &steps, 3);
        let account = format!("c:{}", credential_id("s:carol"));
        // Anonymous before login, the account's from login on, public too.
        assert_ne!(keys[0], account);
        assert_eq!(keys[1], keys[0]);
        assert!(keys[2..].iter().all(|k| *k == account), "{keys:?}");
        // Two devices of one account: one key.
        let other = session(IdentityOrder::Credential, &[Some("s:carol")], 99);
        assert_eq!(other[0], account);
        // The cookie is only set when it differs.
        let id = credential_id("s:carol");
        let again = sticky_identity(IdentityOrder::Credential, Some(&id), Some("s:carol"), 0);
        assert_eq!(again.set_cookie, None);
    }

    #[test]
    fn cookie_and_credential_ids_bucket_alike() {
        // A credential's id set as the cookie lands in the same bucket
        // as the credential itself, under any salt.
        for salt in ["a", "b", "greenlight"] {
            let by_credential = sticky_identity(IdentityOrder::Cookie, None, Some("s:x"), 0);
            let id = by_credential.set_cookie.clone().unwrap();
            let by_cookie = sticky_identity(IdentityOrder::Cookie, Some(&id), None, 0);
            assert_eq!(
                bucket(salt, &by_credential.key),
                bucket(salt, &by_cookie.key)
            );
        }
    }

    #[test]
    fn orders_parse() {
        assert_eq!(IdentityOrder::parse("Cookie"), Some(IdentityOrder::Cookie));
        assert_eq!(
            IdentityOrder::parse(" credential "),
            Some(IdentityOrder::Credential)
        );
        assert_eq!(IdentityOrder::parse("sub"), None);
    }
}
