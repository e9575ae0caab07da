//! The per-request cost of the core: `decide` + API-key auth (target ≤ 1 µs)
//! and ES256 JWT verification.
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
