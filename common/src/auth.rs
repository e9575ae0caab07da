//! Caller authentication: API keys and JWT bearer tokens, per route prefix.
//!
//! Every failure collapses into one of three classes (`AuthError`) so a client
//! never learns which check failed; the edge maps them to RFC 6750 responses.

mod jose;
mod verify;

use crate::config_error::ConfigError;
pub use jsonwebtoken::jwk::JwkSet;
pub use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use verify::VerifyKeys;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The realm named in `WWW-Authenticate`.
pub const REALM: &str = "greenlight";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May use the preview override header/cookie.
    Preview,
    /// May call every admin route.
    Admin,
    /// May change the rollout through the admin API (and read it).
    Operator,
    /// May read the rollout through the admin API.
    Viewer,
}

impl Role {
    fn from_name(name: &str) -> Option<Role> {
        match name {
            "preview" | "greenlight:preview" => Some(Role::Preview),
            "admin" | "greenlight:admin" => Some(Role::Admin),
            "operator" | "greenlight:operator" => Some(Role::Operator),
            "viewer" | "greenlight:viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// Whether a route prefix needs credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No credentials → 401.
    Required,
    /// Anonymous callers pass; credentials, when sent, must be valid.
    Optional,
    /// Credentials are ignored.
    Off,
}

impl AuthMode {
    /// Orders modes from the most permissive (`Off`) to `Required`.
    pub fn strictness(self) -> u8 {
        match self {
            AuthMode::Off => 0,
            AuthMode::Optional => 1,
            AuthMode::Required => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    pub prefix: String,
    pub mode: AuthMode,
}

/// An API key as configured: only its SHA-256 is ever stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    pub id: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    #[serde(default)]
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone)]
struct ApiKey {
    id: String,
    digest: [u8; 32],
    roles: Vec<Role>,
}

/// JWT verification settings.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub hs256_secret: Option<Vec<u8>>,
    pub jwks: Option<JwkSet>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_s: u64,
    /// Allow-list: anything else (including `none`) is refused.
    pub algorithms: Vec<Algorithm>,
    /// Claim that lists roles (array of strings or space-separated string);
    /// `scope` is read as well.
    pub roles_claim: String,
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            hs256_secret: None,
            jwks: None,
            issuer: None,
            audience: None,
            leeway_s: 30,
            algorithms: vec![Algorithm::HS256, Algorithm::RS256, Algorithm::ES256],
            roles_claim: "greenlight_roles".to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Longest matching prefix wins; paths that match none are `Required`.
    pub routes: Vec<RoutePolicy>,
    api_keys: Vec<ApiKey>,
    pub jwt: JwtSettings,
    /// The JWKS keys, built on first use (see `VerifyKeys::check_jwks`).
    keys: std::sync::OnceLock<VerifyKeys>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Namespaced stable identity: `k:<key id>` or `s:<jwt sub>`.
    pub id: String,
    pub roles: Vec<Role>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The three outcomes a client can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials where they are required → 401.
    Missing,
    /// Credentials present but not acceptable → 401 `invalid_token`.
    Invalid,
    /// Authenticated but lacking a role → 403 `insufficient_scope`.
    Forbidden,
}

impl AuthError {
    pub fn status(self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Invalid => 401,
            AuthError::Forbidden => 403,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3).
    pub fn www_authenticate(self) -> String {
        match self {
            AuthError::Missing => format!("Bearer realm=\"{REALM}\""),
            AuthError::Invalid => format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
            AuthError::Forbidden => {
                format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\"")
            }
        }
    }

    /// A fixed, generic body: never says which check failed.
    pub fn body(self) -> &'static str {
        match self {
            AuthError::Missing => "{\"error\":\"unauthorized\"}",
            AuthError::Invalid => "{\"error\":\"invalid_token\"}",
            AuthError::Forbidden => "{\"error\":\"forbidden\"}",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::Missing => "credentials required",
            AuthError::Invalid => "invalid credentials",
            AuthError::Forbidden => "not allowed",
        })
    }
}

/// The credential headers of a request, as raw strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub api_key: Option<&'a str>,
    pub authorization: Option<&'a str>,
}

/// SHA-256 of an API key, hex encoded: what goes into the `API_KEYS` config.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Parses `"/public:off,/api:required,/:optional"`.
pub fn parse_routes(spec: &str) -> Result<Vec<RoutePolicy>, ConfigError> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (prefix, mode) = item.rsplit_once(':').ok_or_else(|| {
                ConfigError(format!("route {item:?} must look like /prefix:mode"))
            })?;
            if !prefix.starts_with('/') {
                return Err(ConfigError(format!(
                    "route prefix {prefix:?} must start with /"
                )));
            }
            let mode = match mode.trim() {
                "required" => AuthMode::Required,
                "optional" => AuthMode::Optional,
                "off" => AuthMode::Off,
                other => {
                    return Err(ConfigError(format!(
                        "route mode {other:?} must be required, optional or off"
                    )))
                }
            };
            Ok(RoutePolicy {
                prefix: prefix.to_string(),
                mode,
            })
        })
        .collect()
}

/// Parses an algorithm allow-list such as `"HS256,ES256"`.
pub fn parse_algorithms(spec: &str) -> Result<Vec<Algorithm>, ConfigError> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|a| match a {
            "HS256" => Ok(Algorithm::HS256),
            "RS256" => Ok(Algorithm::RS256),
            "ES256" => Ok(Algorithm::ES256),
            other => Err(ConfigError(format!(
                "JWT algorithm {other:?} is not supported (HS256, RS256, ES256)"
            ))),
        })
        .collect()
}

/// The algorithm and `kid` of a JWT's header, if it passes the JOSE header
/// rules (`jose::check_header`); the signature is not checked.
pub fn jws_header(token: &str) -> Option<(Algorithm, Option<String>)> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let header = jose::check_header(token.split('.').next()?)?;
    Some((header.alg, header.kid))
}

/// Checks a fetched key set (`crate::jwks`): every key greenlight would use
/// decodes and builds, and there is at least one.
pub fn check_jwks(set: &JwkSet) -> Result<(), ConfigError> {
    if VerifyKeys::from_jwks(Some(set))?.is_empty() {
        return Err(ConfigError("JWKS has no RS256 or P-256 signing key".into()));
    }
    Ok(())
}

impl AuthConfig {
    /// This configuration verifying with `jwks` instead of its own key set
    /// (a remote set just fetched, see `crate::jwks`).
    pub fn with_jwks(&self, jwks: JwkSet) -> AuthConfig {
        AuthConfig {
            routes: self.routes.clone(),
            api_keys: self.api_keys.clone(),
            jwt: JwtSettings {
                jwks: Some(jwks),
                ..self.jwt.clone()
            },
            keys: std::sync::OnceLock::new(),
        }
    }

    pub fn new(
        routes: Vec<RoutePolicy>,
        api_keys: Vec<ApiKeyEntry>,
        jwt: JwtSettings,
    ) -> Result<AuthConfig, ConfigError> {
        let api_keys = api_keys
            .into_iter()
            .map(|e| {
                let raw = hex::decode(&e.sha256)
                    .map_err(|_| ConfigError(format!("API key {:?}: sha256 is not hex", e.id)))?;
                let digest: [u8; 32] = raw.try_into().map_err(|_| {
                    ConfigError(format!("API key {:?}: sha256 must be 32 bytes", e.id))
                })?;
                if e.id.is_empty() {
                    return Err(ConfigError("API key with an empty id".into()));
                }
                Ok(ApiKey {
                    id: e.id,
                    digest,
                    roles: e.roles,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if jwt.hs256_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError(
                "JWT HS256 secret must be at least 32 bytes".into(),
            ));
        }
        VerifyKeys::check_jwks(jwt.jwks.as_ref())?;
        let keys = std::sync::OnceLock::new();
        Ok(AuthConfig {
            routes,
            api_keys,
            jwt,
            keys,
        })
    }

    /// The auth mode of `path` read exactly: longest matching prefix,
    /// `Required` if none.
    pub fn mode_for(&self, path: &str) -> AuthMode {
        self.mode_matching(path, false)
    }

    fn mode_matching(&self, path: &str, ignore_case: bool) -> AuthMode {
        self.routes
            .iter()
            .filter(|r| crate::path::starts_with(path, &r.prefix, ignore_case))
            .max_by_key(|r| r.prefix.len())
            .map_or(AuthMode::Required, |r| r.mode)
    }

    /// The auth mode of a normalized path: the strictest [`Self::mode_for`]
    /// of every reading an origin may make of it (`crate::path::readings`),
    /// with prefixes compared exactly and ignoring ASCII case. A path an
    /// origin could take for one under a stricter prefix gets that
    /// prefix's mode.
    pub fn route_mode(&self, path: &str) -> AuthMode {
        let strictest = |a: AuthMode, b: AuthMode| {
            if a.strictness() >= b.strictness() {
                a
            } else {
                b
            }
        };
        // The common case allocates nothing.
        if !crate::path::has_other_readings(path) {
            return strictest(
                self.mode_matching(path, false),
                self.mode_matching(path, true),
            );
        }
        crate::path::readings(path)
            .iter()
            .flat_map(|r| [self.mode_matching(r, false), self.mode_matching(r, true)])
            .max_by_key(|m| m.strictness())
            .unwrap_or(AuthMode::Required)
    }

    /// Authenticates a request to the normalized path `path` (see
    /// `crate::path::normalize`), under [`Self::route_mode`]. `Ok(None)` is
    /// an anonymous caller on a route that allows one.
    pub fn authenticate(
        &self,
        path: &str,
        creds: Credentials<'_>,
        now_s: u64,
    ) -> Result<Option<Principal>, AuthError> {
        self.authenticate_in(self.route_mode(path), creds, now_s)
    }

    /// [`Self::authenticate`] for a path whose [`Self::route_mode`] the
    /// caller already has (it costs the path's readings to work out).
    pub fn authenticate_in(
        &self,
        mode: AuthMode,
        creds: Credentials<'_>,
        now_s: u64,
    ) -> Result<Option<Principal>, AuthError> {
        if mode == AuthMode::Off {
            return Ok(None);
        }
        match self.identify(creds, now_s)? {
            Some(p) => Ok(Some(p)),
            None if mode == AuthMode::Required => Err(AuthError::Missing),
            None => Ok(None),
        }
    }

    /// Verifies whatever credentials are present, regardless of route.
    pub fn identify(
        &self,
        creds: Credentials<'_>,
        now_s: u64,
    ) -> Result<Option<Principal>, AuthError> {
        match (creds.api_key, creds.authorization) {
            (None, None) => Ok(None),
            // Two credentials are ambiguous: refuse rather than pick one.
            (Some(_), Some(_)) => Err(AuthError::Invalid),
            (Some(key), None) => self.verify_api_key(key).map(Some),
            (None, Some(auth)) => {
                let token = bearer_token(auth).ok_or(AuthError::Invalid)?;
                self.verify_jwt(token, now_s).map(Some)
            }
        }
    }

    fn verify_api_key(&self, key: &str) -> Result<Principal, AuthError> {
        if key.is_empty() || key.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid);
        }
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Compare against every entry so timing says nothing about which
        // entry (if any) matched.
        let mut found: Option<&ApiKey> = None;
        for entry in &self.api_keys {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(entry);
            }
        }
        found
            .map(|e| Principal {
                id: format!("k:{}", e.id),
                roles: e.roles.clone(),
            })
            .ok_or(AuthError::Invalid)
    }

    fn verify_jwt(&self, token: &str, now_s: u64) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid);
        }
        let header_segment = token.split('.').next().unwrap_or_default();
        let header = jose::check_header(header_segment).ok_or(AuthError::Invalid)?;
        if !self.jwt.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid);
        }
        // The one HS256 secret has no key id of its own, so any `kid` may
        // accompany it, except one naming a JWKS key: that key is of another
        // family and cannot have made an HMAC (RFC 8725 §3.1).
        if let (Algorithm::HS256, Some(kid)) = (header.alg, header.kid.as_deref()) {
            let names_jwks_key = self.jwt.jwks.as_ref().is_some_and(|set| {
                set.keys
                    .iter()
                    .any(|k| k.common.key_id.as_deref() == Some(kid))
            });
            if names_jwks_key {
                return Err(AuthError::Invalid);
            }
        }
        let claims = verify::verify_signature(
            token,
            header.alg,
            header.kid.as_deref(),
            self.jwt.hs256_secret.as_deref(),
            self.keys.get_or_init(|| {
                // A key that decoded but does not build verifies nothing:
                // its tokens are refused like any other bad token.
                VerifyKeys::from_jwks(self.jwt.jwks.as_ref()).unwrap_or_default()
            }),
        )
        .ok_or(AuthError::Invalid)?;
        if !jose::check_claim_types(&claims) {
            return Err(AuthError::Invalid);
        }
        let number = |name: &str| claims.get(name).and_then(serde_json::Value::as_f64);
        let leeway = self.jwt.leeway_s as f64;
        let now = now_s as f64;
        match number("exp") {
            Some(exp) if now <= exp + leeway => {}
            _ => return Err(AuthError::Invalid),
        }
        if claims.contains_key("nbf") {
            match number("nbf") {
                Some(nbf) if nbf <= now + leeway => {}
                _ => return Err(AuthError::Invalid),
            }
        }
        if let Some(iss) = &self.jwt.issuer {
            if claims.get("iss").and_then(|v| v.as_str()) != Some(iss.as_str()) {
                return Err(AuthError::Invalid);
            }
        }
        if let Some(aud) = &self.jwt.audience {
            let ok = match claims.get("aud") {
                Some(serde_json::Value::String(a)) => a == aud,
                Some(serde_json::Value::Array(list)) => {
                    list.iter().any(|a| a.as_str() == Some(aud.as_str()))
                }
                _ => false,
            };
            if !ok {
                return Err(AuthError::Invalid);
            }
        }
        let sub = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or(AuthError::Invalid)?;
        let mut roles: Vec<Role> = Vec::new();
        let mut add = |name: &str| {
            if let Some(r) = Role::from_name(name) {
                if !roles.contains(&r) {
                    roles.push(r);
                }
            }
        };
        for claim in [self.jwt.roles_claim.as_str(), "scope"] {
            match claims.get(claim) {
                Some(serde_json::Value::String(s)) => s.split_whitespace().for_each(&mut add),
                Some(serde_json::Value::Array(list)) => {
                    list.iter().filter_map(|v| v.as_str()).for_each(&mut add)
                }
                _ => {}
            }
        }
        Ok(Principal {
            id: format!("s:{sub}"),
            roles,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme
/// case-insensitive, RFC 6750 §2.1 token68 syntax).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    let token68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    (!token.is_empty() && token.bytes().all(token68)).then_some(token)
}

#[cfg(test)]
mod tests;
