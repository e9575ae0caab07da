use super::*;
use crate::auth::hash_api_key;
use crate::decide::RouteReason;
use crate::rollout::{ChangeMeta, RolloutOp};
use std::collections::HashMap;

const NOW_MS: u64 = 1_800_000_000_000;

fn vars() -> HashMap<&'static str, String> {
    HashMap::from([
        ("BLUE_ORIGIN", "http://127.0.0.1:9001/".to_string()),
        ("GREEN_ORIGIN", "http://127.0.0.1:9002".to_string()),
        ("ADMIN_TOKEN", "admin-secret".to_string()),
        ("AUTH_ROUTES", "/public:off,/:required".to_string()),
        (
            "API_KEYS",
            format!(
                r#"[{{"id":"app","sha256":"{}"}},{{"id":"qa","sha256":"{}","roles":["preview"]}},{{"id":"ops","sha256":"{}","roles":["admin"]}}]"#,
                hash_api_key("app-key"),
                hash_api_key("qa-key"),
                hash_api_key("ops-key")
            ),
        ),
    ])
}

fn config() -> EdgeConfig {
    let v = vars();
    EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run(cfg: &EdgeConfig, state: &RolloutState, path: &str, h: &[(&str, &str)]) -> EdgePlan {
    let hs = headers(h);
    let req = RequestHead {
        method: "GET",
        path,
        query: Some("a=1"),
        headers: &hs,
    };
    let loaded = LoadedState {
        state: state.clone(),
        degraded: false,
    };
    plan(cfg, &loaded, &req, NOW_MS, 0xdead_beef_0000_0001)
}

fn canary(bp: u16) -> RolloutState {
    RolloutState::initial("s")
        .apply(
            RolloutOp::SetWeight { weight_bp: bp },
            0,
            ChangeMeta {
                actor: "t".into(),
                at_ms: 0,
                reason: String::new(),
            },
        )
        .unwrap()
}

fn forward(p: EdgePlan) -> Forward {
    match p {
        EdgePlan::Forward(f) => f,
        other => panic!("expected forward, got {other:?}"),
    }
}

fn reply(p: EdgePlan) -> Reply {
    match p {
        EdgePlan::Reply(r) => r,
        other => panic!("expected reply, got {other:?}"),
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn config_errors_name_the_variable() {
    let mut v = vars();
    v.remove("GREEN_ORIGIN");
    let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
    assert!(err.0.contains("GREEN_ORIGIN"), "{err}");
    let mut v = vars();
    v.insert("BLUE_ORIGIN", "ftp://x".into());
    assert!(EdgeConfig::from_lookup(|k| v.get(k).cloned())
        .unwrap_err()
        .0
        .contains("BLUE_ORIGIN"));
    let mut v = vars();
    v.insert("API_KEYS", "{".into());
    assert!(EdgeConfig::from_lookup(|k| v.get(k).cloned())
        .unwrap_err()
        .0
        .contains("API_KEYS"));
    let mut v = vars();
    v.insert("STATE_CACHE_TTL_MS", "soon".into());
    assert!(EdgeConfig::from_lookup(|k| v.get(k).cloned())
        .unwrap_err()
        .0
        .contains("STATE_CACHE_TTL_MS"));
    assert_eq!(config().state_cache_ttl_ms, DEFAULT_STATE_CACHE_TTL_MS);
    assert_eq!(
        config().blue_origin,
        "http://127.0.0.1:9001",
        "trailing slash trimmed"
    );
}

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
    assert_eq!(names, vec!["accept", HEADER_PRINCIPAL]);
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
        EdgePlan::Admin(call) => assert_eq!(
            (call.route, call.identity.as_str()),
            (AdminRoute::Promote, "admin-token")
        ),
        other => panic!("{other:?}"),
    }
    match run(&cfg, &s, "/__greenlight/state", &[("x-api-key", "ops-key")]) {
        EdgePlan::Admin(call) => assert_eq!(call.identity, "k:ops"),
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
        &call,
        "POST",
        br#"{"expected_epoch":0,"weight_percent":20}"#,
        &loaded,
        NOW_MS,
    );
    let next = o.new_state.unwrap();
    assert_eq!(
        (next.candidate_weight_bp, next.last_change.at_ms),
        (2_000, NOW_MS)
    );
}

#[test]
fn corrupt_documents_fall_back_and_flag_degraded() {
    let good = canary(700);
    let l = load_state(Some("{not json"), Some(&good), "s");
    assert_eq!((l.state.clone(), l.degraded), (good.clone(), true));
    let l = load_state(Some(r#"{"schema":9}"#), None, "s");
    assert_eq!((l.state, l.degraded), (RolloutState::initial("s"), true));
    let l = load_state(None, Some(&good), "salt");
    assert_eq!(
        (l.state, l.degraded),
        (RolloutState::initial("salt"), false)
    );
    let l = load_state(Some(&good.to_json()), None, "s");
    assert_eq!((l.state, l.degraded), (good, false));
    let cfg = config();
    let hs = headers(&[("x-api-key", "app-key")]);
    let req = RequestHead {
        method: "GET",
        path: "/x",
        query: None,
        headers: &hs,
    };
    let degraded = LoadedState {
        state: RolloutState::initial("s"),
        degraded: true,
    };
    let f = forward(plan(&cfg, &degraded, &req, NOW_MS, 1));
    assert_eq!(header(&f.response_headers, HEADER_DEGRADED), Some("1"));
    assert_eq!(f.url, "http://127.0.0.1:9001/x");
}

#[test]
fn config_variables_lists_exactly_what_from_lookup_reads() {
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    // Every name is set, so no early return hides a later read.
    let asked = RefCell::new(BTreeSet::new());
    let full = vars();
    let _ = EdgeConfig::from_lookup(|k| {
        asked.borrow_mut().insert(k.to_string());
        full.get(k).cloned()
    });
    let listed: BTreeSet<String> = CONFIG_VARIABLES.iter().map(|s| s.to_string()).collect();
    assert_eq!(asked.into_inner(), listed);
    assert!(SECRET_VARIABLES
        .iter()
        .all(|s| CONFIG_VARIABLES.contains(s)));
    assert!(REQUIRED_VARIABLES
        .iter()
        .all(|s| CONFIG_VARIABLES.contains(s)));
    // The required ones really are required, and nothing else is.
    for name in CONFIG_VARIABLES {
        let without =
            EdgeConfig::from_lookup(|k| (k != *name).then(|| full.get(k).cloned()).flatten());
        assert_eq!(
            without.is_err(),
            REQUIRED_VARIABLES.contains(name),
            "{name}"
        );
    }
}

#[test]
fn fallback_and_bad_gateway_replies() {
    let good = RolloutState::initial("good");
    assert_eq!(
        fallback_state(Some(&good), "s"),
        LoadedState {
            state: good,
            degraded: true
        }
    );
    assert_eq!(fallback_state(None, "s").state, RolloutState::initial("s"));
    for r in [
        Reply::misconfigured(&ConfigError("BLUE_ORIGIN is not set".into())),
        Reply::origin_unreachable("connection refused"),
    ] {
        assert_eq!(r.status, 502);
        let p: crate::admin::Problem = serde_json::from_str(&r.body).unwrap();
        assert_eq!(p.status, 502);
    }
    assert!(
        Reply::misconfigured(&ConfigError("BLUE_ORIGIN is not set".into()))
            .body
            .contains("BLUE_ORIGIN")
    );
    assert_eq!(Reply::store_unavailable("down").status, 503);
}

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
fn forwarded_requests_are_signed_when_a_secret_is_set() {
    use crate::origin_auth::{verify, ReplayGuard, DEFAULT_WINDOW_S, HEADER_SIGNATURE};
    let mut v = vars();
    v.insert("ORIGIN_SIGNING_SECRET", "origin-secret".into());
    let cfg = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap();
    let f = forward(run(
        &cfg,
        &RolloutState::initial("s"),
        "/api/items",
        &[
            ("x-api-key", "app-key"),
            (HEADER_SIGNATURE, "forged-by-client"),
        ],
    ));
    let lookup = |n: &str| header(&f.request_headers, n);
    let mut guard = ReplayGuard::default();
    let now_s = NOW_MS / 1_000;
    assert_eq!(
        verify(
            b"origin-secret",
            "GET",
            "/api/items?a=1",
            lookup,
            now_s,
            DEFAULT_WINDOW_S,
            &mut guard
        ),
        Ok(())
    );
    let sigs = f
        .request_headers
        .iter()
        .filter(|(k, _)| k == HEADER_SIGNATURE)
        .count();
    assert_eq!(sigs, 1, "the client's copy must be dropped");
    // Without a secret nothing is added.
    let plain = forward(run(
        &config(),
        &RolloutState::initial("s"),
        "/api/items",
        &[("x-api-key", "app-key")],
    ));
    assert_eq!(header(&plain.request_headers, HEADER_SIGNATURE), None);
}
