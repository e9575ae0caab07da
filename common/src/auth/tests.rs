use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const NOW: u64 = 1_800_000_000;
const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
const RSA_PRIVATE: &str = include_str!("../../../tests/fixtures/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../../../tests/fixtures/rsa-public.pem");
const EC_PRIVATE: &str = include_str!("../../../tests/fixtures/ec-private.pem");
const EC_OTHER_PRIVATE: &str = include_str!("../../../tests/fixtures/ec-other-private.pem");
const JWKS: &str = include_str!("../../../tests/fixtures/jwks.json");

fn config() -> AuthConfig {
    let jwt = JwtSettings {
        hs256_secret: Some(HS_SECRET.to_vec()),
        jwks: Some(serde_json::from_str(JWKS).unwrap()),
        issuer: Some("https://issuer.test".into()),
        audience: Some("greenlight".into()),
        ..JwtSettings::default()
    };
    AuthConfig::new(
        parse_routes("/public:off,/api:required,/:optional").unwrap(),
        vec![
            ApiKeyEntry {
                id: "ops".into(),
                sha256: hash_api_key("key-ops-secret"),
                roles: vec![Role::Preview, Role::Admin],
            },
            ApiKeyEntry {
                id: "app".into(),
                sha256: hash_api_key("key-app-secret"),
                roles: vec![],
            },
        ],
        jwt,
    )
    .unwrap()
}

fn claims() -> serde_json::Value {
    json!({"sub": "user-7", "iss": "https://issuer.test", "aud": "greenlight", "exp": NOW + 300})
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(HS_SECRET),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        _ => unreachable!(),
    };
    encode(&header, claims, &key).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn check(token: &str) -> Result<Option<Principal>, AuthError> {
    let auth = bearer(token);
    config().authenticate(
        "/api/x",
        Credentials {
            api_key: None,
            authorization: Some(&auth),
        },
        NOW,
    )
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn api_keys_authenticate_with_roles() {
    let cfg = config();
    let p = cfg
        .authenticate(
            "/api/x",
            Credentials {
                api_key: Some("key-ops-secret"),
                authorization: None,
            },
            NOW,
        )
        .unwrap()
        .unwrap();
    assert_eq!(p.id, "k:ops");
    assert!(p.has(Role::Preview) && p.has(Role::Admin));
    let wrong = Credentials {
        api_key: Some("key-ops-secreT"),
        authorization: None,
    };
    assert_eq!(
        cfg.authenticate("/api/x", wrong, NOW),
        Err(AuthError::Invalid)
    );
    let empty = Credentials {
        api_key: Some(""),
        authorization: None,
    };
    assert_eq!(
        cfg.authenticate("/api/x", empty, NOW),
        Err(AuthError::Invalid)
    );
}

#[test]
fn route_modes() {
    let cfg = config();
    let none = Credentials::default();
    assert_eq!(
        cfg.authenticate("/api/x", none, NOW),
        Err(AuthError::Missing)
    );
    assert_eq!(cfg.authenticate("/other", none, NOW), Ok(None));
    assert_eq!(cfg.authenticate("/public/a", none, NOW), Ok(None));
    // Bad credentials on an optional route are still refused...
    let bad = Credentials {
        api_key: Some("nope"),
        authorization: None,
    };
    assert_eq!(
        cfg.authenticate("/other", bad, NOW),
        Err(AuthError::Invalid)
    );
    // ...but ignored where auth is off.
    assert_eq!(cfg.authenticate("/public/a", bad, NOW), Ok(None));
    assert_eq!(
        cfg.mode_for("/apiary"),
        AuthMode::Required,
        "prefix match, longest wins"
    );
    let strict = AuthConfig::new(vec![], vec![], JwtSettings::default()).unwrap();
    assert_eq!(strict.mode_for("/anything"), AuthMode::Required);
}

#[test]
fn jwt_each_algorithm_verifies() {
    for (alg, kid) in [
        (Algorithm::HS256, None),
        (Algorithm::RS256, Some("rsa-1")),
        (Algorithm::ES256, Some("ec-1")),
        (Algorithm::ES256, None),
    ] {
        let p = check(&sign(alg, kid, &claims())).unwrap().unwrap();
        assert_eq!(p.id, "s:user-7", "{alg:?}");
        assert!(p.roles.is_empty());
    }
}

#[test]
fn jwt_roles_from_claim_or_scope() {
    let mut c = claims();
    c["greenlight_roles"] = json!(["preview"]);
    c["scope"] = json!("read greenlight:admin");
    let p = check(&sign(Algorithm::ES256, Some("ec-1"), &c))
        .unwrap()
        .unwrap();
    assert!(p.has(Role::Preview) && p.has(Role::Admin));
}

#[test]
fn jwt_time_checks_with_leeway() {
    let mut c = claims();
    c["exp"] = json!(NOW - 10); // inside the 30 s leeway
    assert!(check(&sign(Algorithm::HS256, None, &c)).is_ok());
    c["exp"] = json!(NOW - 31);
    assert_eq!(
        check(&sign(Algorithm::HS256, None, &c)),
        Err(AuthError::Invalid)
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        check(&sign(Algorithm::HS256, None, &c)),
        Err(AuthError::Invalid),
        "exp is required"
    );
    let mut c = claims();
    c["nbf"] = json!(NOW + 60);
    assert_eq!(
        check(&sign(Algorithm::HS256, None, &c)),
        Err(AuthError::Invalid)
    );
    c["nbf"] = json!(NOW + 20);
    assert!(check(&sign(Algorithm::HS256, None, &c)).is_ok());
    c["nbf"] = json!("soon");
    assert_eq!(
        check(&sign(Algorithm::HS256, None, &c)),
        Err(AuthError::Invalid)
    );
}

#[test]
fn jwt_issuer_audience_subject() {
    for (field, value) in [
        ("iss", json!("https://evil.test")),
        ("aud", json!("someone-else")),
        ("aud", json!(["a", "b"])),
        ("sub", json!("")),
        ("sub", json!(42)),
    ] {
        let mut c = claims();
        c[field] = value.clone();
        assert_eq!(
            check(&sign(Algorithm::RS256, Some("rsa-1"), &c)),
            Err(AuthError::Invalid),
            "{field}={value}"
        );
    }
    let mut c = claims();
    c["aud"] = json!(["x", "greenlight"]);
    assert!(check(&sign(Algorithm::RS256, Some("rsa-1"), &c)).is_ok());
}

#[test]
fn alg_none_is_refused() {
    let header = b64(&json!({"alg": "none", "typ": "JWT"}));
    let token = format!("{header}.{}.", b64(&claims()));
    assert_eq!(check(&token), Err(AuthError::Invalid));
    let header = b64(&json!({"alg": "None"}));
    assert_eq!(
        check(&format!("{header}.{}.", b64(&claims()))),
        Err(AuthError::Invalid)
    );
}

#[test]
fn hs_rs_confusion_is_refused() {
    // The classic attack: HS256 "signed" with the RSA public key as secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let token = encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert_eq!(check(&token), Err(AuthError::Invalid));
    // An ES256 token naming the RSA key id.
    assert_eq!(
        check(&sign(Algorithm::ES256, Some("rsa-1"), &claims())),
        Err(AuthError::Invalid)
    );
}

#[test]
fn wrong_key_unknown_kid_and_disallowed_alg() {
    let other = EncodingKey::from_ec_pem(EC_OTHER_PRIVATE.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let forged = encode(&header, &claims(), &other).unwrap();
    assert_eq!(check(&forged), Err(AuthError::Invalid));
    assert_eq!(
        check(&sign(Algorithm::RS256, Some("rsa-9"), &claims())),
        Err(AuthError::Invalid)
    );
    let mut cfg = config();
    cfg.jwt.algorithms = vec![Algorithm::ES256];
    let auth = bearer(&sign(Algorithm::HS256, None, &claims()));
    let creds = Credentials {
        api_key: None,
        authorization: Some(&auth),
    };
    assert_eq!(
        cfg.authenticate("/api", creds, NOW),
        Err(AuthError::Invalid)
    );
}

#[test]
fn malformed_tokens_and_headers() {
    let good = sign(Algorithm::HS256, None, &claims());
    let truncated = &good[..good.len() - 5];
    let cases: Vec<String> = vec![
        truncated.to_string(),
        "not-a-jwt".into(),
        "a.b.c".into(),
        "%%%.***.$$$".into(),
        format!("{good}.extra"),
        "A".repeat(MAX_TOKEN_LEN + 1),
    ];
    for token in &cases {
        assert_eq!(
            check(token),
            Err(AuthError::Invalid),
            "{}",
            &token[..token.len().min(40)]
        );
    }
    let cfg = config();
    for auth in [
        "Basic dXNlcjpwYXNz".to_string(),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        format!("Bearer {good}, Bearer {good}"), // duplicate headers joined by the platform
        format!("Token {good}"),
    ] {
        let creds = Credentials {
            api_key: None,
            authorization: Some(&auth),
        };
        assert_eq!(
            cfg.authenticate("/api", creds, NOW),
            Err(AuthError::Invalid),
            "{auth}"
        );
    }
    let good_bearer = bearer(&good);
    let both = Credentials {
        api_key: Some("key-ops-secret"),
        authorization: Some(&good_bearer),
    };
    assert_eq!(cfg.authenticate("/api", both, NOW), Err(AuthError::Invalid));
    assert_eq!(bearer_token("bearer abc.def"), Some("abc.def"));
}

#[test]
fn rfc6750_mapping() {
    assert_eq!(AuthError::Missing.status(), 401);
    assert_eq!(
        AuthError::Missing.www_authenticate(),
        "Bearer realm=\"greenlight\""
    );
    assert!(AuthError::Invalid
        .www_authenticate()
        .contains("error=\"invalid_token\""));
    assert_eq!(AuthError::Forbidden.status(), 403);
    assert!(AuthError::Forbidden
        .www_authenticate()
        .contains("insufficient_scope"));
}

#[test]
fn config_errors_are_precise() {
    assert!(parse_routes("/a:maybe").unwrap_err().0.contains("maybe"));
    assert!(parse_routes("a:off")
        .unwrap_err()
        .0
        .contains("start with /"));
    assert!(parse_algorithms("HS256,none")
        .unwrap_err()
        .0
        .contains("none"));
    assert_eq!(
        parse_algorithms("ES256, RS256").unwrap(),
        vec![Algorithm::ES256, Algorithm::RS256]
    );
    let bad_hash = ApiKeyEntry {
        id: "x".into(),
        sha256: "zz".into(),
        roles: vec![],
    };
    assert!(
        AuthConfig::new(vec![], vec![bad_hash], JwtSettings::default())
            .unwrap_err()
            .0
            .contains("hex")
    );
    let short = JwtSettings {
        hs256_secret: Some(b"short".to_vec()),
        ..JwtSettings::default()
    };
    assert!(AuthConfig::new(vec![], vec![], short).is_err());
}

#[test]
fn malformed_jwks_is_a_config_error_and_an_unbuildable_key_verifies_nothing() {
    let jwks = |x: &str| -> JwkSet {
        serde_json::from_value(
            json!({"keys": [{"kty": "EC", "kid": "ec-1", "crv": "P-256", "alg": "ES256",
            "x": x, "y": URL_SAFE_NO_PAD.encode([7u8; 32])}]}),
        )
        .unwrap()
    };
    let with = |set: JwkSet| {
        AuthConfig::new(
            vec![],
            vec![],
            JwtSettings {
                jwks: Some(set),
                ..JwtSettings::default()
            },
        )
    };
    // Not base64url / wrong length: refused when the configuration loads.
    assert!(with(jwks("***")).unwrap_err().0.contains("ec-1"));
    assert!(with(jwks(&URL_SAFE_NO_PAD.encode([1u8; 31])))
        .unwrap_err()
        .0
        .contains("32 bytes"));
    // Well-formed but not a point on P-256: accepted, and verifies no token.
    let cfg = with(jwks(&URL_SAFE_NO_PAD.encode([7u8; 32]))).unwrap();
    let auth = bearer(&sign(Algorithm::ES256, Some("ec-1"), &claims()));
    let creds = Credentials {
        api_key: None,
        authorization: Some(&auth),
    };
    assert_eq!(cfg.identify(creds, NOW), Err(AuthError::Invalid));
}

/// Signs a hand-written header and payload (JSON text, so duplicate
/// members and odd types survive) with the test HS256 secret or EC key.
fn sign_raw(header: &str, payload: &str) -> String {
    use hmac::{Hmac, Mac};
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let alg = serde_json::from_str::<serde_json::Value>(header)
        .ok()
        .and_then(|h| h.get("alg").and_then(|a| a.as_str()).map(str::to_string));
    let signature = match alg.as_deref() {
        Some("ES256") => {
            use p256::ecdsa::signature::Signer;
            use p256::pkcs8::DecodePrivateKey;
            let key = p256::ecdsa::SigningKey::from_pkcs8_pem(EC_PRIVATE).unwrap();
            let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
            sig.to_bytes().to_vec()
        }
        _ => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HS_SECRET).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn payload() -> String {
    claims().to_string()
}

#[test]
fn jose_sign_raw_baseline_is_accepted() {
    for header in [
        r#"{"alg":"HS256"}"#,
        r#"{"alg":"HS256","typ":"JWT"}"#,
        r#"{"alg":"HS256","typ":"jwt"}"#,
        r#"{"alg":"HS256","typ":"application/jwt"}"#,
        r#"{"alg":"HS256","typ":"at+jwt"}"#,
        r#"{"alg":"HS256","kid":"hs-main"}"#,
        r#"{"alg":"ES256","kid":"ec-1"}"#,
        // Never fetched, never trusted: the configured keys decide.
        r#"{"alg":"HS256","jku":"https://evil.test/jwks.json","x5u":"https://evil.test/c.pem"}"#,
    ] {
        assert!(
            check(&sign_raw(header, &payload())).is_ok(),
            "{header} must be accepted"
        );
    }
}

#[test]
fn jose_crit_is_refused_whatever_it_lists() {
    // RFC 7515 §4.1.11: greenlight understands no extension parameter.
    for header in [
        r#"{"alg":"HS256","crit":["exp-ext"],"exp-ext":1}"#,
        r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
        r#"{"alg":"HS256","crit":[]}"#,
        r#"{"alg":"HS256","crit":["alg"]}"#,
        r#"{"alg":"HS256","crit":"exp-ext"}"#,
    ] {
        assert_eq!(
            check(&sign_raw(header, &payload())),
            Err(AuthError::Invalid),
            "{header}"
        );
    }
}

#[test]
fn jose_duplicate_members_are_refused() {
    let header = r#"{"alg":"HS256","alg":"HS256"}"#;
    assert_eq!(
        check(&sign_raw(header, &payload())),
        Err(AuthError::Invalid)
    );
    let header = r#"{"alg":"HS256","kid":"a","kid":"rsa-1"}"#;
    assert_eq!(
        check(&sign_raw(header, &payload())),
        Err(AuthError::Invalid)
    );
    let doubled = format!(
        r#"{{"sub":"user-7","sub":"admin","iss":"https://issuer.test","aud":"greenlight","exp":{}}}"#,
        NOW + 300
    );
    assert_eq!(
        check(&sign_raw(r#"{"alg":"HS256"}"#, &doubled)),
        Err(AuthError::Invalid)
    );
}

#[test]
fn jose_typ_and_cty() {
    // RFC 8725 §3.11: another kind of JWT is not an access token here.
    for header in [
        r#"{"alg":"HS256","typ":"dpop+jwt"}"#,
        r#"{"alg":"HS256","typ":"secevent+jwt"}"#,
        r#"{"alg":"HS256","typ":"JOSE"}"#,
        r#"{"alg":"HS256","typ":7}"#,
        // RFC 7519 §5.2: a nested JWT; and any content type says the
        // payload is not a claims set.
        r#"{"alg":"HS256","cty":"JWT"}"#,
        r#"{"alg":"HS256","cty":"text/plain"}"#,
        // JWE parameters in a JWS header.
        r#"{"alg":"HS256","enc":"A128GCM"}"#,
        r#"{"alg":"HS256","zip":"DEF"}"#,
    ] {
        assert_eq!(
            check(&sign_raw(header, &payload())),
            Err(AuthError::Invalid),
            "{header}"
        );
    }
}

#[test]
fn jose_kid_binds_a_key_of_the_token_family() {
    // An HS256 token naming an asymmetric key: the key it names cannot
    // have made it, whatever secret signed it.
    for kid in ["rsa-1", "ec-1"] {
        let header = format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#);
        assert_eq!(
            check(&sign_raw(&header, &payload())),
            Err(AuthError::Invalid),
            "{header}"
        );
    }
    for header in [
        r#"{"alg":"HS256","kid":7}"#,
        r#"{"alg":"HS256","kid":null}"#,
    ] {
        assert_eq!(
            check(&sign_raw(header, &payload())),
            Err(AuthError::Invalid),
            "{header}"
        );
    }
    // alg must be a string from the allow-list, spelled exactly.
    for header in [
        r#"{"alg":"hs256"}"#,
        r#"{"alg":["HS256"]}"#,
        r#"{"typ":"JWT"}"#,
        r#"["alg","HS256"]"#,
    ] {
        assert_eq!(
            check(&sign_raw(header, &payload())),
            Err(AuthError::Invalid),
            "{header}"
        );
    }
}

#[test]
fn jose_jwk_use_and_key_ops_bind_keys_to_verification() {
    let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    for key in set["keys"].as_array_mut().unwrap() {
        if key["kid"] == "ec-1" {
            key["use"] = json!("enc");
        }
        if key["kid"] == "rsa-1" {
            key["key_ops"] = json!(["encrypt"]);
        }
    }
    let cfg = AuthConfig::new(
        vec![],
        vec![],
        JwtSettings {
            jwks: Some(serde_json::from_value(set).unwrap()),
            issuer: Some("https://issuer.test".into()),
            audience: Some("greenlight".into()),
            ..JwtSettings::default()
        },
    )
    .unwrap();
    for (alg, kid) in [(Algorithm::ES256, "ec-1"), (Algorithm::RS256, "rsa-1")] {
        let auth = bearer(&sign(alg, Some(kid), &claims()));
        let creds = Credentials {
            api_key: None,
            authorization: Some(&auth),
        };
        assert_eq!(cfg.identify(creds, NOW), Err(AuthError::Invalid), "{kid}");
    }
}

#[test]
fn jose_numeric_dates_and_claim_types() {
    let with = |field: &str, value: serde_json::Value| {
        let mut c = claims();
        c[field] = value;
        check(&sign(Algorithm::HS256, None, &c))
    };
    for (field, value) in [
        ("exp", json!(format!("{}", NOW + 300))),
        ("exp", json!(true)),
        ("exp", json!(null)),
        ("exp", json!([NOW + 300])),
        ("nbf", json!(null)),
        ("iat", json!("yesterday")),
        ("iat", json!(null)),
        ("iss", json!(["https://issuer.test"])),
        ("aud", json!(["greenlight", 7])),
        ("jti", json!(42)),
    ] {
        assert_eq!(
            with(field, value.clone()),
            Err(AuthError::Invalid),
            "{field}={value}"
        );
    }
    // NumericDate may carry a fraction (RFC 7519 §2).
    assert!(with("exp", json!(NOW as f64 + 300.5)).is_ok());
    assert!(with("iat", json!(NOW - 5)).is_ok());
    assert!(with("nbf", json!(NOW as f64 - 0.25)).is_ok());
    // A payload that is not an object.
    assert_eq!(
        check(&sign_raw(r#"{"alg":"HS256"}"#, "[1,2]")),
        Err(AuthError::Invalid)
    );
    assert_eq!(
        check(&sign_raw(r#"{"alg":"HS256"}"#, "\"claims\"")),
        Err(AuthError::Invalid)
    );
}
