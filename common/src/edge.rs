//! The platform-neutral request pipeline of an edge function.
//!
//! An adapter (Workers, Spin) does only I/O: it reads configuration and the
//! state document, turns the platform request into a [`RequestHead`], asks
//! [`plan`] what to do, and carries the resulting [`EdgePlan`] out.

use crate::admin::{self, AdminOutcome, AdminRoute, Problem};
use crate::admin_guard::AdminFailures;
use crate::auth::{
    parse_algorithms, parse_routes, ApiKeyEntry, AuthConfig, AuthError, AuthMode, ConfigError,
    Credentials, JwtSettings, Role,
};
use crate::color::Color;
use crate::decide::{decide, RequestFacts, RouteDecision, RouteReason};
use crate::failover::{live_colors, OriginPolicy, Outcome, MAX_REPLAY_BODY};
use crate::health::{HealthPolicy, HealthRecord};
use crate::http::{
    connection_tokens, cookie, field_name_starts_with, header_safe, is_hop_by_hop,
    is_response_hop_by_hop, is_websocket_upgrade, same_field_name, valid_host, ADMIN_NAMESPACE,
    ADMIN_PREFIX, EDGE_HEADER_PREFIX, FORWARDING_HEADERS, HEADER_API_KEY, HEADER_COLOR,
    HEADER_DEGRADED, HEADER_EPOCH, HEADER_REASON, METHOD_OVERRIDE_HEADERS, STICKY_COOKIE,
    UNTRUSTED_HEADERS,
};
use crate::identity::{sticky_identity, IdentityOrder, IdentitySource};
use crate::model::{self, ModelError, ModelRoutes, HEADER_MODEL, MAX_MODEL_BODY};
use crate::origin_auth;
use crate::origin_headers::OriginHeaders;
use crate::path::{self, EscapedSlashes, PathPolicy};
use crate::ratelimit::{RateLimit, RetryAfter};
use crate::state::RolloutState;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
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
    "JWKS_URL",
    "JWKS_ORIGIN",
    "JWT_ALGORITHMS",
    "JWT_LEEWAY_S",
    "AUTH_ROUTES",
    "STATE_CACHE_TTL_MS",
    "ADMIN_TOKEN",
    "ROLLOUT_SALT",
    "ORIGIN_SIGNING_SECRET",
    "ORIGIN_TIMEOUT_MS",
    "FAILOVER_DEADLINE_MS",
    "RETRY_METHODS",
    "RETRY_AFTER_S",
    "HEALTH_FAILURE_THRESHOLD",
    "HEALTH_WINDOW_MS",
    "RATE_LIMIT_PER_S",
    "RATE_LIMIT_BURST",
    "PATH_ESCAPED_SLASHES",
    "MERGE_SLASHES",
    "ALLOW_METHOD_OVERRIDE",
    "TRUSTED_CLIENT_IP_HEADER",
    "ORIGIN_HOST",
    "REWRITE_LOCATION",
    "BLUE_ORIGIN_HEADERS",
    "GREEN_ORIGIN_HEADERS",
    "MODEL_ROUTES",
    "BLUE_MODEL",
    "GREEN_MODEL",
    "STICKY_IDENTITY",
];
/// The variables in [`CONFIG_VARIABLES`] that hold secrets.
pub const SECRET_VARIABLES: &[&str] = &[
    "ADMIN_TOKEN",
    "JWT_HS256_SECRET",
    "ORIGIN_SIGNING_SECRET",
    "BLUE_ORIGIN_HEADERS",
    "GREEN_ORIGIN_HEADERS",
];
/// The variables without which [`EdgeConfig::from_lookup`] fails.
pub const REQUIRED_VARIABLES: &[&str] = &["BLUE_ORIGIN", "GREEN_ORIGIN"];

/// Everything an edge is configured with (from wrangler vars and secrets, or
/// Spin variables).
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Where the JWKS is fetched from (`crate::jwks`), instead of `JWKS`.
    pub jwks_url: Option<String>,
    pub blue_origin: String,
    pub green_origin: String,
    pub auth: AuthConfig,
    admin_token_digest: Option<[u8; 32]>,
    pub state_cache_ttl_ms: u64,
    /// Salt of the initial state, used until an admin writes one.
    pub default_salt: String,
    /// When set, every forwarded request is signed (see `origin_auth`).
    origin_signing_secret: Option<Arc<[u8]>>,
    /// Timeouts and retries towards the origins.
    pub origins: OriginPolicy,
    /// When the color under test counts as unhealthy.
    pub health: HealthPolicy,
    /// Per-caller limit; `None` = no limit.
    pub rate_limit: Option<RateLimit>,
    /// How request paths are normalized before every decision.
    pub paths: PathPolicy,
    /// Whether method-override headers (`x-http-method-override` and kin)
    /// reach the origin; off by default.
    pub allow_method_override: bool,
    /// A header (lower case) that a proxy in front of the edge sets to the
    /// caller's address; used instead of the platform's address when it
    /// holds one. `None`: the platform's address.
    pub trusted_client_ip_header: Option<String>,
    /// The `Host` each color's origin is sent (`ORIGIN_HOST`).
    pub origin_host: OriginHost,
    /// Whether `location` headers that point at an origin are rewritten to
    /// the host and scheme the client used (`REWRITE_LOCATION`, off).
    pub rewrite_location: bool,
    /// Headers (upstream credentials) set on requests to each color's
    /// origin (`BLUE_ORIGIN_HEADERS`, `GREEN_ORIGIN_HEADERS`).
    pub origin_headers: OriginHeaders,
    /// Routes whose JSON body's `model` is set per color (`MODEL_ROUTES`).
    pub models: Option<Arc<ModelRoutes>>,
    /// Which identity a user is bucketed by when a request carries both the
    /// cookie and a credential (`STICKY_IDENTITY`: `cookie` or `credential`).
    pub identity_order: IdentityOrder,
}

/// Which `Host` an origin receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostPolicy {
    /// The origin URL's own host (what the runtime sends by itself).
    #[default]
    Origin,
    /// The `Host` the client sent to the edge.
    Client,
}

/// [`HostPolicy`] per color, from `ORIGIN_HOST`: `origin` or `client` for
/// both, or per color (`blue:origin,green:client`; an unnamed color keeps
/// `origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OriginHost {
    pub blue: HostPolicy,
    pub green: HostPolicy,
}

impl OriginHost {
    pub fn parse(v: &str) -> Result<OriginHost, ConfigError> {
        let policy = |p: &str| match p.trim().to_ascii_lowercase().as_str() {
            "origin" => Ok(HostPolicy::Origin),
            "client" => Ok(HostPolicy::Client),
            other => Err(ConfigError(format!(
                "ORIGIN_HOST: {other:?} is not origin or client"
            ))),
        };
        if !v.contains(':') {
            let p = policy(v)?;
            return Ok(OriginHost { blue: p, green: p });
        }
        let mut out = OriginHost::default();
        for part in v.split(',').filter(|p| !p.trim().is_empty()) {
            let (color, p) = part
                .split_once(':')
                .ok_or_else(|| ConfigError(format!("ORIGIN_HOST: {part:?} is not color:policy")))?;
            match color.trim().parse::<Color>() {
                Ok(Color::Blue) => out.blue = policy(p)?,
                Ok(Color::Green) => out.green = policy(p)?,
                Err(_) => {
                    return Err(ConfigError(format!(
                        "ORIGIN_HOST: {:?} is not blue or green",
                        color.trim()
                    )))
                }
            }
        }
        Ok(out)
    }

    pub fn of(&self, color: Color) -> HostPolicy {
        match color {
            Color::Blue => self.blue,
            Color::Green => self.green,
        }
    }
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
        let jwks_url = nonempty("JWKS_URL");
        // JWKS_ORIGIN is the outbound host Spin's manifest allows for the
        // fetch (Spin allows origins, not URLs); its default, the reserved
        // `.invalid` name (RFC 6761), means none. When set, the URL must be
        // under it, or Spin would refuse every fetch.
        let jwks_origin = nonempty("JWKS_ORIGIN").filter(|o| o != crate::jwks::UNSET_URL);
        if let (Some(url), Some(origin)) = (&jwks_url, &jwks_origin) {
            let origin = origin.trim_end_matches('/');
            if !url
                .strip_prefix(origin)
                .is_some_and(|rest| rest.starts_with('/'))
            {
                return Err(ConfigError(format!(
                    "JWKS_URL {url:?} is not under JWKS_ORIGIN {origin:?}"
                )));
            }
        }
        if let Some(url) = &jwks_url {
            crate::jwks::check_url(url)?;
            if nonempty("JWKS").is_some() {
                return Err(ConfigError(
                    "set JWKS (inline keys) or JWKS_URL (fetched keys), not both".into(),
                ));
            }
        }
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
        let number = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match nonempty(name) {
                Some(v) => v
                    .parse()
                    .map_err(|_| ConfigError(format!("{name} {v:?} is not a whole number"))),
                None => Ok(default),
            }
        };
        let state_cache_ttl_ms = number("STATE_CACHE_TTL_MS", DEFAULT_STATE_CACHE_TTL_MS)?;
        let defaults = OriginPolicy::default();
        let origins = OriginPolicy {
            timeout_ms: number("ORIGIN_TIMEOUT_MS", defaults.timeout_ms)?.max(1),
            deadline_ms: number("FAILOVER_DEADLINE_MS", defaults.deadline_ms)?,
            retry_methods: match nonempty("RETRY_METHODS") {
                Some(list) => OriginPolicy::parse_methods(&list)?,
                None => defaults.retry_methods,
            },
            retry_after_s: number("RETRY_AFTER_S", defaults.retry_after_s)?,
        };
        let health_defaults = HealthPolicy::default();
        let health = HealthPolicy {
            threshold: u32::try_from(number(
                "HEALTH_FAILURE_THRESHOLD",
                u64::from(health_defaults.threshold),
            )?)
            .map_err(|_| ConfigError("HEALTH_FAILURE_THRESHOLD is too large".into()))?
            .max(1),
            window_ms: number("HEALTH_WINDOW_MS", health_defaults.window_ms)?,
        };
        let rate_limit = RateLimit::from_vars(
            nonempty("RATE_LIMIT_PER_S").as_deref(),
            nonempty("RATE_LIMIT_BURST").as_deref(),
        )?;
        let flag = |name: &str| -> Result<bool, ConfigError> {
            match nonempty(name) {
                None => Ok(false),
                Some(v) => parse_flag(&v)
                    .ok_or_else(|| ConfigError(format!("{name} {v:?} is not true or false"))),
            }
        };
        let paths = PathPolicy {
            escaped_slashes: match nonempty("PATH_ESCAPED_SLASHES") {
                None => EscapedSlashes::default(),
                Some(v) => EscapedSlashes::parse(&v).ok_or_else(|| {
                    ConfigError(format!(
                        "PATH_ESCAPED_SLASHES {v:?} must be reject, decode or keep"
                    ))
                })?,
            },
            merge_slashes: flag("MERGE_SLASHES")?,
        };
        let allow_method_override = flag("ALLOW_METHOD_OVERRIDE")?;
        let trusted_client_ip_header = match nonempty("TRUSTED_CLIENT_IP_HEADER") {
            None => None,
            Some(name) if is_token(&name) => Some(name.to_ascii_lowercase()),
            Some(name) => {
                return Err(ConfigError(format!(
                    "TRUSTED_CLIENT_IP_HEADER {name:?} is not a header name"
                )))
            }
        };
        let origin_host = match nonempty("ORIGIN_HOST") {
            Some(v) => OriginHost::parse(&v)?,
            None => OriginHost::default(),
        };
        let rewrite_location = flag("REWRITE_LOCATION")?;
        // Not trimmed as a whole: one header a line.
        let origin_headers = OriginHeaders::parse(
            get("BLUE_ORIGIN_HEADERS").as_deref(),
            get("GREEN_ORIGIN_HEADERS").as_deref(),
        )?;
        let models = ModelRoutes::parse(
            nonempty("MODEL_ROUTES").as_deref(),
            nonempty("BLUE_MODEL").as_deref(),
            nonempty("GREEN_MODEL").as_deref(),
        )?
        .map(Arc::new);
        let identity_order = match nonempty("STICKY_IDENTITY") {
            None => IdentityOrder::default(),
            Some(v) => IdentityOrder::parse(&v).ok_or_else(|| {
                ConfigError(format!(
                    "STICKY_IDENTITY {v:?} must be cookie (one color per browser) or \
                     credential (one color per account)"
                ))
            })?,
        };
        Ok(EdgeConfig {
            blue_origin: origin("BLUE_ORIGIN")?,
            green_origin: origin("GREEN_ORIGIN")?,
            auth: AuthConfig::new(routes, api_keys, jwt)?,
            admin_token_digest: nonempty("ADMIN_TOKEN")
                .map(|t| Sha256::digest(t.as_bytes()).into()),
            state_cache_ttl_ms,
            default_salt: nonempty("ROLLOUT_SALT").unwrap_or_else(|| "greenlight".into()),
            origin_signing_secret: nonempty("ORIGIN_SIGNING_SECRET")
                .map(|s| Arc::from(s.into_bytes())),
            jwks_url,
            origins,
            health,
            rate_limit,
            paths,
            allow_method_override,
            trusted_client_ip_header,
            origin_host,
            rewrite_location,
            origin_headers,
            models,
            identity_order,
        })
    }

    /// Refuses what `platform` cannot do. Both runtimes set `Host` from the
    /// URL they connect to (workerd ignores a `Host` given to `fetch`;
    /// `wasi:http` forbids the field and Spin derives it from the
    /// authority), so `ORIGIN_HOST=client` cannot be honoured: rather than
    /// send the origin's host while configured otherwise, the edge refuses
    /// to start. The client's host reaches the origin in
    /// `x-forwarded-host` and `forwarded: host=` either way.
    pub fn check_platform(&self, platform: &str) -> Result<(), ConfigError> {
        for color in [Color::Blue, Color::Green] {
            if self.origin_host.of(color) == HostPolicy::Client {
                return Err(ConfigError(format!(
                    "ORIGIN_HOST: {platform} cannot send the client's Host to the {color} \
                     origin (the runtime sets Host from the origin URL); the origin gets \
                     the client's host in x-forwarded-host and forwarded instead"
                )));
            }
        }
        Ok(())
    }

    /// This configuration verifying JWTs with the remote key set `document`
    /// (`crate::jwks::CachedJwks::usable`); without one, tokens that need
    /// a JWKS key are refused.
    pub fn with_remote_jwks(&self, document: Option<&str>) -> EdgeConfig {
        let set = document
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(crate::auth::JwkSet { keys: Vec::new() });
        EdgeConfig {
            auth: self.auth.with_jwks(set),
            ..self.clone()
        }
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
    /// The caller's address as the platform reports it (not a header the
    /// client chose), used to rate-limit anonymous callers and sent to the
    /// origin in `x-forwarded-for` / `forwarded`.
    pub client_addr: Option<&'a str>,
    /// The scheme of the request URL as the platform saw it (`http`,
    /// `https`), sent to the origin in `x-forwarded-proto` / `forwarded`;
    /// `None` when the platform does not say (neither is then sent).
    pub scheme: Option<&'a str>,
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
    /// The body does not say which or why: configuration errors quote
    /// values (origin addresses among them); the adapter logs `e`.
    pub fn misconfigured(_e: &ConfigError) -> Reply {
        Reply::problem(Problem::new(
            502,
            "edge-misconfigured",
            "edge misconfigured",
            "the edge's configuration is invalid; the platform's logs say why",
        ))
    }

    /// 501: the request asks to become a WebSocket and the platform cannot
    /// pass one through (Spin: `wasi:http` 0.2 has no upgrade).
    pub fn websocket_unsupported(platform: &str) -> Reply {
        Reply::problem(Problem::new(
            501,
            "websocket-unsupported",
            "WebSockets are not supported by this edge",
            format!("{platform} cannot pass a WebSocket upgrade through to the origin"),
        ))
    }

    /// 502: the chosen origin failed (no answer, a timeout or a 5xx) and
    /// the request may not be retried, or failed after its headers arrived.
    pub fn origin_failed(detail: impl Into<String>) -> Reply {
        Reply::problem(Problem::new(502, "origin-failed", "origin failed", detail))
    }

    /// 503: no live origin answered; the client may try again later.
    pub fn no_live_origin(detail: impl Into<String>, retry_after_s: u64) -> Reply {
        let mut r = Reply::problem(Problem::new(
            503,
            "no-live-origin",
            "no origin available",
            detail,
        ));
        r.headers
            .push(("retry-after".into(), retry_after_s.to_string()));
        r
    }

    /// 429: the caller is over its rate limit. The body is fixed: it names
    /// neither the limit nor the key it was counted under.
    pub fn rate_limited(wait: RetryAfter) -> Reply {
        let mut r = Reply::problem(Problem::new(
            429,
            "rate-limited",
            "too many requests",
            "slow down and retry after the time in Retry-After",
        ));
        r.headers
            .push(("retry-after".into(), wait.seconds.to_string()));
        r
    }

    /// 400: the request path is refused (see [`crate::path`]); it never
    /// reaches an origin.
    pub fn bad_path(e: path::PathError) -> Reply {
        Reply::problem(Problem::new(
            400,
            "bad-path",
            "path not accepted",
            e.detail(),
        ))
    }

    /// 400: a model route's body that the edge cannot rewrite (see
    /// [`crate::model`]); no origin sees it.
    pub fn bad_model_request(e: &ModelError) -> Reply {
        Reply::problem(Problem::new(
            400,
            "bad-model-request",
            "request body not accepted on a model route",
            e.to_string(),
        ))
    }

    /// 400: the client's request body ended before its announced length,
    /// broke off, or stopped arriving. The answer mostly goes nowhere (the
    /// client is gone); what matters is what does not happen: nothing is
    /// forwarded, retried or counted against an origin.
    pub fn incomplete_body() -> Reply {
        Reply::problem(Problem::new(
            400,
            "incomplete-body",
            "request body incomplete",
            "the request body ended before its announced length or stopped arriving; \
             nothing was sent to an origin",
        ))
    }

    /// 400: the request's headers could not be written to the origin (the
    /// runtime refused them); no origin saw the request, and no origin is
    /// counted as failing for it.
    pub fn headers_not_forwardable(detail: impl Into<String>) -> Reply {
        Reply::problem(Problem::new(
            400,
            "headers-not-forwardable",
            "request headers cannot be forwarded",
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
    /// Where the request goes if this attempt fails: the other live color
    /// and its URL. Only for methods that may be retried.
    pub fallback: Option<(Color, String)>,
    /// Whether the method may be retried at all: a failure is then a 503
    /// ("no live origin") rather than a 502.
    pub retryable: bool,
    /// Time this attempt may wait for response headers.
    pub timeout_ms: u64,
    /// Time left for the whole request, retry included, when this attempt starts.
    pub deadline_ms: u64,
    pub retry_after_s: u64,
    /// Key to count this caller's requests under, when a rate limit is set.
    pub rate_key: Option<String>,
    /// The request asks to become a WebSocket (`Upgrade: websocket` is
    /// forwarded); the adapter passes the socket through or refuses.
    pub websocket: bool,
    /// The response goes to one caller only: the edge sets its identity
    /// cookie, so `Cache-Control` is made `private` (see
    /// [`private_cache_control`]).
    pub private: bool,
    /// `location` headers that start with one of these origin URLs get the
    /// client's `scheme://host` instead (`REWRITE_LOCATION`).
    pub location_rewrite: Option<LocationRewrite>,
    /// Upstream credentials of both colors: a retry on the other color
    /// swaps one set for the other.
    pub origin_headers: OriginHeaders,
    /// The models per color when the request body's `model` is set per
    /// color ([`crate::model`]); see [`Forward::model_body`].
    pub models: Option<Arc<ModelRoutes>>,
    /// How attempts are signed for their origin (`ORIGIN_SIGNING_SECRET`).
    pub signing: Option<Arc<Signing>>,
}

/// What a forwarded request is signed with ([`crate::origin_auth`]), kept
/// so that a retry is signed for the other color's origin: the origin's
/// URL is part of the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Signing {
    secret: Arc<[u8]>,
    method: String,
    created: u64,
    nonce: String,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("method", &self.method)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Signing {
    /// The signature fields of an attempt at `url` whose other headers are
    /// `headers` (the principal among them, when there is one).
    fn headers(&self, url: &str, headers: &[(String, String)]) -> [(String, String); 2] {
        let principal = headers
            .iter()
            .find(|(k, _)| k == HEADER_PRINCIPAL)
            .map(|(_, v)| v.as_str());
        origin_auth::sign(
            &self.secret,
            &self.method,
            url,
            principal,
            self.created,
            &self.nonce,
        )
    }
}

/// Which `location` values are rewritten and to what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationRewrite {
    /// The configured origin URLs (`scheme://authority[/base]`).
    pub origins: Vec<String>,
    /// `scheme://host` of the edge as the client addressed it.
    pub edge: String,
}

impl LocationRewrite {
    /// The value with an origin's URL prefix replaced by the edge's, or
    /// `None` when it does not point at an origin (relative, elsewhere).
    /// Scheme and host compare ignoring case, and a default port equals
    /// no port.
    pub fn apply(&self, location: &str) -> Option<String> {
        let loc = location.trim();
        for origin in &self.origins {
            if let Some(rest) = strip_origin(loc, origin) {
                // `rest` is empty or starts with `/`, `?` or `#`.
                let slash = if rest.starts_with('/') { "" } else { "/" };
                return Some(format!("{}{slash}{rest}", self.edge));
            }
        }
        None
    }
}

/// What follows `origin` at the start of `url`, when `url` starts with it
/// (scheme and authority ignoring case and default ports) at a boundary.
fn strip_origin<'a>(url: &'a str, origin: &str) -> Option<&'a str> {
    let (o_scheme, o_rest) = origin.split_once("://")?;
    let (u_scheme, u_rest) = url.split_once("://")?;
    if !o_scheme.eq_ignore_ascii_case(u_scheme) {
        return None;
    }
    let split = |s: &str| s.find(['/', '?', '#']).unwrap_or(s.len());
    let (o_auth, o_path) = o_rest.split_at(split(o_rest));
    let (u_auth, u_tail) = u_rest.split_at(split(u_rest));
    let default_port = if o_scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let bare = |a: &str| {
        a.strip_suffix(default_port)
            .unwrap_or(a)
            .to_ascii_lowercase()
    };
    if bare(o_auth) != bare(u_auth) {
        return None;
    }
    let rest = u_tail.strip_prefix(o_path)?;
    (o_path.is_empty() || rest.is_empty() || rest.starts_with(['/', '?', '#'])).then_some(rest)
}

/// `Cache-Control` for a response that carries the edge's identity cookie:
/// `private` (a shared cache must not give one caller's cookie to others),
/// keeping the origin's other directives except those that allow shared
/// caching (`public`, `s-maxage`); an origin's `no-store` already forbids
/// storing and is kept as it is. `None`: the origin sent none.
pub fn private_cache_control(origin: Option<&str>) -> String {
    let Some(v) = origin.filter(|v| !v.trim().is_empty()) else {
        return "private".into();
    };
    let directives: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let name = |d: &str| {
        d.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    if directives.iter().any(|d| name(d) == "no-store") {
        return v.to_string();
    }
    let mut out = vec!["private"];
    out.extend(
        directives
            .into_iter()
            .filter(|d| !matches!(name(d).as_str(), "public" | "s-maxage" | "private")),
    );
    out.join(", ")
}

/// What the adapter does after an attempt at an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Pass the origin's response on.
    Deliver,
    /// Try again with this forward (the other color); its `deadline_ms` is
    /// the time left.
    Retry(Box<Forward>),
    /// Answer with this instead of the origin's response.
    Reply(Reply),
}

impl Forward {
    /// Decides what follows `outcome`, `elapsed_ms` after this attempt started.
    pub fn after_attempt(&self, outcome: &Outcome, elapsed_ms: u64) -> Next {
        if let Outcome::Answered(status @ 100..=199) = outcome {
            // An interim answer taken for the final one (workerd's fetch
            // resolves with an origin's `103 Early Hints`): it cannot be
            // delivered, and it is no failure of the origin's either.
            return Next::Reply(Reply::origin_failed(format!(
                "{} origin sent an interim {status} answer, which this platform \
                 cannot pass on",
                self.decision.color
            )));
        }
        if !outcome.failed() {
            return Next::Deliver;
        }
        let what = outcome.describe(self.decision.color);
        let left_ms = self.deadline_ms.saturating_sub(elapsed_ms);
        if let (Some(retry), true) = (self.retry(left_ms), left_ms > 0) {
            return Next::Retry(Box::new(retry));
        }
        if !self.retryable {
            Next::Reply(Reply::origin_failed(format!(
                "{what}; requests with this method are not retried"
            )))
        } else {
            Next::Reply(Reply::no_live_origin(
                format!("{what}; no other live origin to try"),
                self.retry_after_s,
            ))
        }
    }

    /// The same request aimed at the fallback color, with no fallback of its own.
    fn retry(&self, left_ms: u64) -> Option<Forward> {
        let (color, url) = self.fallback.clone()?;
        let decision = RouteDecision {
            color,
            epoch: self.decision.epoch,
            reason: RouteReason::Failover,
        };
        let response_headers = self
            .response_headers
            .iter()
            .map(|(k, v)| match k.as_str() {
                HEADER_COLOR => (k.clone(), color.to_string()),
                HEADER_REASON => (k.clone(), RouteReason::Failover.to_string()),
                HEADER_MODEL => (k.clone(), self.model_of(color).unwrap_or_default().into()),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        let mut request_headers =
            self.origin_headers
                .switch(&self.request_headers, self.decision.color, color);
        if let Some(signing) = &self.signing {
            // Signed for the other origin: its URL is part of the signature.
            request_headers.retain(|(k, _)| !origin_auth::HEADERS.contains(&k.as_str()));
            request_headers.extend(signing.headers(&url, &request_headers));
        }
        Some(Forward {
            decision,
            url,
            request_headers,
            response_headers,
            fallback: None,
            retryable: self.retryable,
            timeout_ms: self.timeout_ms.min(left_ms),
            deadline_ms: left_ms,
            retry_after_s: self.retry_after_s,
            rate_key: self.rate_key.clone(),
            websocket: self.websocket,
            private: self.private,
            location_rewrite: self.location_rewrite.clone(),
            origin_headers: self.origin_headers.clone(),
            models: self.models.clone(),
            signing: self.signing.clone(),
        })
    }

    fn model_of(&self, color: Color) -> Option<&str> {
        self.models.as_ref().map(|m| m.of(color))
    }

    /// The model this attempt's body is sent with, on a model route.
    pub fn model(&self) -> Option<&str> {
        self.model_of(self.decision.color)
    }

    /// The body to send this attempt ([`BodyPlan::Rewrite`]): the client's
    /// `body` (read up to [`MAX_MODEL_BODY`] + 1 bytes) with `model` set
    /// to this color's model, or the `400` to answer instead.
    pub fn model_body(&self, body: &[u8]) -> Result<Vec<u8>, Reply> {
        let model = self.model().unwrap_or_default();
        model::rewrite(body, model).map_err(|e| Reply::bad_model_request(&e))
    }

    /// Whether delivering the origin's answer depends on its headers
    /// (`Cache-Control` to make private, `location` to rewrite); otherwise
    /// a fixed change, known before the answer, delivers it.
    pub fn needs_origin_headers(&self) -> bool {
        self.private || self.location_rewrite.is_some()
    }

    /// The value the client gets for origin response header `name`
    /// (already kept by [`keep_origin_response_header`]), when the edge
    /// changes it.
    pub fn rewrite_origin_header(&self, name: &str, value: &str) -> Option<String> {
        if self.private && name.eq_ignore_ascii_case("cache-control") {
            return Some(private_cache_control(Some(value)));
        }
        if name.eq_ignore_ascii_case("location") {
            return self.location_rewrite.as_ref()?.apply(value);
        }
        None
    }

    /// The headers the edge adds after the origin's: its own
    /// ([`Forward::response_headers`]), and `cache-control: private` for a
    /// private answer whose origin sent no `Cache-Control`.
    pub fn added_response_headers(
        &self,
        origin_sent_cache_control: bool,
    ) -> impl Iterator<Item = (&str, &str)> + '_ {
        let private =
            (self.private && !origin_sent_cache_control).then_some(("cache-control", "private"));
        self.response_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(private)
    }

    /// The whole header list the client gets for an origin answer with
    /// headers `origin` (names as the platform reports them).
    pub fn client_response_headers(&self, origin: &[(String, String)]) -> Vec<(String, String)> {
        let connection = origin
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("connection"))
            .map(|(_, v)| v.as_str());
        let tokens = connection_tokens(connection);
        let mut cache_control = false;
        let mut out: Vec<(String, String)> = Vec::with_capacity(origin.len() + 4);
        for (k, v) in origin {
            if !keep_origin_response_header(k, &tokens, self) {
                continue;
            }
            cache_control |= k.eq_ignore_ascii_case("cache-control");
            let value = self
                .rewrite_origin_header(k, v)
                .unwrap_or_else(|| v.clone());
            out.push((k.clone(), value));
        }
        out.extend(
            self.added_response_headers(cache_control)
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        out
    }

    /// Decides how the adapter sends the request body, from its framing:
    /// nothing to send; kept in memory so a retry can send it again (known
    /// to be at most [`MAX_REPLAY_BODY`]); or streamed once, in which case
    /// the retry is dropped, since the body cannot be sent twice.
    pub fn plan_body(&mut self, content_length: Option<&str>, chunked: bool) -> BodyPlan {
        let length = content_length.map(|v| v.trim().parse::<u64>().ok());
        let empty = !chunked && matches!(length, None | Some(Some(0)));
        if empty {
            // Nothing to set a model in: passed on as it is, and the
            // answer names no model.
            if self.models.take().is_some() {
                self.response_headers.retain(|(k, _)| k != HEADER_MODEL);
            }
            return BodyPlan::Empty;
        }
        if self.models.is_some() {
            // Read whole (and refused when over the limit) to be
            // rewritten; kept in memory, so a retry can send it again.
            return BodyPlan::Rewrite;
        }
        if self.fallback.is_none() {
            return BodyPlan::Stream;
        }
        match length {
            Some(Some(n)) if !chunked && n <= MAX_REPLAY_BODY => BodyPlan::Buffer,
            _ => {
                self.fallback = None;
                self.retryable = false;
                BodyPlan::Stream
            }
        }
    }
}

/// Whether a body the edge read whole before forwarding it (up to `limit`
/// bytes: [`BodyPlan::Buffer`], [`BodyPlan::Rewrite`]) is complete: it
/// holds its announced `content-length`, or `limit` bytes when it
/// announced more. A shorter one ended early, which is the client's
/// failure ([`Reply::incomplete_body`]), never the origin's.
pub fn body_complete(content_length: Option<&str>, read: usize, limit: usize) -> bool {
    match content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) => read as u64 >= n.min(limit as u64),
        None => true,
    }
}

/// How a forwarded request's body is sent (see [`Forward::plan_body`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    Empty,
    Buffer,
    Stream,
    /// Read up to [`MAX_MODEL_BODY`] + 1 bytes and send
    /// [`Forward::model_body`] of them (each attempt its color's model).
    Rewrite,
}

/// How much of the body a [`BodyPlan::Rewrite`] reads: one byte over the
/// limit tells a body that is too large.
pub const REWRITE_READ_LIMIT: u64 = MAX_MODEL_BODY + 1;

/// The health record with one more failure of `color` counted, for the
/// adapter to store under [`crate::health::HEALTH_KEY`].
pub fn record_failure(
    cfg: &EdgeConfig,
    stored: Option<&str>,
    epoch: u64,
    color: Color,
    outcome: &Outcome,
    now_ms: u64,
) -> HealthRecord {
    count_failure(
        cfg,
        HealthRecord::from_json(stored),
        epoch,
        color,
        outcome,
        now_ms,
    )
}

/// [`record_failure`] on a record already parsed (an instance's own).
pub fn count_failure(
    cfg: &EdgeConfig,
    record: Option<HealthRecord>,
    epoch: u64,
    color: Color,
    outcome: &Outcome,
    now_ms: u64,
) -> HealthRecord {
    crate::health::record_failure(
        record,
        epoch,
        color,
        &outcome.describe(color),
        now_ms,
        cfg.health.window_ms,
    )
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

/// The state to serve when the stored document is unreadable and the
/// instance has no last good state in memory: the backup copy under
/// [`crate::http::LAST_GOOD_KEY`] if it parses, else the initial state;
/// flagged degraded either way.
pub fn fallback_from_backup(backup: Option<&str>, default_salt: &str) -> LoadedState {
    LoadedState {
        state: backup
            .and_then(|b| RolloutState::from_json(b).ok())
            .unwrap_or_else(|| RolloutState::initial(default_salt)),
        degraded: true,
    }
}

/// Whether a backup copy ([`crate::http::LAST_GOOD_KEY`]) holding
/// `backup` is replaced by a committed document of `epoch`: when it is
/// missing, unreadable or older. Changes committed back to back by two
/// instances may write their backups in either order; the backup must
/// never go back to an older epoch.
pub fn replaces_backup(backup: Option<&str>, epoch: u64) -> bool {
    match backup.map(RolloutState::from_json) {
        Some(Ok(held)) => held.epoch < epoch,
        _ => true,
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
    // Every decision below, and the origin, see this one form of the path.
    let path = match path::normalize(req.path, cfg.paths) {
        Ok(p) => p,
        Err(e) => return EdgePlan::Reply(Reply::bad_path(e)),
    };
    if path::in_namespace(&path, ADMIN_NAMESPACE) {
        return match cfg.authorize_admin(req.credentials(), now_s) {
            Err(e) => EdgePlan::Reply(Reply::auth_error(e)),
            Ok(identity) => match path.strip_prefix(ADMIN_PREFIX).and_then(AdminRoute::parse) {
                Some(route) => EdgePlan::Admin(AdminCall { route, identity }),
                None => EdgePlan::Reply(Reply::problem(Problem::new(
                    404,
                    "not-found",
                    "no such admin route",
                    "admin routes: state, weight, promote, rollback, abort, isolate (lower case)",
                ))),
            },
        };
    }
    let state = &loaded.state;
    let cookie_header = req.header("cookie");
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
    let cookie_id = cookie(cookie_header, STICKY_COOKIE).filter(|v| valid_anon_id(v));
    // Worked out once: on a path with other readings it costs each of them.
    let mode = cfg.auth.route_mode(&path);
    let public_route = mode == AuthMode::Off;
    let principal = if public_route {
        // A public route needs no credential, so a bad one is not an error;
        // a good one is checked only where it matters: a preview asked for
        // (the role decides), or a caller without the cookie (the
        // credential is its identity). Everyone else costs no verification.
        if preview.is_some() || cookie_id.is_none() {
            cfg.auth.identify(req.credentials(), now_s).ok().flatten()
        } else {
            None
        }
    } else {
        match cfg.auth.authenticate_in(mode, req.credentials(), now_s) {
            Ok(p) => p,
            Err(e) => return EdgePlan::Reply(Reply::auth_error(e)),
        }
    };
    let may_preview = principal.as_ref().is_some_and(|p| p.has(Role::Preview));
    // On a public route a preview from a caller who cannot be checked is
    // ignored (normal routing): a 403 there would lock previewers out of the
    // public pages, and honouring it would let anyone choose the candidate.
    let preview = preview.filter(|_| !(public_route && state.preview.require_role && !may_preview));

    // One identity per user on every route (see `identity`).
    let identity = sticky_identity(
        cfg.identity_order,
        cookie_id,
        principal.as_ref().map(|p| p.id.as_str()),
        random,
    );
    let sticky_key = identity.key;
    // A credential's id goes into the cookie only while it decides a color
    // (a canary): outside one, API clients would get a cookie, and a
    // private `Cache-Control`, on every answer for nothing.
    let set_cookie = identity.set_cookie.filter(|_| {
        identity.source != IdentitySource::Credential
            || state.phase() == crate::rollout::Phase::Canary
    });
    let facts = RequestFacts {
        sticky_key: Some(&sticky_key),
        preview,
        may_preview,
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
                && forwards_client_header(cfg, k)
                && !cfg.origin_headers.drops_client_header(k)
        })
        .cloned()
        .collect();
    let websocket = is_websocket_upgrade(req.method, req.header("upgrade"));
    if websocket {
        request_headers.push(("upgrade".into(), "websocket".into()));
    }
    let caller = caller_ip(cfg, req);
    let scheme = req.scheme.filter(|s| matches!(*s, "http" | "https"));
    let client_host = req.header("host").map(str::trim).filter(|h| valid_host(h));
    request_headers.extend(forwarding_headers(caller, scheme, client_host));
    if let Some(p) = &principal {
        // A JWT `sub` is whatever its issuer signed: line feeds, carriage
        // returns and non-ASCII are encoded, never written as they are.
        request_headers.push((HEADER_PRINCIPAL.into(), header_safe(&p.id).into_owned()));
    }
    let models = cfg.models.as_ref().filter(|m| m.matches(&path)).cloned();
    let path_and_query = match req.query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.into_owned(),
    };
    request_headers.extend(cfg.origin_headers.of(decision.color).iter().cloned());
    let signing = cfg.origin_signing_secret.as_ref().map(|secret| {
        Arc::new(Signing {
            secret: secret.clone(),
            method: req.method.to_string(),
            created: now_s,
            // A nonce distinct from the anonymous id drawn from the same bits.
            nonce: format!("{:016x}", random.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15),
        })
    });
    let mut response_headers = vec![
        (HEADER_COLOR.to_string(), decision.color.to_string()),
        (HEADER_EPOCH.to_string(), decision.epoch.to_string()),
        (HEADER_REASON.to_string(), decision.reason.to_string()),
    ];
    if loaded.degraded {
        response_headers.push((HEADER_DEGRADED.to_string(), "1".to_string()));
    }
    if let Some(m) = &cfg.models {
        if models.is_some() {
            response_headers.push((HEADER_MODEL.to_string(), m.of(decision.color).to_string()));
        }
    }
    let vary = vary_for(
        &decision,
        principal.as_ref().map(|p| p.id.as_str()),
        state,
        preview.is_some() && req.header(&state.preview.header).is_none(),
    );
    response_headers.push(("vary".to_string(), vary));
    let private = set_cookie.is_some();
    if let Some(id) = set_cookie {
        // Over HTTPS the browser must never send it back in clear text.
        let secure = if scheme == Some("https") {
            "; Secure"
        } else {
            ""
        };
        response_headers.push((
            "set-cookie".to_string(),
            format!(
                "{STICKY_COOKIE}={id}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax{secure}"
            ),
        ));
    }
    let location_rewrite = match (cfg.rewrite_location, scheme, client_host) {
        (true, Some(scheme), Some(host)) => Some(LocationRewrite {
            origins: vec![cfg.blue_origin.clone(), cfg.green_origin.clone()],
            edge: format!("{scheme}://{host}"),
        }),
        _ => None,
    };
    let url = format!("{}{}", cfg.origin(decision.color), path_and_query);
    if let Some(signing) = &signing {
        request_headers.extend(signing.headers(&url, &request_headers));
    }
    let retryable = cfg.origins.retries(req.method);
    let fallback = if retryable {
        live_colors(state)
            .into_iter()
            .find(|c| *c != decision.color)
            .map(|c| (c, format!("{}{}", cfg.origin(c), path_and_query)))
    } else {
        None
    };
    // Anonymous callers are counted by address when there is one: a fresh
    // cookie per request must not be a fresh bucket.
    let rate_key = cfg
        .rate_limit
        .map(|_| match (&principal, caller, req.client_addr) {
            // Principal ids are namespaced by kind ("k:", "s:"), like "ip:" and "c:".
            (Some(p), _, _) => p.id.clone(),
            (None, Some(ip), _) => caller_key(ip),
            (None, None, Some(addr)) => format!("ip:{addr}"),
            (None, None, None) => sticky_key.clone(),
        });
    EdgePlan::Forward(Forward {
        decision,
        url,
        request_headers,
        response_headers,
        fallback,
        retryable,
        timeout_ms: cfg.origins.timeout_ms.min(cfg.origins.deadline_ms.max(1)),
        deadline_ms: cfg.origins.deadline_ms,
        retry_after_s: cfg.origins.retry_after_s,
        rate_key,
        websocket,
        private,
        location_rewrite,
        origin_headers: cfg.origin_headers.clone(),
        models,
        signing,
    })
}

/// The `kid` of the request's bearer JWT when it is signed with a JWKS
/// algorithm (RS256, ES256): `Some(None)` for such a token without a
/// `kid`, `None` when the request needs no JWKS key.
pub fn jwks_key_id(req: &RequestHead<'_>) -> Option<Option<String>> {
    let token = crate::auth::bearer_token(req.header("authorization")?)?;
    let (alg, kid) = crate::auth::jws_header(token)?;
    matches!(
        alg,
        crate::auth::Algorithm::RS256 | crate::auth::Algorithm::ES256
    )
    .then_some(kid)
}

/// The caller key an admin request's authentication failures count under
/// (see [`crate::admin_guard`]), when `plan` is that request's admin call
/// or its refusal: `None` for every other request, so ordinary traffic
/// never touches the table.
pub fn admin_guard_key(cfg: &EdgeConfig, req: &RequestHead<'_>, plan: &EdgePlan) -> Option<String> {
    match plan {
        EdgePlan::Admin(_) => {}
        EdgePlan::Reply(r) if r.status == 401 => {}
        _ => return None,
    }
    let path = path::normalize(req.path, cfg.paths).ok()?;
    if !path::in_namespace(&path, ADMIN_NAMESPACE) {
        return None;
    }
    Some(match caller_ip(cfg, req) {
        Some(ip) => caller_key(ip),
        None => "ip:unknown".to_string(),
    })
}

/// The key a caller's address is counted under (admin failures, anonymous
/// rate limits): the address for IPv4, its /64 for IPv6. One subscriber
/// (a home, a phone, a cloud instance) gets a whole /64 and may send from
/// any address in it, so per-address counting would give it 2^64 fresh
/// budgets. An IPv4-mapped address counts as its IPv4 address.
pub fn caller_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                format!("ip:{}/64", std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Applies the admin failure limit to `plan` (the admin request of
/// `caller`, see [`admin_guard_key`]): a caller over the limit gets 429
/// whatever it sent; a refused authentication is counted. Returns the plan
/// to follow and whether `failures` changed (to store).
pub fn guard_admin(
    plan: EdgePlan,
    caller: &str,
    failures: &mut AdminFailures,
    now_ms: u64,
    max_callers: usize,
) -> (EdgePlan, bool) {
    if let Err(wait) = failures.check(caller, now_ms) {
        return (EdgePlan::Reply(Reply::rate_limited(wait)), false);
    }
    match &plan {
        EdgePlan::Reply(r) if r.status == 401 => {
            failures.record_failure(caller, now_ms, max_callers);
            (plan, true)
        }
        _ => (plan, false),
    }
}

/// `Vary` for a forwarded answer: the request fields that decided its
/// color, so a shared cache never serves one caller's color to another.
/// - always the preview header: with it, a previewer gets another color;
/// - while a share of users is on the candidate (canary): the identity
///   the user was bucketed by, and what could have changed it: the
///   edge's `cookie` (it comes first for everyone under the default
///   order, and is what a caller without a credential is known by) and the
///   credential header (`x-api-key` or `authorization`) when one was used;
/// - for a preview: the credential that allowed it (and `cookie` when the
///   preview came by cookie).
///
/// In `stable` and `promoted` everyone without a preview gets the same
/// color, so the identity is not listed (the response may still vary by
/// it for the origin's own reasons, which the origin's `Vary` says).
fn vary_for(
    decision: &RouteDecision,
    principal: Option<&str>,
    state: &RolloutState,
    preview_by_cookie: bool,
) -> String {
    let mut fields = vec![state.preview.header.as_str()];
    let credential_header = principal.map(|id| {
        if id.starts_with("k:") {
            HEADER_API_KEY
        } else {
            "authorization"
        }
    });
    let mut add = |f: &'static str| {
        if !fields.contains(&f) {
            fields.push(f);
        }
    };
    if decision.reason == RouteReason::Override {
        if let Some(h) = credential_header {
            add(h);
        }
    } else if state.phase() == crate::rollout::Phase::Canary {
        if let Some(h) = credential_header {
            add(h);
        }
        // Whatever the source, the edge's cookie could have decided it: it
        // is the identity of callers without a credential, comes first
        // under the default order, and is what a credential maps to.
        add("cookie");
    }
    if preview_by_cookie {
        add("cookie");
    }
    fields.join(", ")
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
    !is_response_hop_by_hop(name, connection_tokens)
        && !fwd
            .response_headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name) && !appended_response_header(k))
}

/// Response headers the edge adds beside the origin's own rather than
/// replacing them: list-valued (`vary`) or repeated (`set-cookie`) fields.
pub fn appended_response_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("set-cookie") || name.eq_ignore_ascii_case("vary")
}

/// Runs an authorised admin call. The adapter persists `new_state` (if any)
/// before replying.
///
/// `health` is the stored health document (see [`crate::health`]); the
/// adapter reads it only for `GET state` ([`AdminCall::wants_health`]).
pub fn run_admin(
    cfg: &EdgeConfig,
    call: &AdminCall,
    method: &str,
    body: &[u8],
    loaded: &LoadedState,
    health: Option<&str>,
    now_ms: u64,
) -> AdminOutcome {
    admin::handle_with_health(
        call.route,
        method,
        body,
        &call.identity,
        &loaded.state,
        loaded.degraded,
        HealthRecord::from_json(health).as_ref(),
        cfg.health,
        now_ms,
    )
}

impl AdminCall {
    /// Whether the call reports health, so the adapter reads that document.
    pub fn wants_health(&self) -> bool {
        self.route == AdminRoute::State
    }
}

/// Whether a client request header may reach the origin as the client sent
/// it: not the API key, nor any `x-greenlight-*` header (only the edge's own
/// reach the origin), nor the forwarding headers the edge sets itself, nor
/// the ones origins trust for the caller's address or the path, nor the
/// trusted proxy's address header (its address goes on in
/// `x-forwarded-for`), nor method overrides unless allowed, nor the
/// signature fields when the edge signs (its own replace them).
///
/// Every name is matched in each spelling an origin may read as the same
/// field ([`same_field_name`]: `x_forwarded_for` is `x-forwarded-for` to a
/// CGI-style stack).
fn forwards_client_header(cfg: &EdgeConfig, name: &str) -> bool {
    let is = |list: &[&str]| list.iter().any(|h| same_field_name(name, h));
    !(same_field_name(name, HEADER_API_KEY)
        || field_name_starts_with(name, EDGE_HEADER_PREFIX)
        || is(FORWARDING_HEADERS)
        || is(UNTRUSTED_HEADERS)
        || (!cfg.allow_method_override && is(METHOD_OVERRIDE_HEADERS))
        || (cfg.origin_signing_secret.is_some() && is(&origin_auth::HEADERS))
        || cfg
            .trusted_client_ip_header
            .as_deref()
            .is_some_and(|h| same_field_name(name, h)))
}

/// The caller's address: the last address in the trusted proxy's header
/// (the one that proxy added) when one is configured and holds an address,
/// else the platform's. `None` when neither is an IP address.
fn caller_ip(cfg: &EdgeConfig, req: &RequestHead<'_>) -> Option<IpAddr> {
    cfg.trusted_client_ip_header
        .as_deref()
        .and_then(|h| req.header(h))
        .and_then(|v| v.rsplit(',').next())
        .and_then(parse_ip)
        .or_else(|| req.client_addr.and_then(parse_ip))
}

/// An address as platforms and proxies write it: `192.0.2.7`, `2001:db8::1`,
/// `[2001:db8::1]`, or either with a port.
fn parse_ip(v: &str) -> Option<IpAddr> {
    let v = v.trim();
    v.parse::<IpAddr>()
        .ok()
        .or_else(|| v.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            v.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse().ok())
        })
}

/// `x-forwarded-for`, `x-forwarded-proto`, `x-forwarded-host` and
/// `forwarded` (RFC 7239) from what the platform reported: only what is
/// known is sent. `host` is the `Host` the client sent the edge (already
/// checked with [`valid_host`]).
fn forwarding_headers(
    caller: Option<IpAddr>,
    proto: Option<&str>,
    host: Option<&str>,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(4);
    let mut forwarded = Vec::with_capacity(3);
    if let Some(ip) = caller {
        out.push(("x-forwarded-for".to_string(), ip.to_string()));
        forwarded.push(match ip {
            IpAddr::V4(v4) => format!("for={v4}"),
            IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
        });
    }
    if let Some(p) = proto {
        out.push(("x-forwarded-proto".to_string(), p.to_string()));
        forwarded.push(format!("proto={p}"));
    }
    if let Some(h) = host {
        out.push(("x-forwarded-host".to_string(), h.to_string()));
        // `:` and `[` are not token characters: quoted (RFC 7239 §4).
        forwarded.push(if h.contains([':', '[']) {
            format!("host=\"{h}\"")
        } else {
            format!("host={h}")
        });
    }
    if !forwarded.is_empty() {
        out.push(("forwarded".to_string(), forwarded.join(";")));
    }
    out
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
fn parse_flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// An HTTP field name (RFC 9110 token).
fn is_token(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
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
