//! Clients that try to move an origin's health, hold an edge instance, or
//! write a header, through both real runtimes (workerd served directly,
//! and `spin up`), each in front of two recording origins on 127.0.0.1.
//!
//! | attack | what must hold |
//! | --- | --- |
//! | uploads cut short during a canary (buffered for a retry, and streamed) | no failure counted against either origin; the caller gets a 4xx or loses its connection, never a 5xx it caused |
//! | a silent 4 MiB upload to a refused route | the 401/400 arrives at once, and the instance lets go |
//! | a JWT `sub` with line feeds, carriage returns, spaces, non-ASCII | served; the origin gets the principal percent-encoded and no header the `sub` spelled |
//! | underscore spellings of the headers origins trust | none reaches the origin |
//! | slowloris heads and bodies, half-open connections | ordinary callers are still served meanwhile, and afterwards the edge's tables are within their caps |

use greenlight_common::admin::IsolateView;
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN, APP_KEY};
use greenlight_e2e::rig::Rig;
use greenlight_e2e::Runtime;
use greenlight_test_origin::Behavior;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The edge served the way a load would reach it: the Worker on workerd
/// directly (no `wrangler dev` proxy in front), Spin under `spin up`.
async fn rig(runtime: Runtime) -> Rig {
    Rig::start_direct_with(runtime, Behavior::default(), Behavior::default(), |_| {}).await
}

fn authority(rig: &Rig) -> String {
    rig.edge
        .base_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Writes `head` (and `body`) on a new connection and returns it, without
/// reading.
async fn open(rig: &Rig, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(authority(rig))
        .await
        .expect("connecting to the edge");
    stream.write_all(head.as_bytes()).await.expect("writing");
    if !body.is_empty() {
        stream.write_all(body).await.expect("writing the body");
    }
    stream
}

/// The status line's code of the first answer on `stream` within `within`,
/// or `None` when the connection closed or nothing came in time.
async fn status_within(stream: &mut TcpStream, within: Duration) -> Option<u16> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&raw[..end]).to_string();
                return line.split(' ').nth(1).and_then(|s| s.parse().ok());
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

fn head(method: &str, path: &str, rig: &Rig, headers: &[(&str, &str)]) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", authority(rig));
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// `GET /__greenlight/isolate`: every table of the instance that answers
/// within its cap, and the whole view for further checks.
async fn tables_within_caps(rig: &Rig, what: &str) -> IsolateView {
    let resp = rig
        .get("/__greenlight/isolate")
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: isolate: {e}"));
    assert_eq!(resp.status(), 200, "{what}: isolate");
    let view: IsolateView =
        serde_json::from_str(&resp.text().await.unwrap_or_default()).expect("isolate view");
    for (name, t) in &view.tables {
        assert!(t.entries <= t.cap, "{what}: table {name}: {t:?}");
    }
    view
}

/// The edge's health record (`GET state`) shows no failure of either
/// color, and the color under test is healthy.
async fn no_origin_failure_counted(rig: &Rig, what: &str) {
    let health = rig.state().await.health.expect("GET state reports health");
    assert_eq!(
        (health.blue_failures, health.green_failures),
        (0, 0),
        "{what} counted against an origin: {health:?}"
    );
    assert!(!health.unhealthy, "{what}: {health:?}");
}

/// Ordinary callers are served while `hold` connections are open: each of
/// `n` requests answered 200 within `within`.
async fn still_serves(rig: &Rig, what: &str, n: usize, within: Duration) {
    for i in 0..n {
        let started = Instant::now();
        let resp = tokio::time::timeout(
            within,
            rig.get("/api/normal").header("x-api-key", APP_KEY).send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: ordinary request {i} unanswered in {within:?}"))
        .unwrap_or_else(|e| panic!("{what}: ordinary request {i}: {e}"));
        assert_eq!(resp.status(), 200, "{what}: ordinary request {i}");
        assert!(started.elapsed() < within, "{what}: request {i}");
    }
}

/// During a 20 % canary (so a retry target exists), uploads that stop
/// short of their announced length, on a method whose body is kept for a
/// retry (GET) and on one whose body is streamed (POST), then the client
/// closes. None may count as an origin failure: the health record after
/// them shows no failure of either color, and the candidate stays healthy.
async fn cut_uploads_never_count_against_an_origin(runtime: Runtime) {
    let rig = rig(runtime).await;
    let epoch = rig.state().await.state.epoch;
    let resp = rig
        .admin_post(
            "weight",
            json!({"expected_epoch": epoch, "weight_percent": 20, "reason": "canary"}),
        )
        .await;
    assert_eq!(resp.status(), 200, "starting the canary");
    let auth = [("x-api-key", APP_KEY), ("content-length", "100")];
    for _ in 0..8 {
        for method in ["GET", "POST"] {
            let mut stream = open(&rig, &head(method, "/api/upload", &rig, &auth), b"x").await;
            // The client breaks off: no more bytes, then gone.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stream.shutdown().await;
            drop(stream);
        }
    }
    // Health reports are batched (the Worker's at most once a second):
    // wait past that before reading.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    no_origin_failure_counted(&rig, "cut uploads").await;
    // A streamed body shorter than announced whose client stays: the
    // edge waits for the rest (or answers 4xx), never a 5xx.
    let mut stream = open(&rig, &head("POST", "/api/short", &rig, &auth), b"xy").await;
    let status = status_within(&mut stream, Duration::from_millis(300)).await;
    assert!(
        status.is_none_or(|s| (400..500).contains(&s)),
        "a short body still being sent: {status:?}"
    );
    drop(stream);
    still_serves(&rig, "after cut uploads", 3, Duration::from_secs(5)).await;
    tables_within_caps(&rig, "after cut uploads").await;
}

/// A caller without credentials announces 4 MiB and sends nothing: the
/// 401 comes at once (the edge never waits for a body it will not use);
/// likewise a refused admin call and a refused path.
async fn a_silent_upload_is_refused_at_once(runtime: Runtime) {
    let rig = rig(runtime).await;
    let length = [("content-length", "4194304")];
    for (what, method, path, expect) in [
        ("no credential", "POST", "/api/x", 401),
        ("admin without a token", "POST", "/__greenlight/weight", 401),
        ("a refused path", "POST", "/api/%00", 400),
    ] {
        let before = rig.origin_hits();
        let started = Instant::now();
        let mut stream = open(&rig, &head(method, path, &rig, &length), b"").await;
        let status = status_within(&mut stream, Duration::from_secs(3)).await;
        assert_eq!(
            status,
            Some(expect),
            "{what}: answered after {:?}",
            started.elapsed()
        );
        assert_eq!(rig.origin_hits(), before, "{what}: reached an origin");
        drop(stream);
    }
    // Twenty such callers at once, all kept open: each answered at once,
    // and the edge still serves others while they hold their sockets.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(open(&rig, &head("POST", "/api/x", &rig, &length), b"").await);
    }
    for (i, stream) in held.iter_mut().enumerate() {
        let status = status_within(stream, Duration::from_secs(3)).await;
        assert_eq!(status, Some(401), "silent caller {i}");
    }
    still_serves(&rig, "20 silent uploads open", 5, Duration::from_secs(3)).await;
    drop(held);
    tables_within_caps(&rig, "after silent uploads").await;
}

/// Validly signed HS256 tokens whose `sub` holds what a header must not:
/// served, with the principal percent-encoded, and nothing the `sub`
/// spelled turned into a header of its own.
async fn control_characters_in_sub_are_encoded(runtime: Runtime) {
    let rig = rig(runtime).await;
    for (sub, expect) in [
        ("u\nx-original-url\n/admin", "s:u%0Ax-original-url%0A/admin"),
        ("u\rv", "s:u%0Dv"),
        ("u\r\nx-injected: 1", "s:u%0D%0Ax-injected:%201"),
        ("ünïcode user", "s:%C3%BCn%C3%AFcode%20user"),
        ("alice@example.com", "s:alice@example.com"),
    ] {
        rig.reset_origins();
        let token = fixtures::sign(Algorithm::HS256, &fixtures::claims(sub));
        let resp = rig
            .get("/api/whoami")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("sub {sub:?}: {e}"));
        assert_eq!(resp.status(), 200, "sub {sub:?}");
        let got = rig.received();
        assert_eq!(got.len(), 1, "sub {sub:?}: one request at the origins");
        assert_eq!(
            got[0].header("x-greenlight-principal"),
            Some(expect),
            "sub {sub:?}"
        );
        for name in ["x-original-url", "x-injected"] {
            assert_eq!(got[0].header(name), None, "sub {sub:?} wrote {name}");
        }
    }
    no_origin_failure_counted(&rig, "control characters in sub").await;
}

/// The headers the edge drops for trust, in the spellings CGI-style
/// origins read as the same variable: none reaches the origin.
async fn underscore_spellings_of_trusted_headers_are_dropped(runtime: Runtime) {
    let rig = rig(runtime).await;
    let forged = [
        "x_greenlight_principal",
        "X_Greenlight_Color",
        "x-greenlight_principal",
        "x_forwarded_for",
        "x_forwarded_host",
        "x_forwarded_proto",
        "x_real_ip",
        "x_original_url",
        "x_http_method_override",
        "x_api_key",
    ];
    let mut req = rig.get("/api/items").header("x-api-key", APP_KEY);
    for name in forged {
        req = req.header(name, "forged");
    }
    rig.reset_origins();
    let resp = req.send().await.expect("request");
    assert_eq!(resp.status(), 200);
    let got = rig.received();
    assert_eq!(got.len(), 1);
    for name in forged {
        let lower = name.to_ascii_lowercase();
        assert_eq!(got[0].header(&lower), None, "{name} reached the origin");
    }
    assert!(
        got[0].headers.iter().all(|(_, v)| v != "forged"),
        "a forged value reached the origin: {:?}",
        got[0].headers
    );
    // The edge's own principal is there, and says who the caller is.
    assert_eq!(got[0].header("x-greenlight-principal"), Some("k:app"));
}

/// Slowloris: 40 connections that send a head a few bytes at a time, 20
/// that send an authenticated body a few bytes at a time, and 100 that
/// connect and send nothing; meanwhile ordinary requests are served, and
/// once they are gone the instance's tables are within their caps.
async fn slow_and_half_open_clients_do_not_starve_the_edge(runtime: Runtime) {
    let rig = rig(runtime).await;
    let mut slow_heads = Vec::new();
    for _ in 0..40 {
        slow_heads.push(open(&rig, "GET /api/items HTTP/1.1\r\nhost: x\r\nx-a", b"").await);
    }
    let auth = [("x-api-key", APP_KEY), ("content-length", "100000")];
    let mut slow_bodies = Vec::new();
    for _ in 0..20 {
        slow_bodies.push(open(&rig, &head("POST", "/api/slow", &rig, &auth), b"a").await);
    }
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(
            TcpStream::connect(authority(&rig))
                .await
                .expect("connecting"),
        );
    }
    // A few seconds of trickle: every slow client sends a byte a second.
    for round in 0..4 {
        for s in slow_heads.iter_mut() {
            let _ = s.write_all(b"a").await;
        }
        for s in slow_bodies.iter_mut() {
            let _ = s.write_all(b"b").await;
        }
        still_serves(
            &rig,
            &format!("slow clients, round {round}"),
            3,
            Duration::from_secs(5),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    drop(slow_heads);
    drop(slow_bodies);
    drop(silent);
    tokio::time::sleep(Duration::from_millis(500)).await;
    still_serves(
        &rig,
        "after the slow clients left",
        5,
        Duration::from_secs(5),
    )
    .await;
    tables_within_caps(&rig, "after slow clients").await;
    no_origin_failure_counted(&rig, "slow clients").await;
}

greenlight_e2e::for_each_runtime!(
    cut_uploads_never_count_against_an_origin,
    a_silent_upload_is_refused_at_once,
    control_characters_in_sub_are_encoded,
    underscore_spellings_of_trusted_headers_are_dropped,
    slow_and_half_open_clients_do_not_starve_the_edge,
);
