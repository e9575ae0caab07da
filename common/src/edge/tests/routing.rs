use super::*;

#[test]
fn forwards_with_tags_and_filtered_headers() {
    let cfg = config();
    let f = forward(run(
        &cfg,
        &RolloutState::initial("s"),
        "/api/items",
        &[
            ("x-api-key", "app-key"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("accept", "text/plain"),
            ("x-greenlight-principal", "spoofed"),
        ],
    ));
    assert_eq!(f.url, "http://127.0.0.1:9001/api/items?a=1");
    assert_eq!(f.decision.color, Color::Blue);
    let names: Vec<&str> = f.request_headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        vec!["accept", "x-forwarded-proto", "forwarded", HEADER_PRINCIPAL]
    );
    assert_eq!(header(&f.request_headers, HEADER_PRINCIPAL), Some("k:app"));
    assert_eq!(header(&f.response_headers, HEADER_COLOR), Some("blue"));
    assert_eq!(header(&f.response_headers, HEADER_EPOCH), Some("0"));
    assert_eq!(header(&f.response_headers, HEADER_REASON), Some("stable"));
    assert_eq!(header(&f.response_headers, "set-cookie"), None);
}

#[test]
fn auth_failures_never_forward() {
    let cfg = config();
    let s = RolloutState::initial("s");
    let r = reply(run(&cfg, &s, "/api", &[]));
    assert_eq!(r.status, 401);
    assert_eq!(
        header(&r.headers, "www-authenticate"),
        Some("Bearer realm=\"greenlight\"")
    );
    let r = reply(run(&cfg, &s, "/api", &[("x-api-key", "wrong")]));
    assert_eq!(r.status, 401);
    assert!(header(&r.headers, "www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    let r = reply(run(
        &cfg,
        &s,
        "/api",
        &[("authorization", "Bearer not.a.jwt")],
    ));
    assert_eq!(r.status, 401);
    // Preview without the role → 403; with it → the override.
    let r = reply(run(
        &cfg,
        &s,
        "/api",
        &[("x-api-key", "app-key"), ("x-greenlight-color", "green")],
    ));
    assert_eq!(r.status, 403);
    let f = forward(run(
        &cfg,
        &s,
        "/api",
        &[("x-api-key", "qa-key"), ("x-greenlight-color", "green")],
    ));
    assert_eq!(
        (f.decision.color, f.decision.reason),
        (Color::Green, RouteReason::Override)
    );
    let f = forward(run(
        &cfg,
        &s,
        "/api",
        &[
            ("x-api-key", "qa-key"),
            ("cookie", "greenlight-preview=green"),
        ],
    ));
    assert_eq!(f.decision.color, Color::Green);
}

#[test]
fn anonymous_users_get_a_sticky_cookie() {
    let cfg = config();
    let s = canary(5_000);
    let f = forward(run(&cfg, &s, "/public/page", &[]));
    let set = header(&f.response_headers, "set-cookie").unwrap();
    assert!(set.starts_with("greenlight-id=deadbeef00000001;"), "{set}");
    let again = forward(run(
        &cfg,
        &s,
        "/public/page",
        &[("cookie", "greenlight-id=deadbeef00000001")],
    ));
    assert_eq!(header(&again.response_headers, "set-cookie"), None);
    assert_eq!(
        again.decision.color, f.decision.color,
        "the cookie keeps the same color"
    );
    assert_eq!(again.decision.reason, RouteReason::Sticky);
}

#[test]
fn rate_limit_keys_name_the_caller() {
    let cfg = config_with(&[("RATE_LIMIT_PER_S", "10"), ("AUTH_ROUTES", "/:optional")]);
    assert_eq!(
        cfg.rate_limit,
        Some(RateLimit {
            per_s: 10,
            burst: 10
        })
    );
    let f = plan_method(&cfg, &canary(100), "GET", "app-key");
    assert_eq!(f.rate_key.as_deref(), Some("k:app"));
    let hs = headers(&[("cookie", "greenlight-id=abcdef0123")]);
    let mut req = RequestHead {
        method: "GET",
        path: "/x",
        query: None,
        headers: &hs,
        client_addr: Some("203.0.113.9"),
        scheme: Some("https"),
    };
    let loaded = LoadedState {
        state: canary(100),
        degraded: false,
    };
    let f = forward(action(&cfg, &loaded, &req, NOW_MS, 1));
    assert_eq!(f.rate_key.as_deref(), Some("ip:203.0.113.9"));
    req.client_addr = None;
    let f = forward(action(&cfg, &loaded, &req, NOW_MS, 1));
    assert_eq!(f.rate_key.as_deref(), Some("c:abcdef0123"));
    // No limit configured: nothing to count.
    assert_eq!(
        plan_method(&config(), &canary(100), "GET", "app-key").rate_key,
        None
    );
    let r = Reply::rate_limited(RetryAfter { seconds: 3 });
    assert_eq!(
        (r.status, header(&r.headers, "retry-after")),
        (429, Some("3"))
    );
}

/// Path tricks against `AUTH_ROUTES=/public:off,/:required` (no
/// credentials): refused by default, 401 once decoded, never forwarded with
/// the path the decision was not made on.
#[test]
fn path_confusion_is_refused_or_decided_on_the_decoded_path() {
    let table = [
        "/public%2F..%2Fapi%2Fhello",
        "/public/..%2Fapi/hello",
        "/public/..%5capi/hello",
        "/public/..\\api/hello",
        "/public%252F..%252Fapi%252Fhello",
        "/public/..;/api/hello",
        "/public/..%C0%AFapi/hello",
        "/public/x%zz",
    ];
    let reject = config();
    for p in table.iter().chain(&["/public%2fx"]) {
        let r = reply(plan_request(&reject, "GET", p, &[], None));
        assert_eq!(r.status, 400, "{p}");
        assert_eq!(r.headers[0].1, "application/problem+json", "{p}");
        let problem: crate::admin::Problem = serde_json::from_str(&r.body).unwrap();
        assert_eq!(problem.kind, "urn:greenlight:problem:bad-path", "{p}");
    }
    for p in [
        "/public/../api/hello",
        "/public/%2e%2e/api/hello",
        "/PUBLIC/x",
    ] {
        assert_eq!(
            reply(plan_request(&reject, "GET", p, &[], None)).status,
            401,
            "{p}"
        );
    }
    let decode = config_with(&[("PATH_ESCAPED_SLASHES", "decode")]);
    let keep = config_with(&[("PATH_ESCAPED_SLASHES", "Keep")]);
    for cfg in [&decode, &keep] {
        for p in &table[..5] {
            assert_eq!(
                reply(plan_request(cfg, "GET", p, &[], None)).status,
                401,
                "{p}"
            );
        }
    }
    // Decoded, `/public%2fx` is `/public/x`: public, and that is the path
    // the origin gets (the query is left as it was). Kept, it stays encoded.
    let f = forward(plan_request(&decode, "GET", "/public%2fx", &[], None));
    assert_eq!(f.url, "http://127.0.0.1:9001/public/x?q=%2F..%2F");
    let f = forward(plan_request(&keep, "GET", "/public%2fx", &[], None));
    assert_eq!(f.url, "http://127.0.0.1:9001/public%2Fx?q=%2F..%2F");
    // A credential on the decoded path: forwarded with exactly that path.
    let f = forward(plan_request(
        &decode,
        "GET",
        "/public/..%2Fapi/%68ello",
        &[("x-api-key", "app-key")],
        None,
    ));
    assert_eq!(f.url, "http://127.0.0.1:9001/api/hello?q=%2F..%2F");
    let merge = config_with(&[("MERGE_SLASHES", "true")]);
    let f = forward(plan_request(&merge, "GET", "//public//x", &[], None));
    assert_eq!(f.url, "http://127.0.0.1:9001/public/x?q=%2F..%2F");
    let f = forward(plan_request(&reject, "GET", "/public//x", &[], None));
    assert_eq!(f.url, "http://127.0.0.1:9001/public//x?q=%2F..%2F");
}

#[test]
fn vary_names_what_decided_the_color() {
    let cfg = config();
    let stable = RolloutState::initial("s");
    let vary = |state: &RolloutState, h: &[(&str, &str)]| {
        // Credentials count on /api; /public is anonymous (cookie).
        let anonymous = h.iter().all(|(k, _)| *k != "x-api-key");
        let path = if anonymous { "/public/x" } else { "/api" };
        let f = forward(run(&cfg, state, path, h));
        header(&f.response_headers, "vary")
            .unwrap_or("")
            .to_string()
    };
    // Stable: only a preview could change the color.
    assert_eq!(
        vary(&stable, &[("x-api-key", "app-key")]),
        "x-greenlight-color"
    );
    // Canary: the identity that was hashed, whichever it is.
    let c = canary(5_000);
    assert_eq!(
        vary(&c, &[("x-api-key", "app-key")]),
        "x-greenlight-color, x-api-key, cookie"
    );
    assert_eq!(
        vary(&c, &[("cookie", "greenlight-id=abcdef0123456789")]),
        "x-greenlight-color, cookie"
    );
    // A preview: the header and the credential that allowed it.
    assert_eq!(
        vary(
            &stable,
            &[("x-api-key", "qa-key"), ("x-greenlight-color", "green")]
        ),
        "x-greenlight-color, x-api-key"
    );
    // By the preview cookie: the cookie too.
    assert_eq!(
        vary(
            &stable,
            &[
                ("x-api-key", "qa-key"),
                ("cookie", "greenlight-preview=green")
            ]
        ),
        "x-greenlight-color, x-api-key, cookie"
    );
}

#[test]
fn an_edge_cookie_makes_the_answer_private() {
    let cfg = config();
    // Anonymous without a cookie: the edge sets one.
    let f = forward(run(&cfg, &RolloutState::initial("s"), "/public/x", &[]));
    assert!(f.private && f.needs_origin_headers());
    // The origin's own cookies are kept beside the edge's; Cache-Control
    // becomes private, the origin's other directives kept.
    let origin = headers(&[
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("cache-control", "public, max-age=600, s-maxage=3600"),
        ("vary", "accept-encoding"),
        ("content-length", "12"),
    ]);
    let got = f.client_response_headers(&origin);
    let all = |name: &str| -> Vec<&str> {
        got.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(all("set-cookie").len(), 3);
    assert_eq!(all("set-cookie")[..2], ["a=1", "b=2"]);
    assert_eq!(all("cache-control"), ["private, max-age=600"]);
    assert_eq!(all("vary"), ["accept-encoding", "x-greenlight-color"]);
    assert_eq!(all("content-length"), ["12"]);
    // No Cache-Control from the origin: `private` is added.
    let got = f.client_response_headers(&headers(&[("etag", "\"x\"")]));
    assert_eq!(header(&got, "cache-control"), Some("private"));
    // With the cookie: nothing is private, the origin's Cache-Control stays.
    let f = forward(run(
        &cfg,
        &RolloutState::initial("s"),
        "/public/x",
        &[("cookie", "greenlight-id=abcdef0123456789")],
    ));
    assert!(!f.private && !f.needs_origin_headers());
    let got = f.client_response_headers(&origin);
    assert_eq!(
        header(&got, "cache-control"),
        Some("public, max-age=600, s-maxage=3600")
    );
    assert_eq!(private_cache_control(Some("no-store")), "no-store");
    assert_eq!(
        private_cache_control(Some("private=\"x\", max-age=5")),
        "private, max-age=5"
    );
    assert_eq!(private_cache_control(None), "private");
}

#[test]
fn a_preview_on_a_public_route_is_checked_with_the_credential_presented_or_ignored() {
    let cfg = config();
    let s = RolloutState::initial("s");
    let preview = [("cookie", "greenlight-preview=green")];
    // No credential, or one without the role, or a bad one: normal routing.
    for extra in [
        None,
        Some(("x-api-key", "app-key")),
        Some(("x-api-key", "wrong")),
    ] {
        let mut h = preview.to_vec();
        h.extend(extra);
        let f = forward(run(&cfg, &s, "/public/page", &h));
        assert_eq!(
            (f.decision.color, f.decision.reason),
            (Color::Blue, RouteReason::Stable),
            "{extra:?}"
        );
    }
    // A previewer's credential: the preview, on the public page too.
    let mut h = preview.to_vec();
    h.push(("x-api-key", "qa-key"));
    let f = forward(run(&cfg, &s, "/public/page", &h));
    assert_eq!(
        (f.decision.color, f.decision.reason),
        (Color::Green, RouteReason::Override)
    );
    // A bad credential on a public route is no one, never a 401.
    let f = forward(run(&cfg, &s, "/public/page", &[("x-api-key", "wrong")]));
    assert_eq!(header(&f.request_headers, HEADER_PRINCIPAL), None);
    // On a required route the rules are unchanged: 403 without the role.
    let r = reply(run(
        &cfg,
        &s,
        "/api",
        &[preview[0], ("x-api-key", "app-key")],
    ));
    assert_eq!(r.status, 403);
}

#[test]
fn one_identity_per_user_across_public_and_api_routes() {
    let s = canary(5_000);
    let mut mixed = 0;
    for user in 0..200u64 {
        // Signed in first (no cookie yet): the API answer sets the cookie.
        let key = format!("u{user}-key");
        let mut api_keys: Vec<ApiKeyEntry> = Vec::new();
        api_keys.push(
            serde_json::from_str(&format!(
                r#"{{"id":"u{user}","sha256":"{}"}}"#,
                hash_api_key(&key)
            ))
            .unwrap(),
        );
        let mut v = vars();
        v.insert("API_KEYS", serde_json::to_string(&api_keys).unwrap());
        let cfg_u = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap();
        let api = forward(run(&cfg_u, &s, "/api", &[("x-api-key", &key)]));
        let set = header(&api.response_headers, "set-cookie")
            .unwrap()
            .to_string();
        let jar = set.split(';').next().unwrap().to_string();
        // Then public assets with that cookie, and the API again with both.
        let asset = forward(run(&cfg_u, &s, "/public/app.js", &[("cookie", &jar)]));
        let api2 = forward(run(
            &cfg_u,
            &s,
            "/api",
            &[("x-api-key", &key), ("cookie", &jar)],
        ));
        // A client without a cookie jar: the same color on public routes.
        let public = forward(run(&cfg_u, &s, "/public/x", &[("x-api-key", &key)]));
        let colors = [
            api.decision.color,
            asset.decision.color,
            api2.decision.color,
            public.decision.color,
        ];
        if colors.iter().any(|c| *c != colors[0]) {
            mixed += 1;
        }
    }
    assert_eq!(mixed, 0);
}

#[test]
fn sticky_identity_is_configurable_and_checked() {
    let mut v = vars();
    v.insert("STICKY_IDENTITY", "credential".into());
    let cfg = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap();
    assert_eq!(cfg.identity_order, IdentityOrder::Credential);
    let s = canary(5_000);
    // An anonymous cookie is replaced by the account's id at login.
    let f = forward(run(
        &cfg,
        &s,
        "/api",
        &[
            ("x-api-key", "app-key"),
            ("cookie", "greenlight-id=abcdef0123456789"),
        ],
    ));
    let id = crate::identity::credential_id("k:app");
    assert!(
        header(&f.response_headers, "set-cookie")
            .is_some_and(|c| c.starts_with(&format!("greenlight-id={id};"))),
        "{:?}",
        f.response_headers
    );
    v.insert("STICKY_IDENTITY", "sub".into());
    let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
    assert!(err.0.contains("STICKY_IDENTITY"), "{err}");
    // Outside a canary, no cookie is handed to credentialed callers.
    let f = forward(run(
        &config(),
        &RolloutState::initial("s"),
        "/api",
        &[("x-api-key", "app-key")],
    ));
    assert_eq!(header(&f.response_headers, "set-cookie"), None);
}

#[test]
fn the_sticky_cookie_is_secure_over_https_only() {
    let cfg = config();
    let over = |scheme: &'static str| {
        let hs = headers(&[]);
        let req = RequestHead {
            method: "GET",
            path: "/public/page",
            query: None,
            headers: &hs,
            client_addr: None,
            scheme: Some(scheme),
        };
        let loaded = LoadedState {
            state: canary(5_000),
            degraded: false,
        };
        let f = forward(action(&cfg, &loaded, &req, NOW_MS, 7));
        header(&f.response_headers, "set-cookie")
            .unwrap()
            .to_string()
    };
    assert!(over("https").ends_with("; HttpOnly; SameSite=Lax; Secure"));
    assert!(over("http").ends_with("; HttpOnly; SameSite=Lax"));
}

#[test]
fn ipv6_callers_count_by_their_slash_64() {
    let key = |a: &str| caller_key(a.parse().unwrap());
    assert_eq!(key("192.0.2.7"), "ip:192.0.2.7");
    assert_eq!(key("2001:db8:1:2::7"), "ip:2001:db8:1:2::/64");
    assert_eq!(key("2001:db8:1:2:ffff:1:2:3"), key("2001:db8:1:2::9"));
    assert_ne!(key("2001:db8:1:2::7"), key("2001:db8:1:3::7"));
    assert_eq!(key("::ffff:192.0.2.7"), "ip:192.0.2.7");
    // The admin guard and the anonymous rate limit use it.
    let mut v = vars();
    v.insert("RATE_LIMIT_PER_S", "5".into());
    let cfg = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap();
    let f = forward(plan_request(
        &cfg,
        "GET",
        "/public/x",
        &[],
        Some("[2001:db8:1:2::7]:443"),
    ));
    assert_eq!(f.rate_key.as_deref(), Some("ip:2001:db8:1:2::/64"));
    let hs = headers(&[("authorization", "Bearer guess")]);
    let req = RequestHead {
        method: "GET",
        path: "/__greenlight/state",
        query: None,
        headers: &hs,
        client_addr: Some("2001:db8:1:2::99"),
        scheme: Some("https"),
    };
    let loaded = LoadedState {
        state: RolloutState::initial("s"),
        degraded: false,
    };
    let planned = action(&cfg, &loaded, &req, NOW_MS, 1);
    assert_eq!(
        admin_guard_key(&cfg, &req, &planned).as_deref(),
        Some("ip:2001:db8:1:2::/64")
    );
}

#[test]
fn the_fixed_delivery_gives_the_same_headers_without_reading_them() {
    let cfg = config();
    let origin = headers(&[
        ("set-cookie", "a=1"),
        ("cache-control", "public, max-age=600"),
        ("vary", "accept-encoding"),
        ("content-length", "12"),
        ("keep-alive", "timeout=5"),
        ("x-greenlight-color", "forged"),
        ("X-Greenlight-Epoch", "999"),
        ("etag", "\"x\""),
    ]);
    let cookie = [("cookie", "greenlight-id=abcdef0123456789")];
    let keyed = [("x-api-key", "app-key")];
    // A browser with the edge's cookie during a canary; an API client
    // outside one (in a canary its id goes into a cookie: private).
    for (state, path, who) in [
        (canary(5_000), "/public/x", &cookie[..]),
        (RolloutState::initial("s"), "/api/x", &keyed[..]),
    ] {
        let f = forward(run(&cfg, &state, path, who));
        assert!(!f.needs_origin_headers());
        let fixed = f.fixed_delivery();
        let mut applied: Vec<(String, String)> = origin
            .iter()
            .filter(|(k, _)| !fixed.deletes.iter().any(|d| d.eq_ignore_ascii_case(k)))
            .cloned()
            .collect();
        applied.extend(
            fixed
                .appends
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let mut want = f.client_response_headers(&origin);
        let lower = |l: &mut Vec<(String, String)>| {
            for (k, _) in l.iter_mut() {
                *k = k.to_ascii_lowercase();
            }
            l.sort();
        };
        lower(&mut applied);
        lower(&mut want);
        assert_eq!(applied, want, "{who:?}");
    }
}
