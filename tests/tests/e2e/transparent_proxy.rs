//! A transparent proxy: what the origin answers reaches the
//! client as the origin meant it, through both real runtimes (`wrangler
//! dev` and `spin up`), each case asserting what the client received *and*
//! what the origin received.
//!
//! The origins are the suite's recording origins with their test-only
//! scripted routes (`Behavior::scripts`: redirects with cookies, chosen
//! statuses, slow bodies, a WebSocket echo), and, for bytes an HTTP library
//! would not send (trailers nobody asked for, `103 Early Hints`), a raw
//! origin (`greenlight_e2e::raw::RawOrigin`).

use futures::{SinkExt, StreamExt};
use greenlight_common::admin::Problem;
use greenlight_e2e::fixtures::{APP_KEY, QA_KEY};
use greenlight_e2e::process::free_port;
use greenlight_e2e::raw::{self, RawOrigin};
use greenlight_e2e::rig::{header, scripted, Rig};
use greenlight_e2e::{EdgeSetup, Runtime};
use greenlight_test_origin::{Behavior, Origin, RecordedRequest};
use reqwest::{redirect, Client, Response};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite;

/// The suite's rig in front of two scripted origins, with extra variables.
async fn start(runtime: Runtime, vars: &[(&str, &str)]) -> Rig {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Rig::start_with(
        runtime,
        scripted(),
        scripted(),
        move |setup: &mut EdgeSetup| {
            setup.vars.extend(vars);
        },
    )
    .await
}

/// A client that never follows redirects (the browser's job, not ours).
fn client() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// Every value of response header `name`, in order.
fn all<'a>(resp: &'a Response, name: &str) -> Vec<&'a str> {
    resp.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The one request the origins received since the last reset.
fn only_request(rig: &Rig, what: &str) -> RecordedRequest {
    let got = rig.received();
    assert_eq!(got.len(), 1, "{what}: the origins received {got:?}");
    got[0].clone()
}

/// `url` as one query value of the test origin's redirect script (the
/// characters that would end or split it are escaped).
fn query_value(url: &str) -> String {
    url.replace(':', "%3A")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('=', "%3D")
}

/// An edge whose blue origin is a raw origin sending `script` (bytes hyper
/// would not send), with the origin to read what it received.
async fn behind_raw_origin(runtime: Runtime, script: &[u8]) -> (RawOrigin, Rig) {
    let origin = RawOrigin::start(script).await.unwrap();
    let rig = Rig::start_with(runtime, Behavior::default(), Behavior::default(), |s| {
        s.vars.insert("BLUE_ORIGIN".into(), origin.url());
    })
    .await;
    (origin, rig)
}

/// Names that must never reach a redirect's target.
const SECRET_HEADERS: &[&str] = &[
    "x-api-key",
    "authorization",
    "cookie",
    "signature",
    "signature-input",
    "x-greenlight-principal",
];

async fn redirects_pass_through(runtime: Runtime) {
    let rig = start(runtime, &[("ORIGIN_SIGNING_SECRET", "e2e-signing-secret")]).await;
    let http = client();
    // Where the origin redirects to: a third server that must hear nothing.
    let trap = Origin::start("127.0.0.1:0".parse().unwrap(), "trap", Behavior::default())
        .await
        .unwrap();
    let elsewhere = format!("{}/steal?x=1", trap.url());
    for (status, to, expect_location) in [
        (
            302,
            "/public/landing".to_string(),
            "/public/landing".to_string(),
        ),
        (301, elsewhere.clone(), elsewhere.clone()),
        (
            303,
            format!("{}/public/next", rig.blue.url()),
            format!("{}/public/next", rig.blue.url()),
        ),
        (307, elsewhere.clone(), elsewhere.clone()),
        (308, elsewhere.clone(), elsewhere.clone()),
    ] {
        rig.reset_origins();
        let target = format!(
            "/api/script/redirect?status={status}&to={}",
            query_value(&to)
        );
        let resp = http
            .get(rig.url(&target))
            .header("x-api-key", APP_KEY)
            .header("cookie", "session=old")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{target}");
        assert_eq!(header(&resp, "location"), expect_location, "{target}");
        assert_eq!(
            all(&resp, "set-cookie"),
            ["session=abc; Path=/; HttpOnly", "theme=dark; Path=/"],
            "{target}: the origin's cookies, each on its own"
        );
        assert_eq!(header(&resp, "x-greenlight-color"), "blue");
        assert_eq!(header(&resp, "x-greenlight-reason"), "stable");
        assert_eq!(resp.text().await.unwrap(), "moved\n", "{target}");
        let got = only_request(&rig, &target);
        assert_eq!(got.path, "/api/script/redirect");
        assert!(got.header("signature").is_some());
        assert_eq!(trap.hits(), 0, "{target}: the edge followed the redirect");
    }
    // A redirect is an answer, not a failure.
    let health = rig.state().await.health;
    if let Some(h) = health {
        assert_eq!((h.blue_failures, h.green_failures), (0, 0), "{h:?}");
    }
    for name in SECRET_HEADERS {
        assert!(trap.recent().iter().all(|r| r.header(name).is_none()));
    }
}

async fn origins_see_the_clients_host_in_forwarding_headers(runtime: Runtime) {
    let rig = start(runtime, &[]).await;
    let edge_host = rig.edge.base_url.trim_start_matches("http://").to_string();
    for (sent, expect) in [
        (None, edge_host.clone()),
        (Some("app.example.test"), "app.example.test".to_string()),
    ] {
        rig.reset_origins();
        let mut req = client()
            .get(rig.url("/api/items"))
            .header("x-api-key", APP_KEY)
            .header("x-forwarded-host", "evil.test");
        if let Some(host) = sent {
            req = req.header("host", host);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let got = only_request(&rig, "GET /api/items");
        // The origin's own host: the runtime sets it from the origin URL.
        assert_eq!(got.header("host"), Some(rig.blue.addr.to_string().as_str()));
        assert_eq!(got.header("x-forwarded-host"), Some(expect.as_str()));
        let host_param = if expect.contains(':') {
            format!("host=\"{expect}\"")
        } else {
            format!("host={expect}")
        };
        assert_eq!(
            got.header("forwarded"),
            Some(format!("for=127.0.0.1;proto=http;{host_param}").as_str())
        );
        assert_eq!(
            got.headers
                .iter()
                .filter(|(k, _)| k == "x-forwarded-host")
                .count(),
            1
        );
    }
}

async fn a_client_host_policy_is_refused_where_the_runtime_sets_host(runtime: Runtime) {
    let rig = start(runtime, &[("ORIGIN_HOST", "green:client")]).await;
    let resp = client()
        .get(rig.url("/api/items"))
        .header("x-api-key", APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    let p: Problem = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(p.kind, "urn:greenlight:problem:edge-misconfigured");
    assert!(!body.contains("127.0.0.1"), "{body}");
    assert_eq!(rig.origin_hits(), 0);
}

async fn locations_are_rewritten_only_when_configured(runtime: Runtime) {
    let rig = start(runtime, &[("REWRITE_LOCATION", "true")]).await;
    let http = client();
    let edge = rig.edge.base_url.clone();
    let blue = rig.blue.url();
    for (to, expect) in [
        (
            format!("{blue}/public/landing?x=1"),
            format!("{edge}/public/landing?x=1"),
        ),
        (format!("{}/x", rig.green.url()), format!("{edge}/x")),
        (
            "/public/relative".to_string(),
            "/public/relative".to_string(),
        ),
        (
            "https://elsewhere.example/x".to_string(),
            "https://elsewhere.example/x".to_string(),
        ),
    ] {
        rig.reset_origins();
        let target = format!("/api/script/redirect?to={}", query_value(&to));
        let resp = http
            .get(rig.url(&target))
            .header("x-api-key", APP_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "{to}");
        assert_eq!(header(&resp, "location"), expect, "{to}");
        assert_eq!(all(&resp, "set-cookie").len(), 2, "{to}");
        assert_eq!(resp.text().await.unwrap(), "moved\n");
        only_request(&rig, &target);
    }
}

/// A WebSocket handshake to `/api/script/ws` with `headers`.
fn ws_request(rig: &Rig, headers: &[(&str, &str)]) -> tungstenite::handshake::client::Request {
    use tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/api/script/ws",
        rig.edge.base_url.replace("http://", "ws://")
    );
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    req
}

async fn websockets_pass_through_where_the_platform_can(runtime: Runtime) {
    let rig = start(runtime, &[]).await;
    let connect = |headers: &[(&str, &str)]| {
        let req = ws_request(&rig, headers);
        async move {
            tokio::time::timeout(
                Duration::from_secs(20),
                tokio_tungstenite::connect_async(req),
            )
            .await
            .expect("no answer to the upgrade within 20 s")
        }
    };
    match runtime {
        Runtime::Cloudflare => {
            // Routed by the same decision as any request: blue (stable),
            // green for a previewer asking for it.
            for (headers, color) in [
                (vec![("x-api-key", APP_KEY)], "blue"),
                (
                    vec![("x-api-key", QA_KEY), ("x-greenlight-color", "green")],
                    "green",
                ),
            ] {
                rig.reset_origins();
                let (mut ws, resp) = connect(&headers).await.unwrap();
                assert_eq!(resp.status().as_u16(), 101);
                let tag = resp
                    .headers()
                    .get("x-greenlight-color")
                    .and_then(|v| v.to_str().ok());
                assert_eq!(tag, Some(color));
                for msg in ["hello", "again"] {
                    ws.send(tungstenite::Message::text(msg)).await.unwrap();
                    let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
                        .await
                        .expect("no echo within 10 s")
                        .expect("socket ended")
                        .unwrap();
                    assert_eq!(echo.into_text().unwrap().as_str(), format!("{color}:{msg}"));
                }
                let _ = ws.close(None).await;
                let got = only_request(&rig, "the upgrade");
                assert_eq!(got.path, "/api/script/ws");
                assert_eq!(got.header("upgrade"), Some("websocket"));
                assert!(got.header("sec-websocket-key").is_some());
                assert_eq!(got.header("x-api-key"), None);
            }
            // Unauthenticated upgrades are refused like any request.
            rig.reset_origins();
            match connect(&[]).await {
                Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
                other => panic!("expected a 401, got {:?}", other.map(|(_, r)| r.status())),
            }
            assert_eq!(rig.origin_hits(), 0);
        }
        Runtime::Spin => {
            // wasi:http 0.2 cannot upgrade: a clear 501, nothing forwarded.
            rig.reset_origins();
            match connect(&[("x-api-key", APP_KEY)]).await {
                Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 501),
                other => panic!("expected a 501, got {:?}", other.map(|(_, r)| r.status())),
            }
            // The same handshake read to the end: a problem document.
            let resp = client()
                .get(rig.url("/api/script/ws"))
                .header("x-api-key", APP_KEY)
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("sec-websocket-version", "13")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 501);
            let body = resp.text().await.unwrap();
            assert!(body.contains("websocket-unsupported"), "{body}");
            assert_eq!(rig.origin_hits(), 0);
        }
    }
}

async fn head_and_bodyless_answers_keep_their_headers(runtime: Runtime) {
    let rig = start(runtime, &[]).await;
    let http = client();
    let key = ("x-api-key", APP_KEY);
    // GET: the body, its length, every cookie.
    rig.reset_origins();
    let resp = http
        .get(rig.url("/api/script/headers"))
        .header(key.0, key.1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-length"), "1234");
    assert_eq!(
        all(&resp, "set-cookie"),
        ["a=1; Path=/", "b=2; Path=/", "c=3; Path=/"]
    );
    assert_eq!(resp.bytes().await.unwrap().len(), 1234);
    // HEAD: the same head, no body.
    rig.reset_origins();
    let resp = raw::request(&rig.edge.base_url, "HEAD", "/api/script/headers", &[key])
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-length"),
        Some("1234"),
        "{:?}",
        resp.headers
    );
    assert_eq!(
        resp.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .count(),
        3
    );
    assert!(resp.body.is_empty());
    assert_eq!(only_request(&rig, "HEAD").method, "HEAD");
    // 204 and 304: status and headers, no body.
    for (code, extra) in [(204, None), (304, Some(("if-none-match", "\"v1\"")))] {
        rig.reset_origins();
        let mut headers = vec![key];
        headers.extend(extra);
        let target = format!("/api/script/status/{code}");
        let resp = raw::request(&rig.edge.base_url, "GET", &target, &headers)
            .await
            .unwrap();
        assert_eq!(resp.status, code);
        assert_eq!(resp.header("etag"), Some("\"v1\""));
        assert_eq!(resp.header("cache-control"), Some("max-age=60"));
        assert_eq!(resp.header("x-greenlight-color"), Some("blue"));
        assert!(resp.body.is_empty(), "{code}: {:?}", resp.text());
        let got = only_request(&rig, &target);
        if let Some((name, value)) = extra {
            assert_eq!(got.header(name), Some(value));
        }
    }
}

async fn expect_continue_uploads_and_informational_answers(runtime: Runtime) {
    let rig = start(runtime, &[]).await;
    // The runtime answers the client's `Expect: 100-continue`; the origin
    // never sees `expect` (workerd's fetch would take an origin's
    // `100 Continue` for the answer).
    rig.reset_origins();
    let body = vec![b'u'; 4096];
    let resp = raw::request_with_body(
        &rig.edge.base_url,
        "PUT",
        "/echo",
        &[
            ("x-api-key", APP_KEY),
            ("expect", "100-continue"),
            ("content-length", "4096"),
        ],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, body);
    let got = only_request(&rig, "PUT with expect");
    assert_eq!(got.header("expect"), None);
    assert_eq!(got.body_len, 4096);

    // An origin that sends `103 Early Hints` first: the client gets the
    // final answer, whole (neither runtime passes a 1xx on).
    let (origin, rig) = behind_raw_origin(
        runtime,
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nconnection: close\r\n\r\nfinal\n",
    )
    .await;
    let resp = raw::request(
        &rig.edge.base_url,
        "GET",
        "/api/hints",
        &[("x-api-key", APP_KEY)],
    )
    .await
    .unwrap();
    assert!(resp.informational.is_empty(), "{:?}", resp.informational);
    match runtime {
        // The final answer, whole (the host's HTTP client skips the 103).
        Runtime::Spin => {
            assert_eq!(resp.status, 200, "{}", resp.text());
            assert_eq!(resp.text(), "final\n");
            assert_eq!(resp.header("x-greenlight-color"), Some("blue"));
        }
        // workerd's fetch resolves with the 103 itself: the final answer is
        // out of reach, so the edge says so.
        Runtime::Cloudflare => {
            assert_eq!(resp.status, 502, "{}", resp.text());
            let text = resp.text();
            assert!(
                text.contains("origin-failed") && text.contains("103"),
                "{text}"
            );
        }
    }
    assert_eq!(origin.heads().len(), 1, "one attempt, no retry");
    // Not an origin failure.
    if let Some(h) = rig.state().await.health {
        assert_eq!(h.blue_failures, 0, "{h:?}");
    }
}

async fn trailers_pass_where_the_platform_passes_them(runtime: Runtime) {
    let (origin, rig) = behind_raw_origin(
        runtime,
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\
          trailer: x-checksum\r\nconnection: close\r\n\r\n\
          6\r\nhello \r\n6\r\nworld\n\r\n0\r\nx-checksum: abc123\r\n\r\n",
    )
    .await;
    let resp = raw::request(
        &rig.edge.base_url,
        "GET",
        "/api/trailers",
        &[("x-api-key", APP_KEY), ("te", "trailers")],
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "hello world\n");
    let heads = origin.heads();
    assert_eq!(heads.len(), 1);
    assert!(heads[0].starts_with("get /api/trailers "), "{}", heads[0]);
    let checksum: Vec<&str> = resp
        .trailers
        .iter()
        .filter(|(k, _)| k == "x-checksum")
        .map(|(_, v)| v.as_str())
        .collect();
    match runtime {
        // Spin pumps the origin's trailers into the client's body.
        Runtime::Spin => assert_eq!(checksum, ["abc123"], "{:?}", resp.trailers),
        // A fetch() body has no trailers in workerd: they are lost.
        Runtime::Cloudflare => assert!(checksum.is_empty(), "{:?}", resp.trailers),
    }
}

async fn shared_caches_cannot_mix_users_or_colors(runtime: Runtime) {
    let rig = start(runtime, &[]).await;
    let http = client();
    let cc = "public%2C%20max-age%3D600";
    // A new anonymous caller: the edge sets its cookie, so the answer is
    // private; the origin's other directives and cookies stay.
    rig.reset_origins();
    let resp = http
        .get(rig.url(&format!("/public/script/headers?cc={cc}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "cache-control"), "private, max-age=600");
    let cookies = all(&resp, "set-cookie");
    assert_eq!(cookies.len(), 4, "{cookies:?}");
    assert!(cookies[3].starts_with("greenlight-id="), "{cookies:?}");
    assert_eq!(all(&resp, "vary"), ["x-greenlight-color"]);
    let id = cookies[3].split(';').next().unwrap().to_string();
    let got = only_request(&rig, "anonymous");
    assert_eq!(got.query.as_deref(), Some(&format!("cc={cc}")[..]));
    // The same caller with its cookie: the origin's Cache-Control as sent.
    rig.reset_origins();
    let resp = http
        .get(rig.url(&format!("/public/script/headers?cc={cc}")))
        .header("cookie", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "cache-control"), "public, max-age=600");
    assert_eq!(all(&resp, "set-cookie").len(), 3);
    // No Cache-Control from the origin: a new caller still gets `private`.
    let resp = http
        .get(rig.url("/public/script/headers"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "cache-control"), "private");
    // During a canary the color depends on the caller's identity: Vary.
    let epoch = rig.state().await.state.epoch;
    let change = rig
        .admin_post(
            "weight",
            serde_json::json!({"expected_epoch": epoch, "weight_percent": 50}),
        )
        .await;
    assert_eq!(change.status(), 200);
    let resp = http
        .get(rig.url("/api/script/status/200"))
        .header("x-api-key", APP_KEY)
        .send()
        .await
        .unwrap();
    // The credential is the identity of a caller without the edge's cookie,
    // which could have decided it too; the answer hands that identity out
    // as the cookie (one color on the public routes as well), so it is
    // private.
    assert_eq!(
        all(&resp, "vary"),
        ["x-greenlight-color, x-api-key, cookie"]
    );
    assert!(
        all(&resp, "set-cookie")
            .iter()
            .any(|c| c.starts_with("greenlight-id=")),
        "{:?}",
        all(&resp, "set-cookie")
    );
    assert_eq!(header(&resp, "cache-control"), "private, max-age=60");
    let resp = http
        .get(rig.url("/public/script/status/200"))
        .header("cookie", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(all(&resp, "vary"), ["x-greenlight-color, cookie"]);
    // A preview: the header and the credential that allowed it.
    let resp = http
        .get(rig.url("/api/script/status/200"))
        .header("x-api-key", QA_KEY)
        .header("x-greenlight-color", "green")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-greenlight-color"), "green");
    assert_eq!(all(&resp, "vary"), ["x-greenlight-color, x-api-key"]);
}

async fn errors_name_the_color_never_an_address(runtime: Runtime) {
    let dead = free_port();
    let rig = Rig::start_with(runtime, Behavior::default(), Behavior::default(), |s| {
        s.vars
            .insert("BLUE_ORIGIN".into(), format!("http://127.0.0.1:{dead}"));
    })
    .await;
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let resp = rig
            .http
            .request(method.clone(), rig.url("/api/items"))
            .header("x-api-key", APP_KEY)
            .body("x")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(status == 502 || status == 503, "{method}: {status}");
        let body = resp.text().await.unwrap();
        assert!(body.contains("blue"), "{method}: {body}");
        assert!(
            !body.contains("127.0.0.1") && !body.contains(&dead.to_string()),
            "{method}: the problem names the origin: {body}"
        );
    }
    // A misconfigured edge says so, and nothing about its configuration.
    let rig = Rig::start(runtime, |s| {
        s.vars
            .insert("GREEN_ORIGIN".into(), "ftp://10.9.8.7:2121".into());
    })
    .await;
    let resp = rig
        .get("/api/items")
        .header("x-api-key", APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body = resp.text().await.unwrap();
    assert!(body.contains("edge-misconfigured"), "{body}");
    assert!(
        !body.contains("10.9.8.7") && !body.contains("GREEN_ORIGIN"),
        "{body}"
    );
}

async fn the_origin_timeout_ends_with_the_response_headers(runtime: Runtime) {
    let rig = start(runtime, &[("ORIGIN_TIMEOUT_MS", "1000")]).await;
    // A body that streams for ~3 s with gaps longer than the timeout.
    rig.reset_origins();
    let started = Instant::now();
    let resp = client()
        .get(rig.url("/api/script/slow-body?chunks=3&every_ms=1500"))
        .header("x-api-key", APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-greenlight-reason"), "stable");
    let text = resp.text().await.unwrap();
    assert_eq!(text, "chunk 0\nchunk 1\nchunk 2\n");
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rig.received().len(), 1, "retried: {:?}", rig.received());
    // An upload slower than the timeout (Spin pauses the timer while it
    // waits on the client; the Worker does not time streamed uploads, see
    // README "Platform differences"): the client pauses 1.5 s between
    // chunks; the origin answers once it has all of it.
    rig.reset_origins();
    let chunks: Vec<&'static [u8]> = vec![b"part one, ", b"part two, ", b"part three"];
    let stream = futures::stream::iter(chunks.into_iter().enumerate()).then(|(i, c)| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        Ok::<_, std::io::Error>(bytes_of(c))
    });
    let started = Instant::now();
    let resp = client()
        .post(rig.url("/echo"))
        .header("x-api-key", APP_KEY)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "part one, part two, part three");
    assert!(started.elapsed() >= Duration::from_millis(2900));
    let got = only_request(&rig, "slow upload");
    assert_eq!(got.body_len, 30);
    // The timeout itself still holds: no headers within it is a failure.
    let slow = Behavior {
        latency: greenlight_test_origin::LatencyDist::Fixed(Duration::from_millis(2500)),
        ..Behavior::default()
    };
    let rig = Rig::start_with(runtime, slow, Behavior::default(), |s| {
        s.vars.insert("ORIGIN_TIMEOUT_MS".into(), "1000".into());
    })
    .await;
    let resp = rig
        .get("/api/items")
        .header("x-api-key", APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        503,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

fn bytes_of(c: &'static [u8]) -> Vec<u8> {
    c.to_vec()
}

greenlight_e2e::for_each_runtime!(
    redirects_pass_through,
    origins_see_the_clients_host_in_forwarding_headers,
    a_client_host_policy_is_refused_where_the_runtime_sets_host,
    locations_are_rewritten_only_when_configured,
    websockets_pass_through_where_the_platform_can,
    head_and_bodyless_answers_keep_their_headers,
    expect_continue_uploads_and_informational_answers,
    trailers_pass_where_the_platform_passes_them,
    shared_caches_cannot_mix_users_or_colors,
    errors_name_the_color_never_an_address,
    the_origin_timeout_ends_with_the_response_headers,
);
