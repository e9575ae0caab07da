//! The platform-neutral request pipeline of an edge function.
//!
//! An adapter (Workers, Spin) does only I/O: it reads configuration and the
//! state document, turns the platform request into a [`RequestHead`], asks
//! [`plan`] what to do, and carries the resulting [`EdgePlan`] out.

use crate::admin::{self, AdminOutcome, AdminRoute, Problem};
use crate::auth::{
    parse_algorithms, parse_routes, ApiKeyEntry, AuthConfig, AuthError, ConfigError, Credentials,
    JwtSettings, Role,
};
use crate::color::Color;
use crate::decide::{decide, RequestFacts, RouteDecision};
use crate::http::{
    connection_tokens, cookie, is_hop_by_hop, ADMIN_PREFIX, HEADER_API_KEY, HEADER_COLOR,
    HEADER_DEGRADED, HEADER_EPOCH, HEADER_REASON, STICKY_COOKIE,
};
use crate::origin_auth;
use crate::state::RolloutState;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Default lifetime of the in-isolate state cache. Low, because a promote or
/// rollback must be seen quickly; the KV read it saves is still the common case.
pub const DEFAULT_STATE_CACHE_TTL_MS: u64 = 1_000;
/// Header the edge adds to forwarded requests naming the authenticated caller.
pub const HEADER_PRINCIPAL: &str = "x-greenlight-principal";

/// Every variable [`EdgeConfig::from_lookup`] reads (upper case). Platforms
/// whose variables must be declared up front (Spin's `spin.toml`) or fetched
/// one by one (asynchronously) use this list.
pub const CONFIG_VARIABLES: &[&str] = &[
    "BLUE_ORIGIN",
    "GREEN_ORIGIN",
    "API_KEYS",
    "JWT_HS256_SECRET",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWKS",
    "JWT_ALGORITHMS",
    "JWT_LEEWAY_S",
    "AUTH_ROUTES",
    "STATE_CACHE_TTL_MS",
    "ADMIN_TOKEN",
    "ROLLOUT_SALT",
    "ORIGIN_SIGNING_SECRET",
];
/// The variables in [`CONFIG_VARIABLES`] that hold secrets.
pub const SECRET_VARIABLES: &[&str] = &["ADMIN_TOKEN", "JWT_HS256_SECRET", "ORIGIN_SIGNING_SECRET"];
/// The variables without which [`EdgeConfig::from_lookup`] fails.
pub const REQUIRED_VARIABLES: &[&str] = &["BLUE_ORIGIN", "GREEN_ORIGIN"];

/// Everything an edge is configured with (from wrangler vars and secrets, or
/// Spin variables).
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub blue_origin: String,
    pub green_origin: String,
    pub auth: AuthConfig,
    admin_token_digest: Option<[u8; 32]>,
    pub state_cache_ttl_ms: u64,
    /// Salt of the initial state, used until an admin writes one.
    pub default_salt: String,
    /// When set, every forwarded request is signed (see `origin_auth`).
    origin_signing_secret: Option<Vec<u8>>,
}

impl EdgeConfig {
    /// Reads the configuration through `get` (variable name → value).
    /// Names are upper case; the Spin adapter lower-cases them.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<EdgeConfig, ConfigError> {
        let nonempty = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let origin = |name: &str| -> Result<String, ConfigError> {
            let v = nonempty(name).ok_or_else(|| ConfigError(format!("{name} is not set")))?;
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "{name} must be an http(s) URL, got {v:?}"
                )));
            }
            Ok(v.trim_end_matches('/').to_string())
        };
        let api_keys: Vec<ApiKeyEntry> = match nonempty("API_KEYS") {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| ConfigError(format!("API_KEYS is not a JSON list of keys: {e}")))?,
            None => Vec::new(),
        };
        let mut jwt = JwtSettings {
            hs256_secret: nonempty("JWT_HS256_SECRET").map(String::into_bytes),
            issuer: nonempty("JWT_ISSUER"),
            audience: nonempty("JWT_AUDIENCE"),
            ..JwtSettings::default()
        };
        if let Some(jwks) = nonempty("JWKS") {
            jwt.jwks = Some(
                serde_json::from_str(&jwks)
                    .map_err(|e| ConfigError(format!("JWKS is not a JWKS document: {e}")))?,
            );
        }
        if let Some(algs) = nonempty("JWT_ALGORITHMS") {
            jwt.algorithms = parse_algorithms(&algs)?;
        }
        if let Some(leeway) = nonempty("JWT_LEEWAY_S") {
            jwt.leeway_s = leeway
                .parse()
                .map_err(|_| ConfigError(format!("JWT_LEEWAY_S {leeway:?} is not a number")))?;
        }
        let routes = parse_routes(&nonempty("AUTH_ROUTES").unwrap_or_else(|| "/:required".into()))?;
        let state_cache_ttl_ms = match nonempty("STATE_CACHE_TTL_MS") {
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError(format!("STATE_CACHE_TTL_MS {v:?} is not a number")))?,
            None => DEFAULT_STATE_CACHE_TTL_MS,
        };
        Ok(EdgeConfig {
            blue_origin: origin("BLUE_ORIGIN")?,
            green_origin: origin("GREEN_ORIGIN")?,
            auth: AuthConfig::new(routes, api_keys, jwt)?,
            admin_token_digest: nonempty("ADMIN_TOKEN")
                .map(|t| Sha256::digest(t.as_bytes()).into()),
            state_cache_ttl_ms,
            default_salt: nonempty("ROLLOUT_SALT").unwrap_or_else(|| "greenlight".into()),
            origin_signing_secret: nonempty("ORIGIN_SIGNING_SECRET").map(String::into_bytes),
        })
    }

    pub fn origin(&self, color: Color) -> &str {
        match color {
            Color::Blue => &self.blue_origin,
            Color::Green => &self.green_origin,
        }
    }

    /// Authorises an admin call: the admin bearer secret, or a credential
    /// with the `admin` role. Returns the identity to record.
    pub fn authorize_admin(&self, creds: Credentials<'_>, now_s: u64) -> Result<String, AuthError> {
        if let (Some(digest), Some(auth), None) =
            (&self.admin_token_digest, creds.authorization, creds.api_key)
        {
            if let Some(token) = crate::auth::bearer_token(auth) {
                let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                if bool::from(given.ct_eq(digest)) {
                    return Ok("admin-token".to_string());
                }
                // Not the admin secret: it may still be a JWT with the role.
            }
        }
        match self.auth.identify(creds, now_s)? {
            None => Err(AuthError::Missing),
            Some(p) if p.has(Role::Admin) => Ok(p.id),
            Some(_) => Err(AuthError::Forbidden),
        }
    }
}

/// The parts of a request the pipeline looks at.
#[derive(Debug, Clone)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Header names lower-case; repeated headers joined with ", ".
    pub headers: &'a [(String, String)],
}

impl RequestHead<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn credentials(&self) -> Credentials<'_> {
        Credentials {
            api_key: self.header(HEADER_API_KEY),
            authorization: self.header("authorization"),
        }
    }
}

/// A complete response the edge sends without calling an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn auth_error(e: AuthError) -> Reply {
        Reply {
            status: e.status(),
            headers: vec![
                ("www-authenticate".into(), e.www_authenticate()),
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: e.body().to_string(),
        }
    }

    pub fn from_admin(o: &AdminOutcome) -> Reply {
        Reply {
            status: o.status,
            headers: vec![
                ("content-type".into(), o.content_type.into()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: o.body.clone(),
        }
    }

    pub fn problem(p: Problem) -> Reply {
        Reply::from_admin(&AdminOutcome::problem(p))
    }

    /// 502: the edge is misconfigured (a variable is missing or invalid).
    pub fn misconfigured(e: &ConfigError) -> Reply {
        Reply::problem(Problem::new(
            502,
            "edge-misconfigured",
            "edge misconfigured",
            e.0.clone(),
        ))
    }

    /// 502: the chosen origin could not be reached or failed mid-response.
    pub fn origin_unreachable(detail: impl Into<String>) -> Reply {
        Reply::problem(Problem::new(
            502,
            "origin-unreachable",
            "origin unreachable",
            detail,
        ))
    }

    /// 503: the state store could not be read or written for an admin call.
    pub fn store_unavailable(detail: impl Into<String>) -> Reply {
        Reply::problem(Problem::new(
            503,
            "store-unavailable",
            "state store unavailable",
            detail,
        ))
    }
}

/// A request to forward to an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub decision: RouteDecision,
    /// Absolute URL at the chosen origin.
    pub url: String,
    /// Request headers to send (hop-by-hop and edge-only ones removed).
    pub request_headers: Vec<(String, String)>,
    /// Headers to add to the origin's response.
    pub response_headers: Vec<(String, String)>,
}

/// An admin call that passed authorisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCall {
    pub route: AdminRoute,
    pub identity: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgePlan {
    Reply(Reply),
    Forward(Forward),
    Admin(AdminCall),
}

/// The rollout state an edge works from, and whether it had to fall back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedState {
    pub state: RolloutState,
    pub degraded: bool,
}

/// Turns the stored document (if any) into the state to serve from. An
/// unreadable document never fails a request: the last good state (or the
/// initial one) is used and the edge says it is degraded.
pub fn load_state(
    document: Option<&str>,
    last_good: Option<&RolloutState>,
    default_salt: &str,
) -> LoadedState {
    match document.map(RolloutState::from_json) {
        None => LoadedState {
            state: RolloutState::initial(default_salt),
            degraded: false,
        },
        Some(Ok(state)) => LoadedState {
            state,
            degraded: false,
        },
        Some(Err(_)) => fallback_state(last_good, default_salt),
    }
}

/// The state to serve when the document cannot be read at all (the store
/// failed): the last good state, or the initial one, flagged degraded.
pub fn fallback_state(last_good: Option<&RolloutState>, default_salt: &str) -> LoadedState {
    LoadedState {
        state: last_good
            .cloned()
            .unwrap_or_else(|| RolloutState::initial(default_salt)),
        degraded: true,
    }
}

/// Decides what to do with one request.
///
/// `random` must be fresh per request; it draws the weighted split for
/// callers without identity and names new anonymous users.
pub fn plan(
    cfg: &EdgeConfig,
    loaded: &LoadedState,
    req: &RequestHead<'_>,
    now_ms: u64,
    random: u64,
) -> EdgePlan {
    let now_s = now_ms / 1_000;
    if let Some(rest) = req.path.strip_prefix(ADMIN_PREFIX) {
        return match cfg.authorize_admin(req.credentials(), now_s) {
            Err(e) => EdgePlan::Reply(Reply::auth_error(e)),
            Ok(identity) => match AdminRoute::parse(rest) {
                Some(route) => EdgePlan::Admin(AdminCall { route, identity }),
                None => EdgePlan::Reply(Reply::problem(Problem::new(
                    404,
                    "not-found",
                    "no such admin route",
                    "admin routes: state, weight, promote, rollback, abort",
                ))),
            },
        };
    }
    let principal = match cfg.auth.authenticate(req.path, req.credentials(), now_s) {
        Ok(p) => p,
        Err(e) => return EdgePlan::Reply(Reply::auth_error(e)),
    };
    let state = &loaded.state;

    // Identity for stickiness: the principal, else the anonymous cookie, else
    // a new anonymous id that the response will set.
    let cookie_header = req.header("cookie");
    let anon = cookie(cookie_header, STICKY_COOKIE).filter(|v| valid_anon_id(v));
    let (sticky_key, set_cookie) = match (&principal, anon) {
        (Some(p), _) => (p.id.clone(), None),
        (None, Some(id)) => (format!("c:{id}"), None),
        (None, None) => {
            let fresh_id = format!("{random:016x}");
            (format!("c:{fresh_id}"), Some(fresh_id))
        }
    };
    let preview = req
        .header(&state.preview.header)
        .or_else(|| {
            state
                .preview
                .cookie
                .as_deref()
                .and_then(|name| cookie(cookie_header, name))
        })
        .and_then(|v| v.parse::<Color>().ok());
    let facts = RequestFacts {
        sticky_key: Some(&sticky_key),
        preview,
        may_preview: principal.as_ref().is_some_and(|p| p.has(Role::Preview)),
        roll: (random >> 32) as u32,
    };
    let decision = match decide(&facts, state) {
        Ok(d) => d,
        Err(_) => return EdgePlan::Reply(Reply::auth_error(AuthError::Forbidden)),
    };

    let tokens = connection_tokens(req.header("connection"));
    let mut request_headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| {
            !is_hop_by_hop(k, &tokens)
                && !k.eq_ignore_ascii_case(HEADER_API_KEY)
                && !k.eq_ignore_ascii_case(HEADER_PRINCIPAL)
                && !origin_auth::HEADERS
                    .iter()
                    .any(|h| k.eq_ignore_ascii_case(h))
        })
        .cloned()
        .collect();
    if let Some(p) = &principal {
        request_headers.push((HEADER_PRINCIPAL.into(), p.id.clone()));
    }
    let path_and_query = match req.query {
        Some(q) if !q.is_empty() => format!("{}?{}", req.path, q),
        _ => req.path.to_string(),
    };
    if let Some(secret) = &cfg.origin_signing_secret {
        // A nonce distinct from the anonymous id drawn from the same bits.
        let nonce = format!("{:016x}", random.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15);
        request_headers.extend(origin_auth::sign(
            secret,
            req.method,
            &path_and_query,
            now_s,
            &nonce,
        ));
    }
    let mut response_headers = vec![
        (HEADER_COLOR.to_string(), decision.color.to_string()),
        (HEADER_EPOCH.to_string(), decision.epoch.to_string()),
        (HEADER_REASON.to_string(), decision.reason.to_string()),
    ];
    if loaded.degraded {
        response_headers.push((HEADER_DEGRADED.to_string(), "1".to_string()));
    }
    if let Some(id) = set_cookie {
        response_headers.push((
            "set-cookie".to_string(),
            format!("{STICKY_COOKIE}={id}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax"),
        ));
    }
    let url = format!("{}{}", cfg.origin(decision.color), path_and_query);
    EdgePlan::Forward(Forward {
        decision,
        url,
        request_headers,
        response_headers,
    })
}

/// Whether an origin response header is passed on to the client: not when
/// it is hop-by-hop (`connection_tokens` from the response's own
/// `Connection` header), nor when the edge sets it itself
/// ([`Forward::response_headers`], except `set-cookie`, which is added to the
/// origin's own cookies). The adapter then appends `fwd.response_headers`.
pub fn keep_origin_response_header(
    name: &str,
    connection_tokens: &[String],
    fwd: &Forward,
) -> bool {
    !is_hop_by_hop(name, connection_tokens)
        && !fwd
            .response_headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name) && !k.eq_ignore_ascii_case("set-cookie"))
}

/// Runs an authorised admin call. The adapter persists `new_state` (if any)
/// before replying.
pub fn run_admin(
    call: &AdminCall,
    method: &str,
    body: &[u8],
    loaded: &LoadedState,
    now_ms: u64,
) -> AdminOutcome {
    admin::handle(
        call.route,
        method,
        body,
        &call.identity,
        &loaded.state,
        loaded.degraded,
        now_ms,
    )
}

/// Shape check for the anonymous id cookie, so junk never reaches the hash.
/// A client can still choose its own id (and so its bucket); that only picks
/// its own color, which the preview rules exist to control, so the
/// candidate must never be trusted to be unreachable by anonymous users.
fn valid_anon_id(v: &str) -> bool {
    (8..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests;
