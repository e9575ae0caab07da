//! greenlight's edge function as a Spin HTTP component.
//!
//! A thin adapter: all decisions live in [`greenlight_common::edge`]. This
//! file reads Spin variables and the Spin key-value store, turns the incoming
//! request into a [`RequestHead`], and carries out the [`EdgePlan`]:
//! replies, admin calls (read state fresh, write it back) and forwards to the
//! chosen origin over outbound HTTP, with request and response bodies passed
//! through as streams, never buffered.
//!
//! Nothing on a request path panics: configuration and origin failures become
//! 502 problem documents, store failures during admin calls 503.

use greenlight_common::admin::MAX_ADMIN_BODY;
use greenlight_common::auth::ConfigError;
use greenlight_common::edge::{
    self, BodyPlan, EdgeConfig, EdgePlan, Forward, LoadedState, Next, Reply, RequestHead,
    CONFIG_VARIABLES,
};
use greenlight_common::failover::{Outcome, MAX_REPLAY_BODY};
use greenlight_common::health::HEALTH_KEY;
use greenlight_common::http::{connection_tokens, LAST_GOOD_KEY, STATE_KEY};
use greenlight_common::ratelimit;
use greenlight_common::RolloutState;
use http_body_util::BodyExt;
use spin_sdk::http::{HeaderMap, IntoResponse, Method, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;
use spin_sdk::wasip3::http::{client, types};
use spin_sdk::wasip3::{wit_future, wit_stream};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Label of the key-value store declared in `spin.toml`.
const KV_STORE: &str = "default";

#[http_service]
async fn handle(req: Request) -> Result<types::Response, types::ErrorCode> {
    let now_ms = now_ms();
    let reply = match serve(req, now_ms).await {
        Ok(resp) => return Ok(resp),
        Err(reply) => reply,
    };
    respond(&reply)
}

/// Serves one request; `Err` is a reply the edge produced itself.
async fn serve(req: Request, now_ms: u64) -> Result<types::Response, Reply> {
    let cfg = config(now_ms).await.map_err(|e| Reply::misconfigured(&e))?;
    let (parts, mut body) = req.into_parts();
    let headers = header_pairs(&parts.headers);
    // Spin sets `spin-client-addr` itself (ip:port); the port is dropped so
    // one caller is one bucket.
    let client_addr = parts
        .headers
        .get("spin-client-addr")
        .and_then(|v| v.to_str().ok())
        .map(strip_port);
    let head = RequestHead {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &headers,
        client_addr,
    };
    let loaded = cached_state(&cfg, now_ms).await;
    match edge::plan(&cfg, &loaded, &head, now_ms, random_u64(now_ms)) {
        EdgePlan::Reply(reply) => Err(reply),
        EdgePlan::Admin(call) => {
            let body = read_limited(&mut body, MAX_ADMIN_BODY + 1).await;
            let store = store()
                .await
                .map_err(|e| Reply::store_unavailable(format!("opening the store: {e}")))?;
            let document = store
                .get(STATE_KEY)
                .await
                .map_err(|e| Reply::store_unavailable(format!("reading the state: {e}")))?;
            let fresh = with_backup(load_document(document.as_deref(), &cfg), &store, &cfg).await;
            let health = if call.wants_health() {
                store.get(HEALTH_KEY).await.ok().flatten()
            } else {
                None
            };
            let health = health.as_deref().and_then(|h| std::str::from_utf8(h).ok());
            let outcome = edge::run_admin(&cfg, &call, head.method, &body, &fresh, health, now_ms);
            if let Some(next) = &outcome.new_state {
                let json = next.to_json();
                store
                    .set(STATE_KEY, json.as_bytes())
                    .await
                    .map_err(|e| Reply::store_unavailable(format!("writing the state: {e}")))?;
                // The backup is best effort: the change itself is stored.
                let _ = store.set(LAST_GOOD_KEY, json.as_bytes()).await;
                remember_state(
                    LoadedState {
                        state: next.clone(),
                        degraded: false,
                    },
                    now_ms,
                );
            } else {
                remember_state(fresh, now_ms);
            }
            Err(Reply::from_admin(&outcome))
        }
        EdgePlan::Forward(mut fwd) => {
            take_token(&cfg, &fwd, now_ms).await?;
            let length = parts
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok());
            let chunked = parts.headers.contains_key("transfer-encoding");
            let body = match fwd.plan_body(length, chunked) {
                // Known to be at most MAX_REPLAY_BODY: kept to send twice.
                BodyPlan::Buffer => {
                    RequestBody::Buffered(read_limited(&mut body, MAX_REPLAY_BODY as usize).await)
                }
                // The raw WASI request still owns the body stream: hand that
                // stream to the outgoing request untouched.
                BodyPlan::Stream | BodyPlan::Empty => RequestBody::Stream(body.take_unstarted()),
            };
            forward_with_failover(&parts.method, &parts.headers, body, fwd, &cfg).await
        }
    }
}

/// What a forwarded request carries: the client's stream (sent once) or a
/// small body kept in memory so a retry can send it again.
enum RequestBody {
    Stream(Option<types::Request>),
    Buffered(Vec<u8>),
}

/// Forwards to the chosen origin; on failure, retries once on the other live
/// color when the core says so, and otherwise answers 502/503.
async fn forward_with_failover(
    method: &Method,
    in_headers: &HeaderMap,
    mut body: RequestBody,
    mut fwd: Forward,
    cfg: &EdgeConfig,
) -> Result<types::Response, Reply> {
    loop {
        let started = now_ms();
        let raw = match &mut body {
            RequestBody::Stream(raw) => Body::Stream(raw.take()),
            RequestBody::Buffered(bytes) => Body::Bytes(bytes.clone()),
        };
        let (outcome, resp) = match forward(method, in_headers, raw, &fwd).await {
            Ok(resp) => (Outcome::Answered(resp.get_status_code()), Some(resp)),
            Err(Failure::TimedOut) => (
                Outcome::TimedOut {
                    after_ms: fwd.timeout_ms,
                },
                None,
            ),
            Err(Failure::Unreachable(detail)) => (Outcome::Unreachable(detail), None),
        };
        let now = now_ms();
        if outcome.failed() {
            count_failure(cfg, &fwd, &outcome, now).await;
        }
        match fwd.after_attempt(&outcome, now.saturating_sub(started)) {
            Next::Deliver => {
                return resp.ok_or_else(|| Reply::origin_failed("origin response lost"))
            }
            Next::Retry(next) => fwd = *next,
            Next::Reply(reply) => return Err(reply),
        }
    }
}

/// Takes a token from the caller's bucket, kept in key-value: a caller's
/// requests reach many Spin instances (each serves up to 128 requests, then
/// a new one starts empty), so instance memory cannot hold it. Not atomic:
/// concurrent requests of one caller may each see the same count (the limit
/// can be exceeded by the concurrency, never tightened). A store failure lets
/// the request through: the limiter protects origins, it must not take the
/// edge down with the store.
async fn take_token(cfg: &EdgeConfig, fwd: &Forward, now_ms: u64) -> Result<(), Reply> {
    let (Some(limit), Some(key)) = (cfg.rate_limit, &fwd.rate_key) else {
        return Ok(());
    };
    let Ok(store) = store().await else {
        return Ok(());
    };
    let kv_key = ratelimit::storage_key(key);
    let stored = store.get(&kv_key).await.ok().flatten();
    let (verdict, bucket) = ratelimit::take_stored(stored.as_deref(), limit, now_ms);
    let _ = store.set(&kv_key, bucket.to_json().as_bytes()).await;
    verdict.map_err(Reply::rate_limited)
}

/// Counts a failed attempt in the health document (read-modify-write:
/// concurrent failures may be counted once, enough to cross a threshold).
async fn count_failure(cfg: &EdgeConfig, fwd: &Forward, outcome: &Outcome, now_ms: u64) {
    let Ok(store) = store().await else {
        return;
    };
    let stored = store.get(HEALTH_KEY).await.ok().flatten();
    let stored = stored.as_deref().and_then(|s| std::str::from_utf8(s).ok());
    let rec = edge::record_failure(
        cfg,
        stored,
        fwd.decision.epoch,
        fwd.decision.color,
        outcome,
        now_ms,
    );
    let _ = store.set(HEALTH_KEY, rec.to_json().as_bytes()).await;
}

fn strip_port(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        // "[::1]:80" → "[::1]", "1.2.3.4:80" → "1.2.3.4"; a bare IPv6
        // address has more than one colon and no brackets: keep it.
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (host.starts_with('[') || !host.contains(':')) =>
        {
            host
        }
        _ => addr,
    }
}

/// Sends the request to the origin and returns its response, with
/// hop-by-hop headers dropped and the plan's headers added.
/// The body of one attempt.
enum Body {
    Stream(Option<types::Request>),
    Bytes(Vec<u8>),
}

/// Why an attempt got no response.
enum Failure {
    TimedOut,
    Unreachable(String),
}

async fn forward(
    method: &Method,
    in_headers: &HeaderMap,
    body: Body,
    fwd: &Forward,
) -> Result<types::Response, Failure> {
    let unreachable = Failure::Unreachable;
    let uri: spin_sdk::http::Uri = fwd
        .url
        .parse()
        .map_err(|e| unreachable(format!("bad origin URL {:?}: {e}", fwd.url)))?;
    let mut entries: Vec<(String, Vec<u8>)> = fwd
        .request_headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    // `content-length` is hop-by-hop for the core (platforms compute it);
    // here it frames the body we pass through unchanged, so keep it.
    let content_length = in_headers
        .get("content-length")
        .map(|v| v.as_bytes().to_vec());
    let has_body = match &content_length {
        Some(len) => len.as_slice() != b"0",
        None => {
            in_headers.contains_key("transfer-encoding")
                || !(method == Method::GET || method == Method::HEAD)
        }
    };
    if let Some(len) = content_length {
        entries.push(("content-length".into(), len));
    }
    let fields = types::Fields::from_list(&entries)
        .map_err(|e| unreachable(format!("request headers not accepted: {e:?}")))?;
    let (contents, trailers) = match body {
        Body::Stream(Some(raw)) if has_body => {
            let (_done, done_rx) = wit_future::new::<Result<(), types::ErrorCode>>(|| Ok(()));
            let (contents, trailers) = types::Request::consume_body(raw, done_rx);
            (Some(contents), trailers)
        }
        Body::Bytes(bytes) if has_body => {
            let (mut tx, rx) = wit_stream::new::<u8>();
            spin_sdk::wasip3::spawn(async move {
                // The origin hanging up early is its failure, seen on send.
                let _unwritten = tx.write_all(bytes).await;
            });
            (Some(rx), no_trailers())
        }
        _ => (None, no_trailers()),
    };
    // The timeout covers connecting and waiting for the response headers;
    // the body then streams at the origin's pace.
    let options = types::RequestOptions::new();
    let timeout_ns = Some(fwd.timeout_ms.saturating_mul(1_000_000));
    let _ = options.set_connect_timeout(timeout_ns);
    let _ = options.set_first_byte_timeout(timeout_ns);
    let (out, _sent) = types::Request::new(fields, contents, trailers, Some(options));
    let set = |ok: Result<(), ()>, what: &str| {
        ok.map_err(|()| Failure::Unreachable(format!("invalid {what}")))
    };
    set(out.set_method(&method.into()), "method")?;
    set(
        out.set_scheme(uri.scheme().map(Into::into).as_ref()),
        "scheme",
    )?;
    set(
        out.set_authority(uri.authority().map(|a| a.as_str())),
        "authority",
    )?;
    set(
        out.set_path_with_query(uri.path_and_query().map(|p| p.as_str())),
        "path",
    )?;

    let resp = client::send(out).await.map_err(|e| match e {
        types::ErrorCode::ConnectionTimeout | types::ErrorCode::ConnectionReadTimeout => {
            Failure::TimedOut
        }
        e => Failure::Unreachable(format!("{}: {e:?}", origin_of(&fwd.url))),
    })?;
    let status = resp.get_status_code();
    let origin_headers = resp.get_headers().copy_all();
    let connection = origin_headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    let tokens = connection_tokens(connection.as_deref());
    // A body-less response (HEAD, 204, 304) keeps no length: the host would
    // check the empty stream against it.
    let bodyless = method == Method::HEAD || status == 204 || status == 304 || status < 200;
    let mut out_headers: Vec<(String, Vec<u8>)> = origin_headers
        .into_iter()
        .filter(|(k, _)| {
            edge::keep_origin_response_header(k, &tokens, fwd)
                || (!bodyless && k.eq_ignore_ascii_case("content-length"))
        })
        .collect();
    out_headers.extend(
        fwd.response_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec())),
    );
    let fields = types::Fields::from_list(&out_headers)
        .map_err(|e| unreachable(format!("origin response headers not accepted: {e:?}")))?;
    let (_done, done_rx) = wit_future::new::<Result<(), types::ErrorCode>>(|| Ok(()));
    let (contents, trailers) = types::Response::consume_body(resp, done_rx);
    let (response, _sent) = types::Response::new(fields, Some(contents), trailers);
    response
        .set_status_code(status)
        .map_err(|()| unreachable(format!("origin sent status {status}")))?;
    Ok(response)
}

/// A trailers future that resolves to "no trailers".
fn no_trailers(
) -> spin_sdk::wit_bindgen::FutureReader<Result<Option<types::Trailers>, types::ErrorCode>> {
    let (_tx, rx) = wit_future::new(|| Ok(None));
    rx
}

/// `scheme://host:port` of a URL, for error messages (never the path).
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Turns a core [`Reply`] into a response.
fn respond(reply: &Reply) -> Result<types::Response, types::ErrorCode> {
    let mut resp = spin_sdk::http::Response::new(reply.body.clone());
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (k, v) in &reply.headers {
        if let (Ok(k), Ok(v)) = (
            spin_sdk::http::HeaderName::from_bytes(k.as_bytes()),
            spin_sdk::http::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    resp.into_response()
}

/// Request headers as the core wants them: lower-case names, repeated
/// headers joined with ", ".
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.keys_len());
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect::<Vec<_>>()
            .join(", ");
        out.push((name.as_str().to_string(), joined));
    }
    out
}

/// Reads at most `limit` bytes of a body (the admin API's bound).
async fn read_limited(
    body: &mut spin_sdk::wasip3::http_compat::IncomingRequestBody,
    limit: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    out
}

// ---- configuration and state, cached per instance ----------------------
//
// Spin reuses a WASIp3 instance for up to 128 requests (up to 16 at once) and
// drops it when idle, so this cache lives across requests, as in a Worker
// isolate; a new instance starts with it empty.

#[derive(Default)]
struct Cache {
    config: Option<(Rc<EdgeConfig>, u64)>,
    state: Option<(LoadedState, u64)>,
    last_good: Option<RolloutState>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    /// The key-value store, opened once per instance: Spin reuses an
    /// instance for many requests, and every one of them reads the state.
    static STORE: RefCell<Option<Rc<Store>>> = const { RefCell::new(None) };
}

/// The instance's handle on the key-value store (opened on first use;
/// a failed open is not cached).
async fn store() -> Result<Rc<Store>, spin_sdk::key_value::Error> {
    if let Some(store) = STORE.with_borrow(|s| s.clone()) {
        return Ok(store);
    }
    let store = Rc::new(Store::open(KV_STORE).await?);
    STORE.with_borrow_mut(|s| *s = Some(store.clone()));
    Ok(store)
}

/// The configuration, from Spin variables (lower-cased names), cached for
/// [`CONFIG_CACHE_MS`]. Errors are not cached.
async fn config(now_ms: u64) -> Result<Rc<EdgeConfig>, ConfigError> {
    let cached = CACHE.with_borrow(|c| c.config.clone());
    if let Some((cfg, at)) = cached {
        if now_ms.saturating_sub(at) < CONFIG_CACHE_MS {
            return Ok(cfg);
        }
    }
    let mut values = Vec::with_capacity(CONFIG_VARIABLES.len());
    for name in CONFIG_VARIABLES {
        match spin_sdk::variables::get(name.to_lowercase()).await {
            Ok(v) => values.push((*name, v)),
            Err(spin_sdk::variables::Error::Undefined(_)) => {}
            Err(e) => {
                return Err(ConfigError(format!(
                    "reading Spin variable {}: {e}",
                    name.to_lowercase()
                )))
            }
        }
    }
    let cfg = Rc::new(EdgeConfig::from_lookup(|name| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| (name == "STATE_CACHE_TTL_MS").then(|| SPIN_STATE_CACHE_TTL_MS.into()))
    })?);
    CACHE.with_borrow_mut(|c| c.config = Some((cfg.clone(), now_ms)));
    Ok(cfg)
}

/// How long an instance keeps the configuration it read from variables:
/// they change with a deploy (which brings new instances), so this only
/// bounds how late a rotated secret from a dynamic provider is seen.
const CONFIG_CACHE_MS: u64 = 1_000;

/// `state_cache_ttl_ms` when the variable is not set: 0, the state is read on
/// every request. Spin's key-value store is local to the app (SQLite by
/// default, no network round trip), and a reused instance serving from a
/// cache would let a request after a promote, landing on another instance,
/// see the old state. Raise it to trade that for fewer store reads.
const SPIN_STATE_CACHE_TTL_MS: &str = "0";

/// The rollout state for routing, cached for `state_cache_ttl_ms`. A store
/// failure serves the last good state, flagged degraded.
async fn cached_state(cfg: &EdgeConfig, now_ms: u64) -> LoadedState {
    let cached = CACHE.with_borrow(|c| c.state.clone());
    if let Some((loaded, at)) = cached {
        if now_ms.saturating_sub(at) < cfg.state_cache_ttl_ms {
            return loaded;
        }
    }
    let loaded = match store().await {
        Ok(store) => match store.get(STATE_KEY).await {
            Ok(doc) => with_backup(load_document(doc.as_deref(), cfg), &store, cfg).await,
            Err(_) => {
                CACHE.with_borrow(|c| edge::fallback_state(c.last_good.as_ref(), &cfg.default_salt))
            }
        },
        Err(_) => {
            CACHE.with_borrow(|c| edge::fallback_state(c.last_good.as_ref(), &cfg.default_salt))
        }
    };
    remember_state(loaded.clone(), now_ms);
    loaded
}

/// A degraded load with no last good state in this instance (a new instance
/// starts empty: Spin reuses one for up to 128 requests, then starts another)
/// falls back to the backup copy the admin API writes, not to the initial
/// state.
async fn with_backup(loaded: LoadedState, store: &Store, cfg: &EdgeConfig) -> LoadedState {
    if !loaded.degraded || CACHE.with_borrow(|c| c.last_good.is_some()) {
        return loaded;
    }
    let backup = store.get(LAST_GOOD_KEY).await.ok().flatten();
    let backup = backup.as_deref().and_then(|b| std::str::from_utf8(b).ok());
    edge::fallback_from_backup(backup, &cfg.default_salt)
}

/// Parses a stored document (bytes that are not UTF-8 count as unreadable).
fn load_document(doc: Option<&[u8]>, cfg: &EdgeConfig) -> LoadedState {
    let text = doc.map(|d| std::str::from_utf8(d).unwrap_or("\u{0}not utf-8"));
    CACHE.with_borrow(|c| edge::load_state(text, c.last_good.as_ref(), &cfg.default_salt))
}

fn remember_state(loaded: LoadedState, now_ms: u64) {
    CACHE.with_borrow_mut(|c| {
        if !loaded.degraded {
            c.last_good = Some(loaded.state.clone());
        }
        c.state = Some((loaded, now_ms));
    });
}

// ---- time and randomness ------------------------------------------------

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Fresh randomness per request (wasi:random); if that ever fails, a
/// time-derived value still keeps anonymous ids distinct.
fn random_u64(now_ms: u64) -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        (now_ms << 20 ^ nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    })
}
