//! greenlight on Cloudflare Workers: the Rust half of the adapter.
//!
//! The request's I/O runs in the JavaScript shell (`shell.js`, the Worker's
//! entry module); every decision is made here, in synchronous calls that
//! translate between the shell's strings (`greenlight_common::shell`) and
//! `greenlight_common::edge`. Only store access is async Rust: loading
//! configuration and state, the admin API, and writing the health record.
//! Why the split: `greenlight_common::shell`.

use greenlight_common::admin::TableSize;
use greenlight_common::admin_guard::AdminFailures;
use greenlight_common::config_error::ConfigError;
use greenlight_common::edge::{
    self, Action, AdminDocs, AfterAttempt, Begin, BodyMode, EdgeConfig, Forward, LoadedState,
    Platform, Reply, StateLoad,
};
use greenlight_common::failover::{AttemptOutcome, MAX_REPLAY_BODY};
use greenlight_common::health::HealthRecord;
use greenlight_common::http::{HeaderLookup, LAST_GOOD_KEY, STATE_KEY};
use greenlight_common::jwks::CachedJwks;
use greenlight_common::object::{self, ObjectAnswer, ReportThrottle};
use greenlight_common::propagation::{self, ReadFrom, ReadPath, ReplicaTable, StateSource};
use greenlight_common::ratelimit::{Limiter, RateLimit, RetryAfter};
use greenlight_common::telemetry::{Pending as Unflushed, Tally};
use greenlight_common::{shell, RolloutState};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use wasm_bindgen::prelude::wasm_bindgen;
use worker::Env;

#[cfg(all(not(target_feature = "atomics"), target_family = "wasm"))]
#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// The KV namespace binding that holds the rollout state document.
const KV_BINDING: &str = "GREENLIGHT_STATE";

/// The caller's address as Cloudflare itself sets it (a client's own copy is
/// replaced at Cloudflare's front door), for rate-limiting anonymous callers.
const CLIENT_ADDR_HEADER: &str = "cf-connecting-ip";

// Per-isolate memory. An isolate runs on one thread, so thread-locals are the
// isolate's; requests interleave at awaits, never inside a call.
thread_local! {
    /// Read from the Worker's vars once per isolate (they cannot change
    /// without a new deployment, hence a new isolate); a bad configuration
    /// is remembered too and answered on every request.
    static CONFIG: RefCell<Option<Result<Rc<EdgeConfig>, ConfigError>>> = const { RefCell::new(None) };
    /// Where this isolate reads the state (`STATE_SOURCE` and kin), read
    /// with the configuration.
    static READ_PATH: RefCell<Option<Rc<ReadPath>>> = const { RefCell::new(None) };
    /// The state this isolate serves, and when it was read (ms).
    static STATE: RefCell<Option<(Rc<LoadedState>, u64)>> = const { RefCell::new(None) };
    /// The last good document this isolate parsed, and its state.
    static PARSED: RefCell<Option<(String, Rc<LoadedState>)>> = const { RefCell::new(None) };
    /// The background refresh of `STATE` in flight, if any.
    static REFRESH: RefCell<propagation::Refresh> = RefCell::new(propagation::Refresh::default());
    /// Rate-limit buckets of this isolate: the limit holds per isolate, and
    /// a busy PoP runs several (see README, "Guarantees and limits").
    static LIMITER: RefCell<Option<Limiter>> = const { RefCell::new(None) };
    /// Failed admin authentications per caller address in this isolate
    /// (`greenlight_common::admin_guard`).
    /// The remote JWKS (`JWKS_URL`) as this isolate last fetched it, and
    /// the configuration verifying with it (rebuilt once per fetch).
    static JWKS: RefCell<CachedJwks> = RefCell::new(CachedJwks::default());
    static JWKS_CONFIG: RefCell<Option<(u64, Rc<EdgeConfig>)>> = const { RefCell::new(None) };
    /// Set when a request's token names a key the set lacks: the next
    /// `loadEdge` refetches (`CachedJwks::should_fetch_for` says when).
    static JWKS_WANTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static ADMIN_FAILURES: RefCell<AdminFailures> = RefCell::new(AdminFailures::default());
    /// Origin failures this isolate counted in the current epoch, reported
    /// whole to the rollout object (which keeps the larger counts), at most
    /// once a second however many failures there are.
    static HEALTH: RefCell<Option<HealthRecord>> = const { RefCell::new(None) };
    static REPORTS: RefCell<ReportThrottle> = RefCell::new(ReportThrottle::default());
    /// Forwards waiting for their attempt's result, by attempt id.
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
    /// Real users' answers counted since this isolate's last flush to the
    /// rollout object.
    static TELEMETRY: RefCell<Unflushed> = RefCell::new(Unflushed::default());
}

/// Counts one attempt in this isolate's telemetry; `Some(delay)`: a flush
/// is to be scheduled (`shell::flush`).
fn count_attempt(
    fwd: &Forward,
    outcome: &AttemptOutcome,
    elapsed_ms: u64,
    bytes: u64,
    now_ms: u64,
) -> Option<u64> {
    let (color, epoch, m) = edge::measured(fwd, outcome, elapsed_ms, bytes, now_ms)?;
    TELEMETRY.with_borrow_mut(|t| t.record(color, epoch, &m))
}

/// The shell delivered attempt `id`'s answer (`status`, a 2xx the core
/// said to deliver as it came, `length` its `content-length` as a number)
/// itself: the forward is done, and counted. Returns the delay of the
/// telemetry flush to schedule, or -1.
#[wasm_bindgen(js_name = answered)]
pub fn answered(id: u32, status: u16, started_ms: f64, now_ms: f64, length: f64) -> f64 {
    let Some(pending) = PENDING.with_borrow_mut(|p| p.take(id)) else {
        return -1.0;
    };
    let now_ms = now_ms as u64;
    let elapsed_ms = now_ms.saturating_sub(started_ms as u64);
    // A number, not the header's text: no string crosses into wasm on the
    // common path. NaN (no or a bad `content-length`) counts no bytes.
    let bytes = if length.is_finite() && length >= 0.0 {
        length as u64
    } else {
        0
    };
    count_attempt(
        &pending.fwd,
        &AttemptOutcome::Answered(status),
        elapsed_ms,
        bytes,
        now_ms,
    )
    .map_or(-1.0, |delay| delay as f64)
}

/// This isolate's telemetry batch for the rollout object, if it counted
/// anything since the last one; the flush after it is scheduled anew.
#[wasm_bindgen(js_name = takeTelemetry)]
pub fn take_telemetry(now_ms: f64) -> Option<String> {
    TELEMETRY.with_borrow_mut(|t| t.take(now_ms as u64))
}

/// The object's summed telemetry with an isolate's batch added, or `None`
/// to keep the stored sum (an unreadable batch).
#[wasm_bindgen(js_name = objectTelemetry)]
pub fn object_telemetry(stored: Option<String>, batch: &str) -> Option<String> {
    Tally::merge_batch(stored.as_deref(), batch)
}

/// Callers one isolate keeps buckets for before it forgets idle ones.
const MAX_LIMITED_CALLERS: usize = 10_000;

/// Callers with failed admin authentications one isolate remembers.
const MAX_ADMIN_FAILURE_CALLERS: usize = 10_000;

/// Forwards in flight before the oldest is forgotten: an attempt whose
/// client went away never reports back, nor is reported finished.
const MAX_PENDING: usize = 10_000;

/// A forward between its `forward` step and the attempt's result.
struct PendingForward {
    fwd: Forward,
    method: String,
    body: BodyMode,
    /// The client's headers, which a retry's forward step changes again.
    client_headers: Vec<(String, String)>,
}

/// Forwards in flight, oldest first (a handful: the requests this isolate
/// is serving at once).
#[derive(Default)]
struct Pending {
    next_id: u32,
    in_flight: VecDeque<(u32, PendingForward)>,
}

impl Pending {
    fn next_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn insert(&mut self, id: u32, pending: PendingForward) {
        self.in_flight.push_back((id, pending));
        if self.in_flight.len() > MAX_PENDING {
            self.in_flight.pop_front();
        }
    }

    fn take(&mut self, id: u32) -> Option<PendingForward> {
        let at = self.in_flight.iter().position(|(i, _)| *i == id)?;
        self.in_flight.remove(at).map(|(_, pending)| pending)
    }
}

/// Begins a request from its head (`requestHead` in shell.js: method, URL,
/// header fields). `fresh` is set right after `loadEdge`, so the state just
/// read is used even when the cache TTL is 0. `finished` are the attempts
/// the shell delivered directly since the last call (no `afterAttempt` for
/// them). Returns the first step.
#[wasm_bindgen(js_name = beginRequest)]
pub fn begin_request(
    head: &str,
    now_ms: f64,
    random_hi: u32,
    random_lo: u32,
    fresh: bool,
    finished: &[u32],
) -> String {
    if !finished.is_empty() {
        PENDING.with_borrow_mut(|p| {
            for id in finished {
                p.take(*id);
            }
        });
    }
    let now_ms = now_ms as u64;
    let cfg = match CONFIG.with(|c| c.borrow().clone()) {
        Some(Ok(cfg)) => cfg,
        Some(Err(e)) => return shell::reply(&Reply::misconfigured(&e)),
        None => return shell::LOAD.into(),
    };
    // A state past its TTL still serves this request; the shell reads a
    // newer one in the background (no request waits on a remote read once
    // the isolate holds a state).
    let (loaded, refresh) = match STATE.with(|s| s.borrow().clone()) {
        Some((loaded, read_ms)) => {
            let due = !fresh
                && REFRESH.with_borrow_mut(|r| r.start(read_ms, cfg.state_cache_ttl_ms, now_ms));
            (Some(loaded), due)
        }
        None => (None, false),
    };
    let step = begin_with(cfg, loaded, head, now_ms, random_hi, random_lo, fresh);
    // A load reads the state anyway.
    if refresh && step != shell::LOAD {
        shell::refresh(&step)
    } else {
        step
    }
}

fn begin_with(
    cfg: Rc<EdgeConfig>,
    loaded: Option<Rc<LoadedState>>,
    head: &str,
    now_ms: u64,
    random_hi: u32,
    random_lo: u32,
    fresh: bool,
) -> String {
    let request = shell::ShellRequest::parse(head);
    let method = request.method;
    let head = request.head(CLIENT_ADDR_HEADER);
    let cfg = match (&cfg.jwks_url, edge::jwks_key_id(&head)) {
        (Some(_), Some(kid)) => {
            // One load per request at most: after it, verify with what is there.
            let wanted = JWKS.with_borrow(|c| c.should_fetch_for(kid.as_deref(), now_ms));
            if wanted && !fresh {
                JWKS_WANTED.set(true);
                return shell::LOAD.into();
            }
            remote_jwks_config(&cfg, now_ms)
        }
        _ => cfg,
    };
    let Some(loaded) = loaded else {
        return shell::LOAD.into();
    };
    let random = (u64::from(random_hi) << 32) | u64::from(random_lo);
    match edge::begin(
        &cfg,
        &loaded,
        &head,
        now_ms,
        random,
        &mut Isolate::default(),
    ) {
        Begin::Reply(reply) => shell::reply(&reply),
        Begin::Admin(call) => shell::admin(&object::encode_call(&call, method)),
        Begin::Forward(fwd, body) => {
            let method = method.to_owned();
            PENDING.with_borrow_mut(|p| {
                let id = p.next_id();
                let step = shell::forward(id, &method, body, &request.headers, &fwd);
                p.insert(
                    id,
                    PendingForward {
                        fwd,
                        method,
                        body,
                        client_headers: request.headers,
                    },
                );
                step
            })
        }
    }
}

/// This isolate as the pipeline's platform: its tables are the isolate's
/// memory (its thread-locals), WebSockets pass through, and `fetch()`
/// sends no body with GET or HEAD.
#[derive(Default)]
struct Isolate {
    /// The delay of the health report a counted failure scheduled.
    report_in: Option<u64>,
}

impl Platform for Isolate {
    const RUNTIME: &'static str = "cloudflare";
    const TABLES_IN: &'static str = "isolate";
    const REFUSES_WEBSOCKETS: Option<&'static str> = None;
    const HIDES_TRANSFER_ENCODING: bool = false;
    const DROPS_GET_BODY: bool = true;

    fn guard_admin(&mut self, action: Action, caller: &str, now_ms: u64) -> Action {
        ADMIN_FAILURES.with_borrow_mut(|failures| {
            edge::guard_admin(action, caller, failures, now_ms, MAX_ADMIN_FAILURE_CALLERS).0
        })
    }

    fn take_token(&mut self, limit: RateLimit, key: &str, now_ms: u64) -> Result<(), RetryAfter> {
        LIMITER.with_borrow_mut(|l| {
            l.get_or_insert_with(|| Limiter::new(limit, MAX_LIMITED_CALLERS))
                .take(key, now_ms)
        })
    }

    /// Counts the failure in this isolate's record, which is reported
    /// whole to the rollout object (at most once a second).
    fn count_failure(&mut self, fwd: &Forward, outcome: &AttemptOutcome, now_ms: u64) {
        let Some(Ok(cfg)) = CONFIG.with(|c| c.borrow().clone()) else {
            return;
        };
        HEALTH.with_borrow_mut(|h| {
            *h = Some(edge::count_failure(
                &cfg,
                h.take(),
                fwd.decision.epoch,
                fwd.decision.color,
                outcome,
                now_ms,
            ));
        });
        self.report_in = REPORTS.with_borrow_mut(|r| r.on_failure(now_ms));
    }

    fn sizes(&self) -> Result<Vec<(&'static str, TableSize)>, String> {
        let size = |entries: usize, cap: usize| TableSize {
            entries: entries as u64,
            cap: cap as u64,
        };
        Ok(vec![
            (
                "admin_failure_callers",
                ADMIN_FAILURES.with_borrow(|f| size(f.len(), MAX_ADMIN_FAILURE_CALLERS)),
            ),
            (
                "pending_forwards",
                PENDING.with_borrow(|p| size(p.in_flight.len(), MAX_PENDING)),
            ),
            (
                "rate_limit_callers",
                LIMITER.with_borrow(|l| {
                    size(l.as_ref().map_or(0, Limiter::callers), MAX_LIMITED_CALLERS)
                }),
            ),
        ])
    }
}

/// Takes attempt `id`'s result (see `greenlight_common::shell`) and
/// returns what follows: deliver, retry on the other color, or reply.
#[wasm_bindgen(js_name = afterAttempt)]
pub fn after_attempt(id: u32, report: &str, started_ms: f64, now_ms: f64) -> String {
    let Some(pending) = PENDING.with_borrow_mut(|p| p.take(id)) else {
        return shell::reply(&Reply::origin_failed("the edge lost track of this request"));
    };
    let now_ms = now_ms as u64;
    let elapsed_ms = now_ms.saturating_sub(started_ms as u64);
    let result = shell::attempt_result(report, pending.fwd.timeout_ms);
    if let Some(message) = report.strip_prefix("error\n") {
        // The client gets a class of failure; the runtime's message (which
        // may name the origin's address) goes to the Worker's logs.
        worker::console_error!(
            "greenlight: {} origin unreachable: {message}",
            pending.fwd.decision.color
        );
    }
    let bytes = edge::announced_bytes(
        result
            .header_lines
            .and_then(|lines| shell::header_in_lines(lines, "content-length")),
    );
    let flush_in = count_attempt(&pending.fwd, &result.outcome, elapsed_ms, bytes, now_ms);
    let mut isolate = Isolate::default();
    let step = match edge::attempted(
        &pending.fwd,
        &result.outcome,
        elapsed_ms,
        now_ms,
        &mut isolate,
    ) {
        AfterAttempt::Deliver => match (&result.outcome, result.header_lines) {
            (AttemptOutcome::Answered(status), Some(lines)) => {
                shell::deliver(*status, lines, &pending.fwd)
            }
            _ => shell::reply(&Reply::origin_failed("origin response lost")),
        },
        AfterAttempt::Retry(next) => {
            let step = shell::forward(
                id,
                &pending.method,
                pending.body,
                &pending.client_headers,
                &next,
            );
            PENDING.with_borrow_mut(|p| {
                p.insert(
                    id,
                    PendingForward {
                        fwd: *next,
                        ..pending
                    },
                )
            });
            step
        }
        AfterAttempt::Reply(reply) => shell::reply(&reply),
    };
    let step = match isolate.report_in {
        Some(delay_ms) => shell::persist(delay_ms, &step),
        None => step,
    };
    match flush_in {
        Some(delay_ms) => shell::flush(delay_ms, &step),
        None => step,
    }
}

/// Attempt `id`'s body as the shell read it whole (`buffer` and `rewrite`
/// bodies): `read` bytes, or `failed` when reading it threw (the client
/// broke off). `None` when it is complete; otherwise the `400` to answer
/// (a reply step), and the attempt is over, counted against no origin.
#[wasm_bindgen(js_name = bodyRead)]
pub fn body_read(id: u32, read: f64, failed: bool) -> Option<String> {
    let complete = PENDING.with_borrow(|p| {
        p.in_flight
            .iter()
            .find(|(i, _)| *i == id)
            .is_some_and(|(_, pending)| {
                let limit = match pending.body {
                    BodyMode::Rewrite => edge::REWRITE_READ_LIMIT,
                    _ => MAX_REPLAY_BODY,
                };
                let length = pending.client_headers.header("content-length");
                !failed && edge::body_complete(length, read as usize, limit as usize)
            })
    });
    if complete {
        return None;
    }
    Some(client_gone(id))
}

/// Attempt `id`'s client went away while its body streamed to the origin
/// (the attempt failed with it): the `400` (a reply step, which goes
/// nowhere); the attempt is over, counted against no origin, not retried.
#[wasm_bindgen(js_name = clientGone)]
pub fn client_gone(id: u32) -> String {
    PENDING.with_borrow_mut(|p| p.take(id));
    shell::reply(&Reply::incomplete_body())
}

/// The runtime refused attempt `id`'s request headers (`message` says
/// why): the `400` to answer (a reply step); the attempt is over, counted
/// against no origin.
#[wasm_bindgen(js_name = headersRefused)]
pub fn headers_refused(id: u32, message: &str) -> String {
    PENDING.with_borrow_mut(|p| p.take(id));
    worker::console_error!("greenlight: request headers refused by the runtime: {message}");
    shell::reply(&Reply::headers_not_forwardable(
        "the runtime refused the request's headers",
    ))
}

/// How many bytes of a model route's body the shell reads (`rewrite`
/// bodies): one over the limit tells a body that is too large.
#[wasm_bindgen(js_name = rewriteReadLimit)]
pub fn rewrite_read_limit() -> f64 {
    edge::REWRITE_READ_LIMIT as f64
}

/// Attempt `id`'s body on a model route: the client's `body` with this
/// attempt's color's model set, or `None` when it cannot be rewritten (the
/// shell then asks [`model_refusal`] for the answer).
#[wasm_bindgen(js_name = modelBody)]
pub fn model_body(id: u32, body: &[u8]) -> Option<Vec<u8>> {
    PENDING.with_borrow(|p| {
        p.in_flight
            .iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, pending)| pending.fwd.model_body(body).ok())
    })
}

/// The `400` for attempt `id`'s body that [`model_body`] refused (a reply
/// step); the attempt is over.
#[wasm_bindgen(js_name = modelRefusal)]
pub fn model_refusal(id: u32, body: &[u8]) -> String {
    let reply = match PENDING.with_borrow_mut(|p| p.take(id)) {
        Some(pending) => pending.fwd.model_body(body).err(),
        None => None,
    };
    shell::reply(
        &reply.unwrap_or_else(|| Reply::origin_failed("the edge lost track of this request")),
    )
}

/// Where this isolate reads the state, for the shell: `kv`, `object`, or
/// `replicas\n<place>` (`propagation::Place::encode`: the location's cache
/// key, its region's replica and the cache's period). `url` is the
/// request's; `colo` and the coordinates are the location's
/// (`request.cf`; NaN when unknown).
#[wasm_bindgen(js_name = statePlace)]
pub fn state_place(
    env: Env,
    url: &str,
    colo: Option<String>,
    latitude: f64,
    longitude: f64,
) -> String {
    let Some(path) = read_path(&env) else {
        return "kv".into();
    };
    match path.source {
        StateSource::Kv => "kv".into(),
        StateSource::Object => "object".into(),
        StateSource::Replicas => {
            let origin = edge::origin_of(url);
            let known = |v: f64| v.is_finite().then_some(v);
            match path.place(origin, colo.as_deref(), known(latitude), known(longitude)) {
                Some(place) => format!("replicas\n{}", place.encode()),
                None => "kv".into(),
            }
        }
    }
}

/// Reads configuration (once per isolate) and the rollout state into this
/// isolate's memory; the shell then begins the request again (or, for a
/// background refresh, the next request uses it). `document` is the state
/// document as the shell read it from `source`: `cache` or `replica` (the
/// fast path), `object` (`STATE_SOURCE = "object"`), or `kv`: then it is
/// read here, from KV.
#[wasm_bindgen(js_name = loadEdge)]
pub async fn load_edge(env: Env, document: Option<String>, source: String) {
    if let Ok(cfg) = config(&env) {
        if let Some(url) = &cfg.jwks_url {
            let now = now_ms();
            let due = JWKS.with_borrow(|c| c.should_fetch(now, JWKS_WANTED.take()));
            if due {
                fetch_jwks(url, now).await;
            }
        }
        let read = match document {
            Some(doc) if source != "kv" => StateRead::Read(doc),
            _ => StateRead::Kv,
        };
        // KV is the fallback of the replicas' read path: an isolate that
        // had to use it says so (degraded) until the fast path answers.
        let fallback = read_path(&env).is_some_and(|p| p.source == StateSource::Replicas)
            && ReadFrom::parse(&source) == ReadFrom::Fallback;
        load_state(&env, &cfg, now_ms(), read, fallback).await;
    }
    REFRESH.with_borrow_mut(propagation::Refresh::finished);
}

fn read_path(env: &Env) -> Option<Rc<ReadPath>> {
    config(env).ok()?;
    READ_PATH.with(|p| p.borrow().clone())
}

/// The rollout object's answer to the admin call of `head` (`status` 0:
/// the object could not be reached, `body` says why), as a reply step. A
/// committed change is this isolate's state from now on, so the next
/// request here follows it; `GET state` also says when this isolate
/// serves from a fallback state.
#[wasm_bindgen(js_name = adminAnswered)]
pub fn admin_answered(head: &str, status: u16, body: String, now_ms: f64) -> String {
    let degraded_here = STATE.with(|s| s.borrow().as_ref().is_some_and(|(l, _)| l.degraded));
    let path = shell::ShellRequest::parse(head).path;
    let (reply, shown) = object::edge_answer(path, status, body, degraded_here);
    // Only a newer epoch replaces what this isolate read: the same epoch
    // read as unreadable from KV stays flagged degraded until KV is fixed.
    let newer = STATE.with(|s| {
        s.borrow()
            .as_ref()
            .is_none_or(|(mine, _)| shown.as_ref().is_some_and(|st| st.epoch > mine.state.epoch))
    });
    if let (Some(state), true) = (shown, newer) {
        remember_newer(
            Rc::new(LoadedState {
                state,
                degraded: false,
            }),
            now_ms as u64,
        );
    }
    shell::reply(&reply)
}

/// This isolate's health record for the rollout object, if it has one; the
/// report scheduled by a `persist` step is being sent now.
#[wasm_bindgen(js_name = takeHealthReport)]
pub fn take_health_report(now_ms: f64) -> Option<String> {
    REPORTS.with_borrow_mut(|r| r.sending(now_ms as u64));
    HEALTH.with(|h| h.borrow().as_ref().map(HealthRecord::to_json))
}

// The rollout object (`RolloutObject` in shell.js): the Durable Object
// that decides every change. These calls are synchronous: the object keeps
// its document in memory, so reading it, checking the epoch and replacing
// it happen with no await in between.

/// The object's document when it starts: `<0|1 degraded>\n<document>`
/// (`object::seed`: its storage, else KV, else KV's backup copy).
#[wasm_bindgen(js_name = objectSeed)]
pub fn object_seed(
    env: Env,
    stored: Option<String>,
    kv_document: Option<String>,
    kv_backup: Option<String>,
) -> String {
    let salt = match config(&env) {
        Ok(cfg) => cfg.default_salt.clone(),
        Err(_) => "greenlight".to_string(),
    };
    let loaded = object::seed(
        stored.as_deref(),
        kv_document.as_deref(),
        kv_backup.as_deref(),
        &salt,
    );
    format!("{}\n{}", u8::from(loaded.degraded), loaded.state.to_json())
}

/// One admin call inside the object (`object::change`); the answer as
/// `object::ObjectAnswer::encode`.
#[allow(clippy::too_many_arguments)]
#[wasm_bindgen(js_name = objectChange)]
pub fn object_change(
    env: Env,
    call: &str,
    body: &[u8],
    document: &str,
    degraded: bool,
    health: Option<String>,
    history: Option<String>,
    evidence: Option<String>,
    telemetry: Option<String>,
    replicas: Option<String>,
    now_ms: f64,
) -> String {
    let cfg = match config(&env) {
        Ok(cfg) => cfg,
        Err(e) => {
            let reply = Reply::misconfigured(&e);
            return ObjectAnswer::refused(reply.status, reply.body).encode();
        }
    };
    let loaded = object::seed(Some(document), None, None, &cfg.default_salt);
    let loaded = LoadedState {
        degraded: degraded || loaded.degraded,
        ..loaded
    };
    let docs = AdminDocs {
        health: health.as_deref(),
        history: history.as_deref(),
        evidence: evidence.as_deref(),
        telemetry: telemetry.as_deref(),
        replicas: replicas.as_deref(),
    };
    object::change(&cfg, call, body, &loaded, docs, now_ms as u64).encode()
}

/// The plan's change due now inside the object (`object::plan_tick`), as
/// `object::ObjectAnswer::encode`; `None` when nothing is due (or the
/// configuration is invalid: the plan then waits, as every request fails).
#[wasm_bindgen(js_name = objectPlanTick)]
pub fn object_plan_tick(
    env: Env,
    document: &str,
    health: Option<String>,
    history: Option<String>,
    evidence: Option<String>,
    now_ms: f64,
) -> Option<String> {
    let cfg = config(&env).ok()?;
    let docs = AdminDocs {
        health: health.as_deref(),
        history: history.as_deref(),
        evidence: evidence.as_deref(),
        telemetry: None,
        replicas: None,
    };
    object::plan_tick(&cfg, document, docs, now_ms as u64).map(|answer| answer.encode())
}

/// When the object's alarm next rings (ms), or -1 for none: the plan's
/// next deadline (its dwell, or the `evidence` lease it waits on) or a
/// pending publish's retry (`publish_retry_at`, -1 for none) or a failed
/// push's retry (in `replicas`), whichever is first.
#[wasm_bindgen(js_name = objectNextAlarm)]
pub fn object_next_alarm(
    document: &str,
    evidence: Option<String>,
    publish_retry_at: f64,
    replicas: Option<String>,
) -> f64 {
    let publish = (publish_retry_at >= 0.0).then_some(publish_retry_at as u64);
    object::next_alarm(document, evidence.as_deref(), publish, replicas.as_deref())
        .map_or(-1.0, |at| at as f64)
}

// The read replicas (`StateReplica` in shell.js) and the primary's record
// of them (`propagation::ReplicaTable`, kept by the rollout object as JSON).

/// The rollout object committed (or, after a start, holds) `document`:
/// `<table>\n<region>…`, its record of the replicas and the regions to
/// push the document to now (none when isolates do not read replicas).
#[wasm_bindgen(js_name = replicasCommitted)]
pub fn replicas_committed(env: Env, table: Option<String>, document: &str, now_ms: f64) -> String {
    let mut t = ReplicaTable::from_json(table.as_deref());
    let regions = match read_path(&env) {
        Some(path) if path.source == StateSource::Replicas => path.regions.clone(),
        _ => Vec::new(),
    };
    let epoch = RolloutState::from_json(document).map_or(0, |s| s.epoch);
    let push = t.committed(&regions, epoch, now_ms as u64);
    lines(&t.to_json(), push.iter().copied())
}

/// The replica of `region` answered a push: it holds `epoch`.
#[wasm_bindgen(js_name = replicaConfirmed)]
pub fn replica_confirmed(table: Option<String>, region: &str, epoch: f64, now_ms: f64) -> String {
    let mut t = ReplicaTable::from_json(table.as_deref());
    t.confirmed(region, epoch as u64, now_ms as u64);
    t.to_json()
}

/// A push to `region`'s replica failed (`error`): retried by the alarm.
#[wasm_bindgen(js_name = replicaFailed)]
pub fn replica_failed(table: Option<String>, region: &str, error: &str, now_ms: f64) -> String {
    let mut t = ReplicaTable::from_json(table.as_deref());
    t.failed(region, error, now_ms as u64);
    t.to_json()
}

/// The alarm rang: `<table>\n<region>…`, the regions whose push is
/// retried now.
#[wasm_bindgen(js_name = replicasDue)]
pub fn replicas_due(table: Option<String>, now_ms: f64) -> String {
    let mut t = ReplicaTable::from_json(table.as_deref());
    let due = t.due(now_ms as u64);
    lines(&t.to_json(), due.iter().map(String::as_str))
}

/// Inside a replica: the epoch of `pushed` (from the rollout object's
/// `incarnation`) when the replica holding a document of `held_epoch`
/// (from `held_incarnation`; -1: it holds nothing) takes it, else -1
/// (`propagation::accepts`).
#[wasm_bindgen(js_name = replicaTakes)]
pub fn replica_takes(
    held_epoch: f64,
    held_incarnation: f64,
    pushed: &str,
    incarnation: f64,
) -> f64 {
    let held = (held_epoch >= 0.0).then_some((held_epoch as u64, held_incarnation.max(0.0) as u64));
    propagation::accepts(held, pushed, incarnation as u64).map_or(-1.0, |epoch| epoch as f64)
}

/// Inside a replica last in touch with the primary at `synced_ms` (-1:
/// never): whether it pulls the primary's document now.
#[wasm_bindgen(js_name = replicaResyncDue)]
pub fn replica_resync_due(synced_ms: f64, now_ms: f64) -> bool {
    let synced = (synced_ms >= 0.0).then_some(synced_ms as u64);
    propagation::resync_due(synced, now_ms as u64)
}

/// Inside a replica last in touch with the primary at `synced_ms` (-1:
/// never): whether it answers a read with its copy without pulling first
/// (`propagation::fresh_enough`).
#[wasm_bindgen(js_name = replicaFresh)]
pub fn replica_fresh(synced_ms: f64, now_ms: f64) -> bool {
    let synced = (synced_ms >= 0.0).then_some(synced_ms as u64);
    propagation::fresh_enough(synced, now_ms as u64)
}

fn lines<'a>(first: &str, rest: impl Iterator<Item = &'a str>) -> String {
    let mut out = first.to_string();
    for line in rest {
        out.push('\n');
        out.push_str(line);
    }
    out
}

/// The object's health record with an edge's report merged in, or `None`
/// to keep the stored one (an unreadable report). The record follows the
/// epoch of the object's `document`.
#[wasm_bindgen(js_name = objectHealth)]
pub fn object_health(stored: Option<String>, report: &str, document: &str) -> Option<String> {
    object::merge_health_into(stored.as_deref(), report, document).map(|r| r.to_json())
}

/// How long the object waits before writing its newest document to KV
/// (-1: KV is up to date): writes of one key stay a second apart, and
/// changes in between are coalesced into one write of the newest.
#[wasm_bindgen(js_name = objectPublishDelay)]
pub fn object_publish_delay(
    committed: f64,
    published: f64,
    last_publish_ms: f64,
    now_ms: f64,
) -> f64 {
    let known = |v: f64| (v >= 0.0).then_some(v as u64);
    match object::publish_delay(
        committed as u64,
        known(published),
        known(last_publish_ms),
        now_ms as u64,
    ) {
        Some(delay) => delay as f64,
        None => -1.0,
    }
}

fn config(env: &Env) -> Result<Rc<EdgeConfig>, ConfigError> {
    if let Some(cfg) = CONFIG.with(|c| c.borrow().clone()) {
        return cfg;
    }
    // Vars and secrets (`.dev.vars` locally) both appear as strings on `env`.
    let lookup = |name: &str| env.var(name).ok().map(|v| v.to_string());
    let cfg = EdgeConfig::from_lookup(lookup)
        .and_then(|cfg| cfg.check_platform("Cloudflare Workers").map(|()| cfg))
        .and_then(|cfg| {
            let path = ReadPath::from_lookup(lookup)?;
            READ_PATH.with(|p| *p.borrow_mut() = Some(Rc::new(path)));
            Ok(cfg)
        })
        .map(Rc::new);
    if let Err(e) = &cfg {
        // The 502 says only that the configuration is invalid.
        worker::console_error!("greenlight: configuration error: {}", e.0);
    }
    CONFIG.with(|c| *c.borrow_mut() = Some(cfg.clone()));
    cfg
}

/// Caches `loaded` as this isolate's state, unless the isolate has seen a
/// newer epoch: a KV read that started before an admin change (or a KV
/// location that has not caught up) must not move the isolate back. The
/// newer state stays, and counts as freshly read.
fn remember_newer(loaded: Rc<LoadedState>, now_ms: u64) -> Rc<LoadedState> {
    remember(loaded, false, now_ms)
}

/// [`remember_newer`]; with `fallback`, the state kept (the read one or a
/// newer one already held) is flagged degraded.
fn remember(loaded: Rc<LoadedState>, fallback: bool, now_ms: u64) -> Rc<LoadedState> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let keep = match s.as_ref() {
            Some((mine, _)) if !object::replaces(Some(mine), &loaded) => mine.clone(),
            _ => loaded,
        };
        let keep = if fallback && !keep.degraded {
            Rc::new(LoadedState {
                state: keep.state.clone(),
                degraded: true,
            })
        } else {
            keep
        };
        *s = Some((keep.clone(), now_ms));
        keep
    })
}

/// The state document as the shell read it, or to be read from KV.
enum StateRead {
    Read(String),
    Kv,
}

/// How long a location keeps KV's answer (s): KV's shortest `cacheTtl`.
/// KV's default of 60 s would add a minute to every change a location
/// reads from KV.
const KV_CACHE_TTL_S: u64 = 30;

/// Reads the state document; a KV failure or a bad document degrades to the
/// last good state instead of failing the request.
async fn load_state(
    env: &Env,
    cfg: &EdgeConfig,
    now_ms: u64,
    read: StateRead,
    fallback: bool,
) -> Rc<LoadedState> {
    // Whatever is cached is the last good state: a degraded entry already
    // holds the previous good state (or the initial one) it fell back to, so
    // repeated bad reads keep serving it rather than dropping to the initial.
    // Taken before the read: a change this isolate learns of meanwhile (an
    // admin answer) is newer than the read and is kept by `remember`.
    let last_good = STATE.with(|s| s.borrow().as_ref().map(|(l, _)| l.clone()));
    let document = match (read, env.kv(KV_BINDING)) {
        (StateRead::Read(doc), _) => Ok((!doc.is_empty()).then_some(doc)),
        (StateRead::Kv, Ok(kv)) => kv
            .get(STATE_KEY)
            .cache_ttl(KV_CACHE_TTL_S)
            .text()
            .await
            .map_err(|_| ()),
        (StateRead::Kv, Err(_)) => Err(()),
    };
    // A refresh reads the same document again and again between changes:
    // a good document's state depends on its text alone, so it is parsed
    // once, not on every refresh.
    if let Ok(Some(doc)) = &document {
        let same = PARSED.with_borrow(|p| {
            p.as_ref()
                .filter(|(text, _)| text == doc)
                .map(|(_, loaded)| loaded.clone())
        });
        if let Some(loaded) = same {
            return remember(loaded, fallback, now_ms);
        }
    }
    let loaded = match edge::load_state(
        document.as_ref().map(Option::as_deref).map_err(|_| ()),
        last_good.as_ref().map(|l| &l.state),
        &cfg.default_salt,
    ) {
        StateLoad::Ready(loaded) => loaded,
        StateLoad::NeedsBackup => edge::state_from_backup(
            read_key(env, LAST_GOOD_KEY).await.as_deref(),
            &cfg.default_salt,
        ),
    };
    let loaded = Rc::new(loaded);
    if let (Ok(Some(doc)), false) = (document, loaded.degraded) {
        PARSED.set(Some((doc, loaded.clone())));
    }
    remember(loaded, fallback, now_ms)
}

/// Fetches the remote JWKS into this isolate's cache (`greenlight_common::jwks`
/// decides what to keep); a failure keeps the last good set.
async fn fetch_jwks(url: &str, now_ms: u64) {
    JWKS.with_borrow_mut(|c| c.attempting(now_ms));
    let answer = match fetch_text(url).await {
        Ok(answer) => Some(answer),
        Err(e) => {
            worker::console_error!("greenlight: JWKS fetch failed: {e}");
            None
        }
    };
    let answer = answer
        .as_ref()
        .map(|(status, cc, body)| (*status, cc.as_deref(), body.as_slice()));
    JWKS.with_borrow_mut(|c| *c = std::mem::take(c).after_fetch(answer, now_ms));
}

async fn fetch_text(url: &str) -> worker::Result<(u16, Option<String>, Vec<u8>)> {
    // The runtime parses the URL: a Rust URL parser (and its IDNA tables)
    // would only add to the Worker's size.
    let request = worker::Request::new(url, worker::Method::Get)?;
    let mut resp = worker::Fetch::Request(request).send().await?;
    let cache_control = resp.headers().get("cache-control")?;
    Ok((resp.status_code(), cache_control, resp.bytes().await?))
}

/// The configuration verifying with this isolate's remote JWKS.
fn remote_jwks_config(cfg: &Rc<EdgeConfig>, now_ms: u64) -> Rc<EdgeConfig> {
    JWKS.with_borrow(|cache| {
        let document = cache.usable(now_ms);
        // Rebuilt when the set changes or goes too stale (no set: 0).
        let version = document.map_or(0, |_| cache.fetched_at_ms);
        JWKS_CONFIG.with_borrow_mut(|built| match built {
            Some((v, c)) if *v == version => c.clone(),
            _ => {
                let c = Rc::new(cfg.with_remote_jwks(document));
                *built = Some((version, c.clone()));
                c
            }
        })
    })
}

async fn read_key(env: &Env, key: &str) -> Option<String> {
    env.kv(KV_BINDING)
        .ok()?
        .get(key)
        .text()
        .await
        .ok()
        .flatten()
}

/// Unix time in ms (`Date.now()`: one call, no `Date` object).
fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}
