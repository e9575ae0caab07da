use super::*;
use crate::admin::AdminRoute;
use crate::auth::hash_api_key;
use crate::auth::{ApiKeyEntry, ConfigError};
use crate::color::Color;
use crate::decide::RouteReason;
use crate::failover::Outcome;
use crate::http::{HEADER_COLOR, HEADER_DEGRADED, HEADER_EPOCH, HEADER_REASON};
use crate::identity::IdentityOrder;
use crate::model::HEADER_MODEL;
use crate::path::{EscapedSlashes, PathPolicy};
use crate::ratelimit::{RateLimit, RetryAfter};
use crate::rollout::{ChangeMeta, RolloutOp};
use crate::state::RolloutState;
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
        client_addr: None,
        scheme: Some("https"),
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
        &config(),
        &call,
        "POST",
        br#"{"expected_epoch":0,"weight_percent":20}"#,
        &loaded,
        None,
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
        client_addr: None,
        scheme: Some("https"),
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
fn a_backup_copy_stands_in_for_an_unreadable_document() {
    let good = canary(700);
    let l = fallback_from_backup(Some(&good.to_json()), "s");
    assert_eq!((l.state, l.degraded), (good, true));
    for junk in [None, Some("{oops"), Some(r#"{"schema":99}"#)] {
        let l = fallback_from_backup(junk, "salt");
        assert_eq!((l.state, l.degraded), (RolloutState::initial("salt"), true));
    }
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
        Reply::origin_failed("connection refused"),
    ] {
        assert_eq!(r.status, 502);
        let p: crate::admin::Problem = serde_json::from_str(&r.body).unwrap();
        assert_eq!(p.status, 502);
    }
    // The body says nothing about the configuration (values may be origin
    // addresses); the adapters log the error.
    let leaky = ConfigError("BLUE_ORIGIN must be an http(s) URL, got \"ftp://10.0.0.5\"".into());
    let body = Reply::misconfigured(&leaky).body;
    assert!(
        !body.contains("10.0.0.5") && !body.contains("BLUE_ORIGIN"),
        "{body}"
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
    let Next::Retry(retry) = f.after_attempt(&Outcome::Answered(503), 10) else {
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

fn config_with(extra: &[(&'static str, &str)]) -> EdgeConfig {
    let mut v = vars();
    for (k, val) in extra {
        v.insert(k, val.to_string());
    }
    EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap()
}

fn plan_method(cfg: &EdgeConfig, state: &RolloutState, method: &str, user: &str) -> Forward {
    let hs = headers(&[("x-api-key", user)]);
    let req = RequestHead {
        method,
        path: "/x",
        query: None,
        headers: &hs,
        client_addr: None,
        scheme: Some("https"),
    };
    let loaded = LoadedState {
        state: state.clone(),
        degraded: false,
    };
    forward(plan(cfg, &loaded, &req, NOW_MS, 7))
}

fn promoted() -> RolloutState {
    canary(5_000)
        .apply(
            RolloutOp::Promote,
            1,
            ChangeMeta {
                actor: "t".into(),
                at_ms: 0,
                reason: String::new(),
            },
        )
        .unwrap()
}

#[test]
fn a_failed_idempotent_request_is_retried_once_on_the_other_live_color() {
    let cfg = config_with(&[
        ("ORIGIN_TIMEOUT_MS", "300"),
        ("FAILOVER_DEADLINE_MS", "500"),
    ]);
    let f = plan_method(&cfg, &canary(5_000), "GET", "app-key");
    let first = f.decision.color;
    assert_eq!((f.timeout_ms, f.deadline_ms), (300, 500));
    assert_eq!(f.after_attempt(&Outcome::Answered(200), 10), Next::Deliver);
    assert_eq!(f.after_attempt(&Outcome::Answered(404), 10), Next::Deliver);
    for failure in [
        Outcome::Unreachable("connection refused".into()),
        Outcome::TimedOut { after_ms: 300 },
        Outcome::Answered(503),
    ] {
        let Next::Retry(retry) = f.after_attempt(&failure, 300) else {
            panic!("{failure:?} should be retried");
        };
        assert_eq!(retry.decision.color, first.other());
        assert_eq!(retry.url, format!("{}/x", cfg.origin(first.other())));
        assert_eq!(
            header(&retry.response_headers, HEADER_COLOR),
            Some(first.other().as_str())
        );
        assert_eq!(
            header(&retry.response_headers, HEADER_REASON),
            Some("failover")
        );
        assert_eq!(retry.request_headers, f.request_headers);
        // The retry gets what is left of the deadline, and no retry of its own.
        assert_eq!((retry.timeout_ms, retry.deadline_ms), (200, 200));
        assert_eq!(retry.fallback, None);
        let Next::Reply(r) = retry.after_attempt(&failure, 200) else {
            panic!("a failed retry ends the request");
        };
        assert_eq!(r.status, 503);
        assert_eq!(header(&r.headers, "retry-after"), Some("5"));
        assert!(
            r.body.contains(&format!("{} origin", first.other())),
            "{}",
            r.body
        );
    }
    // Deadline spent: no retry, 503.
    let Next::Reply(r) = f.after_attempt(&Outcome::TimedOut { after_ms: 500 }, 500) else {
        panic!("no time left for a retry");
    };
    assert_eq!(r.status, 503);
}

#[test]
fn non_idempotent_failures_are_502_and_never_retried() {
    let cfg = config();
    for method in ["POST", "PATCH", "PUT", "DELETE"] {
        let f = plan_method(&cfg, &canary(5_000), method, "app-key");
        assert_eq!((f.fallback.clone(), f.retryable), (None, false), "{method}");
        let Next::Reply(r) = f.after_attempt(&Outcome::Answered(500), 1) else {
            panic!("{method} must not be retried");
        };
        assert_eq!(r.status, 502);
        let p: crate::admin::Problem = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (p.status, p.kind.as_str()),
            (502, "urn:greenlight:problem:origin-failed")
        );
        assert!(p.detail.contains("answered 500"), "{}", p.detail);
    }
}

#[test]
fn put_and_delete_are_retried_only_when_configured_and_replayable() {
    let cfg = config_with(&[("RETRY_METHODS", "GET,PUT,DELETE")]);
    let mut small = plan_method(&cfg, &canary(5_000), "PUT", "app-key");
    assert!(small.fallback.is_some());
    assert_eq!(small.plan_body(Some("1024"), false), BodyPlan::Buffer);
    assert!(small.fallback.is_some());
    let mut big = plan_method(&cfg, &canary(5_000), "PUT", "app-key");
    assert_eq!(big.plan_body(Some("2000000"), false), BodyPlan::Stream);
    assert_eq!((big.fallback.clone(), big.retryable), (None, false));
    let mut chunked = plan_method(&cfg, &canary(5_000), "DELETE", "app-key");
    assert_eq!(chunked.plan_body(None, true), BodyPlan::Stream);
    assert_eq!(chunked.fallback, None);
    let mut junk = plan_method(&cfg, &canary(5_000), "DELETE", "app-key");
    assert_eq!(junk.plan_body(Some("12x"), false), BodyPlan::Stream);
    assert_eq!(junk.fallback, None);
    for len in [None, Some("0")] {
        let mut get = plan_method(&cfg, &canary(5_000), "GET", "app-key");
        assert_eq!(get.plan_body(len, false), BodyPlan::Empty);
        assert!(get.fallback.is_some());
    }
    // A GET with a (small) body is kept for the retry too.
    let mut get = plan_method(&cfg, &canary(5_000), "GET", "app-key");
    assert_eq!(get.plan_body(Some("7"), false), BodyPlan::Buffer);
    // Not retryable anyway: streamed, nothing dropped.
    let mut post = plan_method(&cfg, &canary(5_000), "POST", "app-key");
    assert_eq!(post.plan_body(Some("7"), false), BodyPlan::Stream);
    // POST cannot be configured at all.
    let v = vars();
    let bad = EdgeConfig::from_lookup(|k| {
        if k == "RETRY_METHODS" {
            Some("GET,POST".into())
        } else {
            v.get(k).cloned()
        }
    });
    assert!(bad.unwrap_err().0.contains("POST is not idempotent"));
}

#[test]
fn only_live_colors_are_failover_targets() {
    let cfg = config();
    // Stable: the candidate takes no traffic, so a failure of blue is a 503.
    let stable = plan_method(&cfg, &RolloutState::initial("s"), "GET", "app-key");
    assert_eq!(stable.fallback, None);
    assert!(stable.retryable);
    let Next::Reply(r) = stable.after_attempt(&Outcome::Unreachable("refused".into()), 1) else {
        panic!("nothing to retry on");
    };
    assert_eq!(r.status, 503);
    // Promoted: green serves, blue (the rollback target) is the fallback.
    let p = plan_method(&cfg, &promoted(), "GET", "app-key");
    assert_eq!(p.decision.color, Color::Green);
    assert_eq!(p.fallback.map(|(c, _)| c), Some(Color::Blue));
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
    let f = forward(plan(&cfg, &loaded, &req, NOW_MS, 1));
    assert_eq!(f.rate_key.as_deref(), Some("ip:203.0.113.9"));
    req.client_addr = None;
    let f = forward(plan(&cfg, &loaded, &req, NOW_MS, 1));
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

#[test]
fn state_reports_the_health_of_the_color_under_test() {
    let cfg = config_with(&[("HEALTH_FAILURE_THRESHOLD", "2")]);
    let state = canary(1_000);
    let loaded = LoadedState {
        state: state.clone(),
        degraded: false,
    };
    let failure = Outcome::Unreachable("refused".into());
    let once = record_failure(&cfg, None, state.epoch, Color::Green, &failure, NOW_MS);
    let twice = record_failure(
        &cfg,
        Some(&once.to_json()),
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
        let o = run_admin(&cfg, &call, "GET", b"", &loaded, doc, NOW_MS + 2);
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

/// A request with these headers and platform facts, planned under `cfg`.
fn plan_request(
    cfg: &EdgeConfig,
    method: &str,
    path: &str,
    h: &[(&str, &str)],
    client_addr: Option<&str>,
) -> EdgePlan {
    let hs = headers(h);
    let req = RequestHead {
        method,
        path,
        query: Some("q=%2F..%2F"),
        headers: &hs,
        client_addr,
        scheme: Some("https"),
    };
    let loaded = LoadedState {
        state: RolloutState::initial("s"),
        degraded: false,
    };
    plan(cfg, &loaded, &req, NOW_MS, 5)
}

/// The table of issue 16 (`AUTH_ROUTES=/public:off,/:required`, no
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
            EdgePlan::Reply(r) => assert_eq!(r.status, 404, "{p}"),
            EdgePlan::Admin(call) => assert_eq!(call.route, AdminRoute::State, "{p}"),
            other => panic!("{p}: {other:?}"),
        }
    }
    let admin = [("authorization", "Bearer admin-secret")];
    for p in ["/public/../__greenlight/state", "/__greenlight/./state"] {
        assert!(
            matches!(
                plan_request(&cfg, "GET", p, &admin, None),
                EdgePlan::Admin(_)
            ),
            "{p}"
        );
    }
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
    let f = forward(plan(&cfg, &loaded, &req, NOW_MS, 5));
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
fn new_variables_are_checked() {
    for (name, bad) in [
        ("PATH_ESCAPED_SLASHES", "allow"),
        ("MERGE_SLASHES", "sometimes"),
        ("ALLOW_METHOD_OVERRIDE", "2"),
        ("TRUSTED_CLIENT_IP_HEADER", "x real ip"),
    ] {
        let mut v = vars();
        v.insert(name, bad.to_string());
        let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
        assert!(err.0.contains(name), "{err}");
    }
    let cfg = config();
    assert_eq!(cfg.paths, PathPolicy::default());
    assert_eq!(cfg.paths.escaped_slashes, EscapedSlashes::Reject);
    assert!(!cfg.paths.merge_slashes && !cfg.allow_method_override);
    assert_eq!(cfg.trusted_client_ip_header, None);
}

// ---- issue 18: a transparent proxy ---------------------------------------

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
fn origin_host_policies_parse_and_are_refused_where_the_platform_cannot() {
    assert_eq!(OriginHost::parse("origin").unwrap(), OriginHost::default());
    let both = OriginHost::parse("client").unwrap();
    assert_eq!(
        (both.blue, both.green),
        (HostPolicy::Client, HostPolicy::Client)
    );
    let per = OriginHost::parse("green:client").unwrap();
    assert_eq!(
        (per.blue, per.green),
        (HostPolicy::Origin, HostPolicy::Client)
    );
    let per = OriginHost::parse("blue:client, green:origin").unwrap();
    assert_eq!(per.of(Color::Blue), HostPolicy::Client);
    for bad in ["edge", "red:client", "blue:edge", "blue"] {
        assert!(OriginHost::parse(bad).is_err(), "{bad}");
    }
    assert!(config().check_platform("Spin").is_ok());
    let client = config_with(&[("ORIGIN_HOST", "green:client")]);
    let e = client.check_platform("Spin").unwrap_err();
    assert!(
        e.0.contains("green") && e.0.contains("x-forwarded-host"),
        "{}",
        e.0
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
fn an_interim_answer_is_not_delivered_nor_counted() {
    let f = forward(plan_request(
        &config(),
        "GET",
        "/api",
        &[("x-api-key", "app-key")],
        None,
    ));
    let outcome = Outcome::Answered(103);
    assert!(!outcome.failed());
    let Next::Reply(r) = f.after_attempt(&outcome, 1) else {
        panic!("an interim answer must not be delivered");
    };
    assert_eq!(r.status, 502);
    assert!(
        r.body.contains("103") && r.body.contains("blue"),
        "{}",
        r.body
    );
    assert_eq!(f.after_attempt(&Outcome::Answered(302), 1), Next::Deliver);
}

fn ai_config(extra: &[(&'static str, &str)]) -> EdgeConfig {
    let mut v = vars();
    for (k, val) in extra {
        v.insert(k, val.to_string());
    }
    EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap()
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
    let Next::Retry(retry) = f.after_attempt(&Outcome::Answered(503), 10) else {
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
fn model_routes_set_the_model_per_color() {
    let cfg = ai_config(&[
        ("MODEL_ROUTES", "/v1/chat/completions"),
        ("BLUE_MODEL", "model-a"),
        ("GREEN_MODEL", "model-b"),
    ]);
    let mut f = forward(run(
        &cfg,
        &canary(5_000),
        "/v1/chat/completions",
        &[("x-api-key", "app-key")],
    ));
    let (mine, other) = match f.decision.color {
        Color::Blue => ("model-a", "model-b"),
        Color::Green => ("model-b", "model-a"),
    };
    assert_eq!(header(&f.response_headers, HEADER_MODEL), Some(mine));
    assert_eq!(f.plan_body(Some("40"), false), BodyPlan::Rewrite);
    assert_eq!(f.plan_body(None, true), BodyPlan::Rewrite);
    assert_eq!(
        f.model_body(br#"{"model":"x","stream":true}"#).unwrap(),
        format!(r#"{{"model":"{mine}","stream":true}}"#).into_bytes()
    );
    let refused = f.model_body(b"[1]").unwrap_err();
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("bad-model-request"),
        "{}",
        refused.body
    );
    // A retry sends the other color's model, and says so.
    let Next::Retry(retry) = f.after_attempt(&Outcome::Answered(502), 10) else {
        panic!("no retry");
    };
    assert_eq!(header(&retry.response_headers, HEADER_MODEL), Some(other));
    assert_eq!(
        retry.model_body(b"{}").unwrap(),
        format!(r#"{{"model":"{other}"}}"#).into_bytes()
    );
    // No body: passed on as it is, the answer names no model.
    let mut get = forward(run(
        &cfg,
        &RolloutState::initial("s"),
        "/v1/chat/completions",
        &[("x-api-key", "app-key")],
    ));
    assert_eq!(get.plan_body(None, false), BodyPlan::Empty);
    assert_eq!(header(&get.response_headers, HEADER_MODEL), None);
    // Other routes are untouched.
    let other_route = forward(run(
        &cfg,
        &RolloutState::initial("s"),
        "/v1/models",
        &[("x-api-key", "app-key")],
    ));
    assert!(other_route.models.is_none());
    assert_eq!(header(&other_route.response_headers, HEADER_MODEL), None);
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
        let planned = plan(&cfg, &loaded, &req, NOW_MS, 1);
        let planned = match admin_guard_key(&cfg, &req, &planned) {
            Some(key) => guard_admin(planned, &key, &mut failures, NOW_MS, 100).0,
            None => planned,
        };
        match planned {
            EdgePlan::Reply(r) => (
                r.status,
                header(&r.headers, "retry-after").map(String::from),
            ),
            EdgePlan::Admin(_) => (200, None),
            EdgePlan::Forward(_) => (0, None),
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
fn remote_jwks_configuration() {
    let mut v = vars();
    v.insert("JWKS_URL", "http://127.0.0.1:7/jwks.json".into());
    let cfg = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap();
    assert_eq!(
        cfg.jwks_url.as_deref(),
        Some("http://127.0.0.1:7/jwks.json")
    );
    // JWKS_ORIGIN (Spin's allowed outbound host): its default means none;
    // when set, the URL must be under it.
    v.insert("JWKS_ORIGIN", crate::jwks::UNSET_URL.into());
    assert!(EdgeConfig::from_lookup(|k| v.get(k).cloned()).is_ok());
    v.insert("JWKS_ORIGIN", "http://127.0.0.1:7".into());
    assert!(EdgeConfig::from_lookup(|k| v.get(k).cloned()).is_ok());
    v.insert("JWKS_ORIGIN", "http://127.0.0.1:70".into());
    let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
    assert!(err.0.contains("JWKS_ORIGIN"), "{}", err.0);
    v.remove("JWKS_ORIGIN");
    v.insert("JWKS_URL", "http://idp.example.com/jwks".into());
    let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
    assert!(err.0.contains("JWKS_URL"), "{}", err.0);
    v.insert("JWKS_URL", "https://idp.example.com/jwks".into());
    v.insert("JWKS", r#"{"keys":[]}"#.into());
    let err = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
    assert!(err.0.contains("not both"), "{}", err.0);
    // Which requests need the remote set.
    let head = |auth: &str| {
        let hs = headers(&[("authorization", auth)]);
        let req = RequestHead {
            method: "GET",
            path: "/x",
            query: None,
            headers: &hs,
            client_addr: None,
            scheme: None,
        };
        jwks_key_id(&req)
    };
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let es = format!("Bearer {}.e30.sig", b64(r#"{"alg":"ES256","kid":"k1"}"#));
    assert_eq!(head(&es), Some(Some("k1".into())));
    let rs = format!("Bearer {}.e30.sig", b64(r#"{"alg":"RS256"}"#));
    assert_eq!(head(&rs), Some(None));
    let hs = format!("Bearer {}.e30.sig", b64(r#"{"alg":"HS256","kid":"k1"}"#));
    assert_eq!(head(&hs), None);
    let crit = format!("Bearer {}.e30.sig", b64(r#"{"alg":"ES256","crit":["x"]}"#));
    assert_eq!(head(&crit), None, "refused anyway: nothing to fetch for");
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
        let f = forward(plan(&cfg, &loaded, &req, NOW_MS, 7));
        header(&f.response_headers, "set-cookie")
            .unwrap()
            .to_string()
    };
    assert!(over("https").ends_with("; HttpOnly; SameSite=Lax; Secure"));
    assert!(over("http").ends_with("; HttpOnly; SameSite=Lax"));
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
    let planned = plan(&cfg, &loaded, &req, NOW_MS, 1);
    assert_eq!(
        admin_guard_key(&cfg, &req, &planned).as_deref(),
        Some("ip:2001:db8:1:2::/64")
    );
}

#[test]
fn a_body_read_before_forwarding_must_be_whole() {
    assert!(body_complete(Some("100"), 100, 1_024));
    assert!(!body_complete(Some("100"), 1, 1_024));
    assert!(!body_complete(Some(" 100 "), 99, 1_024));
    // Announced over the limit: the limit's worth is whole enough (the
    // model route then refuses it as too large).
    assert!(body_complete(Some("5000"), 1_024, 1_024));
    assert!(!body_complete(Some("5000"), 1_000, 1_024));
    // Chunked, or a length the runtime would not have accepted anyway.
    assert!(body_complete(None, 3, 1_024));
    assert!(body_complete(Some("x"), 0, 1_024));
}

#[test]
fn the_backup_copy_never_goes_back_an_epoch() {
    let s1 = RolloutState::initial("s");
    let s2 = canary(2_000);
    assert!(s2.epoch > s1.epoch);
    assert!(replaces_backup(None, s1.epoch));
    assert!(replaces_backup(Some("{broken"), s1.epoch));
    assert!(replaces_backup(Some(&s1.to_json()), s2.epoch));
    assert!(!replaces_backup(Some(&s2.to_json()), s1.epoch));
    assert!(!replaces_backup(Some(&s2.to_json()), s2.epoch));
}
