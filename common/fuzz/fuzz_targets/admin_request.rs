//! The admin API: `AdminRoute::parse` on an arbitrary path and
//! `admin::handle` with an arbitrary method and body against a valid state.
//!
//! Invariants: nothing panics; the status is 2xx or 4xx, never 5xx; errors
//! are problem+json whose `status` matches; a returned `new_state` is valid,
//! round-trips through JSON, has epoch = old epoch + 1 and is what the body
//! reports; a call that changes nothing returns no `new_state`.
#![no_main]

use arbitrary::Arbitrary;
use greenlight_common::admin::{self, AdminRoute, ChangeRequest, Problem, StateView};
use greenlight_common::state::{RolloutState, WEIGHT_SCALE};
use greenlight_common::Color;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const ROUTES: [&str; 5] = ["state", "weight", "promote", "rollback", "abort"];

#[derive(Arbitrary, Debug)]
struct StateSeed<'a> {
    green_active: bool,
    weight_bp: u16,
    rollback_target: bool,
    epoch: u64,
    sticky: bool,
    salt: &'a str,
}

impl StateSeed<'_> {
    fn build(&self) -> RolloutState {
        let mut s = RolloutState::initial(if self.salt.is_empty() || self.salt.len() > 256 {
            "salt"
        } else {
            self.salt
        });
        if self.green_active {
            (s.active, s.candidate) = (Color::Green, Color::Blue);
        }
        s.candidate_weight_bp = self.weight_bp % (WEIGHT_SCALE + 1);
        s.rollback_target = self.rollback_target.then_some(s.candidate);
        s.epoch = self.epoch;
        s.stickiness.enabled = self.sticky;
        s
    }
}

#[derive(Arbitrary, Debug)]
enum Route<'a> {
    /// A real route name, possibly with trailing slashes.
    Known {
        index: u8,
        slashes: u8,
    },
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Method<'a> {
    Get,
    Post,
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Epoch {
    Current,
    Other(u64),
}

#[derive(Arbitrary, Debug)]
enum Body<'a> {
    /// A JSON object shaped like a `ChangeRequest`, to get past the parser.
    Change {
        expected_epoch: Epoch,
        weight_bp: Option<u32>,
        weight_percent: Option<f64>,
        actor: Option<&'a str>,
        reason: Option<&'a str>,
        unknown_field: Option<&'a str>,
    },
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    state: StateSeed<'a>,
    route: Route<'a>,
    method: Method<'a>,
    identity: &'a str,
    degraded: bool,
    now_ms: u64,
    body: Body<'a>,
}

fuzz_target!(|input: Input<'_>| {
    let current = input.state.build();
    assert_eq!(current.validate(), Ok(()), "harness built an invalid state");

    let path = match input.route {
        Route::Known { index, slashes } => format!(
            "{}{}",
            ROUTES[usize::from(index) % ROUTES.len()],
            "/".repeat(usize::from(slashes % 4))
        ),
        Route::Raw(s) => s.to_string(),
    };
    let Some(route) = AdminRoute::parse(&path) else {
        // The edge answers 404 without calling `handle`.
        assert!(
            !ROUTES.contains(&path.trim_end_matches('/')),
            "{path:?} not parsed"
        );
        return;
    };
    let method = match input.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Raw(m) => m,
    };
    let body = match input.body {
        Body::Change {
            expected_epoch,
            weight_bp,
            weight_percent,
            actor,
            reason,
            unknown_field,
        } => {
            let mut o = serde_json::Map::new();
            let epoch = match expected_epoch {
                Epoch::Current => current.epoch,
                Epoch::Other(e) => e,
            };
            o.insert("expected_epoch".into(), json!(epoch));
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            };
            put("weight_bp", weight_bp.map(Value::from));
            put("weight_percent", weight_percent.map(Value::from));
            put("actor", actor.map(Value::from));
            put("reason", reason.map(Value::from));
            // Any key, known ones included (then it overrides the value).
            if let Some(k) = unknown_field {
                put(k, Some(Value::Bool(true)));
            }
            serde_json::to_vec(&o).unwrap()
        }
        Body::Raw(b) => b.to_vec(),
    };

    let out = admin::handle(
        route,
        method,
        &body,
        input.identity,
        &current,
        input.degraded,
        input.now_ms,
    );

    assert!(
        (200..300).contains(&out.status) || (400..500).contains(&out.status),
        "status {} for {route:?} {method:?}: {}",
        out.status,
        out.body
    );
    if out.status >= 400 {
        assert!(
            out.new_state.is_none(),
            "an error must not change the state"
        );
        assert_eq!(out.content_type, "application/problem+json");
        let p: Problem = serde_json::from_str(&out.body).expect("problem body is JSON");
        assert_eq!(p.status, out.status);
        return;
    }
    // The read-only routes that answer with documents of their own.
    if route == AdminRoute::MetricsPrometheus {
        assert_eq!(out.content_type, admin::PROMETHEUS_CONTENT_TYPE);
        assert!(out.new_state.is_none(), "GET metrics/prometheus changed the state");
        return;
    }
    assert_eq!(out.content_type, "application/json");
    if route == AdminRoute::Metrics {
        let _: greenlight_common::telemetry::MetricsView =
            serde_json::from_str(&out.body).expect("metrics body is JSON");
        assert!(out.new_state.is_none(), "GET metrics changed the state");
        return;
    }
    if route == AdminRoute::History {
        let _: greenlight_common::history::HistoryView =
            serde_json::from_str(&out.body).expect("history body is JSON");
        assert!(out.new_state.is_none(), "GET history changed the state");
        return;
    }
    let view: StateView = serde_json::from_str(&out.body).expect("state view body is JSON");
    match out.new_state {
        None => {
            assert_eq!(route, AdminRoute::State, "a change without a new state");
            assert_eq!((&view.state, view.degraded), (&current, input.degraded));
        }
        Some(next) => {
            assert_ne!(route, AdminRoute::State, "GET state changed the state");
            assert_eq!(next.validate(), Ok(()), "invalid new state: {next:?}");
            assert_eq!(
                RolloutState::from_json(&next.to_json()).as_ref(),
                Ok(&next),
                "new state does not round-trip"
            );
            assert_eq!(
                Some(next.epoch),
                current.epoch.checked_add(1),
                "epoch not bumped by one"
            );
            assert_eq!(view.state, next, "body and new_state disagree");
            assert_eq!(next.last_change.at_ms, input.now_ms);
            let req: ChangeRequest = serde_json::from_slice(&body).expect("accepted body");
            assert_eq!(req.expected_epoch, current.epoch, "stale epoch accepted");
            let actor = req.actor.as_deref().unwrap_or(input.identity);
            assert_eq!(next.last_change.actor, actor);
            assert_eq!(next.last_change.reason, req.reason);
            if route == AdminRoute::Weight {
                let want = req
                    .weight_bp
                    .or(req.weight_percent.map(|p| (p * 100.0).round() as u32));
                assert_eq!(want, Some(u32::from(next.candidate_weight_bp)));
            }
        }
    }
});
