//! Hostile input against both edge runtimes (real workerd via `wrangler dev`
//! and the Spin component under the wasmtime host), each in front of two
//! counting origins on 127.0.0.1.
//!
//! Every case must be refused with a 4xx, never reach an origin, never
//! produce a 5xx, and leave the edge serving the next ordinary request. The
//! JWT corpus (`fixtures::hostile_tokens`) runs in conformance.rs
//! (`auth_failures_never_reach_the_origin`); this file adds the rest:
//! oversized and repeated credential headers, header and body bombs, and
//! hostile admin calls.
//!
//! What answers, and with what:
//!
//! | case | answer |
//! | --- | --- |
//! | bad / oversized / repeated credentials | greenlight: 401 `invalid_token`, fixed body |
//! | no credentials (with huge headers or bodies) | greenlight: 401, bare `Bearer` challenge, fixed body |
//! | admin: missing / wrong / mis-schemed token | greenlight: 401, fixed body |
//! | admin: unknown route (authorised) | greenlight: 404 problem; unauthorised: 401 first |
//! | a path the normalizer refuses (`%00`, `%2F`, ...: path_confusion.rs) | greenlight: 400 problem `bad-path` |
//! | admin: wrong method | greenlight: 405 problem |
//! | admin: malformed body, wrong types, bad weight | greenlight: 400 problem |
//! | admin: body over 16 KiB (up to 2 MB) | greenlight: 413 problem |
//! | admin: stale or future epoch | greenlight: 409 problem with `current_epoch` |
//! | header bombs (3 000 headers, 200 KiB and 1 MiB headers) | greenlight's 401 where the runtime lets them through, else the runtime's own 431 before greenlight runs: see `header_bombs` |
//!
//! The rule for repeated credential headers: both runtimes hand the core one
//! value per name, repeated headers joined with ", " (workerd's `Headers`,
//! the Spin adapter's `header_pairs`). A joined `Authorization` is never a
//! valid `Bearer` token68 and a joined `X-Api-Key` never hashes to a
//! configured key, so any repeated credential header is refused with 401
//! `invalid_token`, even when every copy alone would be accepted: the edge
//! never picks one of two credentials.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use greenlight_common::admin::Problem;
use greenlight_common::auth::{AuthError, MAX_TOKEN_LEN};
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN, APP_KEY, OPS_KEY, QA_KEY};
use greenlight_e2e::rig::{header, Rig};
use greenlight_e2e::Runtime;
use jsonwebtoken::Algorithm;
use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder};
use serde_json::json;

/// How a hostile request must be answered.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// By greenlight's auth layer: the class's status, `WWW-Authenticate`
    /// and its one fixed body.
    Auth(AuthError),
    /// By the admin API: an RFC 9457 problem with this status.
    Problem(u16),
    /// By the runtime's own HTTP layer before greenlight runs: this status,
    /// and none of greenlight's headers.
    Runtime(u16),
}

/// Sends `req`, checks the answer against `expect`, checks that no origin
/// saw anything, and that the edge still serves an ordinary request.
async fn refused(rig: &Rig, what: &str, req: RequestBuilder, expect: Expect) {
    let before = rig.origin_hits();
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: no HTTP answer: {e:#}"));
    let status = resp.status().as_u16();
    let www = header(&resp, "www-authenticate").to_string();
    let content_type = header(&resp, "content-type").to_string();
    let body = resp.text().await.unwrap_or_default();
    let brief: String = body.chars().take(300).collect();
    // Only a runtime's own answer may be other than a 4xx (Spin's HTTP
    // trigger answers 500 to a header value that is not UTF-8, before the
    // component runs).
    assert!(
        (400..500).contains(&status) || matches!(expect, Expect::Runtime(_)),
        "{what}: {status}, not a 4xx: {brief}"
    );
    match expect {
        Expect::Auth(e) => {
            assert_eq!(status, e.status(), "{what}: {brief}");
            assert_eq!(www, e.www_authenticate(), "{what}");
            assert_eq!(content_type, "application/json", "{what}");
            assert_eq!(body, e.body(), "{what}: the body must be the fixed one");
        }
        Expect::Problem(code) => {
            assert_eq!(status, code, "{what}: {brief}");
            assert_eq!(content_type, "application/problem+json", "{what}");
            // HEAD answers carry no body.
            if !body.is_empty() {
                let p: Problem = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{what}: not a problem document ({e}): {brief}"));
                assert_eq!(p.status, code, "{what}");
                assert!(p.kind.starts_with("urn:greenlight:problem:"), "{what}");
            }
        }
        Expect::Runtime(code) => {
            assert_eq!(status, code, "{what}: {brief}");
            assert!(
                www.is_empty() && !content_type.contains("problem"),
                "{what}: expected the runtime to answer, but greenlight did: {brief}"
            );
        }
    }
    assert_eq!(rig.origin_hits(), before, "{what}: reached an origin");
    rig.normal_request().await;
}

fn value(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(bytes).expect("a valid header value")
}

/// A token68 string of `len` characters (what a bearer token may contain).
fn token68(len: usize) -> String {
    "aB3-._~+/".chars().cycle().take(len).collect()
}

async fn credential_headers_are_refused(runtime: Runtime) {
    use AuthError::Invalid;
    let rig = Rig::start(runtime, |_| {}).await;
    let path = "/api/items";
    let alice = fixtures::sign(Algorithm::HS256, &fixtures::claims("alice"));
    let bob = fixtures::sign(Algorithm::ES256, &fixtures::claims("bob"));
    let over = MAX_TOKEN_LEN + 1;
    // Spin 4.0.2's HTTP trigger refuses a header value that is not UTF-8
    // with an empty 500 before the component runs (README: Platform
    // differences); workerd hands it to the Worker, which refuses it.
    let not_utf8 = match runtime {
        Runtime::Cloudflare => Expect::Auth(Invalid),
        Runtime::Spin => Expect::Runtime(500),
    };
    let cases: Vec<(&str, RequestBuilder, Expect)> = vec![
        // Oversized credentials: refused by length before any parsing.
        (
            "X-Api-Key just over 8 KiB",
            rig.get(path).header("x-api-key", "k".repeat(over)),
            Expect::Auth(Invalid),
        ),
        (
            "X-Api-Key of 32 KiB",
            rig.get(path).header("x-api-key", "k".repeat(32 * 1024)),
            Expect::Auth(Invalid),
        ),
        (
            "Bearer token just over 8 KiB",
            rig.get(path).bearer_auth(token68(over)),
            Expect::Auth(Invalid),
        ),
        (
            "Bearer token of 32 KiB, JWT-shaped",
            rig.get(path).bearer_auth(format!(
                "{}.{}.{}",
                token68(11_000),
                token68(11_000),
                token68(11_000)
            )),
            Expect::Auth(Invalid),
        ),
        (
            "Authorization of 16 KiB without a scheme",
            rig.get(path).header("authorization", "x".repeat(16 * 1024)),
            Expect::Auth(Invalid),
        ),
        // Repeated credential headers: never resolved by picking one.
        (
            "Authorization twice: valid JWT, then junk",
            rig.get(path)
                .bearer_auth(&alice)
                .header("authorization", "Bearer junk"),
            Expect::Auth(Invalid),
        ),
        (
            "Authorization twice: junk, then valid JWT",
            rig.get(path)
                .header("authorization", "Bearer junk")
                .bearer_auth(&alice),
            Expect::Auth(Invalid),
        ),
        (
            "Authorization twice: two different valid JWTs",
            rig.get(path).bearer_auth(&alice).bearer_auth(&bob),
            Expect::Auth(Invalid),
        ),
        (
            "Authorization twice: the same valid JWT",
            rig.get(path).bearer_auth(&alice).bearer_auth(&alice),
            Expect::Auth(Invalid),
        ),
        (
            "Authorization twice: valid JWT, then an empty value",
            rig.get(path)
                .bearer_auth(&alice)
                .header("authorization", ""),
            Expect::Auth(Invalid),
        ),
        (
            "X-Api-Key twice: valid, then junk",
            rig.get(path)
                .header("x-api-key", APP_KEY)
                .header("x-api-key", "gl_junk"),
            Expect::Auth(Invalid),
        ),
        (
            "X-Api-Key twice: two different valid keys",
            rig.get(path)
                .header("x-api-key", APP_KEY)
                .header("x-api-key", QA_KEY),
            Expect::Auth(Invalid),
        ),
        (
            "X-Api-Key twice: the same valid key",
            rig.get(path)
                .header("x-api-key", APP_KEY)
                .header("x-api-key", APP_KEY),
            Expect::Auth(Invalid),
        ),
        (
            "a valid API key and a valid JWT",
            rig.get(path)
                .header("x-api-key", APP_KEY)
                .bearer_auth(&alice),
            Expect::Auth(Invalid),
        ),
        // Malformed values.
        (
            "X-Api-Key with bytes that are not UTF-8",
            rig.get(path)
                .header("x-api-key", value(b"gl_app_\xff\xfe\x80")),
            not_utf8,
        ),
        (
            "Authorization with bytes that are not UTF-8",
            rig.get(path)
                .header("authorization", value(b"Bearer \xc3\x28\xff")),
            not_utf8,
        ),
        (
            "empty X-Api-Key",
            rig.get(path).header("x-api-key", ""),
            Expect::Auth(Invalid),
        ),
        (
            "Bearer without a token",
            rig.get(path).header("authorization", "Bearer"),
            Expect::Auth(Invalid),
        ),
        (
            "the API key sent as Basic credentials",
            rig.get(path).header(
                "authorization",
                format!("Basic {}", STANDARD.encode(format!("app:{APP_KEY}"))),
            ),
            Expect::Auth(Invalid),
        ),
    ];
    for (what, req, expect) in cases {
        refused(&rig, what, req, expect).await;
    }
}

async fn header_bombs(runtime: Runtime) {
    use AuthError::{Invalid, Missing};
    let rig = Rig::start(runtime, |_| {}).await;
    let path = "/api/items";
    let many = |mut req: RequestBuilder, n: usize| {
        for i in 0..n {
            req = req.header(format!("x-bomb-{i:04}"), "0123456789");
        }
        req
    };
    // Measured limits of each runtime's HTTP layer (what answers before
    // greenlight runs):
    // - workerd refuses a request head of about 128 KiB or more with 431 (a
    //   100 KiB header still gets through) and has no header count limit
    //   below that: 3 000 headers (~70 KB) reach the Worker, which answers
    //   its own 401; 10 000 (~240 KB) get the 431.
    // - the Spin test host (hyper 1, default limits) refuses more than 100
    //   headers with 431, and a head over ~400 KB (hyper's read buffer).
    //   Spin itself (also hyper-based) sets its own limits.
    let (many_headers, big_200k) = match runtime {
        Runtime::Cloudflare => (Expect::Auth(Missing), Expect::Runtime(431)),
        Runtime::Spin => (Expect::Runtime(431), Expect::Auth(Missing)),
    };
    let big = |kib: usize| "h".repeat(kib * 1024);
    let body_2mb: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| i as u8).collect();
    let cases: Vec<(&str, RequestBuilder, Expect)> = vec![
        (
            "a 32 KiB header, no credentials",
            rig.get(path).header("x-junk", big(32)),
            Expect::Auth(Missing),
        ),
        (
            "a 32 KiB header, a wrong key",
            rig.get(path)
                .header("x-junk", big(32))
                .header("x-api-key", "gl_wrong"),
            Expect::Auth(Invalid),
        ),
        (
            "a 32 KiB cookie, no credentials",
            rig.get(path)
                .header("cookie", format!("greenlight-id={}", big(32))),
            Expect::Auth(Missing),
        ),
        (
            "a 200 KiB header, no credentials",
            rig.get(path).header("x-junk", big(200)),
            big_200k,
        ),
        (
            "a 1 MiB header, a valid key",
            rig.get(path)
                .header("x-junk", big(1024))
                .header("x-api-key", APP_KEY),
            Expect::Runtime(431),
        ),
        (
            "3 000 headers, no credentials",
            many(rig.get(path), 3_000),
            many_headers,
        ),
        (
            "3 000 headers, a wrong key",
            many(rig.get(path).header("x-api-key", "gl_wrong"), 3_000),
            match runtime {
                Runtime::Cloudflare => Expect::Auth(Invalid),
                Runtime::Spin => Expect::Runtime(431),
            },
        ),
        (
            "10 000 headers, no credentials",
            many(rig.get(path), 10_000),
            Expect::Runtime(431),
        ),
        (
            "a 2 MB body, no credentials",
            rig.post(path).body(body_2mb.clone()),
            Expect::Auth(Missing),
        ),
        (
            "a 2 MB body, a wrong key",
            rig.http
                .request(Method::PUT, rig.url(path))
                .header("x-api-key", "gl_wrong")
                .body(body_2mb),
            Expect::Auth(Invalid),
        ),
    ];
    for (what, req, expect) in cases {
        refused(&rig, what, req, expect).await;
    }

    // An authenticated caller's 3 000 headers are not the edge's to refuse.
    // workerd lets them through and the edge forwards them; the test origin
    // (hyper, 100 headers at most) answers 431 before its handler counts a
    // hit, and the edge relays that answer with its routing headers. The
    // Spin host refuses the request itself.
    let before = rig.origin_hits();
    let resp = many(rig.get(path).header("x-api-key", APP_KEY), 3_000)
        .send()
        .await
        .expect("3 000 headers with a valid key");
    assert_eq!(resp.status(), 431);
    let color = header(&resp, "x-greenlight-color");
    match runtime {
        Runtime::Cloudflare => assert_eq!(color, "blue", "relayed from the origin"),
        Runtime::Spin => assert_eq!(color, "", "answered by the host"),
    }
    assert_eq!(rig.origin_hits(), before);
    rig.normal_request().await;
}

/// The header the admin tests name their caller's address in (the edge is
/// told to trust it), so callers on one loopback address count apart.
const CALLER_HEADER: &str = "x-test-caller";

fn trust_caller_header(setup: &mut greenlight_e2e::EdgeSetup) {
    setup
        .vars
        .insert("TRUSTED_CLIENT_IP_HEADER".into(), CALLER_HEADER.into());
}

async fn admin_refuses_hostile_calls(runtime: Runtime) {
    use AuthError::{Forbidden, Invalid, Missing};
    // Each case comes from its own address: more than ten refused
    // authentications from one would be rate-limited (see
    // `admin_guesses_are_rate_limited`).
    let rig = Rig::start(runtime, trust_caller_header).await;
    // One accepted change first, so a stale epoch exists: epoch 1, 5 %.
    let resp = rig
        .admin_post(
            "weight",
            json!({"expected_epoch": 0, "weight_percent": 5, "reason": "setup"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let before = rig.state().await.state;
    assert_eq!((before.epoch, before.candidate_weight_bp), (1, 500));

    let state = "/__greenlight/state";
    let weight = "/__greenlight/weight";
    let admin = |req: RequestBuilder| req.bearer_auth(ADMIN_TOKEN);
    let post_weight = |body: Vec<u8>| admin(rig.post(weight)).body(body);
    let json_weight = |body: &str| post_weight(body.as_bytes().to_vec());
    let basic = |user_pass: &str| format!("Basic {}", STANDARD.encode(user_pass));
    let mut cases: Vec<(String, RequestBuilder, Expect)> = vec![
        // Who may call.
        ("no token".into(), rig.get(state), Expect::Auth(Missing)),
        (
            "no token, a change".into(),
            rig.post("/__greenlight/promote")
                .json(&json!({"expected_epoch": 1})),
            Expect::Auth(Missing),
        ),
        (
            "wrong token".into(),
            rig.get(state).bearer_auth("test-admin-token-0123456788"),
            Expect::Auth(Invalid),
        ),
        (
            "the token with a suffix".into(),
            rig.get(state).bearer_auth(format!("{ADMIN_TOKEN}x")),
            Expect::Auth(Invalid),
        ),
        (
            "the token as Basic user:password".into(),
            rig.get(state)
                .header("authorization", basic(&format!("admin:{ADMIN_TOKEN}"))),
            Expect::Auth(Invalid),
        ),
        (
            "the token as Basic password only".into(),
            rig.get(state)
                .header("authorization", basic(&format!(":{ADMIN_TOKEN}"))),
            Expect::Auth(Invalid),
        ),
        (
            "the raw token under Basic".into(),
            rig.get(state)
                .header("authorization", format!("Basic {ADMIN_TOKEN}")),
            Expect::Auth(Invalid),
        ),
        (
            "the token with no scheme".into(),
            rig.get(state).header("authorization", ADMIN_TOKEN),
            Expect::Auth(Invalid),
        ),
        (
            "the token under another scheme".into(),
            rig.get(state)
                .header("authorization", format!("Token {ADMIN_TOKEN}")),
            Expect::Auth(Invalid),
        ),
        (
            "the token as an API key".into(),
            rig.get(state).header("x-api-key", ADMIN_TOKEN),
            Expect::Auth(Invalid),
        ),
        (
            "the token with trailing junk".into(),
            rig.get(state)
                .header("authorization", format!("Bearer {ADMIN_TOKEN} junk")),
            Expect::Auth(Invalid),
        ),
        (
            "the token twice".into(),
            admin(admin(rig.get(state))),
            Expect::Auth(Invalid),
        ),
        (
            "the token and a junk Authorization".into(),
            admin(rig.get(state)).header("authorization", "Bearer junk"),
            Expect::Auth(Invalid),
        ),
        (
            "the token and an admin API key".into(),
            admin(rig.get(state)).header("x-api-key", OPS_KEY),
            Expect::Auth(Invalid),
        ),
        (
            "a 9 KiB bearer token".into(),
            rig.get(state).bearer_auth(token68(MAX_TOKEN_LEN + 1)),
            Expect::Auth(Invalid),
        ),
        (
            "a key without the admin role".into(),
            rig.post("/__greenlight/promote")
                .header("x-api-key", APP_KEY)
                .json(&json!({"expected_epoch": 1})),
            Expect::Auth(Forbidden),
        ),
        // Unknown routes: authorisation comes first, so an unauthorised
        // caller cannot probe which routes exist.
        (
            "unknown route, no token".into(),
            rig.get("/__greenlight/secrets"),
            Expect::Auth(Missing),
        ),
        (
            "unknown route, wrong token".into(),
            rig.get("/__greenlight/secrets").bearer_auth("nope"),
            Expect::Auth(Invalid),
        ),
    ];
    for path in [
        "/__greenlight/secrets",
        "/__greenlight/",
        "/__greenlight/state/extra",
        "/__greenlight/STATE",
        // (`%73tate` is `state`: encoded unreserved characters are decoded
        // before any decision, see path_confusion.rs; `%2573` is not.)
        "/__greenlight/%2573tate",
        "/__greenlight//state",
    ] {
        cases.push((
            format!("unknown route {path}"),
            admin(rig.get(path)),
            Expect::Problem(404),
        ));
    }
    // An encoded NUL is refused before any route is looked at.
    cases.push((
        "/__greenlight/state%00".into(),
        admin(rig.get("/__greenlight/state%00")),
        Expect::Problem(400),
    ));
    // Wrong methods on known routes.
    for (method, path) in [
        (Method::POST, state),
        (Method::PUT, state),
        (Method::DELETE, state),
        (Method::HEAD, "/__greenlight/state"),
        (Method::OPTIONS, "/__greenlight/state"),
        (Method::GET, "/__greenlight/promote"),
        (Method::PUT, weight),
        (Method::PATCH, "/__greenlight/rollback"),
        (Method::DELETE, "/__greenlight/abort"),
    ] {
        cases.push((
            format!("{method} {path}"),
            admin(rig.http.request(method, rig.url(path)))
                .json(&json!({"expected_epoch": 1, "weight_percent": 50})),
            Expect::Problem(405),
        ));
    }
    // Bodies: wrong JSON types, bad weights, not JSON at all.
    for body in [
        r#"{"expected_epoch":"1","weight_percent":50}"#,
        r#"{"expected_epoch":1.5,"weight_percent":50}"#,
        r#"{"expected_epoch":null,"weight_percent":50}"#,
        r#"{"expected_epoch":1,"weight_percent":"50"}"#,
        r#"{"expected_epoch":1,"weight_percent":true}"#,
        r#"{"expected_epoch":1,"weight_bp":[50]}"#,
        r#"{"expected_epoch":1,"weight_bp":5,"reason":5}"#,
        r#"{"expected_epoch":1,"weight_bp":5,"actor":{"name":"x"}}"#,
        r#"{"expected_epoch":1,"weight_bp":5,"is_admin":true}"#,
        r#"{"expected_epoch":1,"expected_epoch":0,"weight_bp":5}"#,
        r#"[1,50]"#,
        r#"null"#,
        r#""promote""#,
        r#"{}"#,
        // Negative and out-of-range weights.
        r#"{"expected_epoch":1,"weight_percent":-1}"#,
        r#"{"expected_epoch":1,"weight_percent":-0.01}"#,
        r#"{"expected_epoch":1,"weight_bp":-5}"#,
        r#"{"expected_epoch":-1,"weight_bp":5}"#,
        r#"{"expected_epoch":1,"weight_percent":100.01}"#,
        r#"{"expected_epoch":1,"weight_percent":1000}"#,
        r#"{"expected_epoch":1,"weight_percent":1e309}"#,
        r#"{"expected_epoch":1,"weight_bp":10001}"#,
        r#"{"expected_epoch":1,"weight_bp":65536}"#,
        r#"{"expected_epoch":1,"weight_bp":4294967296}"#,
        r#"{"expected_epoch":18446744073709551616,"weight_bp":5}"#,
        r#"{"expected_epoch":1,"weight_bp":5,"weight_percent":5}"#,
        r#"{"expected_epoch":1}"#,
        // Not JSON.
        "",
        "{",
        "weight=50&expected_epoch=1",
        "<weight>50</weight>",
        "\u{feff}{\"expected_epoch\":1,\"weight_percent\":50}",
    ] {
        cases.push((
            format!("POST weight {body:?}"),
            json_weight(body),
            Expect::Problem(400),
        ));
    }
    let long_reason = "r".repeat(1_000);
    let too_deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let cases_tail: Vec<(String, RequestBuilder, Expect)> = vec![
        (
            "POST weight: bytes that are not UTF-8".into(),
            post_weight(vec![0xff, 0xfe, 0x00, 0x7b, 0x80]),
            Expect::Problem(400),
        ),
        (
            "POST weight: 5 000-deep nesting".into(),
            json_weight(&too_deep),
            Expect::Problem(400),
        ),
        (
            "POST promote: a 1 000-byte reason".into(),
            admin(rig.post("/__greenlight/promote"))
                .json(&json!({"expected_epoch": 1, "reason": long_reason})),
            Expect::Problem(400),
        ),
        // Too large: a body just over the 16 KiB limit, then 2 MB.
        (
            "POST weight: 16 KiB + 1 of JSON".into(),
            json_weight(&format!(
                r#"{{"expected_epoch":1,"weight_bp":5,"reason":"{}"}}"#,
                "r".repeat(16 * 1024)
            )),
            Expect::Problem(413),
        ),
        (
            "POST promote: a 2 MB body".into(),
            admin(rig.post("/__greenlight/promote")).body(vec![b'{'; 2 * 1024 * 1024]),
            Expect::Problem(413),
        ),
        // Stale and future epochs.
        (
            "POST promote, stale epoch".into(),
            admin(rig.post("/__greenlight/promote")).json(&json!({"expected_epoch": 0})),
            Expect::Problem(409),
        ),
        (
            "POST weight, future epoch".into(),
            json_weight(r#"{"expected_epoch":2,"weight_percent":50}"#),
            Expect::Problem(409),
        ),
        (
            "POST abort, u64::MAX epoch".into(),
            admin(rig.post("/__greenlight/abort")).json(&json!({"expected_epoch": u64::MAX})),
            Expect::Problem(409),
        ),
    ];
    cases.extend(cases_tail);
    for (i, (what, req, expect)) in cases.into_iter().enumerate() {
        let caller = format!("10.9.{}.{}", i / 200, i % 200 + 1);
        refused(&rig, &what, req.header(CALLER_HEADER, caller), expect).await;
    }
    // Nothing of that changed the state, and the admin API still works.
    assert_eq!(rig.state().await.state, before);
    let resp = rig
        .admin_post(
            "weight",
            json!({"expected_epoch": 1, "weight_percent": 10, "reason": "after"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(rig.state().await.state.epoch, 2);
}

/// Guessing the admin token from one address: ten refusals (401), then 429
/// with `Retry-After` for anything that address sends to the admin API,
/// the right token included; the operator at another address, with the
/// token or another admin credential, is not slowed down.
async fn admin_guesses_are_rate_limited(runtime: Runtime) {
    use greenlight_common::admin_guard::{FAILURE_BURST, FORGIVE_MS};
    let rig = Rig::start(runtime, trust_caller_header).await;
    let state = "/__greenlight/state";
    let attacker = "203.0.113.66";
    for i in 0..FAILURE_BURST {
        let resp = rig
            .get(state)
            .header(CALLER_HEADER, attacker)
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "guess {i}");
    }
    let max_wait = FORGIVE_MS.div_ceil(1_000);
    for (what, token) in [("a guess", "guess-x"), ("the right token", ADMIN_TOKEN)] {
        let resp = rig
            .get(state)
            .header(CALLER_HEADER, attacker)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 429, "{what} from the limited address");
        let wait: u64 = header(&resp, "retry-after").parse().unwrap_or(0);
        assert!((1..=max_wait).contains(&wait), "{what}: Retry-After {wait}");
        let p: Problem = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(p.status, 429);
    }
    // The operator, elsewhere, with the token and with an admin API key.
    for (i, req) in [
        rig.get(state).bearer_auth(ADMIN_TOKEN),
        rig.get(state).header("x-api-key", OPS_KEY),
    ]
    .into_iter()
    .enumerate()
    {
        let resp = req
            .header(CALLER_HEADER, format!("198.51.100.{}", i + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "operator credential {i}");
    }
    // Ordinary traffic from the limited address is not the admin limit's
    // business.
    let resp = rig
        .get("/public/ping")
        .header(CALLER_HEADER, attacker)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

greenlight_e2e::for_each_runtime!(
    credential_headers_are_refused,
    header_bombs,
    admin_refuses_hostile_calls,
    admin_guesses_are_rate_limited,
    isolate_tables_are_admin_only_and_bounded,
);

/// `GET /__greenlight/isolate` (what the soak reads): admin only, answered
/// by the edge instance, every table within its cap, and the failed admin
/// authentications just made counted in the admin guard's table.
async fn isolate_tables_are_admin_only_and_bounded(runtime: Runtime) {
    use greenlight_common::admin::IsolateView;
    let rig = Rig::start(runtime, trust_caller_header).await;
    let isolate = "/__greenlight/isolate";
    for i in 0..3 {
        let resp = rig
            .get("/__greenlight/state")
            .header(CALLER_HEADER, format!("203.0.113.{}", 10 + i))
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let resp = rig.get(isolate).send().await.unwrap();
    assert_eq!(resp.status(), 401, "no credential");
    let resp = rig.get(isolate).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(resp.status(), 401, "a wrong token");
    let resp = rig
        .post(isolate)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let resp = rig
        .get(isolate)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let view: IsolateView = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(view.runtime, runtime.name());
    assert!(view.wasm_memory_bytes >= 65_536, "{view:?}");
    for (name, t) in &view.tables {
        assert!(t.entries <= t.cap, "{name}: {t:?}");
    }
    // Where the tables live: a Worker isolate's memory counts callers;
    // Spin's store (both builds: instances come and go with the load)
    // counts slots.
    let (tables_in, guard) = match runtime {
        Runtime::Cloudflare => ("isolate", "admin_failure_callers"),
        Runtime::Spin => ("store", "admin_failure_slots"),
    };
    assert_eq!(view.tables_in, tables_in);
    assert!(view.tables[guard].entries >= 1, "{view:?}");
    if runtime == Runtime::Cloudflare {
        // Five wrong calls above, from four addresses: the three and the
        // test's own.
        assert!(view.tables[guard].entries >= 4, "{view:?}");
        assert!(view.tables.contains_key("pending_forwards"), "{view:?}");
    }
}
