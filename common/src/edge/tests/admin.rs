use super::*;

#[test]
fn admin_requires_token_or_role() {
    let cfg = config();
    let s = RolloutState::initial("s");
    let r = reply(run(&cfg, &s, "/__greenlight/state", &[]));
    assert_eq!(
        (r.status, header(&r.headers, "www-authenticate")),
        (401, Some("Bearer realm=\"greenlight\""))
    );
    let r = reply(run(
        &cfg,
        &s,
        "/__greenlight/state",
        &[("authorization", "Bearer wrong")],
    ));
    assert_eq!(r.status, 401);
    let r = reply(run(
        &cfg,
        &s,
        "/__greenlight/state",
        &[("x-api-key", "app-key")],
    ));
    assert_eq!(r.status, 403);
    match run(
        &cfg,
        &s,
        "/__greenlight/promote",
        &[("authorization", "Bearer admin-secret")],
    ) {
        Action::Admin(call) => assert_eq!(
            (call.route, call.identity.as_str()),
            (AdminRoute::Promote, "admin-token")
        ),
        other => panic!("{other:?}"),
    }
    match run(&cfg, &s, "/__greenlight/state", &[("x-api-key", "ops-key")]) {
        Action::Admin(call) => assert_eq!(call.identity, "k:ops"),
        other => panic!("{other:?}"),
    }
    let r = reply(run(
        &cfg,
        &s,
        "/__greenlight/nope",
        &[("authorization", "Bearer admin-secret")],
    ));
    assert_eq!(r.status, 404);
}

/// `ADMIN_CREDENTIALS` with one token per role, and API keys and a JWT
/// role beside them.
fn config_with_roles() -> EdgeConfig {
    let creds = format!(
        r#"[{{"name":"vera","sha256":"{}","role":"viewer"}},{{"name":"otto","sha256":"{}","role":"operator"}},{{"name":"ada","sha256":"{}","role":"admin"}}]"#,
        hash_api_key("viewer-token"),
        hash_api_key("operator-token"),
        hash_api_key("admin-named-token"),
    );
    let keys = format!(
        r#"[{{"id":"app","sha256":"{}"}},{{"id":"watch","sha256":"{}","roles":["viewer"]}},{{"id":"deploy","sha256":"{}","roles":["operator","preview"]}}]"#,
        hash_api_key("app-key"),
        hash_api_key("watch-key"),
        hash_api_key("deploy-key"),
    );
    config_with(&[("ADMIN_CREDENTIALS", &creds), ("API_KEYS", &keys)])
}

#[test]
fn each_role_reaches_its_routes_and_no_further() {
    let cfg = config_with_roles();
    let s = RolloutState::initial("s");
    let bearer = |t: &str| format!("Bearer {t}");
    let callers = [
        (
            "vera",
            vec![("authorization", bearer("viewer-token"))],
            false,
        ),
        (
            "k:watch",
            vec![("x-api-key", "watch-key".to_string())],
            false,
        ),
        (
            "otto",
            vec![("authorization", bearer("operator-token"))],
            true,
        ),
        (
            "k:deploy",
            vec![("x-api-key", "deploy-key".to_string())],
            true,
        ),
        (
            "ada",
            vec![("authorization", bearer("admin-named-token"))],
            true,
        ),
        (
            "admin-token",
            vec![("authorization", bearer("admin-secret"))],
            true,
        ),
    ];
    for (name, h, may_change) in callers {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for route in AdminRoute::ALL {
            let action = run(&cfg, &s, &format!("/__greenlight/{}", route.name()), &h);
            let reads = route.method() == "GET";
            match action {
                Action::Admin(call) if reads || may_change => {
                    assert_eq!((call.route, call.identity.as_str()), (route, name))
                }
                Action::Reply(r) if !reads && !may_change => {
                    assert_eq!(r.status, 403, "{name} {route:?}");
                    assert_eq!(
                        header(&r.headers, "www-authenticate"),
                        Some("Bearer realm=\"greenlight\", error=\"insufficient_scope\"")
                    );
                    let p: Problem = serde_json::from_str(&r.body).unwrap();
                    assert!(p.detail.contains(name), "{}", p.detail);
                    assert!(p.detail.contains("needs operator"), "{}", p.detail);
                }
                other => panic!("{name} {route:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_key_without_an_admin_role_is_forbidden_and_a_wrong_token_unknown() {
    let cfg = config_with_roles();
    let s = RolloutState::initial("s");
    let r = reply(run(
        &cfg,
        &s,
        "/__greenlight/state",
        &[("x-api-key", "app-key")],
    ));
    assert_eq!(r.status, 403);
    let r = reply(run(
        &cfg,
        &s,
        "/__greenlight/state",
        &[("authorization", "Bearer viewer-token-not")],
    ));
    assert_eq!(r.status, 401);
}

#[test]
fn a_change_records_the_verified_credential_beside_the_declared_actor() {
    let loaded = LoadedState {
        state: RolloutState::initial("s"),
        degraded: false,
    };
    let call = AdminCall {
        route: AdminRoute::Weight,
        identity: "otto".into(),
    };
    let change = |body: &[u8]| {
        run_admin(
            &config(),
            &call,
            "POST",
            body,
            &loaded,
            AdminDocs::default(),
            NOW_MS,
        )
        .new_state
        .unwrap()
        .last_change
    };
    let declared = change(br#"{"expected_epoch":0,"weight_bp":100,"actor":"release bot"}"#);
    assert_eq!(
        (declared.actor.as_str(), declared.credential.as_str()),
        ("release bot", "otto")
    );
    let plain = change(br#"{"expected_epoch":0,"weight_bp":100}"#);
    assert_eq!(
        (plain.actor.as_str(), plain.credential.as_str()),
        ("otto", "otto")
    );
}

#[test]
fn admin_round_trip_through_run_admin() {
    let loaded = LoadedState {
        state: RolloutState::initial("s"),
        degraded: false,
    };
    let call = AdminCall {
        route: AdminRoute::Weight,
        identity: "admin-token".into(),
    };
    let o = run_admin(
        &config(),
        &call,
        "POST",
        br#"{"expected_epoch":0,"weight_percent":20}"#,
        &loaded,
        AdminDocs::default(),
        NOW_MS,
    );
    let next = o.new_state.unwrap();
    assert_eq!(
        (next.candidate_weight_bp, next.last_change.at_ms),
        (2_000, NOW_MS)
    );
}

#[test]
fn state_reports_the_health_of_the_color_under_test() {
    let cfg = config_with(&[("HEALTH_FAILURE_THRESHOLD", "2")]);
    let state = canary(1_000);
    let loaded = LoadedState {
        state: state.clone(),
        degraded: false,
    };
    let failure = AttemptOutcome::Unreachable("refused".into());
    let once = count_failure(&cfg, None, state.epoch, Color::Green, &failure, NOW_MS);
    let twice = count_failure(
        &cfg,
        HealthRecord::from_json(Some(&once.to_json())),
        state.epoch,
        Color::Green,
        &failure,
        NOW_MS + 1,
    );
    let call = AdminCall {
        route: AdminRoute::State,
        identity: "admin-token".into(),
    };
    assert!(call.wants_health());
    let view = |doc: Option<&str>| -> crate::admin::StateView {
        let o = run_admin(
            &cfg,
            &call,
            "GET",
            b"",
            &loaded,
            AdminDocs {
                health: doc,
                ..AdminDocs::default()
            },
            NOW_MS + 2,
        );
        serde_json::from_str(&o.body).unwrap()
    };
    let h = view(Some(&once.to_json())).health.unwrap();
    assert_eq!(
        (h.under_test, h.unhealthy, h.green_failures),
        (Color::Green, false, 1)
    );
    let h = view(Some(&twice.to_json())).health.unwrap();
    assert!(h.unhealthy);
    assert_eq!(
        h.last_failure.as_deref(),
        Some("green origin unreachable: refused")
    );
    assert!(!view(None).health.unwrap().unhealthy);
}

#[test]
fn the_admin_namespace_is_never_forwarded() {
    let cfg = config();
    for p in [
        "/__GREENLIGHT/state",
        "/__greenlight",
        "//__greenlight/state",
        "/__greenlight;x/state",
        "/public/../__greenlight/state",
        "/%5F%5Fgreenlight/state",
    ] {
        let r = reply(plan_request(&cfg, "GET", p, &[], None));
        assert_eq!(r.status, 401, "{p}");
        let admin = [("authorization", "Bearer admin-secret")];
        match plan_request(&cfg, "GET", p, &admin, None) {
            Action::Reply(r) => assert_eq!(r.status, 404, "{p}"),
            Action::Admin(call) => assert_eq!(call.route, AdminRoute::State, "{p}"),
            other => panic!("{p}: {other:?}"),
        }
    }
    let admin = [("authorization", "Bearer admin-secret")];
    for p in ["/public/../__greenlight/state", "/__greenlight/./state"] {
        assert!(
            matches!(plan_request(&cfg, "GET", p, &admin, None), Action::Admin(_)),
            "{p}"
        );
    }
}

#[test]
fn failed_admin_authentications_are_limited_per_caller() {
    use crate::admin_guard::{AdminFailures, FAILURE_BURST};
    let cfg = config();
    let loaded = LoadedState {
        state: RolloutState::initial("s"),
        degraded: false,
    };
    let mut failures = AdminFailures::default();
    // One request from `addr` with `auth`, through plan and the guard.
    let mut call = |path: &str, addr: &str, auth: &str| -> (u16, Option<String>) {
        let hs = headers(&[("authorization", auth)]);
        let req = RequestHead {
            method: "GET",
            path,
            query: None,
            headers: &hs,
            client_addr: Some(addr),
            scheme: Some("https"),
        };
        let planned = action(&cfg, &loaded, &req, NOW_MS, 1);
        let planned = match admin_guard_key(&cfg, &req, &planned) {
            Some(key) => guard_admin(planned, &key, &mut failures, NOW_MS, 100).0,
            None => planned,
        };
        match planned {
            Action::Reply(r) => (
                r.status,
                header(&r.headers, "retry-after").map(String::from),
            ),
            Action::Admin(_) => (200, None),
            Action::Forward(_) => (0, None),
        }
    };
    // The operator succeeds as often as it likes: nothing is counted.
    for _ in 0..3 * FAILURE_BURST {
        assert_eq!(
            call("/__greenlight/state", "192.0.2.1", "Bearer admin-secret").0,
            200
        );
    }
    for i in 0..FAILURE_BURST {
        assert_eq!(
            call("/__greenlight/state", "198.51.100.9", "Bearer guess").0,
            401,
            "{i}"
        );
    }
    // Over the limit: 429 with Retry-After, even with the right token.
    let (status, wait) = call("/__greenlight/state", "198.51.100.9", "Bearer guess");
    assert_eq!((status, wait.as_deref()), (429, Some("6")));
    assert_eq!(
        call(
            "/__greenlight/promote",
            "198.51.100.9",
            "Bearer admin-secret"
        )
        .0,
        429
    );
    // The operator elsewhere is not locked out, and ordinary traffic from
    // the limited address is not the admin guard's business.
    assert_eq!(
        call("/__greenlight/state", "192.0.2.1", "Bearer admin-secret").0,
        200
    );
    assert_eq!(call("/api/x", "198.51.100.9", "Bearer guess").0, 401);
    assert_eq!(failures.len(), 1);
}

#[test]
fn to_epoch_belongs_to_an_undo_only() {
    let loaded = LoadedState {
        state: RolloutState::initial("s"),
        degraded: false,
    };
    let call = AdminCall {
        route: AdminRoute::Weight,
        identity: "otto".into(),
    };
    let body = br#"{"expected_epoch":0,"weight_bp":100,"to_epoch":0}"#;
    let o = run_admin(
        &config(),
        &call,
        "POST",
        body,
        &loaded,
        AdminDocs::default(),
        NOW_MS,
    );
    assert_eq!((o.status, o.new_state), (400, None), "{}", o.body);
    assert!(o.body.contains("undo"), "{}", o.body);
}
