//! The credentials and configuration every end-to-end test uses. The key
//! material lives in `tests/fixtures/` (test-only keys, see its README).

use crate::runtime::EdgeSetup;
use greenlight_common::auth::hash_api_key;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// An API key without roles.
pub const APP_KEY: &str = "gl_app_3b1d0c7e";
/// An API key allowed to preview.
pub const QA_KEY: &str = "gl_qa_9f2e61aa";
/// An API key with the admin role.
pub const OPS_KEY: &str = "gl_ops_51c0ffee";
/// Named admin tokens (`ADMIN_CREDENTIALS`): a viewer and an operator.
pub const VIEWER_TOKEN: &str = "test-viewer-token-vera-0123";
pub const VIEWER_NAME: &str = "vera";
pub const OPERATOR_TOKEN: &str = "test-operator-token-otto-4567";
pub const OPERATOR_NAME: &str = "otto@example.com";
pub const HS256_SECRET: &str = "e2e-hs256-secret-0123456789abcdef0123";
pub const ISSUER: &str = "https://issuer.greenlight.test";
pub const AUDIENCE: &str = "greenlight-e2e";

pub const JWKS: &str = include_str!("../fixtures/jwks.json");
pub const RSA_PRIVATE: &str = include_str!("../fixtures/rsa-private.pem");
pub const RSA_PUBLIC: &str = include_str!("../fixtures/rsa-public.pem");
pub const EC_PRIVATE: &str = include_str!("../fixtures/ec-private.pem");
pub const EC_OTHER_PRIVATE: &str = include_str!("../fixtures/ec-other-private.pem");

/// The edge configuration of the suite: `/public` is anonymous, the rest
/// needs an API key or a JWT.
pub fn edge_setup(blue_origin: &str, green_origin: &str) -> EdgeSetup {
    let api_keys = json!([
        {"id": "app", "sha256": hash_api_key(APP_KEY)},
        {"id": "qa", "sha256": hash_api_key(QA_KEY), "roles": ["preview"]},
        {"id": "ops", "sha256": hash_api_key(OPS_KEY), "roles": ["admin", "preview"]},
    ]);
    let admins = json!([
        {"name": VIEWER_NAME, "sha256": hash_api_key(VIEWER_TOKEN), "role": "viewer"},
        {"name": OPERATOR_NAME, "sha256": hash_api_key(OPERATOR_TOKEN), "role": "operator"},
    ]);
    let jwks: serde_json::Value = serde_json::from_str(JWKS).unwrap_or_default();
    let mut setup = EdgeSetup::default();
    for (k, v) in [
        ("BLUE_ORIGIN", blue_origin.to_string()),
        ("GREEN_ORIGIN", green_origin.to_string()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("ADMIN_CREDENTIALS", admins.to_string()),
        ("AUTH_ROUTES", "/public:off,/:required".to_string()),
        ("API_KEYS", api_keys.to_string()),
        ("JWT_HS256_SECRET", HS256_SECRET.to_string()),
        ("JWKS", jwks.to_string()),
        ("JWT_ISSUER", ISSUER.to_string()),
        ("JWT_AUDIENCE", AUDIENCE.to_string()),
        ("ROLLOUT_SALT", "e2e".to_string()),
    ] {
        setup.vars.insert(k.to_string(), v);
    }
    setup
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Valid claims for `sub`, expiring in five minutes.
pub fn claims(sub: &str) -> serde_json::Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now_s() + 300})
}

/// Signs `claims` with the suite's key for `alg` (kid `rsa-1` / `ec-1`).
pub fn sign(alg: Algorithm, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg);
    let key = match alg {
        Algorithm::RS256 => {
            header.kid = Some("rsa-1".into());
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes())
        }
        Algorithm::ES256 => {
            header.kid = Some("ec-1".into());
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes())
        }
        _ => Ok(EncodingKey::from_secret(HS256_SECRET.as_bytes())),
    };
    key.and_then(|k| encode(&header, claims, &k))
        .unwrap_or_default()
}

/// Signs a hand-written header (JSON text) and payload with the suite's
/// HS256 secret, so headers jsonwebtoken would not write can be sent.
pub fn sign_raw(header: &str, payload: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = EncodingKey::from_secret(HS256_SECRET.as_bytes());
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::HS256).unwrap_or_default();
    format!("{input}.{signature}")
}

/// A token that must be refused, with the name of what is wrong with it.
pub fn hostile_tokens() -> Vec<(&'static str, String)> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let good = sign(Algorithm::HS256, &claims("mallory"));
    let mut expired = claims("mallory");
    expired["exp"] = json!(now_s() - 600);
    let mut future = claims("mallory");
    future["nbf"] = json!(now_s() + 600);
    let mut wrong_aud = claims("mallory");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("mallory");
    wrong_iss["iss"] = json!("https://evil.test");
    let confusion = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa-1".into());
        encode(
            &h,
            &claims("mallory"),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        )
        .unwrap_or_default()
    };
    let forged = {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("ec-1".into());
        EncodingKey::from_ec_pem(EC_OTHER_PRIVATE.as_bytes())
            .and_then(|k| encode(&h, &claims("mallory"), &k))
            .unwrap_or_default()
    };
    let unknown_kid = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("rsa-404".into());
        EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes())
            .and_then(|k| encode(&h, &claims("mallory"), &k))
            .unwrap_or_default()
    };
    // Tokens whose signature is good but whose header or claims break a
    // JOSE/JWT rule (README, "JOSE and JWT rules"): one per refused class.
    let raw = |header: serde_json::Value, payload: String| sign_raw(&header.to_string(), &payload);
    let good_claims = claims("mallory").to_string();
    let doubled_sub = format!(
        r#"{{"sub":"mallory","sub":"ops","iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{}}}"#,
        now_s() + 300
    );
    let mut string_exp = claims("mallory");
    string_exp["exp"] = json!((now_s() + 300).to_string());
    let mut string_iat = claims("mallory");
    string_iat["iat"] = json!("yesterday");
    vec![
        (
            "crit names an extension greenlight does not understand",
            raw(
                json!({"alg": "HS256", "crit": ["exp-ext"], "exp-ext": 1}),
                good_claims.clone(),
            ),
        ),
        (
            "crit b64=false (RFC 7797 unencoded payload)",
            raw(
                json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
                good_claims.clone(),
            ),
        ),
        (
            "duplicate claim names",
            raw(json!({"alg": "HS256"}), doubled_sub),
        ),
        (
            "typ of another kind of token",
            raw(
                json!({"alg": "HS256", "typ": "dpop+jwt"}),
                good_claims.clone(),
            ),
        ),
        (
            "cty JWT (nested token)",
            raw(json!({"alg": "HS256", "cty": "JWT"}), good_claims.clone()),
        ),
        (
            "HS256 naming an RSA key id",
            raw(json!({"alg": "HS256", "kid": "rsa-1"}), good_claims.clone()),
        ),
        (
            "kid that is not a string",
            raw(json!({"alg": "HS256", "kid": 1}), good_claims.clone()),
        ),
        ("exp as a string", sign(Algorithm::HS256, &string_exp)),
        (
            "iat that is not a NumericDate",
            sign(Algorithm::HS256, &string_iat),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims("mallory"))
            ),
        ),
        ("HS256 signed with the RSA public key", confusion),
        ("expired", sign(Algorithm::HS256, &expired)),
        ("not yet valid", sign(Algorithm::ES256, &future)),
        ("wrong audience", sign(Algorithm::RS256, &wrong_aud)),
        ("wrong issuer", sign(Algorithm::HS256, &wrong_iss)),
        ("unknown kid", unknown_kid),
        ("bad signature", forged),
        ("truncated", good[..good.len() - 7].to_string()),
        ("not base64", "@@@.###.$$$".to_string()),
        (
            "oversized",
            format!(
                "{}.{}.{}",
                "e".repeat(3000),
                "e".repeat(3000),
                "e".repeat(3000)
            ),
        ),
    ]
}
