//! The per-request cost of the core: `decide` + API-key auth (target ≤ 1 µs),
//! ES256 JWT verification, and everything a fresh edge instance does before
//! it can forward (a new Spin instance, which then serves up to 128
//! requests): configuration from its variables, the state document, the plan.
use criterion::{criterion_group, criterion_main, Criterion};
use greenlight_common::auth::{
    hash_api_key, parse_routes, ApiKeyEntry, AuthConfig, Credentials, JwtSettings,
};
use greenlight_common::rollout::{ChangeMeta, RolloutOp};
use greenlight_common::{decide, RequestFacts, RolloutState};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::hint::black_box;

const NOW: u64 = 1_800_000_000;

fn config() -> AuthConfig {
    let jwt = JwtSettings {
        jwks: Some(serde_json::from_str(include_str!("../../tests/fixtures/jwks.json")).unwrap()),
        ..JwtSettings::default()
    };
    let keys = (0..4)
        .map(|i| ApiKeyEntry {
            id: format!("key{i}"),
            sha256: hash_api_key(&format!("secret-{i}")),
            roles: vec![],
        })
        .collect();
    AuthConfig::new(parse_routes("/:required").unwrap(), keys, jwt).unwrap()
}

fn bench(c: &mut Criterion) {
    let cfg = config();
    let state = RolloutState::initial("bench")
        .apply(
            RolloutOp::SetWeight { weight_bp: 1_000 },
            0,
            ChangeMeta {
                actor: "b".into(),
                at_ms: 0,
                reason: String::new(),
            },
        )
        .unwrap();
    c.bench_function("api_key_auth_plus_decide", |b| {
        b.iter(|| {
            let creds = Credentials {
                api_key: Some(black_box("secret-3")),
                authorization: None,
            };
            let p = cfg.authenticate("/api/items", creds, NOW).unwrap().unwrap();
            let facts = RequestFacts {
                sticky_key: Some(&p.id),
                preview: None,
                may_preview: false,
                roll: 7,
            };
            black_box(decide(&facts, &state).unwrap())
        })
    });
    let claims = serde_json::json!({"sub": "user-1", "exp": NOW + 600});
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let key =
        EncodingKey::from_ec_pem(include_bytes!("../../tests/fixtures/ec-private.pem")).unwrap();
    let auth = format!("Bearer {}", encode(&header, &claims, &key).unwrap());
    c.bench_function("es256_jwt_verify", |b| {
        b.iter(|| {
            let creds = Credentials {
                api_key: None,
                authorization: Some(black_box(&auth)),
            };
            black_box(cfg.authenticate("/api", creds, NOW).unwrap())
        })
    });
    fresh_instance(c, &state);
}

/// A fresh instance's work: the e2e suite's configuration, one stored state
/// document, and the plan for an API-key request.
fn fresh_instance(c: &mut Criterion, state: &RolloutState) {
    use greenlight_common::edge::{action, EdgeConfig, LoadedState, RequestHead};
    let api_keys = serde_json::json!([
        {"id": "app", "sha256": hash_api_key("app-key")},
        {"id": "qa", "sha256": hash_api_key("qa-key"), "roles": ["preview"]},
        {"id": "ops", "sha256": hash_api_key("ops-key"), "roles": ["admin", "preview"]},
    ])
    .to_string();
    let jwks = include_str!("../../tests/fixtures/jwks.json").to_string();
    let vars: Vec<(&str, String)> = vec![
        ("BLUE_ORIGIN", "http://127.0.0.1:9001".into()),
        ("GREEN_ORIGIN", "http://127.0.0.1:9002".into()),
        ("ADMIN_TOKEN", "admin-token-0123456789".into()),
        ("AUTH_ROUTES", "/public:off,/:required".into()),
        ("API_KEYS", api_keys),
        (
            "JWT_HS256_SECRET",
            "hs256-secret-0123456789abcdef0123456789".into(),
        ),
        ("JWKS", jwks),
        ("JWT_ISSUER", "https://issuer.test".into()),
        ("JWT_AUDIENCE", "bench".into()),
        ("ROLLOUT_SALT", "bench".into()),
    ];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    let document = state.to_json();
    let headers = vec![
        ("host".to_string(), "edge.test".to_string()),
        ("accept".to_string(), "*/*".to_string()),
        ("x-api-key".to_string(), "app-key".to_string()),
    ];
    c.bench_function("edge_config_from_variables", |b| {
        b.iter(|| black_box(EdgeConfig::from_lookup(lookup).unwrap()))
    });
    c.bench_function("state_document_parse", |b| {
        b.iter(|| black_box(RolloutState::from_json(black_box(&document)).unwrap()))
    });
    c.bench_function("fresh_instance_config_state_plan", |b| {
        b.iter(|| {
            let cfg = EdgeConfig::from_lookup(lookup).unwrap();
            let loaded = LoadedState {
                state: RolloutState::from_json(&document).unwrap(),
                degraded: false,
            };
            let head = RequestHead {
                method: "GET",
                path: "/api/items",
                query: None,
                headers: &headers,
                client_addr: Some("127.0.0.1"),
                scheme: Some("https"),
            };
            black_box(action(&cfg, &loaded, &head, NOW * 1000, 42))
        })
    });
    // What the Worker's Rust half does per forwarded request, as the shell
    // calls it: read the request head string, plan, write the forward step;
    // then read the attempt report and write the deliver step.
    let cfg = EdgeConfig::from_lookup(lookup).unwrap();
    let loaded = LoadedState {
        state: RolloutState::from_json(&document).unwrap(),
        degraded: false,
    };
    let request_head = "GET\nhttp://edge.test/api/items?page=2\naccept\n*/*\n\
                        cf-connecting-ip\n127.0.0.1\nhost\nedge.test\nuser-agent\nbench/1.0\n\
                        x-api-key\napp-key";
    let report = "200\ncontent-length\n145\ncontent-type\napplication/json\n\
                  date\nFri, 27 Nov 2026 12:38:13 GMT\nx-origin-color\nblue";
    c.bench_function("worker_shell_forward_round_trip", |b| {
        use greenlight_common::edge::{Action, BodyMode};
        use greenlight_common::shell;
        b.iter(|| {
            let request = shell::ShellRequest::parse(black_box(request_head));
            let head = request.head("cf-connecting-ip");
            let Action::Forward(fwd) = action(&cfg, &loaded, &head, NOW * 1000, 42) else {
                panic!("expected a forward")
            };
            let step = shell::forward(1, request.method, BodyMode::Empty, &request.headers, &fwd);
            let result = shell::attempt_result(black_box(report), fwd.timeout_ms);
            let deliver = shell::deliver(200, result.header_lines.unwrap_or_default(), &fwd);
            black_box((step, deliver))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
