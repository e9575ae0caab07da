//! greenlight on Cloudflare Workers: the Rust half of the adapter.
//!
//! The request's I/O runs in the JavaScript shell (`shell.js`, the Worker's
//! entry module); every decision is made here, in synchronous calls that
//! translate between the shell's strings (`greenlight_common::shell`) and
//! `greenlight_common::edge`. Only store access is async Rust: loading
//! configuration and state, the admin API, and writing the health record.
//! Why the split: `greenlight_common::shell`.

use greenlight_common::auth::ConfigError;
use greenlight_common::edge::{
    self, BodyPlan, EdgeConfig, EdgePlan, Forward, LoadedState, Next, Reply,
};
use greenlight_common::failover::Outcome;
use greenlight_common::health::{self, HealthRecord, HEALTH_KEY};
use greenlight_common::http::{LAST_GOOD_KEY, STATE_KEY};
use greenlight_common::ratelimit::{Limiter, RetryAfter};
use greenlight_common::{shell, RolloutState};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen_futures::JsFuture;
use worker::Env;

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
    static STATE: RefCell<Option<(Rc<LoadedState>, u64)>> = const { RefCell::new(None) };
    /// Rate-limit buckets of this isolate: the limit holds per isolate, and
    /// a busy PoP runs several (see README, "Guarantees and limits").
    static LIMITER: RefCell<Option<Limiter>> = const { RefCell::new(None) };
    /// Origin failures this isolate counted, written back merged with the
    /// stored record: writes after the response can race each other.
    static HEALTH: RefCell<Option<HealthRecord>> = const { RefCell::new(None) };
    /// Forwards waiting for their attempt's result, by attempt id.
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

/// Callers one isolate keeps buckets for before it forgets idle ones.
const MAX_LIMITED_CALLERS: usize = 10_000;

/// Forwards in flight before the oldest is forgotten: an attempt whose
/// client went away never reports back, nor is reported finished.
const MAX_PENDING: usize = 10_000;

/// A forward between its `forward` step and the attempt's result.
struct PendingForward {
    fwd: Forward,
    method: String,
    body: BodyPlan,
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
    let loaded = if fresh {
        STATE.with(|s| s.borrow().as_ref().map(|(loaded, _)| loaded.clone()))
    } else {
        cached_state(&cfg, now_ms)
    };
    let Some(loaded) = loaded else {
        return shell::LOAD.into();
    };
    let request = shell::ShellRequest::parse(head);
    let method = request.method;
    let head = request.head(CLIENT_ADDR_HEADER);
    let random = (u64::from(random_hi) << 32) | u64::from(random_lo);
    match edge::plan(&cfg, &loaded, &head, now_ms, random) {
        EdgePlan::Reply(reply) => shell::reply(&reply),
        EdgePlan::Admin(_) => shell::ADMIN.into(),
        EdgePlan::Forward(mut fwd) => {
            if let Err(wait) = take_token(&cfg, &fwd, now_ms) {
                return shell::reply(&Reply::rate_limited(wait));
            }
            // fetch() refuses a body on GET/HEAD: workerd drops one, so
            // for these there is nothing to send.
            let body = if matches!(method, "GET" | "HEAD") {
                BodyPlan::Empty
            } else {
                fwd.plan_body(
                    head.header("content-length"),
                    head.header("transfer-encoding").is_some(),
                )
            };
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
    let persist = result.outcome.failed() && count_failure(&pending.fwd, &result.outcome, now_ms);
    let step = match pending.fwd.after_attempt(&result.outcome, elapsed_ms) {
        Next::Deliver => match (&result.outcome, result.header_lines) {
            (Outcome::Answered(status), Some(lines)) => {
                shell::deliver(*status, lines, &pending.fwd)
            }
            _ => shell::reply(&Reply::origin_failed("origin response lost")),
        },
        Next::Retry(next) => {
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
        Next::Reply(reply) => shell::reply(&reply),
    };
    if persist {
        format!("{}{step}", shell::PERSIST_PREFIX)
    } else {
        step
    }
}

/// Reads configuration (once per isolate) and the rollout state into this
/// isolate's memory; the shell then begins the request again.
#[wasm_bindgen(js_name = loadEdge)]
pub async fn load_edge(env: Env) {
    if let Ok(cfg) = config(&env) {
        load_state(&env, &cfg, now_ms()).await;
    }
}

/// The admin API (`/__greenlight/…`): authorised, applied against a fresh
/// read of the store (optimistic concurrency must compare against the latest
/// written epoch), stored, answered.
#[wasm_bindgen]
pub async fn admin(head: String, req: web_sys::Request, env: Env) -> String {
    shell::reply(&admin_reply(&head, &req, &env).await)
}

/// `head` is the request head the shell already read (see `beginRequest`);
/// `req` is only read for its body.
async fn admin_reply(head: &str, req: &web_sys::Request, env: &Env) -> Reply {
    let cfg = match config(env) {
        Ok(cfg) => cfg,
        Err(e) => return Reply::misconfigured(&e),
    };
    let now_ms = now_ms();
    let fresh = load_state(env, &cfg, now_ms).await;
    let request = shell::ShellRequest::parse(head);
    let method = request.method;
    let head = request.head(CLIENT_ADDR_HEADER);
    let call = match edge::plan(&cfg, &fresh, &head, now_ms, 0) {
        EdgePlan::Admin(call) => call,
        EdgePlan::Reply(reply) => return reply,
        // The shell only sends admin paths here.
        EdgePlan::Forward(_) => return Reply::origin_failed("not an admin request"),
    };
    let body = read_body(req).await.unwrap_or_default();
    let health = if call.wants_health() {
        read_key(env, HEALTH_KEY).await
    } else {
        None
    };
    let outcome = edge::run_admin(
        &cfg,
        &call,
        method,
        &body,
        &fresh,
        health.as_deref(),
        now_ms,
    );
    if let Some(next) = &outcome.new_state {
        if let Err(e) = store_state(env, next).await {
            return Reply::store_unavailable(e.to_string());
        }
        remember(
            Rc::new(LoadedState {
                state: next.clone(),
                degraded: false,
            }),
            now_ms,
        );
    }
    Reply::from_admin(&outcome)
}

/// Writes this isolate's health record merged with the stored one (the
/// larger count wins), so racing writes of one isolate never lose its
/// failures; across isolates it is a lower bound, enough to cross a
/// threshold, which is all the count is for. Run after the response
/// (`waitUntil`): a failing origin must not also slow the reply down.
#[wasm_bindgen(js_name = persistHealth)]
pub async fn persist_health(env: Env) {
    let Some(mine) = HEALTH.with(|h| h.borrow().clone()) else {
        return;
    };
    let stored = HealthRecord::from_json(read_key(&env, HEALTH_KEY).await.as_deref());
    let merged = health::merge(stored, &mine);
    if let Ok(kv) = env.kv(KV_BINDING) {
        if let Ok(put) = kv.put(HEALTH_KEY, merged.to_json()) {
            let _ = put.execute().await;
        }
    }
}

/// Counts a failed attempt in this isolate's record; true when there is a
/// record for the shell to persist.
fn count_failure(fwd: &Forward, outcome: &Outcome, now_ms: u64) -> bool {
    let Some(Ok(cfg)) = CONFIG.with(|c| c.borrow().clone()) else {
        return false;
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
    true
}

/// The whole request body.
async fn read_body(req: &web_sys::Request) -> Result<Vec<u8>, wasm_bindgen::JsValue> {
    let buffer = JsFuture::from(req.array_buffer()?).await?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

async fn store_state(env: &Env, state: &RolloutState) -> worker::Result<()> {
    let kv = env.kv(KV_BINDING)?;
    let json = state.to_json();
    kv.put(STATE_KEY, json.clone())?.execute().await?;
    // The backup is best effort: the change itself is stored.
    if let Ok(put) = kv.put(LAST_GOOD_KEY, json) {
        let _ = put.execute().await;
    }
    Ok(())
}

fn config(env: &Env) -> Result<Rc<EdgeConfig>, ConfigError> {
    if let Some(cfg) = CONFIG.with(|c| c.borrow().clone()) {
        return cfg;
    }
    // Vars and secrets (`.dev.vars` locally) both appear as strings on `env`.
    let cfg = EdgeConfig::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()))
        .and_then(|cfg| cfg.check_platform("Cloudflare Workers").map(|()| cfg))
        .map(Rc::new);
    if let Err(e) = &cfg {
        // The 502 says only that the configuration is invalid.
        worker::console_error!("greenlight: configuration error: {}", e.0);
    }
    CONFIG.with(|c| *c.borrow_mut() = Some(cfg.clone()));
    cfg
}

fn cached_state(cfg: &EdgeConfig, now_ms: u64) -> Option<Rc<LoadedState>> {
    STATE.with(|s| {
        s.borrow()
            .as_ref()
            .filter(|(_, at)| now_ms.saturating_sub(*at) < cfg.state_cache_ttl_ms)
            .map(|(loaded, _)| loaded.clone())
    })
}

fn remember(loaded: Rc<LoadedState>, now_ms: u64) {
    STATE.with(|s| *s.borrow_mut() = Some((loaded, now_ms)));
}

/// Reads the state document; a KV failure or a bad document degrades to the
/// last good state instead of failing the request.
async fn load_state(env: &Env, cfg: &EdgeConfig, now_ms: u64) -> Rc<LoadedState> {
    // Whatever is cached is the last good state: a degraded entry already
    // holds the previous good state (or the initial one) it fell back to, so
    // repeated bad reads keep serving it rather than dropping to the initial.
    let last_good: Option<RolloutState> =
        STATE.with(|s| s.borrow().as_ref().map(|(l, _)| l.state.clone()));
    let document = match env.kv(KV_BINDING) {
        Ok(kv) => kv.get(STATE_KEY).text().await.map_err(|_| ()),
        Err(_) => Err(()),
    };
    let loaded = match document {
        Ok(doc) => edge::load_state(doc.as_deref(), last_good.as_ref(), &cfg.default_salt),
        Err(()) => edge::fallback_state(last_good.as_ref(), &cfg.default_salt),
    };
    // A new isolate has no last good state of its own: use the backup copy
    // the admin API writes rather than the initial state.
    let loaded = if loaded.degraded && last_good.is_none() {
        edge::fallback_from_backup(
            read_key(env, LAST_GOOD_KEY).await.as_deref(),
            &cfg.default_salt,
        )
    } else {
        loaded
    };
    let loaded = Rc::new(loaded);
    remember(loaded.clone(), now_ms);
    loaded
}

/// Takes a token from the caller's bucket in this isolate.
fn take_token(cfg: &EdgeConfig, fwd: &Forward, now_ms: u64) -> Result<(), RetryAfter> {
    let (Some(limit), Some(key)) = (cfg.rate_limit, &fwd.rate_key) else {
        return Ok(());
    };
    LIMITER.with_borrow_mut(|l| {
        l.get_or_insert_with(|| Limiter::new(limit, MAX_LIMITED_CALLERS))
            .take(key, now_ms)
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
