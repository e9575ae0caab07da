//! AI backends through both real runtimes (`wrangler dev` and
//! `spin up`): streamed answers reach the client as the origin sends them;
//! a stream cut by the origin is cut for the client too, never retried and
//! never completed by the edge; upstream credentials per color replace the
//! caller's and never leave the edge; a model route's body gets the
//! color's model, and bodies the edge cannot rewrite get a `400` problem;
//! `greenlight load` measures each color's time to first token.

use greenlight_common::admin::Problem;
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN, APP_KEY, QA_KEY};
use greenlight_e2e::rig::{header, scripted, Rig};
use greenlight_e2e::{EdgeSetup, Runtime, Server};
use greenlight_test_origin::{Behavior, SseStream};
use jsonwebtoken::Algorithm;
use std::time::{Duration, Instant};

const BLUE_KEY: &str = "sk-blue-0a1b2c3d4e5f";
const GREEN_KEY: &str = "sk-green-9f8e7d6c5b4a";
const SIGNING_SECRET: &str = "e2e-origin-signing-secret";

/// An origin like a streaming model provider that checks the edge's
/// signature.
fn provider() -> Behavior {
    Behavior {
        signing_secret: Some(SIGNING_SECRET.as_bytes().to_vec()),
        sse: Some(SseStream {
            ttft: Duration::from_millis(20),
            events: 3,
            inter_event: Duration::from_millis(5),
        }),
        ..Behavior::default()
    }
}

/// The suite's AI edge: credentials per color, a model per color on the
/// chat-completions route (and its `/echo` twin, whose origin answer is
/// the body it received), origin signing.
fn ai_vars(setup: &mut EdgeSetup) {
    for (k, v) in [
        (
            "BLUE_ORIGIN_HEADERS",
            format!("Authorization: Bearer {BLUE_KEY}\nx-provider-org: org-blue"),
        ),
        (
            "GREEN_ORIGIN_HEADERS",
            format!("authorization: Bearer {GREEN_KEY}"),
        ),
        (
            "MODEL_ROUTES",
            "/v1/chat/completions,/echo/v1/chat/completions".into(),
        ),
        ("BLUE_MODEL", "model-a".into()),
        ("GREEN_MODEL", "model-b".into()),
        ("ORIGIN_SIGNING_SECRET", SIGNING_SECRET.into()),
    ] {
        setup.vars.insert(k.into(), v);
    }
}

/// Everything the edge's runtime logged (its own log, and Spin's component
/// logs), never the configuration files the test wrote.
fn edge_logs(rig: &Rig) -> String {
    fn walk(dir: &std::path::Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.to_string_lossy().to_string();
            if path.is_dir() {
                walk(&path, out);
            } else if name.ends_with(".log") || name.contains("/logs/") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    if let Some(scratch) = &rig.edge._process.scratch {
        walk(scratch.path(), &mut out);
    }
    out
}

fn problem_of(text: &str) -> Problem {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not a problem document {text}: {e}"))
}

/// Reads a response body chunk by chunk: the bytes, when the first byte
/// arrived, when the last did (both from `sent`), and whether the body
/// ended cleanly (`false`: the connection was cut mid-body).
async fn read_timed(
    mut resp: reqwest::Response,
    sent: Instant,
) -> (Vec<u8>, Option<Duration>, Duration, bool) {
    let mut body = Vec::new();
    let mut first = None;
    let mut last = sent.elapsed();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if !chunk.is_empty() {
                    first.get_or_insert_with(|| sent.elapsed());
                    last = sent.elapsed();
                    body.extend_from_slice(&chunk);
                }
            }
            Ok(None) => return (body, first, last, true),
            Err(_) => return (body, first, last, false),
        }
    }
}

/// The number of `data:` events in an event-stream body.
fn events(body: &[u8]) -> usize {
    String::from_utf8_lossy(body).matches("data: ").count()
}

async fn event_streams_arrive_as_sent(runtime: Runtime) {
    let rig = Rig::start_with(runtime, scripted(), scripted(), |_| {}).await;
    // The origin sends one event with the head, waits 500 ms, then the rest.
    for method in ["GET", "POST"] {
        rig.reset_origins();
        let sent = Instant::now();
        let request = match method {
            "GET" => rig.get("/api/script/sse?events=5&pause_ms=500"),
            _ => rig
                .post("/api/script/sse?events=5&pause_ms=500")
                .header("content-type", "application/json")
                .body(r#"{"stream":true}"#),
        };
        let resp = request.header("x-api-key", APP_KEY).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        assert_eq!(header(&resp, "content-type"), "text/event-stream");
        assert_eq!(header(&resp, "x-greenlight-color"), "blue");
        let (body, first, last, clean) = read_timed(resp, sent).await;
        let first = first.expect("no body at all");
        assert!(clean, "{method}: the stream did not end cleanly");
        assert_eq!(
            events(&body),
            6,
            "{method}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(String::from_utf8_lossy(&body).ends_with("data: [DONE]\n\n"));
        // The first event must not wait for the rest: it arrives at least
        // 400 ms (of the origin's 500 ms pause) before the last byte.
        let gap = last.saturating_sub(first);
        assert!(
            gap >= Duration::from_millis(400),
            "{method} via {}: first event at {first:?}, last byte at {last:?}: buffered",
            runtime.name()
        );
        println!(
            "event_streams_arrive_as_sent {} {method} first_event_ms={} last_byte_ms={}",
            runtime.name(),
            first.as_millis(),
            last.as_millis()
        );
        assert_eq!(rig.received().len(), 1, "{method}");
    }
}

/// A stream the origin cuts, through the Worker served directly on workerd
/// and through `spin up`. Not under `wrangler dev`: its proxy now and then
/// never answers the request that follows a cut stream, even on a
/// connection of its own, where workerd itself always answers (README,
/// "Platform differences"); a test of the proxy's defect would fail on it.
mod stream_cut {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cloudflare_direct() {
        let rig = Rig::start_direct_with(Runtime::Cloudflare, scripted(), scripted(), |_| {});
        a_stream_cut_by_the_origin_is_cut_for_the_client(rig.await).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spin() {
        let rig = Rig::start_with(Runtime::Spin, scripted(), scripted(), |_| {});
        a_stream_cut_by_the_origin_is_cut_for_the_client(rig.await).await
    }
}

async fn a_stream_cut_by_the_origin_is_cut_for_the_client(rig: Rig) {
    let runtime = rig.edge.runtime;
    // A GET may be retried on the other live color: make green live (a
    // canary), so only the first byte already sent stops a retry.
    let resp = rig
        .admin_post(
            "weight",
            serde_json::json!({"expected_epoch": rig.state().await.state.epoch, "weight_percent": 50}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let server = rig.edge.server;
    for attempt in 0..4 {
        rig.reset_origins();
        let sent = Instant::now();
        let resp = rig
            .get("/api/script/sse?events=5&pause_ms=300&cut=1")
            .header("x-api-key", APP_KEY)
            // workerd resets now and then the keep-alive connection that
            // carried a cut stream (README, "Platform differences"): each
            // request goes on a connection of its own.
            .header("connection", "close")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{} ({}) request {attempt}: {e:?}",
                    runtime.name(),
                    server.name()
                )
            });
        assert_eq!(resp.status(), 200);
        let color = header(&resp, "x-greenlight-color").to_string();
        let (body, first, _, clean) = read_timed(resp, sent).await;
        assert!(first.is_some(), "the first event never arrived");
        // What the client got is exactly what the origin sent: one event,
        // nothing the edge made (no problem document after it). Spin cuts
        // the client's body too; workerd ends it cleanly (README, "Platform
        // differences"), so a streaming client tells by the missing
        // `data: [DONE]`.
        match server {
            Server::SpinUp => assert!(!clean, "a cut stream ended cleanly"),
            Server::WranglerDev | Server::Direct => assert!(
                clean,
                "workerd ({}) now cuts the client's body: update the README",
                server.name()
            ),
        }
        assert_eq!(
            String::from_utf8_lossy(&body),
            greenlight_test_origin::sse_chunk(&color, 0),
            "{} ({})",
            runtime.name(),
            server.name()
        );
        // Never retried: the first byte had gone to the client.
        assert_eq!(rig.received().len(), 1, "{:?}", rig.received());
    }
}

async fn upstream_credentials_replace_the_callers(runtime: Runtime) {
    let rig = Rig::start_with(runtime, provider(), provider(), ai_vars).await;
    let jwt = fixtures::sign(Algorithm::HS256, &fixtures::claims("alice"));
    // (what, request headers, the color that answers)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        // An API key caller, who also tries to set the provider's header.
        (
            "api key",
            vec![
                ("x-api-key", APP_KEY.to_string()),
                ("x-provider-org", "org-mallory".to_string()),
            ],
            "blue",
        ),
        // A JWT caller: its bearer token is a greenlight credential.
        (
            "jwt",
            vec![("authorization", format!("Bearer {jwt}"))],
            "blue",
        ),
        // A previewer sent to green gets green's key.
        (
            "preview",
            vec![
                ("x-api-key", QA_KEY.to_string()),
                ("x-greenlight-color", "green".to_string()),
            ],
            "green",
        ),
    ];
    for (what, headers, color) in cases {
        rig.reset_origins();
        let mut req = rig.get("/api/items");
        for (k, v) in &headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let head = format!("{:?}", resp.headers());
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{what}: {text}");
        for secret in [BLUE_KEY, GREEN_KEY] {
            assert!(
                !head.contains(secret) && !text.contains(secret),
                "{what}: {head} {text}"
            );
        }
        let got = rig.received();
        assert_eq!(got.len(), 1, "{what}: {got:?}");
        let got = &got[0];
        let auth: Vec<&str> = got
            .headers
            .iter()
            .filter(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str())
            .collect();
        let key = if color == "blue" { BLUE_KEY } else { GREEN_KEY };
        assert_eq!(auth, vec![format!("Bearer {key}")], "{what}");
        assert_eq!(got.header("x-api-key"), None, "{what}");
        let org = got.header("x-provider-org");
        assert_eq!(org, (color == "blue").then_some("org-blue"), "{what}");
        // Signed by the edge, and the origin checked it.
        assert!(got.header("signature").is_some(), "{what}");
    }
    assert_eq!(rig.blue.refused() + rig.green.refused(), 0);
    // Nor in the admin state.
    let state = rig
        .get("/__greenlight/state")
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!state.contains("sk-"), "{state}");
    // Nor in an error: blue refuses to answer a model route's bad body.
    let resp = rig
        .post("/v1/chat/completions")
        .header("x-api-key", APP_KEY)
        .body("nope")
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert!(!text.contains("sk-"), "{text}");
    let logs = edge_logs(&rig);
    assert!(
        !logs.contains(BLUE_KEY) && !logs.contains(GREEN_KEY),
        "{logs}"
    );
}

async fn credential_errors_are_clear_at_start_up(runtime: Runtime) {
    let rig = Rig::start(runtime, |setup| {
        ai_vars(setup);
        setup.vars.insert(
            "GREEN_ORIGIN_HEADERS".into(),
            format!("x-ok: 1\nBearer {GREEN_KEY}"),
        );
    })
    .await;
    let resp = rig
        .get("/api/items")
        .header("x-api-key", APP_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert_eq!(
        problem_of(&text).kind,
        "urn:greenlight:problem:edge-misconfigured"
    );
    assert!(!text.contains("sk-"), "{text}");
    assert_eq!(rig.origin_hits(), 0);
    // The platform's log says which variable and line, never the value.
    // (Spin's component log; `wrangler dev` did not write the Worker's
    // console.error to its log here, so on Cloudflare only the absence of
    // the value is checked.)
    let logs = edge_logs(&rig);
    assert!(!logs.contains(GREEN_KEY), "{logs}");
    if runtime == Runtime::Spin {
        assert!(
            logs.contains("GREEN_ORIGIN_HEADERS line 2: not `name: value`"),
            "{logs}"
        );
    }
}

/// A chat-completions body as a client of an OpenAI-compatible API sends it.
const CHAT: &str = r#"{"model":"client-choice","messages":[{"role":"user","content":"Say hi \u00e9"}],"temperature":0.70,"stream":true}"#;

async fn model_routes_set_the_model_per_color(runtime: Runtime) {
    let rig = Rig::start_with(runtime, provider(), provider(), ai_vars).await;
    let expected = |model: &str| CHAT.replace("client-choice", model);
    // The origin's echo: the body as the origin received it, byte for byte.
    for (what, key, preview, model) in [
        ("blue", APP_KEY, None, "model-a"),
        ("preview green", QA_KEY, Some("green"), "model-b"),
    ] {
        let mut req = rig
            .post("/echo/v1/chat/completions")
            .header("x-api-key", key)
            .header("content-type", "application/json")
            .body(CHAT);
        if let Some(color) = preview {
            req = req.header("x-greenlight-color", color);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{what}");
        assert_eq!(header(&resp, "x-greenlight-model"), model, "{what}");
        assert_eq!(resp.text().await.unwrap(), expected(model), "{what}");
    }
    // Missing: added; a streamed (chunked) upload is read and rewritten too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(br#"{"messages":"#.to_vec()), Ok(b"[]}".to_vec())];
    let resp = rig
        .post("/echo/v1/chat/completions")
        .header("x-api-key", APP_KEY)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"messages":[],"model":"model-a"}"#
    );
    // The streamed answer of the model the edge chose.
    let resp = rig
        .post("/v1/chat/completions")
        .header("x-api-key", APP_KEY)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    assert_eq!(header(&resp, "x-greenlight-model"), "model-a");
    let text = resp.text().await.unwrap();
    assert_eq!(text.matches(r#""model":"model-a""#).count(), 3, "{text}");
    // Other routes: no model, body untouched.
    let resp = rig
        .post("/echo/other")
        .header("x-api-key", APP_KEY)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-greenlight-model"), "");
    assert_eq!(resp.text().await.unwrap(), CHAT);
}

async fn bad_model_bodies_get_a_defined_answer(runtime: Runtime) {
    let rig = Rig::start_with(runtime, provider(), provider(), ai_vars).await;
    let huge = format!(r#"{{"model":"m","pad":"{}"}}"#, "x".repeat(1024 * 1024));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"model=gpt".to_vec(), "must be JSON"),
        (
            "a JSON array",
            br#"[{"model":"m"}]"#.to_vec(),
            "JSON object",
        ),
        (
            "two models",
            br#"{"model":"a","model":"b"}"#.to_vec(),
            "more than one model",
        ),
        ("over 1 MiB", huge.into_bytes(), "at most 1048576 bytes"),
    ];
    for (what, body, says) in cases {
        rig.reset_origins();
        let resp = rig
            .post("/v1/chat/completions")
            .header("x-api-key", APP_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(resp.status(), 400, "{what}");
        assert_eq!(
            header(&resp, "content-type"),
            "application/problem+json",
            "{what}"
        );
        let problem = problem_of(&resp.text().await.unwrap());
        assert_eq!(
            problem.kind, "urn:greenlight:problem:bad-model-request",
            "{what}"
        );
        assert!(problem.detail.contains(says), "{what}: {}", problem.detail);
        assert_eq!(rig.origin_hits(), 0, "{what} reached an origin");
    }
}

/// A model provider that answers 5xx before any byte of its stream: a
/// chat completion (a `POST`, never retried) is a `502` problem naming the
/// color, the provider's own error body is not passed on, and no half of a
/// stream reaches the client; with the candidate failing, the stable color
/// keeps answering in full.
async fn a_provider_5xx_before_the_stream_is_a_502_problem(runtime: Runtime) {
    let failing = Behavior {
        error_rate: 1.0,
        ..provider()
    };
    let rig = Rig::start_with(runtime, provider(), failing, ai_vars).await;
    let resp = rig
        .post("/v1/chat/completions")
        .header("x-api-key", QA_KEY)
        .header("x-greenlight-color", "green")
        .header("content-type", "application/json")
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "content-type"), "application/problem+json");
    let text = resp.text().await.unwrap();
    let p = problem_of(&text);
    assert_eq!(p.kind, "urn:greenlight:problem:origin-failed");
    assert!(p.detail.starts_with("green origin"), "{}", p.detail);
    assert!(!text.contains("data:"), "no stream fragment: {text}");
    assert_eq!(rig.blue.hits(), 0, "a POST is never retried");
    // Blue still streams its whole answer.
    let resp = rig
        .post("/v1/chat/completions")
        .header("x-api-key", APP_KEY)
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-greenlight-model"), "model-a");
    assert_eq!(
        events(&resp.bytes().await.unwrap()),
        4,
        "3 chunks and [DONE]"
    );
}

/// A streaming model answering in `total` with its first token after `ttft`
/// and a token every 20 ms after it (signed like [`provider`]).
fn model(ttft_ms: u64, events: u32) -> Behavior {
    Behavior {
        sse: Some(SseStream {
            ttft: Duration::from_millis(ttft_ms),
            events,
            inter_event: Duration::from_millis(20),
        }),
        ..provider()
    }
}

/// `greenlight load` POSTs a streamed chat-completions body through the edge
/// to two emulated models with the same total answer time (260 ms) but
/// green's first token 200 ms later: the report's per-color time to first
/// byte shows each model's own, the pace of both streams is 50 events/s,
/// and the verdict judged on `--metric ttfb` fails green (exit 1) while the
/// same samples judged on the total (`report merge` of the run's interval
/// log) do not.
async fn the_load_measures_time_to_first_token_per_color(runtime: Runtime) {
    let rig = Rig::start_with(runtime, model(40, 12), model(240, 2), ai_vars).await;
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("chat.json");
    std::fs::write(&body, CHAT).unwrap();
    let (json, hlog) = (dir.path().join("run.json"), dir.path().join("run.hlog"));
    let greenlight = greenlight_e2e::process::built_binary("greenlight", "greenlight-cli");
    let url = rig.url("/v1/chat/completions");
    let load = {
        let (greenlight, body, json, hlog) = (greenlight.clone(), body, json.clone(), hlog.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(greenlight)
                .args(["load", &url, "--method", "POST", "--body-file"])
                .arg(&body)
                // Comparison traffic only: half the requests to each model.
                .args(["--rate", "16", "--duration", "10s", "--routing-share", "0"])
                .args(["--metric", "ttfb", "--min-samples", "50", "--quiet"])
                .arg("--json")
                .arg(&json)
                .arg("--hlog")
                .arg(&hlog)
                .env(greenlight_engine::sampling::PREVIEW_KEY_ENV, QA_KEY)
                .output()
                .unwrap()
        })
    };
    let out = load.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let figure = |color: &str, what: &str, q: &str| {
        report["colors"][color][what][q]
            .as_f64()
            .unwrap_or_else(|| panic!("{color}.{what}.{q} missing"))
    };
    let (blue_ttfb, green_ttfb) = (
        figure("blue", "ttfb_ms", "p50"),
        figure("green", "ttfb_ms", "p50"),
    );
    let (blue_total, green_total) = (
        figure("blue", "latency_ms", "p50"),
        figure("green", "latency_ms", "p50"),
    );
    println!(
        "time to first token via {}: blue p50 {blue_ttfb:.1} ms, green p50 {green_ttfb:.1} ms; total p50 blue {blue_total:.1} ms, green {green_total:.1} ms",
        runtime.name()
    );
    assert!((40.0..140.0).contains(&blue_ttfb), "blue ttfb {blue_ttfb}");
    assert!(
        (240.0..340.0).contains(&green_ttfb),
        "green ttfb {green_ttfb}"
    );
    assert!(
        green_ttfb - blue_ttfb > 150.0,
        "{blue_ttfb} vs {green_ttfb}"
    );
    for total in [blue_total, green_total] {
        assert!(total >= 255.0, "the whole stream takes 260 ms: {total}");
    }
    assert!(
        (blue_total - green_total).abs() < 60.0,
        "{blue_total} vs {green_total}"
    );
    for color in ["blue", "green"] {
        let pace = figure(color, "events_per_s", "p50");
        assert!((30.0..80.0).contains(&pace), "{color}: {pace} events/s");
        assert!(report["colors"][color]["requests"].as_u64().unwrap() >= 50);
    }
    assert!(
        stdout.contains("ttfb p50") && stdout.contains("events/s p50"),
        "{stdout}"
    );
    let reasons = report["verdict"]["reasons"].to_string();
    assert_eq!(report["verdict"]["verdict"], "fail", "{reasons}");
    assert!(reasons.contains("ttfb: green is slower"), "{reasons}");
    assert_eq!(out.status.code(), Some(1), "a Fail verdict exits 1");
    // The interval log carries the time to first byte: merged, it is
    // judged on either metric.
    let merge = |metric: &str| {
        let merged = dir.path().join(format!("merged-{metric}.json"));
        let status = std::process::Command::new(&greenlight)
            .args(["report", "merge"])
            .arg(&hlog)
            .args(["--metric", metric, "--min-samples", "50", "--json"])
            .arg(&merged)
            .output()
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
        (status.status.code(), v)
    };
    let (code, merged) = merge("ttfb");
    assert_eq!(
        (code, merged["verdict"]["verdict"].as_str()),
        (Some(1), Some("fail"))
    );
    assert_eq!(
        merged["colors"]["green"]["ttfb_ms"]["p50"].as_f64(),
        Some(green_ttfb)
    );
    let (code, merged) = merge("total");
    let verdict = merged["verdict"]["verdict"].as_str();
    assert_ne!(
        verdict,
        Some("fail"),
        "same total time: {}",
        merged["verdict"]["reasons"]
    );
    // A pass exits 0; an inconclusive verdict has its own code.
    let expected = if verdict == Some("inconclusive") {
        4
    } else {
        0
    };
    assert_eq!(code, Some(expected), "verdict {verdict:?}");
}

greenlight_e2e::for_each_runtime!(
    the_load_measures_time_to_first_token_per_color,
    a_provider_5xx_before_the_stream_is_a_502_problem,
    event_streams_arrive_as_sent,
    upstream_credentials_replace_the_callers,
    credential_errors_are_clear_at_start_up,
    model_routes_set_the_model_per_color,
    bad_model_bodies_get_a_defined_answer,
);
