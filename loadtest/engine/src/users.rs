//! A simulated user population. Each user has a stable identity — an API
//! key, a JWT signed with a test key, or an anonymous cookie jar that keeps
//! the `greenlight-id` cookie the edge sets — so the edge's sticky routing is
//! exercised the way real traffic exercises it.

use greenlight_common::auth::{hash_api_key, ApiKeyEntry, Role};
use greenlight_common::http::{HEADER_API_KEY, STICKY_COOKIE};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, COOKIE, SET_COOKIE};
use serde::Serialize;
use std::fmt;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersError(pub String);

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsersError {}

/// How JWTs are signed.
#[derive(Clone)]
pub enum JwtKey {
    Hs256(Vec<u8>),
    /// PEM of a P-256 private key (e.g. `tests/fixtures/ec-private.pem`).
    Es256 {
        pem: Vec<u8>,
        kid: Option<String>,
    },
}

/// Claims of the test tokens.
#[derive(Clone, Debug, Default)]
pub struct JwtClaims {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Lifetime from `now_s`.
    pub ttl_s: u64,
    /// Written to the `greenlight_roles` claim.
    pub roles: Vec<String>,
}

/// What kind of identity each user carries.
#[derive(Clone)]
pub enum IdentityKind {
    /// No credentials; the edge's `greenlight-id` cookie is kept per user.
    Anonymous,
    /// `x-api-key: <prefix><n>`.
    ApiKeys { prefix: String },
    /// `authorization: Bearer <jwt>` with `sub = user-<n>`.
    Jwt { key: JwtKey, claims: JwtClaims },
}

/// One simulated user.
#[derive(Debug)]
pub struct User {
    pub id: String,
    credential: Option<(&'static str, HeaderValue)>,
    /// The sticky cookie the edge gave this user (anonymous users only).
    cookie: Mutex<Option<HeaderValue>>,
    keep_cookie: bool,
}

impl User {
    /// Adds this user's credential and cookie to a request's headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some((name, value)) = &self.credential {
            headers.insert(*name, value.clone());
        }
        if self.keep_cookie {
            if let Ok(c) = self.cookie.lock() {
                if let Some(v) = c.as_ref() {
                    headers.insert(COOKIE, v.clone());
                }
            }
        }
    }

    /// Keeps the sticky cookie from a response's `Set-Cookie` headers.
    pub fn observe(&self, headers: &HeaderMap) {
        if !self.keep_cookie {
            return;
        }
        for v in headers.get_all(SET_COOKIE) {
            let Ok(text) = v.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or("").trim();
            if let Some((name, value)) = pair.split_once('=') {
                if name.trim() == STICKY_COOKIE && !value.trim().is_empty() {
                    if let (Ok(hv), Ok(mut slot)) =
                        (HeaderValue::from_str(pair), self.cookie.lock())
                    {
                        *slot = Some(hv);
                    }
                }
            }
        }
    }

    /// The sticky cookie value, once the edge has set one.
    pub fn sticky_id(&self) -> Option<String> {
        let c = self.cookie.lock().ok()?;
        let v = c.as_ref()?.to_str().ok()?;
        v.split_once('=').map(|(_, v)| v.to_string())
    }
}

/// The population: N users with distinct identities.
#[derive(Debug)]
pub struct SimulatedUsers {
    users: Vec<User>,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: String,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    greenlight_roles: &'a [String],
}

/// Signs one test JWT for `sub`.
pub fn sign_jwt(
    key: &JwtKey,
    claims: &JwtClaims,
    sub: &str,
    now_s: u64,
) -> Result<String, UsersError> {
    let body = Claims {
        sub: sub.to_string(),
        iat: now_s,
        exp: now_s + claims.ttl_s.max(1),
        iss: claims.issuer.as_deref(),
        aud: claims.audience.as_deref(),
        greenlight_roles: &claims.roles,
    };
    let (header, enc) = match key {
        JwtKey::Hs256(secret) => {
            if secret.is_empty() {
                return Err(UsersError("the HS256 secret is empty".into()));
            }
            (
                Header::new(Algorithm::HS256),
                EncodingKey::from_secret(secret),
            )
        }
        JwtKey::Es256 { pem, kid } => {
            let enc = EncodingKey::from_ec_pem(pem).map_err(|e| {
                UsersError(format!("the ES256 key is not a P-256 private key PEM: {e}"))
            })?;
            let mut h = Header::new(Algorithm::ES256);
            h.kid = kid.clone();
            (h, enc)
        }
    };
    jsonwebtoken::encode(&header, &body, &enc)
        .map_err(|e| UsersError(format!("cannot sign a test JWT: {e}")))
}

impl SimulatedUsers {
    /// `n` users of `kind`; JWTs are issued at `now_s`.
    pub fn new(kind: &IdentityKind, n: usize, now_s: u64) -> Result<SimulatedUsers, UsersError> {
        if n == 0 {
            return Err(UsersError("--users must be at least 1".into()));
        }
        if n > 10_000_000 {
            return Err(UsersError(format!(
                "--users {n} is above the 10 000 000 limit"
            )));
        }
        let mut users = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("user-{i}");
            let (credential, keep_cookie) = match kind {
                IdentityKind::Anonymous => (None, true),
                IdentityKind::ApiKeys { prefix } => {
                    let v = HeaderValue::from_str(&format!("{prefix}{i}")).map_err(|_| {
                        UsersError(format!(
                            "API key prefix {prefix:?} is not a valid header value"
                        ))
                    })?;
                    (Some((HEADER_API_KEY, v)), false)
                }
                IdentityKind::Jwt { key, claims } => {
                    let token = sign_jwt(key, claims, &id, now_s)?;
                    let v = HeaderValue::from_str(&format!("Bearer {token}"))
                        .map_err(|_| UsersError("signed JWT is not a valid header value".into()))?;
                    (Some((AUTHORIZATION.as_str(), v)), false)
                }
            };
            users.push(User {
                id,
                credential,
                cookie: Mutex::new(None),
                keep_cookie,
            });
        }
        Ok(SimulatedUsers { users })
    }

    pub fn anonymous(n: usize) -> Result<SimulatedUsers, UsersError> {
        SimulatedUsers::new(&IdentityKind::Anonymous, n, 0)
    }

    /// Anonymous first-time visitors: no cookie is ever kept, so the edge
    /// gives every request a new identity and a new sticky bucket. A
    /// candidate at weight w then gets w of the requests (not w of a fixed
    /// set of users, which at 1 % of 200 is two users or none).
    pub fn fresh_anonymous() -> SimulatedUsers {
        SimulatedUsers {
            users: vec![User {
                id: "fresh".into(),
                credential: None,
                cookie: Mutex::new(None),
                keep_cookie: false,
            }],
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// The user for request `seq`: a fixed pseudo-random draw (SplitMix64),
    /// so users interleave the way independent clients do.
    pub fn pick(&self, seq: u64) -> &User {
        let i = (splitmix64(seq) % self.users.len() as u64) as usize;
        &self.users[i]
    }
}

/// The `API_KEYS` entries an edge needs to accept keys `<prefix>0..n`.
pub fn api_key_entries(prefix: &str, n: usize, roles: &[Role]) -> Vec<ApiKeyEntry> {
    (0..n)
        .map(|i| ApiKeyEntry {
            id: format!("user-{i}"),
            sha256: hash_api_key(&format!("{prefix}{i}")),
            roles: roles.to_vec(),
        })
        .collect()
}

pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    const EC_PRIVATE: &str = "../../tests/fixtures/ec-private.pem";
    const EC_PUBLIC: &str = "../../tests/fixtures/ec-public.pem";

    #[test]
    fn api_keys_are_distinct_and_match_entries() {
        let p = SimulatedUsers::new(
            &IdentityKind::ApiKeys {
                prefix: "k-".into(),
            },
            3,
            0,
        )
        .unwrap();
        let mut h = HeaderMap::new();
        p.users()[2].apply(&mut h);
        assert_eq!(h.get(HEADER_API_KEY).unwrap(), "k-2");
        let entries = api_key_entries("k-", 3, &[Role::Preview]);
        assert_eq!(entries[2].sha256, hash_api_key("k-2"));
        assert_eq!(entries[2].roles, vec![Role::Preview]);
    }

    #[test]
    fn anonymous_users_keep_the_sticky_cookie_only() {
        let p = SimulatedUsers::anonymous(2).unwrap();
        let u = &p.users()[0];
        let mut resp = HeaderMap::new();
        resp.append(SET_COOKIE, HeaderValue::from_static("other=1; Path=/"));
        resp.append(
            SET_COOKIE,
            HeaderValue::from_static("greenlight-id=abc123; Path=/; HttpOnly"),
        );
        u.observe(&resp);
        assert_eq!(u.sticky_id().as_deref(), Some("abc123"));
        let mut h = HeaderMap::new();
        u.apply(&mut h);
        assert_eq!(h.get(COOKIE).unwrap(), "greenlight-id=abc123");
        let mut h2 = HeaderMap::new();
        p.users()[1].apply(&mut h2);
        assert!(h2.is_empty());
    }

    #[test]
    fn signs_hs256_and_es256_tokens_that_verify() {
        let claims = JwtClaims {
            issuer: Some("greenlight-tests".into()),
            audience: Some("edge".into()),
            ttl_s: 3600,
            roles: vec!["preview".into()],
        };
        let now = jsonwebtoken::get_current_timestamp();
        let t = sign_jwt(&JwtKey::Hs256(b"s3cret".to_vec()), &claims, "user-7", now).unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["edge"]);
        v.set_issuer(&["greenlight-tests"]);
        let d = decode::<serde_json::Value>(&t, &DecodingKey::from_secret(b"s3cret"), &v).unwrap();
        assert_eq!(d.claims["sub"], "user-7");
        assert_eq!(d.claims["greenlight_roles"][0], "preview");

        let pem = std::fs::read(EC_PRIVATE).unwrap();
        let key = JwtKey::Es256 {
            pem,
            kid: Some("ec-1".into()),
        };
        let p = SimulatedUsers::new(&IdentityKind::Jwt { key, claims }, 2, now).unwrap();
        let mut h = HeaderMap::new();
        p.users()[1].apply(&mut h);
        let bearer = h.get(AUTHORIZATION).unwrap().to_str().unwrap();
        let token = bearer.strip_prefix("Bearer ").unwrap();
        let public = std::fs::read(EC_PUBLIC).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["edge"]);
        let d = decode::<serde_json::Value>(token, &DecodingKey::from_ec_pem(&public).unwrap(), &v)
            .unwrap();
        assert_eq!(
            (d.claims["sub"].as_str(), d.header.kid.as_deref()),
            (Some("user-1"), Some("ec-1"))
        );

        let bad = JwtKey::Es256 {
            pem: b"not a pem".to_vec(),
            kid: None,
        };
        assert!(sign_jwt(&bad, &JwtClaims::default(), "x", now)
            .unwrap_err()
            .0
            .contains("PEM"));
        assert!(SimulatedUsers::anonymous(0).is_err());
    }

    #[test]
    fn picks_cover_the_population() {
        let p = SimulatedUsers::anonymous(10).unwrap();
        let mut seen = std::collections::HashSet::new();
        for s in 0..200 {
            seen.insert(p.pick(s).id.clone());
        }
        assert_eq!(seen.len(), 10);
    }
}
