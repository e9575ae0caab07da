use super::config::EdgeConfig;
use crate::auth::Credentials;
use crate::http::HEADER_API_KEY;
use std::net::{IpAddr, SocketAddr};

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

    pub(super) fn credentials(&self) -> Credentials<'_> {
        Credentials {
            api_key: self.header(HEADER_API_KEY),
            authorization: self.header("authorization"),
        }
    }
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

/// The caller's address: the last address in the trusted proxy's header
/// (the one that proxy added) when one is configured and holds an address,
/// else the platform's. `None` when neither is an IP address.
pub(super) fn caller_ip(cfg: &EdgeConfig, req: &RequestHead<'_>) -> Option<IpAddr> {
    cfg.trusted_client_ip_header
        .as_deref()
        .and_then(|h| req.header(h))
        .and_then(|v| v.rsplit(',').next())
        .and_then(parse_ip)
        .or_else(|| req.client_addr.and_then(parse_ip))
}

/// An address as platforms and proxies write it: `192.0.2.7`, `2001:db8::1`,
/// `[2001:db8::1]`, or either with a port.
pub(super) fn parse_ip(v: &str) -> Option<IpAddr> {
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
