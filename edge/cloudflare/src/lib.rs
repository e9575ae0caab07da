//! greenlight on Cloudflare Workers: translates between `worker` types and
//! `greenlight_common::edge`. All decisions are made in `common`; this file
//! only reads configuration and KV, and carries the plan out.

use greenlight_common::auth::ConfigError;
use greenlight_common::edge::{
    self, EdgeConfig, EdgePlan, Forward, LoadedState, Reply, RequestHead,
};
use greenlight_common::http::{connection_tokens, STATE_KEY};
use greenlight_common::RolloutState;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use worker::{
    event, Context, Env, Fetch, Headers, Method, Request, RequestInit, Response, ResponseBody,
};

/// The KV namespace binding that holds the rollout state document.
const KV_BINDING: &str = "GREENLIGHT_STATE";

// Per-isolate caches. An isolate serves requests one at a time on one thread,
// so thread-locals are the isolate's memory.
thread_local! {
    static CONFIG: RefCell<Option<Rc<EdgeConfig>>> = const { RefCell::new(None) };
    static STATE: RefCell<Option<(Rc<LoadedState>, u64)>> = const { RefCell::new(None) };
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let cfg = match config(&env) {
        Ok(cfg) => cfg,
        Err(e) => return respond(&Reply::misconfigured(&e)),
    };
    let now_ms = worker::Date::now().as_millis();
    let (loaded, just_read) = match cached_state(&cfg, now_ms) {
        Some(s) => (s, false),
        None => (load_state(&env, &cfg, now_ms).await, true),
    };
    let url = req.url()?;
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let method = req.method().to_string();
    let head = RequestHead {
        method: &method,
        path: url.path(),
        query: url.query(),
        headers: &headers,
    };
    match edge::plan(&cfg, &loaded, &head, now_ms, random_u64()) {
        EdgePlan::Reply(reply) => respond(&reply),
        EdgePlan::Forward(fwd) => forward(&req, &method, fwd).await,
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
            let outcome = edge::run_admin(&call, &method, &body, &fresh, now_ms);
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
    env.kv(KV_BINDING)?
        .put(STATE_KEY, state.to_json())?
        .execute()
        .await?;
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
    let loaded = Rc::new(loaded);
    remember(loaded.clone(), now_ms);
    loaded
}

async fn forward(req: &Request, method: &str, fwd: Forward) -> worker::Result<Response> {
    let headers = Headers::new();
    for (k, v) in &fwd.request_headers {
        headers.append(k, v)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(method.to_string()))
        .with_headers(headers);
    if !matches!(method, "GET" | "HEAD") {
        // Stream the body through untouched.
        init.with_body(req.inner().body().map(Into::into));
    }
    let origin_req = Request::new_with_init(&fwd.url, &init)?;
    let resp = match Fetch::Request(origin_req).send().await {
        Ok(r) => r,
        Err(e) => {
            return respond(&Reply::origin_unreachable(format!(
                "{}: {e}",
                fwd.decision.color
            )))
        }
    };
    let status = resp.status_code();
    // Headers of a fetched response are immutable: build a new set.
    let out = Headers::new();
    let tokens = connection_tokens(resp.headers().get("connection").ok().flatten().as_deref());
    for (k, v) in resp.headers().entries() {
        if edge::keep_origin_response_header(&k, &tokens, &fwd) {
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

/// 64 random bits from the runtime's CSPRNG (`crypto.getRandomValues`).
fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
        .ok()
        .and_then(|c| c.dyn_into::<web_sys::Crypto>().ok());
    match crypto.map(|c| c.get_random_values_with_u8_array(&mut buf)) {
        Some(Ok(_)) => u64::from_le_bytes(buf),
        // No crypto object cannot happen on workerd; fall back to Math.random.
        _ => (js_sys::Math::random() * u64::MAX as f64) as u64,
    }
}
