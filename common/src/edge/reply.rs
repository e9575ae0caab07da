use crate::admin::{AdminOutcome, AdminRoute, Problem};
use crate::admin_credentials::AdminCaller;
use crate::auth::AuthError;
use crate::config_error::ConfigError;
use crate::http::ADMIN_PREFIX;
use crate::model::ModelError;
use crate::path::{self};
use crate::ratelimit::RetryAfter;

/// A complete response the edge sends without calling an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// Its header fields for a runtime that takes raw fields (`wasi:http`),
    /// with the `content-length` of its body.
    pub fn fields(&self) -> Vec<(String, Vec<u8>)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .chain(std::iter::once((
                "content-length".to_string(),
                self.body.len().to_string().into_bytes(),
            )))
            .collect()
    }

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

    /// 403: an admin caller whose role does not reach the route's. The
    /// caller is authenticated, so the problem may say what is missing.
    pub fn role_too_low(caller: &AdminCaller, route: AdminRoute) -> Reply {
        let mut reply = Reply::problem(Problem::new(
            403,
            "forbidden",
            "this credential's role may not do that",
            format!(
                "{} is a {}; {} {ADMIN_PREFIX}{} needs {}",
                caller.name,
                caller.role.name(),
                route.method(),
                route.name(),
                route.required_role().name()
            ),
        ));
        reply.headers.push((
            "www-authenticate".into(),
            AuthError::Forbidden.www_authenticate(),
        ));
        reply
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
