use super::*;

#[test]
fn origin_response_headers_are_filtered_and_overridden() {
    let f = forward(run(
        &config(),
        &RolloutState::initial("s"),
        "/x",
        &[("x-api-key", "app-key")],
    ));
    let tokens = crate::http::connection_tokens(Some("close, x-hop"));
    let keep = |n: &str| keep_origin_response_header(n, &tokens, &f);
    assert!(keep("content-type") && keep("set-cookie") && keep("ETag"));
    assert!(!keep("transfer-encoding") && !keep("Connection") && !keep("x-hop"));
    assert!(!keep("X-Greenlight-Color") && !keep("x-greenlight-epoch"));
}

#[test]
fn forwarded_requests_are_signed_for_their_origin_when_a_secret_is_set() {
    use crate::origin_auth::{
        target_uri_of, verify, OriginAuthError, ReplayGuard, DEFAULT_WINDOW_S, HEADERS,
        HEADER_SIGNATURE,
    };
    let mut v = vars();
    v.insert("ORIGIN_SIGNING_SECRET", "origin-secret".into());
    let cfg = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap();
    let f = forward(run(
        &cfg,
        &canary(5_000),
        "/api/items",
        &[
            ("x-api-key", "app-key"),
            (HEADER_SIGNATURE, "forged-by-client"),
            ("Signature_Input", "forged=()"),
        ],
    ));
    let now_s = NOW_MS / 1_000;
    let check = |f: &Forward, url: &str, guard: &mut ReplayGuard| {
        let lookup = |n: &str| header(&f.request_headers, n);
        let target = target_uri_of(url).unwrap();
        verify(
            b"origin-secret",
            "GET",
            &target,
            lookup,
            now_s,
            DEFAULT_WINDOW_S,
            guard,
        )
    };
    let mut guard = ReplayGuard::default();
    assert_eq!(check(&f, &f.url, &mut guard), Ok(()));
    for name in HEADERS {
        let copies = f
            .request_headers
            .iter()
            .filter(|(k, _)| crate::http::same_field_name(k, name))
            .count();
        assert_eq!(copies, 1, "{name}: the client's copy must be dropped");
    }
    assert_eq!(header(&f.request_headers, HEADER_PRINCIPAL), Some("k:app"));
    // A retry goes to the other color's origin, signed for it; the first
    // attempt's signature does not verify there.
    let AfterAttempt::Retry(retry) = f.after_attempt(&AttemptOutcome::Answered(503), 10) else {
        panic!("no retry");
    };
    assert_ne!(retry.url, f.url);
    assert_eq!(
        check(&f, &retry.url, &mut ReplayGuard::default()),
        Err(OriginAuthError::BadSignature)
    );
    assert_eq!(
        check(&retry, &retry.url, &mut ReplayGuard::default()),
        Ok(())
    );
    // Without a secret nothing is added.
    let plain = forward(run(
        &config(),
        &RolloutState::initial("s"),
        "/api/items",
        &[("x-api-key", "app-key")],
    ));
    assert_eq!(header(&plain.request_headers, HEADER_SIGNATURE), None);
}

#[test]
fn origins_get_only_the_edges_forwarding_headers() {
    let cfg = config();
    let spoofed = [
        ("x-api-key", "app-key"),
        ("x-forwarded-for", "10.0.0.1"),
        ("X-Forwarded-Proto", "http"),
        ("forwarded", "for=10.0.0.1"),
        ("x-forwarded-host", "evil.test"),
        ("x-real-ip", "10.0.0.2"),
        ("x-original-url", "/__greenlight/state"),
        ("x-greenlight-color-override", "green"),
        ("X-Greenlight-Principal", "k:admin"),
        ("x-http-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x-method-override", "DELETE"),
        ("accept", "*/*"),
    ];
    let f = forward(plan_request(
        &cfg,
        "POST",
        "/api",
        &spoofed,
        Some("198.51.100.4"),
    ));
    assert_eq!(
        f.request_headers,
        headers(&[
            ("accept", "*/*"),
            ("x-forwarded-for", "198.51.100.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=198.51.100.4;proto=https"),
            (HEADER_PRINCIPAL, "k:app"),
        ])
    );
    // IPv6 is quoted in Forwarded; a port is not part of the address.
    let f = forward(plan_request(
        &cfg,
        "GET",
        "/api",
        &spoofed,
        Some("[2001:db8::7]:443"),
    ));
    assert_eq!(
        header(&f.request_headers, "x-forwarded-for"),
        Some("2001:db8::7")
    );
    assert_eq!(
        header(&f.request_headers, "forwarded"),
        Some("for=\"[2001:db8::7]\";proto=https")
    );
    // Nothing known, nothing sent (and the client's copies still dropped).
    let hs = headers(&spoofed);
    let req = RequestHead {
        method: "GET",
        path: "/api",
        query: None,
        headers: &hs,
        client_addr: Some("not an address"),
        scheme: None,
    };
    let loaded = LoadedState {
        state: RolloutState::initial("s"),
        degraded: false,
    };
    let f = forward(action(&cfg, &loaded, &req, NOW_MS, 5));
    let names: Vec<&str> = f.request_headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, vec!["accept", HEADER_PRINCIPAL]);
    // Method overrides pass when allowed.
    let allow = config_with(&[("ALLOW_METHOD_OVERRIDE", "true")]);
    let f = forward(plan_request(&allow, "POST", "/api", &spoofed, None));
    for h in crate::http::METHOD_OVERRIDE_HEADERS {
        assert_eq!(header(&f.request_headers, h), Some("DELETE"), "{h}");
    }
}

#[test]
fn a_trusted_proxy_header_names_the_caller() {
    let anonymous = [("AUTH_ROUTES", "/:optional"), ("RATE_LIMIT_PER_S", "1")];
    let platform = config_with(&anonymous);
    let proxied = config_with(&[
        anonymous[0],
        anonymous[1],
        ("TRUSTED_CLIENT_IP_HEADER", "X-Real-IP"),
    ]);
    assert_eq!(
        proxied.trusted_client_ip_header.as_deref(),
        Some("x-real-ip")
    );
    let from = |cfg: &EdgeConfig, h: &[(&str, &str)]| {
        forward(plan_request(cfg, "GET", "/x", h, Some("10.1.1.1")))
    };
    // The platform's address by default, whatever the client claims.
    let f = from(&platform, &[("x-real-ip", "203.0.113.5")]);
    assert_eq!(f.rate_key.as_deref(), Some("ip:10.1.1.1"));
    assert_eq!(
        header(&f.request_headers, "x-forwarded-for"),
        Some("10.1.1.1")
    );
    // The proxy's header when configured: the last address in it.
    let f = from(&proxied, &[("x-real-ip", "198.51.100.1, 203.0.113.5")]);
    assert_eq!(f.rate_key.as_deref(), Some("ip:203.0.113.5"));
    assert_eq!(
        header(&f.request_headers, "x-forwarded-for"),
        Some("203.0.113.5")
    );
    assert_eq!(header(&f.request_headers, "x-real-ip"), None, "consumed");
    // Absent or not an address: the platform's.
    for h in [&[][..], &[("x-real-ip", "unknown")][..]] {
        let f = from(&proxied, h);
        assert_eq!(f.rate_key.as_deref(), Some("ip:10.1.1.1"));
    }
    // x-forwarded-for itself may be the trusted header.
    let xff = config_with(&[("TRUSTED_CLIENT_IP_HEADER", "x-forwarded-for")]);
    let f = forward(plan_request(
        &xff,
        "GET",
        "/api",
        &[
            ("x-api-key", "app-key"),
            ("x-forwarded-for", "1.2.3.4, 192.0.2.8"),
        ],
        Some("10.1.1.1"),
    ));
    assert_eq!(
        header(&f.request_headers, "x-forwarded-for"),
        Some("192.0.2.8")
    );
}

#[test]
fn origins_learn_the_host_the_client_asked_for() {
    let cfg = config();
    let f = forward(plan_request(
        &cfg,
        "GET",
        "/api",
        &[
            ("x-api-key", "app-key"),
            ("host", "edge.example:8443"),
            ("x-forwarded-host", "evil.test"),
        ],
        Some("192.0.2.1"),
    ));
    assert_eq!(header(&f.request_headers, "host"), None);
    assert_eq!(
        header(&f.request_headers, "x-forwarded-host"),
        Some("edge.example:8443")
    );
    assert_eq!(
        header(&f.request_headers, "forwarded"),
        Some("for=192.0.2.1;proto=https;host=\"edge.example:8443\"")
    );
    let names = f
        .request_headers
        .iter()
        .filter(|(k, _)| k == "x-forwarded-host")
        .count();
    assert_eq!(names, 1, "the client's copy is replaced");
    // A Host that is not a host name is not repeated (nor is the client's).
    let f = forward(plan_request(
        &cfg,
        "GET",
        "/api",
        &[
            ("x-api-key", "app-key"),
            ("host", "a b\"c"),
            ("x-forwarded-host", "evil.test"),
        ],
        None,
    ));
    assert_eq!(header(&f.request_headers, "x-forwarded-host"), None);
    assert_eq!(header(&f.request_headers, "forwarded"), Some("proto=https"));
    let f = forward(plan_request(
        &cfg,
        "GET",
        "/api",
        &[("x-api-key", "app-key"), ("host", "edge.example")],
        None,
    ));
    assert_eq!(
        header(&f.request_headers, "forwarded"),
        Some("proto=https;host=edge.example")
    );
}

#[test]
fn websocket_upgrades_are_forwarded_as_such() {
    let cfg = config();
    let ws = [
        ("x-api-key", "app-key"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];
    let f = forward(plan_request(&cfg, "GET", "/api/ws", &ws, None));
    assert!(f.websocket);
    assert_eq!(header(&f.request_headers, "upgrade"), Some("websocket"));
    assert_eq!(header(&f.request_headers, "connection"), None);
    assert_eq!(
        header(&f.request_headers, "sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    // Another upgrade, or another method, is an ordinary request.
    let h2c = [("x-api-key", "app-key"), ("upgrade", "h2c")];
    let f = forward(plan_request(&cfg, "GET", "/api/ws", &h2c, None));
    assert!(!f.websocket);
    assert_eq!(header(&f.request_headers, "upgrade"), None);
    let f = forward(plan_request(&cfg, "POST", "/api/ws", &ws, None));
    assert!(!f.websocket);
    let r = Reply::websocket_unsupported("Spin");
    assert_eq!(r.status, 501);
    assert!(r.body.contains("websocket-unsupported"));
}

#[test]
fn expect_never_reaches_an_origin() {
    let f = forward(plan_request(
        &config(),
        "PUT",
        "/api",
        &[("x-api-key", "app-key"), ("expect", "100-continue")],
        None,
    ));
    assert_eq!(header(&f.request_headers, "expect"), None);
}

#[test]
fn locations_are_rewritten_only_when_asked() {
    let with = |h: &[(&str, &str)]| {
        let cfg = config_with(&[("REWRITE_LOCATION", "true")]);
        forward(plan_request(&cfg, "GET", "/api", h, None))
    };
    let key = ("x-api-key", "app-key");
    // Off by default.
    let f = forward(plan_request(
        &config(),
        "GET",
        "/api",
        &[key, ("host", "edge.example")],
        None,
    ));
    assert_eq!(f.location_rewrite, None);
    assert_eq!(
        f.rewrite_origin_header("location", "http://127.0.0.1:9002/x"),
        None
    );
    let f = with(&[key, ("host", "edge.example")]);
    assert!(f.needs_origin_headers());
    for (from, to) in [
        (
            "http://127.0.0.1:9002/landing?a=1",
            Some("https://edge.example/landing?a=1"),
        ),
        ("http://127.0.0.1:9001", Some("https://edge.example/")),
        ("HTTP://127.0.0.1:9001?x", Some("https://edge.example/?x")),
        ("http://127.0.0.1:90011/x", None),
        ("http://127.0.0.1:9001.evil.test/x", None),
        ("https://127.0.0.1:9001/x", None),
        ("/relative", None),
        ("https://elsewhere.example/x", None),
    ] {
        assert_eq!(
            f.rewrite_origin_header("Location", from).as_deref(),
            to,
            "{from}"
        );
    }
    // No usable Host from the client: nothing to rewrite to.
    assert_eq!(with(&[key]).location_rewrite, None);
    // Default ports and base paths.
    let rw = LocationRewrite {
        origins: vec!["https://green.example/app".into()],
        edge: "https://edge.example".into(),
    };
    assert_eq!(
        rw.apply("https://GREEN.example:443/app/x").as_deref(),
        Some("https://edge.example/x")
    );
    assert_eq!(rw.apply("https://green.example/apple"), None);
    assert_eq!(rw.apply("https://green.example/other"), None);
}

#[test]
fn upstream_credentials_replace_the_callers_per_color() {
    let cfg = ai_config(&[
        (
            "BLUE_ORIGIN_HEADERS",
            "Authorization: Bearer sk-blue\nx-org: o-1",
        ),
        ("GREEN_ORIGIN_HEADERS", "authorization: Bearer sk-green"),
        ("ORIGIN_SIGNING_SECRET", "sign-me"),
    ]);
    assert!(
        !format!("{cfg:?}").contains("sk-blue"),
        "Debug shows a secret"
    );
    // A JWT caller: its own Authorization never goes upstream; an API key
    // caller's key neither; client copies of configured names are dropped.
    let f = forward(run(
        &cfg,
        &canary(5_000),
        "/api/chat",
        &[
            ("x-api-key", "app-key"),
            ("x-org", "mine"),
            ("accept", "*/*"),
        ],
    ));
    let ours = |f: &Forward, name: &str| -> Vec<String> {
        f.request_headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let (mine, other) = match f.decision.color {
        Color::Blue => ("Bearer sk-blue", "Bearer sk-green"),
        Color::Green => ("Bearer sk-green", "Bearer sk-blue"),
    };
    assert_eq!(ours(&f, "authorization"), vec![mine.to_string()]);
    assert!(ours(&f, "x-api-key").is_empty());
    assert!(!ours(&f, "x-org").contains(&"mine".to_string()));
    assert_eq!(ours(&f, "accept"), vec!["*/*".to_string()]);
    assert!(header(&f.request_headers, "signature").is_some());
    // A retry on the other color carries that color's credentials only.
    let AfterAttempt::Retry(retry) = f.after_attempt(&AttemptOutcome::Answered(503), 10) else {
        panic!("no retry");
    };
    assert_eq!(ours(&retry, "authorization"), vec![other.to_string()]);
    assert_eq!(
        ours(&retry, "x-org").len(),
        usize::from(retry.decision.color == Color::Blue)
    );
    assert!(header(&retry.request_headers, "signature").is_some());
    // Without upstream credentials, Authorization passes as before.
    let plain = forward(run(
        &config(),
        &RolloutState::initial("s"),
        "/public/x",
        &[("authorization", "Bearer for-the-origin")],
    ));
    assert_eq!(
        header(&plain.request_headers, "authorization"),
        Some("Bearer for-the-origin")
    );
    // A bad line is a clear start-up error that quotes no value.
    let mut v = vars();
    v.insert("GREEN_ORIGIN_HEADERS", "Bearer sk-oops".into());
    let e = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
    assert!(
        e.0.contains("GREEN_ORIGIN_HEADERS line 1") && !e.0.contains("sk-oops"),
        "{e}"
    );
}

#[test]
fn trusted_headers_are_dropped_in_every_cgi_spelling() {
    let cfg = config();
    let spoofed = [
        ("x-api-key", "app-key"),
        ("x_api_key", "other-key"),
        ("x_forwarded_for", "10.0.0.1"),
        ("X_Forwarded_Proto", "http"),
        ("x_forwarded-host", "evil.test"),
        ("x_real_ip", "10.0.0.2"),
        ("X_ORIGINAL_URL", "/__greenlight/state"),
        ("x_greenlight_principal", "k:admin"),
        ("x-greenlight_principal", "k:admin"),
        ("x_http_method_override", "DELETE"),
        ("signature_input", "greenlight=()"),
        ("x_custom_header", "kept"),
    ];
    let f = forward(plan_request(
        &cfg,
        "GET",
        "/api",
        &spoofed,
        Some("198.51.100.4"),
    ));
    assert_eq!(
        f.request_headers,
        headers(&[
            ("signature_input", "greenlight=()"),
            ("x_custom_header", "kept"),
            ("x-forwarded-for", "198.51.100.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=198.51.100.4;proto=https"),
            (HEADER_PRINCIPAL, "k:app"),
        ]),
        "only unsigned traffic keeps a client's signature fields"
    );
}

#[test]
fn a_credentials_id_is_written_header_safe() {
    let mut v = vars();
    v.insert(
        "JWT_HS256_SECRET",
        "hs-secret-0123456789abcdef0123456789".into(),
    );
    let cfg = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap();
    let token = |sub: &str| {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        use hmac::Mac;
        let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = serde_json::json!({"sub": sub, "exp": NOW_MS / 1_000 + 60});
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hs-secret-0123456789abcdef0123456789")
                .unwrap();
        mac.update(format!("{head}.{body}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("Bearer {head}.{body}.{sig}")
    };
    for (sub, sent) in [
        ("u\nx-original-url\n/admin", "s:u%0Ax-original-url%0A/admin"),
        ("u\rv", "s:u%0Dv"),
        ("50%", "s:50%25"),
        ("alice@example.com", "s:alice@example.com"),
    ] {
        let auth = token(sub);
        let f = forward(run(
            &cfg,
            &canary(5_000),
            "/api/x",
            &[("authorization", &auth)],
        ));
        assert_eq!(
            header(&f.request_headers, HEADER_PRINCIPAL),
            Some(sent),
            "{sub:?}"
        );
        // The caller is still who its token says, for stickiness and limits.
        assert!(f
            .request_headers
            .iter()
            .all(|(_, v)| !v.contains(['\n', '\r'])));
    }
}
