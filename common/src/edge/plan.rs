use super::admin_call::AdminCall;
use super::config::EdgeConfig;
use super::forward::{Forward, LocationRewrite, Signing};
use super::headers::{forwarding_headers, forwards_client_header, vary_for, HEADER_PRINCIPAL};
use super::reply::Reply;
use super::request::{caller_ip, caller_key, RequestHead};
use super::state::LoadedState;
use crate::admin::{AdminRoute, Problem};
use crate::auth::{AuthError, AuthMode, Role};
use crate::color::Color;
use crate::decide::{decide, RequestFacts};
use crate::failover::live_colors;
use crate::http::{
    connection_tokens, cookie, header_safe, is_hop_by_hop, is_websocket_upgrade, valid_host,
    ADMIN_NAMESPACE, ADMIN_PREFIX, HEADER_COLOR, HEADER_DEGRADED, HEADER_EPOCH, HEADER_REASON,
    STICKY_COOKIE,
};
use crate::identity::{sticky_identity, IdentitySource};
use crate::model::HEADER_MODEL;
use crate::path::{self};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgePlan {
    Reply(Reply),
    Forward(Forward),
    Admin(AdminCall),
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

/// Shape check for the anonymous id cookie, so junk never reaches the hash.
/// A client can still choose its own id (and so its bucket); that only picks
/// its own color, which the preview rules exist to control, so the
/// candidate must never be trusted to be unreachable by anonymous users.
pub(super) fn valid_anon_id(v: &str) -> bool {
    (8..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
