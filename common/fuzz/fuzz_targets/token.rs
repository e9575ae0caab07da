//! Credential parsing and verification: fuzzer bytes as an `X-Api-Key`, an
//! `Authorization` header or the parts of a JWT, through an `AuthConfig`
//! with API keys, an HS256 secret, the test JWKS (RSA + P-256), iss and aud.
//!
//! Invariants: nothing panics; a credential is accepted only when it is a
//! configured API key or a token whose claims the harness itself signed
//! with the HS256 secret (and those claims pass every check); everything
//! else is `Invalid`, never `Missing` or `Forbidden`.
//!
//! Input: the first byte picks the channel (mod 6), the rest is its data.
//!   0  X-Api-Key: <rest>
//!   1  Authorization: <rest>
//!   2  Authorization: Bearer <rest>
//!   3  Authorization: Bearer b64(header).b64(payload).b64(signature),
//!      from rest = header \n payload \n signature (reaches the signature
//!      checks: the header must name an allowed alg to get there)
//!   4  Authorization: Bearer <claims in rest, HS256-signed by the harness>
//!   5  both X-Api-Key and Authorization (rest split at the first \n)
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use greenlight_common::auth::{
    hash_api_key, parse_routes, ApiKeyEntry, AuthConfig, AuthError, Credentials, JwtSettings,
    Principal, Role,
};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::Sha256;
use std::sync::LazyLock;

const NOW: u64 = 1_800_000_000;
const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "greenlight";
const API_KEYS: [&str; 2] = ["key-ops-secret", "key-app-secret"];
const JWKS: &str = include_str!("../../../tests/fixtures/jwks.json");

static CONFIG: LazyLock<AuthConfig> = LazyLock::new(|| {
    let jwt = JwtSettings {
        hs256_secret: Some(HS_SECRET.to_vec()),
        jwks: Some(serde_json::from_str(JWKS).expect("fixture JWKS")),
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        ..JwtSettings::default()
    };
    let keys = API_KEYS
        .iter()
        .map(|k| ApiKeyEntry {
            id: k.trim_end_matches("-secret").into(),
            sha256: hash_api_key(k),
            roles: vec![Role::Admin],
        })
        .collect();
    AuthConfig::new(parse_routes("/:required").unwrap(), keys, jwt).expect("valid config")
});

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256_token(claims: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(HS_SECRET).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

fn run(api_key: Option<&str>, authorization: Option<&str>) -> Result<Option<Principal>, AuthError> {
    let creds = Credentials {
        api_key,
        authorization,
    };
    let r = CONFIG.authenticate("/api", creds, NOW);
    // `authenticate` on a required route is `identify` plus "no credentials → Missing".
    assert_eq!(
        r,
        CONFIG.identify(creds, NOW),
        "authenticate and identify disagree"
    );
    r
}

/// Anything but a forgery-free rejection is a bug for a credential the
/// harness did not mint.
fn assert_refused(r: Result<Option<Principal>, AuthError>, what: &str) {
    assert_eq!(
        r,
        Err(AuthError::Invalid),
        "{what} was not refused as invalid"
    );
}

/// Claims the harness signed were accepted: they must satisfy every check.
fn assert_claims_acceptable(claims: &[u8], p: &Principal) {
    let claims: Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
    assert!(claims.is_object(), "accepted claims are a JSON object");
    let sub = claims["sub"].as_str().expect("accepted sub is a string");
    assert!(!sub.is_empty() && sub.len() <= 256, "sub length");
    assert_eq!(p.id, format!("s:{sub}"));
    assert_eq!(claims["iss"].as_str(), Some(ISSUER), "iss");
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == AUDIENCE,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    assert!(aud_ok, "aud");
    let exp = claims["exp"].as_f64().expect("accepted exp is a number");
    assert!(NOW as f64 <= exp + 30.0, "expired token accepted");
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().expect("accepted nbf is a number");
        assert!(nbf <= NOW as f64 + 30.0, "not-yet-valid token accepted");
    }
    let mut roles = p.roles.clone();
    roles.dedup();
    assert_eq!(roles.len(), p.roles.len(), "duplicate roles");
}

fuzz_target!(|data: &[u8]| {
    let Some((&channel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match channel % 6 {
        0 => match run(Some(&text), None) {
            Ok(Some(p)) => {
                assert!(API_KEYS.contains(&&*text), "unknown API key accepted");
                assert!(p.id.starts_with("k:"));
            }
            r => assert_refused(r, "API key"),
        },
        1 => assert_refused(run(None, Some(&text)), "Authorization header"),
        2 => assert_refused(run(None, Some(&format!("Bearer {text}"))), "bearer token"),
        3 => {
            let mut parts = rest.splitn(3, |&b| b == b'\n');
            let (h, p, s) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let token = format!("Bearer {}.{}.{}", b64(h), b64(p), b64(s));
            assert_refused(run(None, Some(&token)), "assembled JWT");
        }
        4 => {
            let token = format!("Bearer {}", hs256_token(rest));
            match run(None, Some(&token)) {
                Ok(Some(p)) => assert_claims_acceptable(rest, &p),
                r => assert_refused(r, "HS256 token with failing claims"),
            }
        }
        _ => {
            let (key, auth) = text.split_once('\n').unwrap_or((&text, ""));
            assert_refused(run(Some(key), Some(auth)), "two credentials");
        }
    }
});
