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

/// Request headers as [`RequestHead`] wants them from a runtime that gives
/// raw fields (Spin): lower-case names, repeated headers joined with ", ",
/// the runtime's own headers (names starting with `runtime_prefix`, such as
/// Spin's `spin-full-url`) left out. Values that are not UTF-8 are read
/// lossily.
pub fn joined_headers(
    entries: &[(String, Vec<u8>)],
    runtime_prefix: &str,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let name = name.to_ascii_lowercase();
        if name.starts_with(runtime_prefix) {
            continue;
        }
        let value = String::from_utf8_lossy(value);
        match out.iter_mut().find(|(k, _)| *k == name) {
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            None => out.push((name, value.into_owned())),
        }
    }
    out
}

/// The address of a peer given as `ip:port`, without the port, so one
/// caller is one bucket: "[::1]:80" → "[::1]", "1.2.3.4:80" → "1.2.3.4";
/// a bare IPv6 address (more than one colon, no brackets) is kept whole.
pub fn strip_port(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (host.starts_with('[') || !host.contains(':')) =>
        {
            host
        }
        _ => addr,
    }
}

/// An origin request's URL in the parts `wasi:http` sets one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    pub authority: &'a str,
    /// Starts with `/`.
    pub path_and_query: &'a str,
}

impl UrlParts<'_> {
    /// `scheme://authority/path?query` with an `http` or `https` scheme and
    /// a path; `None` otherwise.
    pub fn parse(url: &str) -> Option<UrlParts<'_>> {
        let (scheme, rest) = url.split_once("://")?;
        if !matches!(scheme, "http" | "https") {
            return None;
        }
        let (authority, path_and_query) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            _ => return None,
        };
        Some(UrlParts {
            scheme,
            authority,
            path_and_query,
        })
    }
}

/// `scheme://host:port` of a URL, without path, query or fragment: for
/// error messages (never the path), and the edge's own origin for keys on
/// its host.
pub fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find(['/', '?', '#']) {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

#[cfg(test)]
mod raw_field_tests {
    use super::*;

    #[test]
    fn a_spin_head_reads_host_scheme_and_caller_from_spins_fields() {
        let fields = |pairs: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        let entries = fields(&[
            ("spin-full-url", "https://edge.example/a?b=1"),
            ("spin-client-addr", "192.0.2.7:5123"),
            ("Content-Length", "5"),
            ("content-length", "6"),
        ]);
        let raw = SpinHead::read(
            "POST".into(),
            Some("/a?b=1".into()),
            &entries,
            || Some("edge.example".into()),
            None,
        );
        let head = raw.head();
        assert_eq!(
            (head.method, head.path, head.query),
            ("POST", "/a", Some("b=1"))
        );
        assert_eq!(head.scheme, Some("https"));
        assert_eq!(head.client_addr, Some("192.0.2.7"));
        assert_eq!(
            head.headers,
            &[
                ("content-length".to_string(), "5, 6".to_string()),
                ("host".to_string(), "edge.example".to_string())
            ]
        );
        assert_eq!(raw.content_length.as_deref(), Some("5"));
        assert!(!raw.transfer_encoding);
        // The fields' own host wins, and the authority is not asked for;
        // the request's own scheme wins over the URL's.
        let entries = fields(&[("host", "h"), ("transfer-encoding", "chunked")]);
        let raw = SpinHead::read(
            "GET".into(),
            None,
            &entries,
            || panic!("asked"),
            Some("http"),
        );
        let head = raw.head();
        assert_eq!(
            (head.path, head.query, head.scheme),
            ("/", None, Some("http"))
        );
        assert_eq!(head.client_addr, None);
        assert!(raw.transfer_encoding);
        let ftp = fields(&[("spin-full-url", "ftp://x/")]);
        assert_eq!(
            SpinHead::read("GET".into(), None, &ftp, || None, None)
                .head()
                .scheme,
            None
        );
    }

    #[test]
    fn raw_fields_are_joined_lower_cased_and_runtime_headers_dropped() {
        let entries = vec![
            ("Accept".to_string(), b"a".to_vec()),
            ("spin-full-url".to_string(), b"http://x/".to_vec()),
            ("accept".to_string(), b"b".to_vec()),
            ("X-Bin".to_string(), vec![0xff]),
        ];
        assert_eq!(
            joined_headers(&entries, "spin-"),
            vec![
                ("accept".to_string(), "a, b".to_string()),
                ("x-bin".to_string(), "\u{fffd}".to_string())
            ]
        );
    }

    #[test]
    fn ports_are_stripped_from_peer_addresses_only() {
        assert_eq!(strip_port("1.2.3.4:80"), "1.2.3.4");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("1.2.3.4"), "1.2.3.4");
    }

    #[test]
    fn origin_urls_split_into_their_parts() {
        let parts = UrlParts::parse("https://o.example:8443/a/b?c=d").unwrap();
        assert_eq!(
            (parts.scheme, parts.authority, parts.path_and_query),
            ("https", "o.example:8443", "/a/b?c=d")
        );
        assert_eq!(UrlParts::parse("ftp://o/x"), None);
        assert_eq!(UrlParts::parse("http://o?x"), None);
        assert_eq!(UrlParts::parse("http://o"), None);
        assert_eq!(origin_of("http://o:1/secret?x"), "http://o:1");
        assert_eq!(origin_of("http://o"), "http://o");
        assert_eq!(
            origin_of("https://edge.example/a/b?c"),
            "https://edge.example"
        );
        assert_eq!(origin_of("http://h:1?q=/x"), "http://h:1");
        assert_eq!(origin_of("http://h#f"), "http://h");
    }
}

/// What a Spin component (either `wasi:http` version) reads of a request
/// before the pipeline runs: the method and path, the headers joined as
/// [`RequestHead`] wants them without Spin's own `spin-*` ones, the
/// caller's address from `spin-client-addr` (its port dropped, so one
/// caller is one bucket), the scheme, and the raw framing headers the
/// adapter forwards with the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpinHead {
    method: String,
    path_with_query: String,
    headers: Vec<(String, String)>,
    client_addr: Option<String>,
    scheme: Option<&'static str>,
    /// The first `content-length` as sent.
    pub content_length: Option<String>,
    /// Whether the fields carry a `transfer-encoding`.
    pub transfer_encoding: bool,
}

/// Spin's own request headers (`spin-full-url`, `spin-client-addr`, ...):
/// runtime internals, read where needed and never forwarded.
pub const SPIN_HEADER_PREFIX: &str = "spin-";

impl SpinHead {
    /// `authority` is asked for only when the fields lack `host` (the host
    /// the client asked for, for `x-forwarded-host` and `location`
    /// rewrites); `scheme` is the request's own, when the runtime fills it
    /// in, else that of the URL in `spin-full-url`.
    pub fn read(
        method: String,
        path_with_query: Option<String>,
        entries: &[(String, Vec<u8>)],
        authority: impl FnOnce() -> Option<String>,
        scheme: Option<&'static str>,
    ) -> SpinHead {
        let field = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let mut headers = joined_headers(entries, SPIN_HEADER_PREFIX);
        if !headers.iter().any(|(k, _)| k == "host") {
            if let Some(authority) = authority() {
                headers.push(("host".into(), authority));
            }
        }
        let scheme = scheme.or_else(|| {
            let url = field("spin-full-url")?;
            match url.split_once("://")?.0 {
                "http" => Some("http"),
                "https" => Some("https"),
                _ => None,
            }
        });
        SpinHead {
            method,
            path_with_query: path_with_query.unwrap_or_else(|| "/".into()),
            headers,
            client_addr: field("spin-client-addr"),
            scheme,
            content_length: field("content-length"),
            transfer_encoding: field("transfer-encoding").is_some(),
        }
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    /// The head the pipeline reads.
    pub fn head(&self) -> RequestHead<'_> {
        let (path, query) = match self.path_with_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path_with_query.as_str(), None),
        };
        RequestHead {
            method: &self.method,
            path,
            query,
            scheme: self.scheme,
            headers: &self.headers,
            client_addr: self.client_addr.as_deref().map(strip_port),
        }
    }
}
