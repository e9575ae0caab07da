use super::config::EdgeConfig;
use super::forward::Forward;
use crate::decide::{RouteDecision, RouteReason};
use crate::http::{
    field_name_starts_with, is_response_hop_by_hop, same_field_name, EDGE_HEADER_PREFIX,
    FORWARDING_HEADERS, HEADER_API_KEY, METHOD_OVERRIDE_HEADERS, UNTRUSTED_HEADERS,
};
use crate::origin_auth;
use crate::state::RolloutState;
use std::net::IpAddr;

pub use crate::http::HEADER_PRINCIPAL;

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
pub(super) fn vary_for(
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
pub(super) fn forwards_client_header(cfg: &EdgeConfig, name: &str) -> bool {
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

/// `x-forwarded-for`, `x-forwarded-proto`, `x-forwarded-host` and
/// `forwarded` (RFC 7239) from what the platform reported: only what is
/// known is sent. `host` is the `Host` the client sent the edge (already
/// checked with [`valid_host`]).
pub(super) fn forwarding_headers(
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
