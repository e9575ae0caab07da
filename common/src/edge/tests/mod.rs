//! The pipeline's unit tests by topic; the helpers they share are here.

mod admin;
mod config;
mod failover;
mod headers;
mod kv;
mod pipeline;
mod routing;
mod state;

use super::*;
use crate::admin::{AdminRoute, Problem};
use crate::auth::hash_api_key;
use crate::auth::ApiKeyEntry;
use crate::color::Color;
use crate::config_error::ConfigError;
use crate::decide::RouteReason;
use crate::failover::AttemptOutcome;
use crate::health::HealthRecord;
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

fn run(cfg: &EdgeConfig, state: &RolloutState, path: &str, h: &[(&str, &str)]) -> Action {
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
    action(cfg, &loaded, &req, NOW_MS, 0xdead_beef_0000_0001)
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

fn forward(p: Action) -> Forward {
    match p {
        Action::Forward(f) => f,
        other => panic!("expected forward, got {other:?}"),
    }
}

fn reply(p: Action) -> Reply {
    match p {
        Action::Reply(r) => r,
        other => panic!("expected reply, got {other:?}"),
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
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
    forward(action(cfg, &loaded, &req, NOW_MS, 7))
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

/// A request with these headers and platform facts, planned under `cfg`.
fn plan_request(
    cfg: &EdgeConfig,
    method: &str,
    path: &str,
    h: &[(&str, &str)],
    client_addr: Option<&str>,
) -> Action {
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
    action(cfg, &loaded, &req, NOW_MS, 5)
}

fn ai_config(extra: &[(&'static str, &str)]) -> EdgeConfig {
    let mut v = vars();
    for (k, val) in extra {
        v.insert(k, val.to_string());
    }
    EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap()
}
