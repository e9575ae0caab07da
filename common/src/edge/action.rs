use super::admin_call::AdminCall;
use super::config::EdgeConfig;
use super::forward::{Forward, LocationRewrite, Signing};
use super::headers::{forwarding_headers, forwards_client_header, vary_for, HEADER_PRINCIPAL};
use super::reply::Reply;
use super::request::{caller_ip, caller_key, RequestHead};
use super::state::LoadedState;
use crate::admin::{AdminRoute, Problem};
use crate::auth::{AuthError, AuthMode, Principal, Role};
use crate::color::Color;
use crate::decide::{decide, RequestFacts, RouteDecision};
use crate::failover::live_colors;
use crate::http::{
    connection_tokens, cookie, header_safe, is_hop_by_hop, is_websocket_upgrade, valid_host,
    ADMIN_NAMESPACE, ADMIN_PREFIX, HEADER_COLOR, HEADER_DEGRADED, HEADER_EPOCH, HEADER_REASON,
    STICKY_COOKIE,
};
use crate::identity::{sticky_identity, IdentitySource};
use crate::model::HEADER_MODEL;
use crate::path;
use crate::state::RolloutState;
use std::borrow::Cow;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Reply(Reply),
    Forward(Forward),
    Admin(AdminCall),
}

/// Decides what to do with one request, in the phases [`super`] lists:
/// normalize the path, answer the admin namespace, authenticate, choose a
/// color, build the forward.
///
/// `random` must be fresh per request; it draws the weighted split for
/// callers without identity and names new anonymous users.
pub fn action(
    cfg: &EdgeConfig,
    loaded: &LoadedState,
    req: &RequestHead<'_>,
    now_ms: u64,
    random: u64,
) -> Action {
    let now_s = now_ms / 1_000;
    // Every decision below, and the origin, see this one form of the path.
    let path = match path::normalize(req.path, cfg.paths) {
        Ok(p) => p,
        Err(e) => return Action::Reply(Reply::bad_path(e)),
    };
    if path::in_namespace(&path, ADMIN_NAMESPACE) {
        return admin_action(cfg, req, &path, now_s);
    }
    let caller = match authenticate(cfg, &loaded.state, req, &path, now_s) {
        Ok(caller) => caller,
        Err(reply) => return Action::Reply(reply),
    };
    let choice = match choose(cfg, &loaded.state, &caller, random) {
        Ok(choice) => choice,
        Err(reply) => return Action::Reply(reply),
    };
    Action::Forward(build(
        cfg, loaded, req, path, &caller, choice, now_s, random,
    ))
}

/// The admin namespace: answered by the edge, never forwarded.
fn admin_action(cfg: &EdgeConfig, req: &RequestHead<'_>, path: &str, now_s: u64) -> Action {
    match cfg.authorize_admin(req.credentials(), now_s) {
        Err(e) => Action::Reply(Reply::auth_error(e)),
        Ok(caller) => match path.strip_prefix(ADMIN_PREFIX).and_then(AdminRoute::parse) {
            Some(route) if caller.may_call(route) => Action::Admin(AdminCall {
                route,
                identity: caller.name,
            }),
            Some(route) => Action::Reply(Reply::role_too_low(&caller, route)),
            None => Action::Reply(Reply::problem(Problem::new(
                404,
                "not-found",
                "no such admin route",
                "admin routes: state, weight, promote, rollback, abort, isolate, history, undo \
                 (lower case)",
            ))),
        },
    }
}

/// Who calls and what they ask for.
struct Caller<'r> {
    principal: Option<Principal>,
    /// The color asked for by header or cookie, when the caller may have it
    /// considered (see [`authenticate`]).
    preview: Option<Color>,
    /// The preview came by cookie rather than header.
    preview_by_cookie: bool,
    may_preview: bool,
    /// The edge's anonymous id cookie, when well formed.
    cookie_id: Option<&'r str>,
}

/// Authenticates the caller as the route requires: a refused credential is
/// the answer (401/403), never a trip to the origin.
fn authenticate<'r>(
    cfg: &EdgeConfig,
    state: &RolloutState,
    req: &'r RequestHead<'_>,
    path: &str,
    now_s: u64,
) -> Result<Caller<'r>, Reply> {
    let cookie_header = req.header("cookie");
    let preview_header = req.header(&state.preview.header);
    let preview = preview_header
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
    let mode = cfg.auth.route_mode(path);
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
        cfg.auth
            .authenticate_in(mode, req.credentials(), now_s)
            .map_err(Reply::auth_error)?
    };
    let may_preview = principal.as_ref().is_some_and(|p| p.has(Role::Preview));
    // On a public route a preview from a caller who cannot be checked is
    // ignored (normal routing): a 403 there would lock previewers out of the
    // public pages, and honouring it would let anyone choose the candidate.
    let preview = preview.filter(|_| !(public_route && state.preview.require_role && !may_preview));
    Ok(Caller {
        principal,
        preview,
        preview_by_cookie: preview.is_some() && preview_header.is_none(),
        may_preview,
        cookie_id,
    })
}

/// The color, and the identity that sticks the caller to it.
struct Choice {
    decision: RouteDecision,
    sticky_key: String,
    /// The id to set as the edge's cookie, if any.
    set_cookie: Option<String>,
}

/// Chooses the color: one identity per user on every route (see
/// [`crate::identity`]), bucketed by [`decide`].
fn choose(
    cfg: &EdgeConfig,
    state: &RolloutState,
    caller: &Caller<'_>,
    random: u64,
) -> Result<Choice, Reply> {
    let identity = sticky_identity(
        cfg.identity_order,
        caller.cookie_id,
        caller.principal.as_ref().map(|p| p.id.as_str()),
        random,
    );
    // A credential's id goes into the cookie only while it decides a color
    // (a canary): outside one, API clients would get a cookie, and a
    // private `Cache-Control`, on every answer for nothing.
    let set_cookie = identity.set_cookie.filter(|_| {
        identity.source != IdentitySource::Credential
            || state.phase() == crate::rollout::Phase::Canary
    });
    let facts = RequestFacts {
        sticky_key: Some(&identity.key),
        preview: caller.preview,
        may_preview: caller.may_preview,
        roll: (random >> 32) as u32,
    };
    let decision = decide(&facts, state).map_err(|_| Reply::auth_error(AuthError::Forbidden))?;
    Ok(Choice {
        decision,
        sticky_key: identity.key,
        set_cookie,
    })
}

/// Builds the forward to the chosen color: the origin's URL and headers,
/// the headers the client gets, and what a failure may fall back to.
#[allow(clippy::too_many_arguments)]
fn build(
    cfg: &EdgeConfig,
    loaded: &LoadedState,
    req: &RequestHead<'_>,
    path: Cow<'_, str>,
    caller: &Caller<'_>,
    choice: Choice,
    now_s: u64,
    random: u64,
) -> Forward {
    let state = &loaded.state;
    let decision = choice.decision;
    let scheme = req.scheme.filter(|s| matches!(*s, "http" | "https"));
    let client_host = req.header("host").map(str::trim).filter(|h| valid_host(h));
    let models = cfg.models.as_ref().filter(|m| m.matches(&path)).cloned();
    let path_and_query = match req.query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.into_owned(),
    };
    let url = format!("{}{}", cfg.origin(decision.color), path_and_query);
    let websocket = is_websocket_upgrade(req.method, req.header("upgrade"));
    let caller_ip = caller_ip(cfg, req);
    let signing = cfg.origin_signing_secret.as_ref().map(|secret| {
        Arc::new(Signing {
            secret: secret.clone(),
            method: req.method.to_string(),
            created: now_s,
            // A nonce distinct from the anonymous id drawn from the same bits.
            nonce: format!("{:016x}", random.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15),
        })
    });
    let mut request_headers = origin_request_headers(
        cfg,
        req,
        caller.principal.as_ref(),
        decision.color,
        websocket,
        (caller_ip, scheme, client_host),
    );
    if let Some(signing) = &signing {
        request_headers.extend(signing.headers(&url, &request_headers));
    }
    let response_headers = client_response_headers(
        cfg,
        loaded,
        caller,
        &decision,
        models.is_some(),
        choice.set_cookie.as_deref(),
        scheme,
    );
    let location_rewrite = match (cfg.rewrite_location, scheme, client_host) {
        (true, Some(scheme), Some(host)) => Some(LocationRewrite {
            origins: vec![cfg.blue_origin.clone(), cfg.green_origin.clone()],
            edge: format!("{scheme}://{host}"),
        }),
        _ => None,
    };
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
        .map(|_| match (&caller.principal, caller_ip, req.client_addr) {
            // Principal ids are namespaced by kind ("k:", "s:"), like "ip:" and "c:".
            (Some(p), _, _) => p.id.clone(),
            (None, Some(ip), _) => caller_key(ip),
            (None, None, Some(addr)) => format!("ip:{addr}"),
            (None, None, None) => choice.sticky_key.clone(),
        });
    Forward {
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
        private: choice.set_cookie.is_some(),
        location_rewrite,
        origin_headers: cfg.origin_headers.clone(),
        models,
        signing,
    }
}

/// The headers the origin gets: the client's own that may pass, the
/// edge's forwarding headers, the caller's principal, and the chosen
/// color's upstream credentials (signing comes last, over all of them).
fn origin_request_headers(
    cfg: &EdgeConfig,
    req: &RequestHead<'_>,
    principal: Option<&Principal>,
    color: Color,
    websocket: bool,
    (caller_ip, scheme, client_host): (Option<std::net::IpAddr>, Option<&str>, Option<&str>),
) -> Vec<(String, String)> {
    let tokens = connection_tokens(req.header("connection"));
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(k, _)| {
            !is_hop_by_hop(k, &tokens)
                && forwards_client_header(cfg, k)
                && !cfg.origin_headers.drops_client_header(k)
        })
        .cloned()
        .collect();
    if websocket {
        headers.push(("upgrade".into(), "websocket".into()));
    }
    headers.extend(forwarding_headers(caller_ip, scheme, client_host));
    if let Some(p) = principal {
        // A JWT `sub` is whatever its issuer signed: line feeds, carriage
        // returns and non-ASCII are encoded, never written as they are.
        headers.push((HEADER_PRINCIPAL.into(), header_safe(&p.id).into_owned()));
    }
    headers.extend(cfg.origin_headers.of(color).iter().cloned());
    headers
}

/// The headers the edge adds to the answer: the color, epoch and reason
/// tags, `Vary`, the model, and the identity cookie.
fn client_response_headers(
    cfg: &EdgeConfig,
    loaded: &LoadedState,
    caller: &Caller<'_>,
    decision: &RouteDecision,
    model_route: bool,
    set_cookie: Option<&str>,
    scheme: Option<&str>,
) -> Vec<(String, String)> {
    let mut headers = vec![
        (HEADER_COLOR.to_string(), decision.color.to_string()),
        (HEADER_EPOCH.to_string(), decision.epoch.to_string()),
        (HEADER_REASON.to_string(), decision.reason.to_string()),
    ];
    if loaded.degraded {
        headers.push((HEADER_DEGRADED.to_string(), "1".to_string()));
    }
    if let (Some(m), true) = (&cfg.models, model_route) {
        headers.push((HEADER_MODEL.to_string(), m.of(decision.color).to_string()));
    }
    let vary = vary_for(
        decision,
        caller.principal.as_ref().map(|p| p.id.as_str()),
        &loaded.state,
        caller.preview_by_cookie,
    );
    headers.push(("vary".to_string(), vary));
    if let Some(id) = set_cookie {
        // Over HTTPS the browser must never send it back in clear text.
        let secure = if scheme == Some("https") {
            "; Secure"
        } else {
            ""
        };
        headers.push((
            "set-cookie".to_string(),
            format!(
                "{STICKY_COOKIE}={id}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax{secure}"
            ),
        ));
    }
    headers
}

/// Shape check for the anonymous id cookie, so junk never reaches the hash.
/// A client can still choose its own id (and so its bucket); that only picks
/// its own color, which the preview rules exist to control, so the
/// candidate must never be trusted to be unreachable by anonymous users.
pub(super) fn valid_anon_id(v: &str) -> bool {
    (8..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
