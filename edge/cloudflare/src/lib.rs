//! greenlight on Cloudflare Workers: translates between `worker` types and
//! `greenlight_common::edge`. All decisions are made in `common`; this file
//! only reads configuration and KV, and carries the plan out.

use greenlight_common::auth::ConfigError;
use greenlight_common::edge::{
    self, BodyPlan, EdgeConfig, EdgePlan, Forward, LoadedState, Next, Reply, RequestHead,
};
use greenlight_common::failover::Outcome;
use greenlight_common::health::{self, HealthRecord, HEALTH_KEY};
use greenlight_common::http::{connection_tokens, LAST_GOOD_KEY, STATE_KEY};
use greenlight_common::ratelimit::Limiter;
use greenlight_common::RolloutState;
use std::cell::RefCell;
use std::rc::Rc;
use worker::{
    event, AbortSignal, Context, Env, Fetch, Headers, Method, Request, RequestInit, Response,
    ResponseBody,
};

/// The KV namespace binding that holds the rollout state document.
const KV_BINDING: &str = "GREENLIGHT_STATE";

// Per-isolate caches. An isolate serves requests one at a time on one thread,
// so thread-locals are the isolate's memory.
thread_local! {
    static CONFIG: RefCell<Option<Rc<EdgeConfig>>> = const { RefCell::new(None) };
    static STATE: RefCell<Option<(Rc<LoadedState>, u64)>> = const { RefCell::new(None) };
    /// Rate-limit buckets of this isolate: the limit holds per isolate, and
    /// a busy PoP runs several (see README, "Guarantees and limits").
    static LIMITER: RefCell<Option<Limiter>> = const { RefCell::new(None) };
    /// Origin failures this isolate counted, written back merged with the
    /// stored record: writes after the response can race each other.
    static HEALTH: RefCell<Option<HealthRecord>> = const { RefCell::new(None) };
}

/// Callers one isolate keeps buckets for before it forgets idle ones.
const MAX_LIMITED_CALLERS: usize = 10_000;

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let cfg = match config(&env) {
        Ok(cfg) => cfg,
        Err(e) => return respond(&Reply::misconfigured(&e)),
    };
    let now_ms = now_ms();
    let (loaded, just_read) = match cached_state(&cfg, now_ms) {
        Some(s) => (s, false),
        None => (load_state(&env, &cfg, now_ms).await, true),
    };
    let url = req.url()?;
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let method = req.method().to_string();
    // Set by Cloudflare itself, never taken from the client.
    let client_addr = header_value(&headers, "cf-connecting-ip");
    let head = RequestHead {
        method: &method,
        path: url.path(),
        query: url.query(),
        headers: &headers,
        client_addr,
    };
    match edge::plan(&cfg, &loaded, &head, now_ms, random_u64()) {
        EdgePlan::Reply(reply) => respond(&reply),
        EdgePlan::Forward(mut fwd) => {
            if let Err(wait) = take_token(&cfg, &fwd, now_ms) {
                return respond(&Reply::rate_limited(wait));
            }
            // fetch() refuses a body on GET/HEAD: workerd drops one, so
            // for these there is nothing to send.
            let framing = if matches!(method.as_str(), "GET" | "HEAD") {
                (None, false)
            } else {
                (
                    header_value(&headers, "content-length"),
                    header_value(&headers, "transfer-encoding").is_some(),
                )
            };
            let body = match fwd.plan_body(framing.0, framing.1) {
                BodyPlan::Buffer => Body::Bytes(req.bytes().await?),
                BodyPlan::Stream => Body::Stream,
                BodyPlan::Empty => Body::Empty,
            };
            forward(&req, &method, body, fwd, &env, &ctx).await
        }
        EdgePlan::Admin(call) => {
            // Admin calls always work from a fresh read of the store, never
            // the cache: optimistic concurrency must compare against the
            // latest written epoch.
            let fresh = if just_read {
                loaded
            } else {
                load_state(&env, &cfg, now_ms).await
            };
            let body = req.bytes().await.unwrap_or_default();
            let health = if call.wants_health() {
                read_key(&env, HEALTH_KEY).await
            } else {
                None
            };
            let outcome = edge::run_admin(
                &cfg,
                &call,
                &method,
                &body,
                &fresh,
                health.as_deref(),
                now_ms,
            );
            if let Some(next) = &outcome.new_state {
                if let Err(e) = store_state(&env, next).await {
                    return respond(&Reply::store_unavailable(e.to_string()));
                }
                remember(
                    Rc::new(LoadedState {
                        state: next.clone(),
                        degraded: false,
                    }),
                    now_ms,
                );
            }
            respond(&Reply::from_admin(&outcome))
        }
    }
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
        return Ok(cfg);
    }
    // Vars and secrets (`.dev.vars` locally) both appear as strings on `env`.
    let cfg = EdgeConfig::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()))?;
    let cfg = Rc::new(cfg);
    CONFIG.with(|c| *c.borrow_mut() = Some(cfg.clone()));
    Ok(cfg)
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

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Takes a token from the caller's bucket in this isolate.
fn take_token(
    cfg: &EdgeConfig,
    fwd: &Forward,
    now_ms: u64,
) -> Result<(), greenlight_common::ratelimit::RetryAfter> {
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

/// Forwards to the chosen origin; on failure, retries once on the other live
/// color when the core says so, and otherwise answers 502/503.
/// The body of a forwarded request.
enum Body {
    Empty,
    /// Kept in memory so a retry can send it again.
    Bytes(Vec<u8>),
    /// The client's stream, passed through untouched (sent once).
    Stream,
}

async fn forward(
    req: &Request,
    method: &str,
    body: Body,
    mut fwd: Forward,
    env: &Env,
    ctx: &Context,
) -> worker::Result<Response> {
    loop {
        let started = now_ms();
        let (outcome, resp) = attempt(req, method, &body, &fwd).await?;
        let now = now_ms();
        if outcome.failed() {
            count_failure(env, ctx, &fwd, &outcome, now);
        }
        match fwd.after_attempt(&outcome, now.saturating_sub(started)) {
            Next::Deliver => match resp {
                Some(resp) => return tag(resp, &fwd),
                None => return respond(&Reply::origin_failed("origin response lost")),
            },
            Next::Retry(next) => fwd = *next,
            Next::Reply(reply) => return respond(&reply),
        }
    }
}

/// One request to one origin, bounded by the attempt's timeout (until the
/// response headers; the body then streams through).
async fn attempt(
    req: &Request,
    method: &str,
    body: &Body,
    fwd: &Forward,
) -> worker::Result<(Outcome, Option<Response>)> {
    let headers = Headers::new();
    for (k, v) in &fwd.request_headers {
        headers.append(k, v)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(method.to_string()))
        .with_headers(headers);
    match body {
        Body::Bytes(bytes) => {
            init.with_body(Some(js_sys::Uint8Array::from(bytes.as_slice()).into()));
        }
        Body::Stream => {
            init.with_body(req.inner().body().map(Into::into));
        }
        Body::Empty => {}
    }
    let origin_req = Request::new_with_init(&fwd.url, &init)?;
    // `AbortSignal.timeout`: the runtime aborts the fetch itself, with no
    // timer or closure on the Rust side. It bounds the wait for the
    // response headers; once they are here the body streams on.
    let timeout_ms = u32::try_from(fwd.timeout_ms).unwrap_or(u32::MAX);
    let signal = AbortSignal::from(web_sys::AbortSignal::timeout_with_u32(timeout_ms));
    Ok(
        match Fetch::Request(origin_req).send_with_signal(&signal).await {
            Ok(resp) => (Outcome::Answered(resp.status_code()), Some(resp)),
            Err(_) if signal.aborted() => (
                Outcome::TimedOut {
                    after_ms: fwd.timeout_ms,
                },
                None,
            ),
            Err(e) => (Outcome::Unreachable(e.to_string()), None),
        },
    )
}

/// Counts a failed attempt in this isolate's record at once, and writes it
/// to the health document after the response is sent (`waitUntil`): a
/// failing origin must not also slow the reply down. The write merges with
/// what is stored (the larger count wins), so racing writes of one isolate
/// never lose its failures; across isolates it is a lower bound, enough to
/// cross a threshold, which is all the count is for.
fn count_failure(env: &Env, ctx: &Context, fwd: &Forward, outcome: &Outcome, now_ms: u64) {
    let Some(cfg) = CONFIG.with(|c| c.borrow().clone()) else {
        return;
    };
    let mine = HEALTH.with_borrow_mut(|h| {
        let next = edge::count_failure(
            &cfg,
            h.take(),
            fwd.decision.epoch,
            fwd.decision.color,
            outcome,
            now_ms,
        );
        *h = Some(next.clone());
        next
    });
    let env = env.clone();
    ctx.wait_until(async move {
        let stored = HealthRecord::from_json(read_key(&env, HEALTH_KEY).await.as_deref());
        let merged = health::merge(stored, &mine);
        if let Ok(kv) = env.kv(KV_BINDING) {
            if let Ok(put) = kv.put(HEALTH_KEY, merged.to_json()) {
                let _ = put.execute().await;
            }
        }
    });
}

/// The origin's response with hop-by-hop headers dropped and the plan's
/// `x-greenlight-*` headers added; the body streams through.
fn tag(resp: Response, fwd: &Forward) -> worker::Result<Response> {
    let status = resp.status_code();
    // Headers of a fetched response are immutable: build a new set.
    let out = Headers::new();
    let tokens = connection_tokens(resp.headers().get("connection").ok().flatten().as_deref());
    for (k, v) in resp.headers().entries() {
        if edge::keep_origin_response_header(&k, &tokens, fwd) {
            out.append(&k, &v)?;
        }
    }
    for (k, v) in &fwd.response_headers {
        out.append(k, v)?;
    }
    let (_, body) = resp.into_parts();
    Ok(Response::builder()
        .with_status(status)
        .with_headers(out)
        .body(body))
}

fn respond(reply: &Reply) -> worker::Result<Response> {
    let headers = Headers::new();
    for (k, v) in &reply.headers {
        headers.append(k, v)?;
    }
    Ok(Response::builder()
        .with_status(reply.status)
        .with_headers(headers)
        .body(ResponseBody::Body(reply.body.clone().into_bytes())))
}

/// Unix time in ms (`Date.now()`: one call, no `Date` object).
fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// 64 random bits from the runtime's CSPRNG (`crypto.getRandomValues`,
/// through getrandom, which looks the crypto object up once per isolate).
fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    match getrandom_02::getrandom(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        // Cannot happen on workerd; Math.random still keeps ids distinct.
        Err(_) => (js_sys::Math::random() * u64::MAX as f64) as u64,
    }
}
