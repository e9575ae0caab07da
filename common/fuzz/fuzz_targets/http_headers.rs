//! HTTP header handling of the core (`greenlight_common::http` and the
//! response side of `edge::Forward`): arbitrary origin response headers,
//! `Connection` lists, cookies, hosts and URLs.
//!
//! Invariants: nothing panics; no hop-by-hop header, nor one the origin's
//! own `Connection` names, reaches the client from the origin (the edge's
//! own `vary` is for the next hop and stays); a header the edge sets
//! (`x-greenlight-color`, ...; `vary` and `set-cookie` are appended) has
//! the edge's values only, never the origin's; a
//! rewritten `Location` points at the edge; `cookie` returns a trimmed,
//! non-empty substring of the header; `valid_host` accepts only the
//! documented alphabet; `path_and_query` returns a path starting with `/` and a query without
//! a fragment; `header_safe` writes only visible ASCII and decodes back to
//! its input; `same_field_name` is case- and `_`/`-`-blind and nothing else.
#![no_main]

use arbitrary::Arbitrary;
use greenlight_common::edge::{
    self, appended_response_header, EdgeConfig, Action, LoadedState, RequestHead,
};
use greenlight_common::http::{
    connection_tokens, cookie, header_safe, is_response_hop_by_hop, path_and_query,
    same_field_name, split_lines, valid_host,
};
use greenlight_common::RolloutState;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    origin_headers: Vec<(&'a str, &'a str)>,
    origin_lines: &'a str,
    cookie_header: &'a str,
    cookie_name: &'a str,
    host: &'a str,
    url: &'a str,
}

fn config() -> EdgeConfig {
    let vars = [
        ("BLUE_ORIGIN", "http://127.0.0.1:9001"),
        ("GREEN_ORIGIN", "http://127.0.0.1:9002"),
        ("AUTH_ROUTES", "/:off"),
        ("REWRITE_LOCATION", "true"),
    ];
    EdgeConfig::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })
    .expect("fuzz configuration")
}

/// Percent-decoding of `header_safe`'s output.
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("two hex digits"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|input: Input<'_>| {
    // Helpers on their own.
    for v in [input.cookie_header, input.host, input.url] {
        let safe = header_safe(v);
        assert!(safe.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{safe:?}");
        assert_eq!(decode(&safe), v.as_bytes());
    }
    let fold = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    assert_eq!(
        same_field_name(input.cookie_name, input.cookie_header),
        fold(input.cookie_name) == fold(input.cookie_header)
    );
    if let Some(v) = cookie(Some(input.cookie_header), input.cookie_name) {
        assert!(!v.is_empty() && v == v.trim() && input.cookie_header.contains(v));
    }
    if valid_host(input.host) {
        assert!(input.host.len() <= 255 && !input.host.starts_with(':'));
        assert!(input
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b)));
    }
    let (path, query) = path_and_query(input.url);
    assert!(path.starts_with('/'), "path {path:?} of {:?}", input.url);
    if let Some(q) = query {
        assert!(!q.contains('#'));
    }

    // A forwarded request from a client whose Host is fuzzed.
    let cfg = config();
    let loaded = LoadedState {
        state: RolloutState::initial("fuzz"),
        degraded: false,
    };
    let headers = vec![("host".to_string(), input.host.to_string())];
    let req = RequestHead {
        method: "GET",
        path: "/x",
        query: None,
        headers: &headers,
        client_addr: Some("192.0.2.1"),
        scheme: Some("https"),
    };
    let Action::Forward(fwd) = edge::action(&cfg, &loaded, &req, 1_800_000_000_000, 1) else {
        panic!("an anonymous GET /x is forwarded");
    };
    for origin in [
        input
            .origin_headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
        split_lines(input.origin_lines),
    ] {
        let tokens = connection_tokens(
            origin
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("connection"))
                .map(|(_, v)| v.as_str()),
        );
        let out = fwd.client_response_headers(&origin);
        let ours: Vec<&(String, String)> = fwd.response_headers.iter().collect();
        // The edge's own headers are for the edge-to-client hop: an origin
        // whose `Connection` names `vary` drops its own `vary`, not the
        // edge's. So a hop-by-hop name may reach the client only as often,
        // with the same value, as the edge itself adds it.
        for (k, v) in &out {
            if is_response_hop_by_hop(k, &tokens) {
                let count = |list: &mut dyn Iterator<Item = (&str, &str)>| {
                    list.filter(|(ok, ov)| ok.eq_ignore_ascii_case(k) && ov == v)
                        .count()
                };
                let sent = count(&mut out.iter().map(|(a, b)| (a.as_str(), b.as_str())));
                let edge_adds = count(&mut fwd.added_response_headers(false))
                    .max(count(&mut fwd.added_response_headers(true)));
                assert!(
                    sent <= edge_adds,
                    "hop-by-hop {k:?}: {v:?} reached the client from the origin"
                );
            }
            // A header the edge sets (other than the appended `vary` and
            // `set-cookie`) carries only the edge's values.
            let edge_sets = ours
                .iter()
                .any(|(ok, _)| ok.eq_ignore_ascii_case(k) && !appended_response_header(ok));
            if edge_sets {
                assert!(
                    ours.iter()
                        .any(|(ok, ov)| ok.eq_ignore_ascii_case(k) && ov == v),
                    "the origin's {k:?}: {v:?} reached the client"
                );
            }
            if k.eq_ignore_ascii_case("location") && valid_host(input.host) {
                let from_origin = origin.iter().any(|(ok, ov)| ok == k && ov == v);
                if !from_origin {
                    assert!(
                        v.starts_with(&format!("https://{}", input.host)),
                        "rewritten location {v:?} does not point at the edge"
                    );
                }
            }
        }
        for (k, v) in &fwd.response_headers {
            assert!(
                out.iter().any(|(ok, ov)| ok == k && ov == v),
                "the edge's {k:?} is missing"
            );
        }
    }
});
