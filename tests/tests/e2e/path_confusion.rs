//! One request, one meaning: path and header tricks against both
//! edge runtimes, each in front of two recording origins on 127.0.0.1,
//! asserting the edge's answer *and* what the origin received.
//!
//! Requests are written by hand (`greenlight_e2e::raw`, like
//! `curl --path-as-is`): a URL library would resolve `..`, turn `\` into `/`
//! and never send an absolute-form target.
//!
//! Configuration: `AUTH_ROUTES=/public:off,/:required`, no
//! credentials unless stated.

use greenlight_common::admin::Problem;
use greenlight_e2e::fixtures::{ADMIN_TOKEN, APP_KEY};
use greenlight_e2e::raw::{self, RawResponse};
use greenlight_e2e::rig::Rig;
use greenlight_e2e::Runtime;
use greenlight_test_origin::RecordedRequest;

/// Targets under `/public` to the edge that are `/api/hello` to an origin
/// that decodes `%2F` / reads `\` as `/` and then resolves `..`.
const TABLE: &[&str] = &[
    "/public%2F..%2Fapi%2Fhello",
    "/public/..%2Fapi/hello",
    "/public/..%5capi/hello",
    "/public%2fx",
];

/// More tricks, each refused with a `bad-path` problem whatever the
/// escaped-slash setting: double encoding (under the default only, see
/// `decoded_paths_are_decided_and_forwarded_decoded`), overlong UTF-8,
/// dot segments with `;` parameters, an encoded NUL, a broken escape.
const ALWAYS_BAD: &[&str] = &[
    "/public/..%C0%AFapi/hello",
    "/public/..%c0%afapi/hello",
    "/public/..%E0%80%AFapi/hello",
    "/public/..;/api/hello",
    "/public/%2e%2e;x/api/hello",
    "/public/x%00",
    "/public/x%zz",
];

async fn get(rig: &Rig, target: &str, headers: &[(&str, &str)]) -> RawResponse {
    raw::request(&rig.edge.base_url, "GET", target, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {target}: {e:#}"))
}

/// Asserts a `400 bad-path` problem from greenlight and no origin hit.
async fn bad_path(rig: &Rig, target: &str, headers: &[(&str, &str)]) {
    rig.reset_origins();
    let resp = get(rig, target, headers).await;
    let body = resp.text();
    assert_eq!(resp.status, 400, "{target}: {body}");
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json"),
        "{target}: greenlight must answer, not the runtime: {body}"
    );
    let p: Problem = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{target}: not a problem document ({e}): {body}"));
    assert_eq!(p.kind, "urn:greenlight:problem:bad-path", "{target}");
    assert_eq!(rig.origin_hits(), 0, "{target} reached an origin");
}

/// Asserts the answer `status` and no origin hit.
async fn refused(rig: &Rig, target: &str, headers: &[(&str, &str)], status: u16) {
    rig.reset_origins();
    let resp = get(rig, target, headers).await;
    assert_eq!(resp.status, status, "{target}: {}", resp.text());
    assert_eq!(rig.origin_hits(), 0, "{target} reached an origin");
}

/// Asserts a `200` served by an origin that received `path` and `query`.
async fn served(
    rig: &Rig,
    target: &str,
    headers: &[(&str, &str)],
    path: &str,
    query: Option<&str>,
) -> RecordedRequest {
    rig.reset_origins();
    let resp = get(rig, target, headers).await;
    assert_eq!(resp.status, 200, "{target}: {}", resp.text());
    let got = rig.received();
    assert_eq!(got.len(), 1, "{target}: {got:?}");
    assert_eq!(got[0].path, path, "{target}: the origin's path");
    assert_eq!(
        got[0].query.as_deref(),
        query,
        "{target}: the origin's query"
    );
    got[0].clone()
}

async fn tricks_are_refused_by_default(runtime: Runtime) {
    let rig = Rig::start(runtime, |_| {}).await;
    for target in TABLE.iter().chain(ALWAYS_BAD) {
        bad_path(&rig, target, &[]).await;
    }
    for target in [
        "/public%252F..%252Fapi%252Fhello",
        "/public/%252e%252e/api/hello",
    ] {
        bad_path(&rig, target, &[]).await;
    }
    // Plain and `%2e` dot segments are resolved (RFC 3986), so the edge
    // decides `/api/hello`, which needs credentials.
    for target in ["/public/../api/hello", "/public/%2e%2e/api/hello"] {
        refused(&rig, target, &[], 401).await;
    }
    // A raw backslash: workerd's URL parser reads it as `/` (then `..`
    // goes): 401; a runtime that keeps it gives greenlight a `\`: 400.
    rig.reset_origins();
    let resp = get(&rig, "/public/..\\api/hello", &[]).await;
    assert!(
        matches!(resp.status, 400 | 401),
        "raw backslash: {} {}",
        resp.status,
        resp.text()
    );
    assert_eq!(rig.origin_hits(), 0);
    // The admin namespace in any form: credentials first, never an origin.
    for target in [
        "/__GREENLIGHT/state",
        "/__GreenLight/promote",
        "//__greenlight/state",
        "/__greenlight;x/state",
        "/__greenlight",
        "/%5F%5Fgreenlight/state",
        "/public/../__greenlight/state",
    ] {
        refused(&rig, target, &[], 401).await;
    }
    let admin = format!("Bearer {ADMIN_TOKEN}");
    for target in ["/__GREENLIGHT/state", "//__greenlight/state"] {
        refused(&rig, target, &[("authorization", &admin)], 404).await;
    }
    let resp = get(
        &rig,
        "/%5F%5Fgreenlight/./state",
        &[("authorization", &admin)],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Absolute-form targets: the path in them is what counts.
    let authority = rig.edge.base_url.trim_start_matches("http://").to_string();
    let absolute = |path: &str| format!("http://{authority}{path}");
    match runtime {
        Runtime::Cloudflare => {
            // wrangler dev's workerd cannot parse an absolute-form target
            // ("kj/compat/url.c++: invalid URL"): it answers 500 itself,
            // before the Worker runs (Cloudflare's front door takes them).
            for target in [
                absolute("/public%2F..%2Fapi%2Fhello"),
                absolute("/public/x"),
                "http://evil.test/public/x".to_string(),
            ] {
                rig.reset_origins();
                let resp = get(&rig, &target, &[]).await;
                assert_eq!(resp.status, 500, "{target}: {}", resp.text());
                assert_eq!(resp.header("x-greenlight-color"), None, "{target}");
                assert_eq!(rig.origin_hits(), 0, "{target}");
            }
        }
        Runtime::Spin => {
            bad_path(&rig, &absolute("/public%2F..%2Fapi%2Fhello"), &[]).await;
            refused(&rig, &absolute("/public/../api/hello"), &[], 401).await;
            served(
                &rig,
                &absolute("/public/x?q=1"),
                &[],
                "/public/x",
                Some("q=1"),
            )
            .await;
        }
    }

    // What passes reaches the origin in its normal form, query untouched.
    served(
        &rig,
        "/public/./a/%7e%41/b%3b/..?x=%2F..%2F&y",
        &[],
        "/public/a/~A/",
        Some("x=%2F..%2F&y"),
    )
    .await;
    served(&rig, "/public//x;v=1", &[], "/public//x;v=1", None).await;
    served(
        &rig,
        "/public/../api/hello",
        &[("x-api-key", APP_KEY)],
        "/api/hello",
        None,
    )
    .await;
    served(&rig, "/public/caf%c3%a9", &[], "/public/caf%C3%A9", None).await;
}

async fn decoded_paths_are_decided_and_forwarded_decoded(runtime: Runtime) {
    let rig = Rig::start(runtime, |s| {
        s.vars
            .insert("PATH_ESCAPED_SLASHES".into(), "decode".into());
    })
    .await;
    for target in &TABLE[..3] {
        refused(&rig, target, &[], 401).await;
    }
    // `/public%2fx` is `/public/x`: public, and that is what the origin gets.
    served(&rig, "/public%2fx", &[], "/public/x", None).await;
    served(
        &rig,
        "/public/..%2Fapi/hello",
        &[("x-api-key", APP_KEY)],
        "/api/hello",
        None,
    )
    .await;
    // Decoded once, like a correct origin; route matching also reads it
    // decoded twice, so a double-decoding origin cannot be reached below
    // `/api` either.
    refused(&rig, "/public%252F..%252Fapi%252Fhello", &[], 401).await;
    served(&rig, "/public/a%252Fb", &[], "/public/a%252Fb", None).await;
    for target in ALWAYS_BAD {
        bad_path(&rig, target, &[]).await;
    }
}

async fn kept_slashes_stay_encoded_and_slashes_merge(runtime: Runtime) {
    let rig = Rig::start(runtime, |s| {
        s.vars.insert("PATH_ESCAPED_SLASHES".into(), "keep".into());
        s.vars.insert("MERGE_SLASHES".into(), "true".into());
    })
    .await;
    // Forwarded encoded, but decided on every reading: an origin that
    // decodes would serve /api/hello, so credentials are required.
    for target in &TABLE[..3] {
        refused(&rig, target, &[], 401).await;
    }
    served(&rig, "/public%2fx", &[], "/public%2Fx", None).await;
    served(
        &rig,
        "/public/..%5capi/hello",
        &[("x-api-key", APP_KEY)],
        "/public/..%5Capi/hello",
        None,
    )
    .await;
    served(&rig, "//public///x//", &[], "/public/x/", None).await;
    for target in ALWAYS_BAD {
        bad_path(&rig, target, &[]).await;
    }
}

/// Client headers an origin might trust, all spoofed.
const SPOOFED: &[(&str, &str)] = &[
    ("x-forwarded-for", "10.9.9.9"),
    ("x-forwarded-proto", "https"),
    ("forwarded", "for=10.9.9.9;proto=https"),
    ("x-forwarded-host", "evil.test"),
    ("x-real-ip", "10.9.9.8"),
    ("x-original-url", "/__greenlight/state"),
    ("x-rewrite-url", "/api/admin"),
    ("x-greenlight-principal", "k:ops"),
    ("x-greenlight-anything", "1"),
    ("x-http-method-override", "DELETE"),
    ("x-http-method", "DELETE"),
    ("x-method-override", "DELETE"),
    ("x-kept", "yes"),
];

async fn origins_get_the_edges_forwarding_headers(runtime: Runtime) {
    let rig = Rig::start(runtime, |_| {}).await;
    let mut headers = SPOOFED.to_vec();
    headers.push(("x-api-key", APP_KEY));
    let got = served(&rig, "/api/items", &headers, "/api/items", None).await;
    // Both runtimes report the loopback caller (cf-connecting-ip,
    // spin-client-addr) and a plain-http URL.
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    // The host the client asked for, never the client's copy.
    let edge_host = rig.edge.base_url.trim_start_matches("http://");
    assert_eq!(got.header("x-forwarded-host"), Some(edge_host));
    assert_eq!(
        got.header("forwarded"),
        Some(format!("for=127.0.0.1;proto=http;host=\"{edge_host}\"").as_str())
    );
    assert_eq!(got.header("x-greenlight-principal"), Some("k:app"));
    for (name, _) in SPOOFED {
        if ![
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
            "x-greenlight-principal",
            "x-kept",
        ]
        .contains(name)
        {
            assert_eq!(got.header(name), None, "{name} reached the origin");
        }
    }
    let copies = |name: &str| got.headers.iter().filter(|(k, _)| k == name).count();
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "x-greenlight-principal",
    ] {
        assert_eq!(copies(name), 1, "{name}: only the edge's copy");
    }
    assert_eq!(got.header("x-kept"), Some("yes"));
    assert_eq!(got.method, "GET");
}

async fn a_trusted_proxy_names_the_caller(runtime: Runtime) {
    let rig = Rig::start(runtime, |s| {
        s.vars
            .insert("TRUSTED_CLIENT_IP_HEADER".into(), "x-real-ip".into());
        s.vars.insert("ALLOW_METHOD_OVERRIDE".into(), "true".into());
        s.vars.insert("RATE_LIMIT_PER_S".into(), "1".into());
        s.vars.insert("RATE_LIMIT_BURST".into(), "1".into());
    })
    .await;
    let got = served(
        &rig,
        "/public/a",
        &[
            ("x-real-ip", "203.0.113.1"),
            ("x-forwarded-for", "10.9.9.9"),
            ("x-http-method-override", "DELETE"),
        ],
        "/public/a",
        None,
    )
    .await;
    assert_eq!(got.header("x-forwarded-for"), Some("203.0.113.1"));
    let edge_host = rig.edge.base_url.trim_start_matches("http://");
    assert_eq!(
        got.header("forwarded"),
        Some(format!("for=203.0.113.1;proto=http;host=\"{edge_host}\"").as_str())
    );
    assert_eq!(got.header("x-real-ip"), None, "consumed by the edge");
    assert_eq!(got.header("x-http-method-override"), Some("DELETE"));
    // One bucket per address the proxy names.
    served(
        &rig,
        "/public/b",
        &[("x-real-ip", "203.0.113.2")],
        "/public/b",
        None,
    )
    .await;
    refused(&rig, "/public/c", &[("x-real-ip", "203.0.113.1")], 429).await;
}

async fn the_platform_names_the_caller_by_default(runtime: Runtime) {
    let rig = Rig::start(runtime, |s| {
        s.vars.insert("RATE_LIMIT_PER_S".into(), "1".into());
        s.vars.insert("RATE_LIMIT_BURST".into(), "1".into());
    })
    .await;
    served(
        &rig,
        "/public/a",
        &[
            ("x-real-ip", "203.0.113.1"),
            ("x-forwarded-for", "10.0.0.1"),
        ],
        "/public/a",
        None,
    )
    .await;
    // Other claimed addresses, same platform address: the same bucket.
    refused(
        &rig,
        "/public/b",
        &[
            ("x-real-ip", "203.0.113.2"),
            ("x-forwarded-for", "10.0.0.2"),
        ],
        429,
    )
    .await;
}

greenlight_e2e::for_each_runtime!(
    tricks_are_refused_by_default,
    decoded_paths_are_decided_and_forwarded_decoded,
    kept_slashes_stay_encoded_and_slashes_merge,
    origins_get_the_edges_forwarding_headers,
    a_trusted_proxy_names_the_caller,
    the_platform_names_the_caller_by_default,
);
