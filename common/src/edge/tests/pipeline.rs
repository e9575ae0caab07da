//! [`begin`] and [`attempted`]: the phases in their order, against
//! platforms whose tables record what the pipeline asked of them.

use super::*;
use crate::admin::TableSize;
use crate::admin_guard::AdminFailures;

/// Tables in memory that remember every call, on a runtime like the
/// Worker (`SPIN = false`) or like Spin (`SPIN = true`: no WebSockets, hidden
/// `transfer-encoding`, bodies sent with GET).
#[derive(Default)]
struct Recorded<const SPIN: bool> {
    failures: AdminFailures,
    /// Callers refused a token.
    empty_buckets: Vec<String>,
    taken: Vec<String>,
    counted: Vec<(Color, String)>,
    unreadable: bool,
}

impl<const SPIN: bool> Platform for Recorded<SPIN> {
    const RUNTIME: &'static str = if SPIN { "spin" } else { "cloudflare" };
    const TABLES_IN: &'static str = if SPIN { "store" } else { "isolate" };
    const REFUSES_WEBSOCKETS: Option<&'static str> = if SPIN {
        Some("Spin (wasi:http 0.2)")
    } else {
        None
    };
    const HIDES_TRANSFER_ENCODING: bool = SPIN;
    const DROPS_GET_BODY: bool = !SPIN;

    fn guard_admin(&mut self, action: Action, caller: &str, now_ms: u64) -> Action {
        guard_admin(action, caller, &mut self.failures, now_ms, 100).0
    }

    fn take_token(&mut self, _: RateLimit, key: &str, _: u64) -> Result<(), RetryAfter> {
        self.taken.push(key.to_string());
        if self.empty_buckets.iter().any(|k| k == key) {
            return Err(RetryAfter { seconds: 3 });
        }
        Ok(())
    }

    fn count_failure(&mut self, fwd: &Forward, outcome: &AttemptOutcome, _: u64) {
        self.counted
            .push((fwd.decision.color, outcome.describe(fwd.decision.color)));
    }

    fn sizes(&self) -> Result<Vec<(&'static str, TableSize)>, String> {
        if self.unreadable {
            return Err("listing the store's keys: gone".into());
        }
        Ok(vec![(
            "admin_failure_callers",
            TableSize {
                entries: self.failures.len() as u64,
                cap: 100,
            },
        )])
    }
}

type Worker = Recorded<false>;
type Spin = Recorded<true>;

fn begin_with<const SPIN: bool>(
    cfg: &EdgeConfig,
    method: &str,
    path: &str,
    h: &[(&str, &str)],
    platform: &mut Recorded<SPIN>,
) -> Begin {
    let hs = headers(h);
    let req = RequestHead {
        method,
        path,
        query: None,
        headers: &hs,
        client_addr: Some("203.0.113.9"),
        scheme: Some("https"),
    };
    let loaded = LoadedState {
        state: canary(5_000),
        degraded: false,
    };
    begin(cfg, &loaded, &req, NOW_MS, 7, platform)
}

fn begin_reply(b: Begin) -> Reply {
    match b {
        Begin::Reply(r) => r,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn admin_guesses_are_guarded_before_anything_else_answers() {
    let cfg = config();
    let mut tables = Worker::default();
    let wrong = [("authorization", "Bearer wrong")];
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let b = begin_with(&cfg, "GET", "/__greenlight/state", &wrong, &mut tables);
        statuses.push(begin_reply(b).status);
    }
    assert_eq!(statuses.first(), Some(&401));
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // Once over the limit, even the right token waits: the guard runs
    // before the admin call.
    let right = [("authorization", "Bearer admin-secret")];
    let b = begin_with(&cfg, "GET", "/__greenlight/state", &right, &mut tables);
    assert_eq!(begin_reply(b).status, 429);
    // Ordinary traffic never touches the table.
    let mut fresh = Worker::default();
    let b = begin_with(&cfg, "GET", "/x", &[("x-api-key", "nope")], &mut fresh);
    assert_eq!(begin_reply(b).status, 401);
    assert_eq!(fresh.failures.len(), 0);
}

#[test]
fn an_authorised_admin_call_goes_to_the_store_and_the_isolate_report_is_answered_here() {
    let cfg = config();
    let token = [("authorization", "Bearer admin-secret")];
    let mut tables = Spin::default();
    let b = begin_with(&cfg, "POST", "/__greenlight/promote", &token, &mut tables);
    assert!(matches!(
        b,
        Begin::Admin(AdminCall {
            route: AdminRoute::Promote,
            ..
        })
    ));
    let isolate = |tables: &mut Spin| {
        let b = begin_with(&cfg, "GET", "/__greenlight/isolate", &token, tables);
        begin_reply(b)
    };
    let r = isolate(&mut tables);
    assert_eq!(r.status, 200);
    let view: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(view["runtime"], "spin");
    assert_eq!(view["tables_in"], "store");
    assert!(
        view["tables"]["admin_failure_callers"].is_object(),
        "{view}"
    );
    tables.unreadable = true;
    assert_eq!(isolate(&mut tables).status, 503);
}

#[test]
fn the_rate_limit_is_taken_only_for_forwards_and_answers_429() {
    let cfg = config_with(&[("RATE_LIMIT_PER_S", "5")]);
    let mut tables = Worker::default();
    let key = [("x-api-key", "app-key")];
    assert!(matches!(
        begin_with(&cfg, "GET", "/x", &key, &mut tables),
        Begin::Forward(..)
    ));
    assert_eq!(tables.taken, ["k:app"]);
    tables.empty_buckets.push("k:app".into());
    let r = begin_reply(begin_with(&cfg, "GET", "/x", &key, &mut tables));
    assert_eq!(r.status, 429);
    assert_eq!(header(&r.headers, "retry-after"), Some("3"));
    // Refused callers and admin calls take no token.
    let _ = begin_with(&cfg, "GET", "/x", &[], &mut tables);
    let admin = [("authorization", "Bearer admin-secret")];
    let _ = begin_with(&cfg, "GET", "/__greenlight/state", &admin, &mut tables);
    assert_eq!(tables.taken.len(), 2);
    // Without a configured limit, no bucket is asked.
    let mut unlimited = Worker::default();
    let _ = begin_with(&config(), "GET", "/x", &key, &mut unlimited);
    assert!(unlimited.taken.is_empty());
}

#[test]
fn websockets_are_refused_where_the_runtime_cannot_pass_them() {
    let cfg = config();
    let key = ("x-api-key", "app-key");
    let upgrade = [key, ("connection", "upgrade"), ("upgrade", "websocket")];
    // A runtime that hides `upgrade` still shows the handshake's key.
    let hidden = [key, ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")];
    for h in [&upgrade[..], &hidden[..]] {
        let r = begin_reply(begin_with(&cfg, "GET", "/ws", h, &mut Spin::default()));
        assert_eq!(r.status, 501);
        assert!(r.body.contains("Spin (wasi:http 0.2)"), "{}", r.body);
    }
    let b = begin_with(&cfg, "GET", "/ws", &upgrade, &mut Worker::default());
    let Begin::Forward(fwd, _) = b else {
        panic!("the Worker passes the socket through");
    };
    assert!(fwd.websocket);
}

#[test]
fn the_body_is_framed_as_the_runtime_shows_it() {
    fn mode<const SPIN: bool>(method: &str, h: &[(&str, &str)]) -> (BodyMode, bool) {
        let mut all = vec![("x-api-key", "app-key")];
        all.extend_from_slice(h);
        let platform = &mut Recorded::<SPIN>::default();
        match begin_with(&config(), method, "/x", &all, platform) {
            Begin::Forward(fwd, mode) => (mode, fwd.fallback.is_some()),
            other => panic!("{other:?}"),
        }
    }
    let (worker, spin) = (mode::<false>, mode::<true>);
    let small = [("content-length", "5")];
    let chunked = [("transfer-encoding", "chunked")];
    // A small body is kept even when the request may not be retried.
    assert_eq!(worker("PUT", &small), (BodyMode::Buffer, false));
    assert_eq!(spin("POST", &small), (BodyMode::Buffer, false));
    // fetch() sends no body with GET: there is nothing to keep.
    assert_eq!(worker("GET", &small), (BodyMode::Empty, true));
    // Elsewhere a small one is kept so a retry can send it again.
    assert_eq!(spin("GET", &small), (BodyMode::Buffer, true));
    // Chunked: streamed once, so the retry is dropped.
    assert_eq!(worker("GET", &chunked), (BodyMode::Empty, true));
    assert_eq!(spin("GET", &chunked), (BodyMode::Stream, false));
    // Where transfer-encoding is hidden, a POST without a length is chunked.
    assert_eq!(spin("POST", &[]).0, BodyMode::Stream);
    assert_eq!(worker("POST", &[]).0, BodyMode::Empty);
    assert_eq!(spin("DELETE", &[]).0, BodyMode::Empty);
}

#[test]
fn only_failed_attempts_are_counted_against_their_origin() {
    let cfg = config();
    let mut tables = Worker::default();
    let Begin::Forward(fwd, _) =
        begin_with(&cfg, "GET", "/x", &[("x-api-key", "app-key")], &mut tables)
    else {
        panic!("forwarded");
    };
    let color = fwd.decision.color;
    let next = attempted(&fwd, &AttemptOutcome::Answered(200), 5, NOW_MS, &mut tables);
    assert_eq!(next, AfterAttempt::Deliver);
    assert_eq!(
        attempted(&fwd, &AttemptOutcome::Answered(404), 5, NOW_MS, &mut tables),
        AfterAttempt::Deliver
    );
    assert!(tables.counted.is_empty());
    let refused = AttemptOutcome::Unreachable("refused".into());
    let AfterAttempt::Retry(retry) = attempted(&fwd, &refused, 5, NOW_MS, &mut tables) else {
        panic!("a GET is retried on the other live color");
    };
    assert_ne!(retry.decision.color, color);
    assert_eq!(tables.counted.len(), 1);
    assert_eq!(tables.counted[0].0, color);
}
