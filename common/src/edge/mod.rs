//! The platform-neutral request pipeline of an edge function.
//!
//! An adapter (Workers, Spin) only performs I/O: it reads configuration and
//! the state document, turns the platform's request into a [`RequestHead`],
//! sends attempts to origins and streams their answers. What happens to a
//! request, and in which order, is written here once:
//!
//! 1. **load**: the adapter reads the configuration ([`EdgeConfig`]) and
//!    the state document; [`load_state`] says what to serve from when the
//!    document cannot be read.
//! 2. **normalize → admin → authenticate → choose → build**: [`action`]
//!    decides from the request head alone: the one form of the path, the
//!    admin namespace answered by the edge, the caller's credential, the
//!    color, and the forward to that color's origin.
//! 3. **guard**: failed admin authentications are limited per caller
//!    ([`guard_admin`], in the runtime's tables: [`Platform`]).
//! 4. **limit**: the caller's rate-limit bucket ([`Platform::take_token`]).
//! 5. **frame**: how the body travels, kept for a retry or streamed once
//!    ([`Forward::body_mode`], from the framing the runtime shows).
//! 6. **attempt**: the adapter sends the request; [`attempted`] counts a
//!    failure against its origin and says what follows: deliver, retry on
//!    the other live color, or answer.
//! 7. **deliver**: the origin's answer with the edge's headers
//!    ([`Forward::client_response_headers`]).
//!
//! [`begin`] runs phases 2 to 5; an adapter calls it, then [`attempted`]
//! after each attempt, and does nothing else that decides.

mod action;
mod admin_call;
pub(crate) mod config;
mod forward;
mod headers;
pub mod kv;
mod plan;
mod reply;
mod request;
mod state;

pub use action::*;
pub use admin_call::*;
pub use config::*;
pub use forward::*;
pub use headers::*;
pub use plan::*;
pub use reply::*;
pub use request::*;
pub use state::*;

use crate::admin::{self, AdminRoute, IsolateReport, TableSize};
use crate::failover::AttemptOutcome;
use crate::ratelimit::{RateLimit, RetryAfter};

/// What the pipeline needs from a runtime: what the runtime can do
/// (constants, so a build keeps only its own branches) and the tables an
/// edge keeps between requests where the runtime keeps them (a Worker
/// isolate's memory, Spin's key-value store). Each method does the
/// runtime's part of a rule written in this crate.
pub trait Platform {
    /// The runtime's name in the isolate report (`cloudflare`, `spin`).
    const RUNTIME: &'static str;
    /// Where its tables live, for the isolate report (`isolate`, `store`).
    const TABLES_IN: &'static str;
    /// `Some(name)` when WebSocket upgrades cannot pass through it (the
    /// name goes into the refusal).
    const REFUSES_WEBSOCKETS: Option<&'static str>;
    /// The runtime hides `transfer-encoding` (a forbidden field in
    /// `wasi:http`): a body without a length is then known by its method.
    const HIDES_TRANSFER_ENCODING: bool;
    /// The runtime sends no body with `GET` or `HEAD` (`fetch()` refuses
    /// one).
    const DROPS_GET_BODY: bool;

    /// [`guard_admin`] with `caller`'s admin failure table.
    fn guard_admin(&mut self, action: Action, caller: &str, now_ms: u64) -> Action;
    /// Takes a token from `key`'s bucket ([`crate::ratelimit`]).
    fn take_token(&mut self, limit: RateLimit, key: &str, now_ms: u64) -> Result<(), RetryAfter>;
    /// Counts `fwd`'s failed attempt in the health record ([`count_failure`]).
    fn count_failure(&mut self, fwd: &Forward, outcome: &AttemptOutcome, now_ms: u64);
    /// Each table's size and cap, for `GET /__greenlight/isolate`; `Err`
    /// says why they cannot be read.
    fn sizes(&self) -> Result<Vec<(&'static str, TableSize)>, String>;
}

/// How a request goes on after [`begin`].
// One per request, moved straight into the adapter: boxing the forward
// would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Answered by the edge itself.
    Reply(Reply),
    /// An authorised admin call, run against the platform's store.
    Admin(AdminCall),
    /// Forwarded to an origin, its body sent as [`BodyMode`] says.
    Forward(Forward, BodyMode),
}

/// Phases 2 to 5 of a request (see the module's documentation).
///
/// `random` must be fresh per request ([`action`]).
pub fn begin<P: Platform>(
    cfg: &EdgeConfig,
    loaded: &LoadedState,
    head: &RequestHead<'_>,
    now_ms: u64,
    random: u64,
    platform: &mut P,
) -> Begin {
    let action = action(cfg, loaded, head, now_ms, random);
    let action = match admin_guard_key(cfg, head, &action) {
        Some(caller) => platform.guard_admin(action, &caller, now_ms),
        None => action,
    };
    match action {
        Action::Reply(reply) => Begin::Reply(reply),
        Action::Admin(call) if call.route == AdminRoute::Isolate => {
            Begin::Reply(isolate_reply(head.method, platform))
        }
        Action::Admin(call) => Begin::Admin(call),
        Action::Forward(mut fwd) => {
            if let (Some(limit), Some(key)) = (cfg.rate_limit, &fwd.rate_key) {
                if let Err(wait) = platform.take_token(limit, key, now_ms) {
                    return Begin::Reply(Reply::rate_limited(wait));
                }
            }
            if let Some(runtime) = P::REFUSES_WEBSOCKETS {
                // A runtime that hides `upgrade` (a forbidden field in
                // wasi:http) still shows the handshake's key: forwarded as
                // a plain GET, an origin's 101 would reach the client
                // without the socket.
                if fwd.websocket || head.header("sec-websocket-key").is_some() {
                    return Begin::Reply(Reply::websocket_unsupported(runtime));
                }
            }
            let (length, chunked) = framing::<P>(head);
            let body = fwd.body_mode(length, chunked);
            Begin::Forward(fwd, body)
        }
    }
}

/// Phase 6, after one attempt took `elapsed_ms`: a failure is counted
/// against the attempt's origin, then the forward says what follows.
pub fn attempted(
    fwd: &Forward,
    outcome: &AttemptOutcome,
    elapsed_ms: u64,
    now_ms: u64,
    platform: &mut impl Platform,
) -> AfterAttempt {
    if outcome.failed() {
        platform.count_failure(fwd, outcome, now_ms);
    }
    fwd.after_attempt(outcome, elapsed_ms)
}

/// The request body's framing as the runtime shows it: its
/// `content-length`, and whether it comes chunked.
fn framing<'h, P: Platform>(head: &'h RequestHead<'_>) -> (Option<&'h str>, bool) {
    if P::DROPS_GET_BODY && matches!(head.method, "GET" | "HEAD") {
        return (None, false);
    }
    let length = head.header("content-length");
    let chunked = head.header("transfer-encoding").is_some()
        || (P::HIDES_TRANSFER_ENCODING && length.is_none() && carries_unframed_body(head.method));
    (length, chunked)
}

/// Whether a request without `content-length` has a (chunked) body when
/// the runtime hides `transfer-encoding`, judged by its method. `OPTIONS`
/// and `DELETE` are taken to have none, so they keep their retry
/// (`RETRY_METHODS`); a chunked body on them is not sent.
pub fn carries_unframed_body(method: &str) -> bool {
    !matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "DELETE" | "TRACE" | "CONNECT"
    )
}

/// `GET /__greenlight/isolate`: this runtime's tables and memory.
fn isolate_reply<P: Platform>(method: &str, platform: &P) -> Reply {
    match platform.sizes() {
        Ok(sizes) => {
            let report = IsolateReport {
                runtime: P::RUNTIME,
                tables_in: P::TABLES_IN,
                tables: &sizes,
                wasm_memory_bytes: admin::wasm_memory_bytes(),
            };
            Reply::from_admin(&admin::isolate_outcome(method, &report))
        }
        Err(e) => Reply::store_unavailable(e),
    }
}

#[cfg(test)]
mod tests;
