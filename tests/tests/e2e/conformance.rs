//! One end-to-end suite, run against every edge runtime: real workerd (via
//! `wrangler dev`) and the Spin component under the wasmtime host, each in
//! front of two real origins on 127.0.0.1.

use futures::future::join_all;
use greenlight_common::admin::{Problem, StateView};
use greenlight_common::{Color, Phase};
use greenlight_e2e::fixtures::{
    self, ADMIN_TOKEN, APP_KEY, OPERATOR_NAME, OPERATOR_TOKEN, OPS_KEY, QA_KEY, VIEWER_NAME,
    VIEWER_TOKEN,
};
use greenlight_e2e::{RunningEdge, Runtime};
use greenlight_test_origin::{Behavior, Origin};
use jsonwebtoken::Algorithm;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// Two origins and an edge in front of them.
struct Rig {
    blue: Origin,
    green: Origin,
    edge: RunningEdge,
    http: Client,
}

impl Rig {
    async fn start(runtime: Runtime) -> Rig {
        Rig::start_signed(runtime, None).await
    }

    /// With `secret`, the edge signs what it forwards and the origins refuse
    /// anything unsigned.
    async fn start_signed(runtime: Runtime, secret: Option<&str>) -> Rig {
        let any = "127.0.0.1:0".parse().unwrap();
        let behavior = Behavior {
            signing_secret: secret.map(|s| s.as_bytes().to_vec()),
            ..Behavior::default()
        };
        let blue = Origin::start(any, "blue", behavior.clone()).await.unwrap();
        let green = Origin::start(any, "green", behavior).await.unwrap();
        let mut setup = fixtures::edge_setup(&blue.url(), &green.url());
        if let Some(s) = secret {
            setup.vars.insert("ORIGIN_SIGNING_SECRET".into(), s.into());
        }
        let edge = runtime
            .start(&setup)
            .await
            .unwrap_or_else(|e| panic!("starting the {} edge: {e:#}", runtime.name()));
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build()
            .unwrap();
        Rig {
            blue,
            green,
            edge,
            http,
        }
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(format!("{}{path}", self.edge.base_url))
    }

    fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(format!("{}{path}", self.edge.base_url))
    }

    fn origin_hits(&self) -> u64 {
        self.blue.hits() + self.green.hits()
    }

    async fn state(&self) -> StateView {
        let resp = self
            .get("/__greenlight/state")
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "GET state answered {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Calls an admin change route with the current epoch; returns the new view.
    async fn change(&self, route: &str, extra: serde_json::Value) -> StateView {
        let epoch = self.state().await.state.epoch;
        let mut body = serde_json::json!({"expected_epoch": epoch, "reason": "e2e"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let resp = self
            .post(&format!("/__greenlight/{route}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{route}: {text}");
        serde_json::from_str(&text).unwrap()
    }
}

fn color(resp: &Response) -> Option<Color> {
    resp.headers()
        .get("x-greenlight-color")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn header<'a>(resp: &'a Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn auth_failures_never_reach_the_origin(runtime: Runtime) {
    let rig = Rig::start(runtime).await;
    // No credentials: 401 with a bare Bearer challenge.
    let resp = rig.get("/api/items").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        header(&resp, "www-authenticate"),
        "Bearer realm=\"greenlight\""
    );
    // Wrong API key.
    let resp = rig
        .get("/api/items")
        .header("x-api-key", "gl_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "www-authenticate").contains("error=\"invalid_token\""));
    let generic_body = resp.text().await.unwrap();
    // Every hostile token: 401 invalid_token, same body, never a 5xx.
    for (what, token) in fixtures::hostile_tokens() {
        let resp = rig
            .get("/api/items")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        assert!(
            header(&resp, "www-authenticate").contains("invalid_token"),
            "{what}"
        );
        assert_eq!(
            resp.text().await.unwrap(),
            generic_body,
            "{what}: body must not say which check failed"
        );
    }
    // Preview without the role: 403.
    let resp = rig
        .get("/api/items")
        .header("x-api-key", APP_KEY)
        .header("x-greenlight-color", "green")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(header(&resp, "www-authenticate").contains("insufficient_scope"));
    // Admin: no token 401, wrong token 401, credential without the admin role 403.
    let resp = rig.get("/__greenlight/state").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = rig
        .get("/__greenlight/state")
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = rig
        .post("/__greenlight/promote")
        .header("x-api-key", QA_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(rig.origin_hits(), 0, "a rejected request reached an origin");
    assert_eq!(
        rig.state().await.state.epoch,
        0,
        "a refused admin call changed the state"
    );
    // The anonymous prefix still works, proving the origins were reachable.
    let resp = rig.get("/public/ping").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(rig.origin_hits(), 1);
}

async fn every_credential_kind_is_accepted(runtime: Runtime) {
    let rig = Rig::start(runtime).await;
    let mut requests = vec![(
        "api key",
        rig.get("/api/items?x=1").header("x-api-key", APP_KEY),
    )];
    for alg in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
        let token = fixtures::sign(alg, &fixtures::claims("user-42"));
        requests.push(("jwt", rig.get("/api/items?x=1").bearer_auth(token)));
    }
    // A hand-signed token with every header parameter greenlight allows
    // (the hostile corpus signs the same way: its refusals are the rules'),
    // including URLs that are never fetched.
    let jose_header = serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": "hs-main",
        "jku": "https://jwks.invalid/keys", "x5u": "https://x5u.invalid/c.pem"});
    let token = fixtures::sign_raw(
        &jose_header.to_string(),
        &fixtures::claims("user-42").to_string(),
    );
    requests.push(("raw jwt", rig.get("/api/items?x=1").bearer_auth(token)));
    for (what, req) in requests {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{what}");
        assert_eq!(color(&resp), Some(Color::Blue));
        assert_eq!(header(&resp, "x-greenlight-epoch"), "0");
        assert_eq!(header(&resp, "x-greenlight-reason"), "stable");
        assert_eq!(header(&resp, "x-origin-color"), "blue");
    }
    let seen = rig.blue.recent();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0].header("x-greenlight-principal"), Some("k:app"));
    assert_eq!(
        seen[0].header("x-api-key"),
        None,
        "the API key must not reach the origin"
    );
    assert_eq!(seen[0].query.as_deref(), Some("x=1"));
    assert_eq!(seen[1].header("x-greenlight-principal"), Some("s:user-42"));
}

async fn weighted_split_is_sticky_and_converges(runtime: Runtime) {
    let rig = Rig::start(runtime).await;
    rig.change("weight", serde_json::json!({"weight_percent": 20}))
        .await;
    let users: Vec<String> = (0..2_000u32)
        .map(|i| format!("{:016x}", u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let colors = colors_of(&rig, &users).await;
    let green = colors.values().filter(|c| **c == Color::Green).count();
    let share = green as f64 / users.len() as f64 * 100.0;
    assert!(
        (share - 20.0).abs() <= 3.0,
        "green share {share:.1} % at weight 20 %"
    );
    // The same users again: nobody moves.
    let again = colors_of(&rig, &users[..300]).await;
    for (u, c) in &again {
        assert_eq!(colors[u], *c, "user {u} changed color at constant weight");
    }
    // Growing the weight only moves users blue → green.
    rig.change("weight", serde_json::json!({"weight_percent": 50}))
        .await;
    let grown = colors_of(&rig, &users[..600]).await;
    for (u, c) in &grown {
        if colors[u] == Color::Green {
            assert_eq!(*c, Color::Green, "user {u} left green when the weight grew");
        }
    }
    assert!(grown.values().filter(|c| **c == Color::Green).count() > 200);
    // Every response came from the origin of the color the edge named.
    let blue_hits = rig.blue.hits() as usize;
    let green_hits = rig.green.hits() as usize;
    assert_eq!(blue_hits + green_hits, users.len() + 300 + 600);
}

/// The color each anonymous user (by sticky cookie) gets, 16 requests at a time.
async fn colors_of(rig: &Rig, users: &[String]) -> HashMap<String, Color> {
    let mut out = HashMap::new();
    for chunk in users.chunks(16) {
        let futures = chunk.iter().map(|u| {
            rig.get("/public/page")
                .header("cookie", format!("greenlight-id={u}"))
                .send()
        });
        for (u, resp) in chunk.iter().zip(join_all(futures).await) {
            let resp = resp.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(header(&resp, "x-greenlight-reason"), "sticky");
            assert!(resp.headers().get("set-cookie").is_none());
            let c = color(&resp).unwrap();
            assert_eq!(
                header(&resp, "x-origin-color"),
                c.as_str(),
                "edge header and origin disagree"
            );
            out.insert(u.clone(), c);
        }
    }
    out
}

async fn anonymous_users_get_a_sticky_cookie(runtime: Runtime) {
    let rig = Rig::start(runtime).await;
    rig.change("weight", serde_json::json!({"weight_percent": 50}))
        .await;
    let resp = rig.get("/public/page").send().await.unwrap();
    let set = header(&resp, "set-cookie").to_string();
    assert!(set.starts_with("greenlight-id="), "{set}");
    let first = color(&resp).unwrap();
    let cookie = set.split(';').next().unwrap().to_string();
    for _ in 0..5 {
        let resp = rig
            .get("/public/page")
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(color(&resp), Some(first));
        assert!(resp.headers().get("set-cookie").is_none());
    }
}

async fn preview_override_needs_the_role(runtime: Runtime) {
    let rig = Rig::start(runtime).await;
    let resp = rig
        .get("/api/x")
        .header("x-api-key", QA_KEY)
        .header("x-greenlight-color", "green")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        (color(&resp), header(&resp, "x-greenlight-reason")),
        (Some(Color::Green), "override")
    );
    assert_eq!(header(&resp, "x-origin-color"), "green");
    let resp = rig
        .get("/api/x")
        .header("x-api-key", QA_KEY)
        .header("cookie", "greenlight-preview=green")
        .send()
        .await
        .unwrap();
    assert_eq!(color(&resp), Some(Color::Green));
    let token = {
        let mut c = fixtures::claims("tester");
        c["greenlight_roles"] = serde_json::json!(["preview"]);
        fixtures::sign(Algorithm::ES256, &c)
    };
    let resp = rig
        .get("/api/x")
        .bearer_auth(token)
        .header("x-greenlight-color", "green")
        .send()
        .await
        .unwrap();
    assert_eq!(color(&resp), Some(Color::Green));
    let before = rig.origin_hits();
    let resp = rig
        .get("/api/x")
        .header("x-api-key", APP_KEY)
        .header("x-greenlight-color", "green")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(rig.origin_hits(), before);
}

async fn promote_and_rollback_apply_to_the_next_request(runtime: Runtime) {
    let rig = Rig::start(runtime).await;
    let req = || rig.get("/api/x").header("x-api-key", APP_KEY);
    assert_eq!(color(&req().send().await.unwrap()), Some(Color::Blue));
    let view = rig.change("promote", serde_json::json!({})).await;
    assert_eq!(
        (view.state.active, view.phase, view.state.epoch),
        (Color::Green, Phase::Promoted, 1)
    );
    let resp = req().send().await.unwrap();
    assert_eq!(
        (color(&resp), header(&resp, "x-greenlight-reason")),
        (Some(Color::Green), "promoted")
    );
    assert_eq!(header(&resp, "x-greenlight-epoch"), "1");
    let view = rig.change("rollback", serde_json::json!({})).await;
    assert_eq!((view.state.active, view.state.epoch), (Color::Blue, 2));
    let resp = req().send().await.unwrap();
    assert_eq!(
        (color(&resp), header(&resp, "x-greenlight-epoch")),
        (Some(Color::Blue), "2")
    );
    assert_eq!(view.state.last_change.op, "rollback");
    // A stale epoch is refused with 409 and the current epoch.
    let resp = rig
        .post("/__greenlight/promote")
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"expected_epoch": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(header(&resp, "content-type"), "application/problem+json");
    let p: Problem = resp.json().await.unwrap();
    assert_eq!(p.current_epoch, Some(2));
    // Invalid transition (nothing to roll back) and malformed bodies.
    let resp = rig
        .post("/__greenlight/rollback")
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"expected_epoch": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    for body in [
        "{",
        r#"{"expected_epoch":2,"weight_bp":10001}"#,
        r#"{"expected_epoch":2,"weight_percent":-1}"#,
        r#"{"expected_epoch":"2","weight_bp":5}"#,
    ] {
        let resp = rig
            .post("/__greenlight/weight")
            .bearer_auth(ADMIN_TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
    }
    // The admin role works as well as the admin token.
    let resp = rig
        .get("/__greenlight/state")
        .header("x-api-key", OPS_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(rig.state().await.state.epoch, 2);
}

async fn headers_and_bodies_pass_through(runtime: Runtime) {
    let rig = Rig::start(runtime).await;
    let resp = rig
        .get("/api/headers?q=a%20b&z=1")
        .header("x-api-key", APP_KEY)
        .header("connection", "x-hop-secret")
        .header("x-hop-secret", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = rig.blue.recent().pop().unwrap();
    assert_eq!(seen.header("x-custom"), Some("kept"));
    assert_eq!(seen.header("keep-alive"), None);
    assert_eq!(seen.header("proxy-authorization"), None);
    // Neither runtime shows the edge the client's `Connection` header
    // (workerd and wasmtime-wasi-http both consume it), so names listed there
    // are not the edge's to drop: see "Platform differences" in the README.
    assert_eq!(seen.query.as_deref(), Some("q=a%20b&z=1"));
    assert_eq!(seen.method, "GET");
    // A 3 MiB binary body goes through byte for byte, both ways.
    let body: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = hex::encode(Sha256::digest(&body));
    for method in [reqwest::Method::POST, reqwest::Method::PUT] {
        let resp = rig
            .http
            .request(method.clone(), format!("{}/echo/upload", rig.edge.base_url))
            .header("x-api-key", APP_KEY)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        assert_eq!(color(&resp), Some(Color::Blue));
        let echoed = resp.bytes().await.unwrap();
        assert_eq!(echoed.len(), body.len(), "{method}");
        assert_eq!(hex::encode(Sha256::digest(&echoed)), digest, "{method}");
        let seen = rig.blue.recent().pop().unwrap();
        assert_eq!(
            (seen.method.as_str(), seen.body_sha256.as_str()),
            (method.as_str(), digest.as_str())
        );
    }
}

async fn origins_only_accept_signed_edge_traffic(runtime: Runtime) {
    let rig = Rig::start_signed(runtime, Some("origin-signing-secret-e2e")).await;
    // Through the edge (even with client-forged signature fields): accepted.
    let resp = rig
        .get("/api/signed?x=1")
        .header("x-api-key", APP_KEY)
        .header("signature", "greenlight=:Zm9yZ2Vk:")
        .header("signature-input", "greenlight=(\"@method\");created=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!((rig.blue.hits(), rig.blue.refused()), (1, 0));
    let seen = rig.blue.recent().pop().unwrap();
    assert_eq!(seen.header("x-greenlight-principal"), Some("k:app"));
    // Straight to the origin, bypassing the edge: refused.
    let direct = rig
        .http
        .get(format!("{}/api/signed?x=1", rig.blue.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);
    // The edge's own signed request, replayed: to the same origin (its
    // nonce is used up), to the other color's origin (signed for blue's
    // URL: they share the secret), and with another principal.
    let replay = |url: String, principal: &str| {
        let mut r = rig.http.get(url);
        for name in ["signature", "signature-input"] {
            r = r.header(name, seen.header(name).unwrap_or_default());
        }
        r.header("x-greenlight-principal", principal)
    };
    let to_blue = replay(format!("{}/api/signed?x=1", rig.blue.url()), "k:app");
    assert_eq!(to_blue.send().await.unwrap().status(), 401);
    let to_green = replay(format!("{}/api/signed?x=1", rig.green.url()), "k:app");
    assert_eq!(to_green.send().await.unwrap().status(), 401);
    let as_admin = replay(format!("{}/api/signed?x=1", rig.blue.url()), "k:ops");
    assert_eq!(as_admin.send().await.unwrap().status(), 401);
    assert_eq!((rig.blue.hits(), rig.blue.refused()), (1, 3));
    assert_eq!((rig.green.hits(), rig.green.refused()), (0, 1));
}

/// Named admin credentials: a viewer reads and changes nothing, an
/// operator changes the rollout and is recorded by name, whatever actor it
/// declares; the shared admin token keeps working.
async fn admin_credentials_have_their_roles(runtime: Runtime) {
    let rig = Rig::start(runtime).await;
    let as_viewer = |path: &str| rig.get(path).bearer_auth(VIEWER_TOKEN);
    let resp = as_viewer("/__greenlight/state").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let view: StateView = resp.json().await.unwrap();
    assert_eq!(view.state.epoch, 0);
    for route in ["weight", "promote", "rollback", "abort"] {
        let resp = rig
            .post(&format!("/__greenlight/{route}"))
            .bearer_auth(VIEWER_TOKEN)
            .json(&serde_json::json!({"expected_epoch": 0, "weight_percent": 50}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "viewer {route}");
        assert!(header(&resp, "www-authenticate").contains("insufficient_scope"));
        let problem: Problem = resp.json().await.unwrap();
        assert!(
            problem.detail.contains(VIEWER_NAME) && problem.detail.contains("needs operator"),
            "{problem:?}"
        );
    }
    assert_eq!(
        rig.state().await.state.epoch,
        0,
        "a viewer changed the state"
    );

    let resp = rig
        .post("/__greenlight/weight")
        .bearer_auth(OPERATOR_TOKEN)
        .json(&serde_json::json!({
            "expected_epoch": 0, "weight_percent": 10, "actor": "release bot", "reason": "e2e"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let view: StateView = resp.json().await.unwrap();
    let change = &view.state.last_change;
    assert_eq!(
        (
            view.state.epoch,
            change.actor.as_str(),
            change.credential.as_str()
        ),
        (1, "release bot", OPERATOR_NAME)
    );
    // What the viewer reads is what the operator committed.
    let seen: StateView = as_viewer("/__greenlight/state")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen.state.last_change.credential, OPERATOR_NAME);
    let undone = rig.change("rollback", serde_json::json!({})).await;
    assert_eq!(undone.state.last_change.credential, "admin-token");
    assert_eq!(rig.origin_hits(), 0, "an admin call reached an origin");
}

/// The edge keeps its history: every change with its credential and
/// evidence, across a restart of the edge; undo restores an earlier
/// state as a new change.
async fn history_survives_a_restart_and_undo_restores(runtime: Runtime) {
    use greenlight_common::history::HistoryView;
    let Rig {
        blue,
        green,
        edge,
        http,
    } = Rig::start(runtime).await;
    let post = |edge: &RunningEdge, route: &str, token: &str, body: serde_json::Value| {
        http.post(format!("{}/__greenlight/{route}", edge.base_url))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let history = |edge: &RunningEdge| {
        let request = http
            .get(format!("{}/__greenlight/history", edge.base_url))
            .bearer_auth(VIEWER_TOKEN)
            .send();
        async move {
            let resp = request.await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<HistoryView>().await.unwrap()
        }
    };
    let evidence = serde_json::json!({"verdict": "pass", "p99_ms": 12.5});
    let resp = post(
        &edge,
        "weight",
        OPERATOR_TOKEN,
        serde_json::json!({"expected_epoch": 0, "weight_percent": 10, "evidence": evidence}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = post(
        &edge,
        "weight",
        ADMIN_TOKEN,
        serde_json::json!({"expected_epoch": 1, "weight_percent": 30, "reason": "step"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let before = history(&edge).await;
    let seen: Vec<(u64, &str)> = before
        .changes
        .iter()
        .map(|c| (c.epoch, c.credential.as_str()))
        .collect();
    assert_eq!(seen, [(2, "admin-token"), (1, OPERATOR_NAME), (0, "")]);
    assert_eq!(before.changes[1].evidence.as_ref(), Some(&evidence));
    assert_eq!(
        before.changes[0]
            .before
            .as_ref()
            .map(|b| b.candidate_weight_bp),
        Some(1_000)
    );

    let edge = edge.restart().await.unwrap();
    assert_eq!(history(&edge).await, before, "the history after a restart");

    // A viewer may read it but not undo; an operator undoes to epoch 1.
    let resp = post(
        &edge,
        "undo",
        VIEWER_TOKEN,
        serde_json::json!({"expected_epoch": 2, "to_epoch": 1}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    // Through the CLI, as an operator would: `greenlight undo`, then
    // `greenlight history --json -`.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(greenlight_e2e::process::greenlight_bin())
            .args(args)
            .args(["--edge", &edge.base_url])
            .env("GREENLIGHT_ADMIN_TOKEN", OPERATOR_TOKEN)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "greenlight {args:?}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let printed = cli(&["undo", "--to-epoch", "1", "--json", "-"]);
    let view: StateView = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        (
            view.state.epoch,
            view.state.candidate_weight_bp,
            view.state.last_change.op.as_str()
        ),
        (3, 1_000, "undo")
    );
    let after = history(&edge).await;
    let printed: HistoryView = serde_json::from_str(&cli(&["history", "--json", "-"])).unwrap();
    assert_eq!(printed, after);
    let table = cli(&["history", "--limit", "2"]);
    assert!(table.contains("undo to epoch 1"), "{table}");
    assert_eq!(after.changes[0].epoch, 3);
    assert_eq!(after.changes[0].credential, OPERATOR_NAME);
    assert_eq!(
        after.changes[0].after.stickiness.salt, before.changes[1].after.stickiness.salt,
        "the same users are in the canary again"
    );
    assert_eq!(
        blue.hits() + green.hits(),
        0,
        "an admin call reached an origin"
    );
}

greenlight_e2e::for_each_runtime!(
    history_survives_a_restart_and_undo_restores,
    admin_credentials_have_their_roles,
    auth_failures_never_reach_the_origin,
    every_credential_kind_is_accepted,
    weighted_split_is_sticky_and_converges,
    anonymous_users_get_a_sticky_cookie,
    preview_override_needs_the_role,
    promote_and_rollback_apply_to_the_next_request,
    headers_and_bodies_pass_through,
    origins_only_accept_signed_edge_traffic,
);
