//! HTTP vocabulary shared by the edges and the harness: header names, the
//! hop-by-hop list and small header helpers that work on plain strings.

/// Response header: the color that served the request.
pub const HEADER_COLOR: &str = "x-greenlight-color";
/// Response header: the rollout epoch the decision was made under.
pub const HEADER_EPOCH: &str = "x-greenlight-epoch";
/// Request header the edge adds to forwarded requests naming the
/// authenticated caller.
pub const HEADER_PRINCIPAL: &str = "x-greenlight-principal";
/// Response header: why that color was chosen (see `RouteReason`).
pub const HEADER_REASON: &str = "x-greenlight-reason";
/// Response header set when the edge is running on a fallback state.
pub const HEADER_DEGRADED: &str = "x-greenlight-degraded";
/// Request header carrying an API key.
pub const HEADER_API_KEY: &str = "x-api-key";
/// Cloudflare's response header naming the request and the data center
/// (IATA code) that served it: `<id>-<CODE>`, e.g. `8c2d4e6f7a8b9c0d-FRA`.
pub const CF_RAY: &str = "cf-ray";
/// Cookie that gives anonymous callers a stable identity for stickiness.
pub const STICKY_COOKIE: &str = "greenlight-id";
/// Reserved path prefix of the admin API on the edge.
pub const ADMIN_PREFIX: &str = "/__greenlight/";
/// The first path segment of the admin namespace. Every path whose first
/// segment is this in any case or reading (`/__GREENLIGHT/x`,
/// `//__greenlight`, `/__greenlight;v=1/`) is the edge's own: it needs
/// admin credentials and never reaches an origin; only the exact
/// lower-case [`ADMIN_PREFIX`] routes exist.
pub const ADMIN_NAMESPACE: &str = "__greenlight";
/// Prefix of the headers the edge itself sends to origins and clients.
/// Client copies of every such request header are dropped.
pub const EDGE_HEADER_PREFIX: &str = "x-greenlight-";
/// Request headers the edge sets from what the platform reports (the
/// caller's address, the scheme, the host the client asked for), replacing
/// any client copy.
pub const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];
/// Client request headers the edge drops because origins and frameworks
/// trust them: other proxy headers (caller address, port, scheme, prefix)
/// and the path overrides some frameworks route by (`x-original-url`,
/// `x-rewrite-url`).
pub const UNTRUSTED_HEADERS: &[&str] = &[
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-real-ip",
    "x-client-ip",
    "x-original-url",
    "x-rewrite-url",
];
/// Headers that make some frameworks treat a request as another method;
/// dropped unless `ALLOW_METHOD_OVERRIDE` is set.
pub const METHOD_OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
/// Key under which the rollout state document lives in the key-value store.
pub const STATE_KEY: &str = "rollout-state";
/// A copy of the last state the admin API wrote, read only when the document
/// under [`STATE_KEY`] is unreadable and the instance remembers no good state
/// of its own (a new Spin instance or Worker isolate starts empty). Without it such an edge would fall back to the initial state, moving
/// everyone back to blue after a promote.
pub const LAST_GOOD_KEY: &str = "rollout-state.last-good";

/// Request headers not forwarded to an origin: hop-by-hop headers (RFC 9110
/// §7.6.1), the ones the platform computes itself for the origin's URL and
/// the body it sends (`host`, `content-length`), and `expect`: the edge's
/// runtime already answered the client's `100-continue`, and an origin's
/// `100 Continue` must not reach a runtime that reads it as the answer
/// (workerd's `fetch` resolves with it). `upgrade` passes for WebSockets
/// only (see [`is_websocket_upgrade`]).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
];

/// Response headers not passed on to the client: the hop-by-hop ones.
/// `content-length` is kept as the origin sent it (it describes the same
/// bytes, and is the only length a `HEAD` answer carries); `trailer`
/// announces trailer fields, which pass where the platform passes them.
pub const RESPONSE_HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// True when request header `name` must not be forwarded.
/// `connection_tokens` are the header names listed in the request's own
/// `Connection` header, which are hop-by-hop for that message too.
pub fn is_hop_by_hop(name: &str, connection_tokens: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&lower.as_str()) || connection_tokens.contains(&lower)
}

/// True when response header `name` must not be passed on to the client
/// (`connection_tokens` from the response's own `Connection` header).
pub fn is_response_hop_by_hop(name: &str, connection_tokens: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    RESPONSE_HOP_BY_HOP.contains(&lower.as_str()) || connection_tokens.contains(&lower)
}

/// Whether a request asks to become a WebSocket (RFC 6455 §4.1): a `GET`
/// whose `Upgrade` lists `websocket`. Other upgrades (h2c, TLS) are dropped
/// with the hop-by-hop headers.
pub fn is_websocket_upgrade(method: &str, upgrade: Option<&str>) -> bool {
    method.eq_ignore_ascii_case("GET")
        && upgrade.is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
}

/// A `Host` value safe to repeat to an origin or a client: `host[:port]`,
/// a registered name, IPv4 or bracketed IPv6 address, nothing else (no
/// userinfo, path, spaces or quotes).
pub fn valid_host(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
        && !v.starts_with(':')
}

/// The header names listed in a `Connection` header value, lowercased.
pub fn connection_tokens(connection: Option<&str>) -> Vec<String> {
    connection
        .map(|v| {
            v.split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether two header names are one field to an origin: equal ignoring
/// ASCII case, with `_` and `-` taken as the same character. CGI-style
/// stacks (Rack, uWSGI, PHP, IIS, anything reading `HTTP_*` variables)
/// map both to `_`, so a client's `x_forwarded_for` reaches such an origin
/// as `X-Forwarded-For` would: every header the edge drops for trust is
/// dropped in every such spelling.
pub fn same_field_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let fold = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            fold(x) == fold(y)
        })
}

/// Whether header `name` starts with `prefix` (a lower-case, hyphenated
/// name prefix) in any spelling [`same_field_name`] accepts.
pub fn field_name_starts_with(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| same_field_name(head, prefix))
}

/// `value` made safe to write into a header the edge adds: every byte
/// outside visible ASCII (`!` to `~`) and every `%` is percent-encoded
/// (upper-case hex, UTF-8 bytes as they are), so a value a credential
/// carries (a JWT `sub` with a line feed, a carriage return, a space or
/// non-ASCII) can neither end the header nor fail the runtime's header
/// check; ordinary values (`s:alice@example.com`) pass unchanged, and any
/// URL decoder gives the original back.
pub fn header_safe(value: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| (0x21..=0x7e).contains(&b) && b != b'%';
    if value.bytes().all(plain) {
        return std::borrow::Cow::Borrowed(value);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len() + 16);
    for b in value.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The value of cookie `name` in a `Cookie` header, if present.
pub fn cookie<'a>(cookie_header: Option<&'a str>, name: &str) -> Option<&'a str> {
    cookie_header?.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name)
            .then(|| v.trim())
            .filter(|v| !v.is_empty())
    })
}

/// A request header map as the core sees it: lowercase names, values joined
/// the way the platforms join repeated headers.
pub trait HeaderLookup {
    fn header(&self, name: &str) -> Option<&str>;
}

impl HeaderLookup for Vec<(String, String)> {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Path and query of an absolute URL as the platform serialises it
/// (WHATWG form: `scheme://host[:port]/path[?query][#fragment]`), without
/// parsing it again: in that form the first `/` after the authority starts
/// the path, and `?` and `#` inside path and query are percent-encoded.
/// The fragment is dropped (it is never sent to an origin).
pub fn path_and_query(url: &str) -> (&str, Option<&str>) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let rest = rest.find(['/', '?', '#']).map_or("", |i| &rest[i..]);
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    (if path.is_empty() { "/" } else { path }, query)
}

/// Separator of [`split_lines`]. HTTP header names and values can never
/// contain a line feed (browsers' and workerd's `Headers` refuse one), so it
/// cannot occur inside a field.
const LINE: char = '\n';

/// Name/value pairs from one string, `name\nvalue\nname\nvalue…`: how the
/// Worker's JavaScript shell hands Rust a whole header list in one call
/// instead of one call per header. A trailing name without a value (which
/// the shell never produces) is dropped.
pub fn split_lines(flat: &str) -> Vec<(String, String)> {
    let mut fields = flat.split(LINE);
    let mut out = Vec::new();
    if flat.is_empty() {
        return out;
    }
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        out.push((name.to_owned(), value.to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_includes_connection_listed_names() {
        let tokens = connection_tokens(Some("keep-alive, X-Secret-Hop"));
        assert!(is_hop_by_hop("Transfer-Encoding", &tokens));
        assert!(is_hop_by_hop("x-secret-hop", &tokens));
        assert!(!is_hop_by_hop("accept", &tokens));
        assert!(!is_hop_by_hop("x-secret-hop", &[]));
        assert!(is_hop_by_hop("Expect", &[]));
        assert!(is_hop_by_hop("content-length", &[]));
        assert!(!is_response_hop_by_hop("content-length", &[]));
        assert!(!is_response_hop_by_hop("trailer", &[]));
        assert!(is_response_hop_by_hop("upgrade", &[]));
        assert!(is_response_hop_by_hop("x-secret-hop", &tokens));
    }

    #[test]
    fn websocket_upgrades_and_hosts() {
        assert!(is_websocket_upgrade("GET", Some("websocket")));
        assert!(is_websocket_upgrade("get", Some("foo, WebSocket")));
        assert!(!is_websocket_upgrade("POST", Some("websocket")));
        assert!(!is_websocket_upgrade("GET", Some("h2c")));
        assert!(!is_websocket_upgrade("GET", None));
        for ok in [
            "edge.example",
            "edge.example:8443",
            "127.0.0.1:80",
            "[::1]:8787",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "user@host",
            "host/path",
            "\"h\"",
            ":80",
            "h\r\nx: y",
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn path_and_query_of_serialised_urls() {
        assert_eq!(
            path_and_query("http://127.0.0.1:8787/api/items?a=1&b=2"),
            ("/api/items", Some("a=1&b=2"))
        );
        assert_eq!(path_and_query("https://example.com/"), ("/", None));
        assert_eq!(path_and_query("https://example.com"), ("/", None));
        assert_eq!(path_and_query("https://example.com?x"), ("/", Some("x")));
        assert_eq!(
            path_and_query("https://example.com/a/b#frag"),
            ("/a/b", None)
        );
        assert_eq!(
            path_and_query("https://example.com/a?q=1#f?g"),
            ("/a", Some("q=1"))
        );
        assert_eq!(path_and_query("https://example.com/a?"), ("/a", Some("")));
        assert_eq!(
            path_and_query("https://u:p@example.com:8443/%3F?%23"),
            ("/%3F", Some("%23"))
        );
        assert_eq!(path_and_query("/relative?x=1"), ("/relative", Some("x=1")));
    }

    #[test]
    fn lines_split_into_pairs() {
        let pairs = vec![
            ("x-api-key".to_string(), "k".to_string()),
            ("empty".to_string(), String::new()),
            ("set-cookie".to_string(), "a=1; Path=/".to_string()),
            ("set-cookie".to_string(), "b=2".to_string()),
        ];
        let flat = "x-api-key\nk\nempty\n\nset-cookie\na=1; Path=/\nset-cookie\nb=2";
        assert_eq!(split_lines(flat), pairs);
        assert_eq!(split_lines(""), Vec::<(String, String)>::new());
        // A lone empty-named pair survives (an empty value is not "nothing").
        assert_eq!(split_lines("\n"), vec![(String::new(), String::new())]);
        assert_eq!(
            split_lines("a\n1\ndangling"),
            vec![("a".to_string(), "1".to_string())]
        );
    }

    #[test]
    fn field_names_match_in_every_cgi_spelling() {
        assert!(same_field_name("x_forwarded_for", "x-forwarded-for"));
        assert!(same_field_name("X_Real-IP", "x-real-ip"));
        assert!(same_field_name("X-API-KEY", "x-api-key"));
        assert!(!same_field_name("x-forwarded-fo", "x-forwarded-for"));
        assert!(!same_field_name("x.forwarded.for", "x-forwarded-for"));
        assert!(field_name_starts_with(
            "x_greenlight_principal",
            "x-greenlight-"
        ));
        assert!(field_name_starts_with(
            "X-Greenlight_Color",
            "x-greenlight-"
        ));
        assert!(!field_name_starts_with("x-greenligh", "x-greenlight-"));
        assert!(!field_name_starts_with("x-greenlighT", "x-greenlight-"));
        // A multi-byte character where the prefix would end.
        assert!(!field_name_starts_with("x-greenlighté", "x-greenlight-"));
    }

    #[test]
    fn header_safe_values_keep_ordinary_text_and_encode_the_rest() {
        assert!(matches!(
            header_safe("s:alice@example.com"),
            std::borrow::Cow::Borrowed("s:alice@example.com")
        ));
        assert_eq!(
            header_safe("s:u\nx-original-url\n/admin"),
            "s:u%0Ax-original-url%0A/admin"
        );
        assert_eq!(header_safe("s:u\rv"), "s:u%0Dv");
        assert_eq!(header_safe("s:a b%c"), "s:a%20b%25c");
        assert_eq!(header_safe("s:é\u{7f}"), "s:%C3%A9%7F");
        for v in ["s:\n", "k:\u{0}", "s:\t\r\n\u{85}\u{2028}"] {
            let safe = header_safe(v);
            assert!(safe.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{safe}");
        }
    }

    #[test]
    fn cookie_lookup() {
        let h = Some("a=1; greenlight-id=u-42 ; b=");
        assert_eq!(cookie(h, "greenlight-id"), Some("u-42"));
        assert_eq!(cookie(h, "a"), Some("1"));
        assert_eq!(cookie(h, "b"), None);
        assert_eq!(cookie(h, "c"), None);
        assert_eq!(cookie(None, "a"), None);
    }
}
