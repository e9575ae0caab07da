use crate::admin_credentials::{AdminCaller, AdminCredentials, AdminRole};
use crate::auth::{
    parse_algorithms, parse_routes, ApiKeyEntry, AuthConfig, AuthError, Credentials, JwtSettings,
};
use crate::color::Color;
use crate::config_error::ConfigError;
use crate::failover::OriginPolicy;
use crate::health::HealthPolicy;
use crate::identity::IdentityOrder;
use crate::model::ModelRoutes;
use crate::origin_headers::OriginHeaders;
use crate::path::{EscapedSlashes, PathPolicy};
use crate::ratelimit::RateLimit;
use std::sync::Arc;

/// Default lifetime of the in-isolate state cache. Low, because a promote or
/// rollback must be seen quickly; the KV read it saves is still the common case.
pub const DEFAULT_STATE_CACHE_TTL_MS: u64 = 1_000;

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
    "ADMIN_CREDENTIALS",
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
    // Digests only, but they name every admin and their roles.
    "ADMIN_CREDENTIALS",
    "JWT_HS256_SECRET",
    "ORIGIN_SIGNING_SECRET",
    "BLUE_ORIGIN_HEADERS",
    "GREEN_ORIGIN_HEADERS",
    // Who knows the salt can compute every user's bucket, and so which
    // users a canary reaches.
    "ROLLOUT_SALT",
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
    /// The admin bearer tokens (`ADMIN_TOKEN`, `ADMIN_CREDENTIALS`).
    admin: AdminCredentials,
    pub state_cache_ttl_ms: u64,
    /// Salt of the initial state, used until an admin writes one.
    pub default_salt: String,
    /// When set, every forwarded request is signed (see `origin_auth`).
    pub(crate) origin_signing_secret: Option<Arc<[u8]>>,
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
        let vars = Vars(get);
        let api_keys: Vec<ApiKeyEntry> = match vars.nonempty("API_KEYS") {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| ConfigError(format!("API_KEYS is not a JSON list of keys: {e}")))?,
            None => Vec::new(),
        };
        let (jwt, jwks_url) = jwt_settings(&vars)?;
        let routes = parse_routes(
            &vars
                .nonempty("AUTH_ROUTES")
                .unwrap_or_else(|| "/:required".into()),
        )?;
        let state_cache_ttl_ms = vars.number("STATE_CACHE_TTL_MS", DEFAULT_STATE_CACHE_TTL_MS)?;
        let origins = origin_policy(&vars)?;
        let health = health_policy(&vars)?;
        let rate_limit = RateLimit::from_vars(
            vars.nonempty("RATE_LIMIT_PER_S").as_deref(),
            vars.nonempty("RATE_LIMIT_BURST").as_deref(),
        )?;
        let paths = PathPolicy {
            escaped_slashes: match vars.nonempty("PATH_ESCAPED_SLASHES") {
                None => EscapedSlashes::default(),
                Some(v) => EscapedSlashes::parse(&v).ok_or_else(|| {
                    ConfigError(format!(
                        "PATH_ESCAPED_SLASHES {v:?} must be reject, decode or keep"
                    ))
                })?,
            },
            merge_slashes: vars.flag("MERGE_SLASHES")?,
        };
        let allow_method_override = vars.flag("ALLOW_METHOD_OVERRIDE")?;
        let trusted_client_ip_header = match vars.nonempty("TRUSTED_CLIENT_IP_HEADER") {
            None => None,
            Some(name) if is_token(&name) => Some(name.to_ascii_lowercase()),
            Some(name) => {
                return Err(ConfigError(format!(
                    "TRUSTED_CLIENT_IP_HEADER {name:?} is not a header name"
                )))
            }
        };
        let origin_host = match vars.nonempty("ORIGIN_HOST") {
            Some(v) => OriginHost::parse(&v)?,
            None => OriginHost::default(),
        };
        let rewrite_location = vars.flag("REWRITE_LOCATION")?;
        // Not trimmed as a whole: one header a line.
        let origin_headers = OriginHeaders::parse(
            vars.raw("BLUE_ORIGIN_HEADERS").as_deref(),
            vars.raw("GREEN_ORIGIN_HEADERS").as_deref(),
        )?;
        let models = ModelRoutes::parse(
            vars.nonempty("MODEL_ROUTES").as_deref(),
            vars.nonempty("BLUE_MODEL").as_deref(),
            vars.nonempty("GREEN_MODEL").as_deref(),
        )?
        .map(Arc::new);
        let identity_order = match vars.nonempty("STICKY_IDENTITY") {
            None => IdentityOrder::default(),
            Some(v) => IdentityOrder::parse(&v).ok_or_else(|| {
                ConfigError(format!(
                    "STICKY_IDENTITY {v:?} must be cookie (one color per browser) or \
                     credential (one color per account)"
                ))
            })?,
        };
        Ok(EdgeConfig {
            blue_origin: vars.origin("BLUE_ORIGIN")?,
            green_origin: vars.origin("GREEN_ORIGIN")?,
            auth: AuthConfig::new(routes, api_keys, jwt)?,
            admin: AdminCredentials::parse(
                vars.nonempty("ADMIN_TOKEN").as_deref(),
                vars.nonempty("ADMIN_CREDENTIALS").as_deref(),
            )?,
            state_cache_ttl_ms,
            default_salt: vars
                .nonempty("ROLLOUT_SALT")
                .unwrap_or_else(|| "greenlight".into()),
            origin_signing_secret: vars
                .nonempty("ORIGIN_SIGNING_SECRET")
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

    /// Authenticates an admin caller: a bearer token from `ADMIN_TOKEN` or
    /// `ADMIN_CREDENTIALS`, else an API key or JWT with an admin role
    /// ([`AdminRole::of_roles`]). What the caller may do per route is
    /// [`AdminCaller::may_call`].
    pub fn authorize_admin(
        &self,
        creds: Credentials<'_>,
        now_s: u64,
    ) -> Result<AdminCaller, AuthError> {
        if let (Some(auth), None) = (creds.authorization, creds.api_key) {
            if let Some(caller) = crate::auth::bearer_token(auth).and_then(|t| self.admin.caller(t))
            {
                return Ok(caller);
            }
            // Not an admin token: it may still be a JWT with a role.
        }
        match self.auth.identify(creds, now_s)? {
            None => Err(AuthError::Missing),
            Some(p) => match AdminRole::of_roles(&p.roles) {
                Some(role) => Ok(AdminCaller { name: p.id, role }),
                None => Err(AuthError::Forbidden),
            },
        }
    }
}

/// The variables as `from_lookup` reads them (and
/// [`crate::propagation::ReadPath::from_lookup`]).
pub(crate) struct Vars<F>(pub(crate) F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// The value as set, untrimmed.
    fn raw(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    /// The value trimmed, when not empty.
    pub(crate) fn nonempty(&self, name: &str) -> Option<String> {
        self.raw(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, ConfigError> {
        match self.nonempty(name) {
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError(format!("{name} {v:?} is not a whole number"))),
            None => Ok(default),
        }
    }

    fn flag(&self, name: &str) -> Result<bool, ConfigError> {
        match self.nonempty(name) {
            None => Ok(false),
            Some(v) => parse_flag(&v)
                .ok_or_else(|| ConfigError(format!("{name} {v:?} is not true or false"))),
        }
    }

    /// An origin's URL: required, http(s), without a trailing slash.
    fn origin(&self, name: &str) -> Result<String, ConfigError> {
        let v = self
            .nonempty(name)
            .ok_or_else(|| ConfigError(format!("{name} is not set")))?;
        if !(v.starts_with("http://") || v.starts_with("https://")) {
            return Err(ConfigError(format!(
                "{name} must be an http(s) URL, got {v:?}"
            )));
        }
        Ok(v.trim_end_matches('/').to_string())
    }
}

/// The JWT settings and the remote key set's URL (`JWKS_URL`).
fn jwt_settings<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<(JwtSettings, Option<String>), ConfigError> {
    let mut jwt = JwtSettings {
        hs256_secret: vars.nonempty("JWT_HS256_SECRET").map(String::into_bytes),
        issuer: vars.nonempty("JWT_ISSUER"),
        audience: vars.nonempty("JWT_AUDIENCE"),
        ..JwtSettings::default()
    };
    let jwks_url = vars.nonempty("JWKS_URL");
    // JWKS_ORIGIN is the outbound host Spin's manifest allows for the
    // fetch (Spin allows origins, not URLs); its default, the reserved
    // `.invalid` name (RFC 6761), means none. When set, the URL must be
    // under it, or Spin would refuse every fetch.
    let jwks_origin = vars
        .nonempty("JWKS_ORIGIN")
        .filter(|o| o != crate::jwks::UNSET_URL);
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
        if vars.nonempty("JWKS").is_some() {
            return Err(ConfigError(
                "set JWKS (inline keys) or JWKS_URL (fetched keys), not both".into(),
            ));
        }
    }
    if let Some(jwks) = vars.nonempty("JWKS") {
        jwt.jwks = Some(
            serde_json::from_str(&jwks)
                .map_err(|e| ConfigError(format!("JWKS is not a JWKS document: {e}")))?,
        );
    }
    if let Some(algs) = vars.nonempty("JWT_ALGORITHMS") {
        jwt.algorithms = parse_algorithms(&algs)?;
    }
    if let Some(leeway) = vars.nonempty("JWT_LEEWAY_S") {
        jwt.leeway_s = leeway
            .parse()
            .map_err(|_| ConfigError(format!("JWT_LEEWAY_S {leeway:?} is not a number")))?;
    }
    Ok((jwt, jwks_url))
}

/// Timeouts and retries towards the origins.
fn origin_policy<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<OriginPolicy, ConfigError> {
    let defaults = OriginPolicy::default();
    let origins = OriginPolicy {
        timeout_ms: vars
            .number("ORIGIN_TIMEOUT_MS", defaults.timeout_ms)?
            .max(1),
        deadline_ms: vars.number("FAILOVER_DEADLINE_MS", defaults.deadline_ms)?,
        retry_methods: match vars.nonempty("RETRY_METHODS") {
            Some(list) => OriginPolicy::parse_methods(&list)?,
            None => defaults.retry_methods,
        },
        retry_after_s: vars.number("RETRY_AFTER_S", defaults.retry_after_s)?,
    };
    Ok(origins)
}

/// When a color counts as unhealthy.
fn health_policy<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<HealthPolicy, ConfigError> {
    let health_defaults = HealthPolicy::default();
    let health = HealthPolicy {
        threshold: u32::try_from(vars.number(
            "HEALTH_FAILURE_THRESHOLD",
            u64::from(health_defaults.threshold),
        )?)
        .map_err(|_| ConfigError("HEALTH_FAILURE_THRESHOLD is too large".into()))?
        .max(1),
        window_ms: vars.number("HEALTH_WINDOW_MS", health_defaults.window_ms)?,
    };
    Ok(health)
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
pub(super) fn parse_flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// An HTTP field name (RFC 9110 token).
pub(super) fn is_token(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
