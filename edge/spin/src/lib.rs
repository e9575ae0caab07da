//! greenlight's edge function as a Spin HTTP component (WASIp2, spin-sdk 5).
//!
//! A thin adapter: all decisions live in [`greenlight_common::edge`]. This
//! file reads Spin variables and the Spin key-value store, turns the incoming
//! request into a [`RequestHead`], and carries out what `edge::begin` says:
//! replies, admin calls (read the state, change it with a key-value
//! compare-and-swap) and forwards to the chosen origin over outbound HTTP,
//! with request and response bodies pumped through as streams, never
//! buffered (except a small body kept for a retry).
//!
//! Nothing on a request path panics: configuration and origin failures become
//! 502 problem documents, store failures during admin calls 503.

mod pump;
mod store;

use greenlight_common::admin::MAX_ADMIN_BODY;
use greenlight_common::config_error::ConfigError;
use greenlight_common::edge::kv;
use greenlight_common::edge::{
    self, AfterAttempt, AttemptFailure, Begin, BodyMode, EdgeConfig, Forward, Reply, SpinHead,
    UrlParts, CONFIG_VARIABLES, REWRITE_READ_LIMIT,
};
use greenlight_common::failover::{unreachable_class, MAX_REPLAY_BODY};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, RequestOptions, Scheme,
};
use std::time::{SystemTime, UNIX_EPOCH};

#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let now_ms = now_ms();
    let answer = match serve(req, now_ms).await {
        Ok(delivery) => return delivery.send(out.into_inner()).await,
        Err(answer) => answer,
    };
    send_reply(out.into_inner(), &answer.reply).await;
    if let Some(body) = answer.unread {
        body.drain().await;
    }
}

/// An answer the edge makes itself, and the client's body it did not read
/// (read and dropped after the answer: `pump::ClientBody::drain`).
struct EdgeAnswer {
    reply: Reply,
    unread: Option<pump::ClientBody>,
}

impl From<Reply> for EdgeAnswer {
    fn from(reply: Reply) -> EdgeAnswer {
        EdgeAnswer {
            reply,
            unread: None,
        }
    }
}

/// Serves one request up to the origin's response head; `Err` is an
/// answer the edge made itself.
async fn serve(req: IncomingRequest, now_ms: u64) -> Result<Delivery, EdgeAnswer> {
    let cfg = config().map_err(|e| Reply::misconfigured(&e))?;
    let scheme = match req.scheme() {
        Some(Scheme::Http) => Some("http"),
        Some(Scheme::Https) => Some("https"),
        _ => None,
    };
    let raw = SpinHead::read(
        method_name(&req.method()),
        req.path_with_query(),
        &req.headers().entries(),
        || req.authority(),
        scheme,
    );
    let head = raw.head();
    let method = raw.method();
    let store = store::Kv::open();
    let cfg = match (&cfg.jwks_url, edge::jwks_key_id(&head)) {
        (Some(url), Some(kid)) => {
            store::remote_jwks_config(store.as_ref().ok(), &cfg, url, kid.as_deref(), now_ms).await
        }
        _ => cfg,
    };
    let loaded = kv::read_state(store.as_ref().ok(), None, &cfg);
    // The first request after a plan's deadline makes its change.
    let loaded = match kv::plan_check(store.as_ref().ok(), &cfg, &loaded.state, now_ms) {
        Some(state) => edge::LoadedState {
            state,
            degraded: false,
        },
        None => loaded,
    };
    let mut tables = kv::StoreTables {
        store: store.as_ref().ok(),
        cfg: &cfg,
    };
    let random = random_u64(now_ms);
    match edge::begin(&cfg, &loaded, &head, now_ms, random, &mut tables) {
        // Refused or answered by the edge itself: at once, whatever the
        // body; what the client still sends is read and dropped after.
        Begin::Reply(reply) => Err(EdgeAnswer {
            reply,
            unread: client_body(&req),
        }),
        Begin::Admin(call) => {
            let unread = client_body(&req);
            let body = match &unread {
                Some(body) => body
                    .read(MAX_ADMIN_BODY + 1)
                    .await
                    .map_err(|_| Reply::incomplete_body())?,
                None => Vec::new(),
            };
            let store = store
                .as_ref()
                .map_err(|e| Reply::store_unavailable(format!("opening the store: {e}")))?;
            let reply = kv::commit_admin(store, &cfg, &call, method, &body, now_ms).await;
            Err(EdgeAnswer { reply, unread })
        }
        Begin::Forward(fwd, mode) => {
            let length = raw.content_length.clone();
            let body = match mode {
                // Known to be at most MAX_REPLAY_BODY: kept to send twice.
                BodyMode::Buffer => RequestBody::Buffered(
                    read_whole(&req, MAX_REPLAY_BODY as usize, length.as_deref()).await?,
                ),
                BodyMode::Stream => RequestBody::Stream(req.consume().ok()),
                BodyMode::Empty => RequestBody::Buffered(Vec::new()),
                // A model route's body: read whole (one byte over the limit
                // tells it is too large), rewritten per attempt.
                BodyMode::Rewrite => RequestBody::Rewrite(
                    read_whole(&req, REWRITE_READ_LIMIT as usize, length.as_deref()).await?,
                ),
            };
            let has_body = has_body(length.as_deref(), raw.transfer_encoding, method);
            let request = OutboundRequest {
                method: req.method(),
                content_length: length,
                has_body,
            };
            forward_with_failover(&request, body, fwd, &mut tables)
                .await
                .map_err(EdgeAnswer::from)
        }
    }
}

/// The client's body, when it has one the edge can read.
fn client_body(req: &IncomingRequest) -> Option<pump::ClientBody> {
    req.consume().ok().and_then(pump::ClientBody::open)
}

/// Reads a body the edge keeps before forwarding (up to `limit` bytes).
/// A body that broke off, went silent, or ended short of its announced
/// length is the client's failure: the request is answered 400 and never
/// reaches (nor counts against) an origin.
async fn read_whole(
    req: &IncomingRequest,
    limit: usize,
    content_length: Option<&str>,
) -> Result<Vec<u8>, Reply> {
    let bytes = match client_body(req) {
        Some(body) => body
            .read(limit)
            .await
            .map_err(|_| Reply::incomplete_body())?,
        None => Vec::new(),
    };
    if edge::body_complete(content_length, bytes.len(), limit) {
        Ok(bytes)
    } else {
        Err(Reply::incomplete_body())
    }
}

/// What a forwarded request carries: the client's stream (sent once), a
/// small body kept in memory so a retry can send it again, or a model
/// route's body, rewritten for each attempt's color.
enum RequestBody {
    Stream(Option<IncomingBody>),
    Buffered(Vec<u8>),
    Rewrite(Vec<u8>),
}

/// What every attempt at an origin sends besides its URL and headers.
struct OutboundRequest {
    method: Method,
    content_length: Option<String>,
    has_body: bool,
}

/// Forwards to the chosen origin; on failure, retries once on the other live
/// color when the core says so, and otherwise answers 502/503.
async fn forward_with_failover(
    request: &OutboundRequest,
    mut body: RequestBody,
    mut fwd: Forward,
    tables: &mut kv::StoreTables<'_, store::Kv>,
) -> Result<Delivery, Reply> {
    loop {
        let started = now_ms();
        let attempt_body = match &mut body {
            RequestBody::Stream(raw) => AttemptBody::Stream(raw.take()),
            RequestBody::Buffered(bytes) => AttemptBody::Bytes(bytes.clone()),
            // A body the edge cannot rewrite is refused before any origin
            // sees it.
            RequestBody::Rewrite(raw) => AttemptBody::Rewritten(fwd.model_body(raw)?),
        };
        let (result, resp) = match forward(request, attempt_body, &fwd).await {
            Ok(resp) => (Ok(resp.status()), Some(resp)),
            Err(failure) => (Err(failure), None),
        };
        let outcome = fwd.attempt_outcome(result)?;
        let now = now_ms();
        match edge::attempted(&fwd, &outcome, now.saturating_sub(started), now, tables) {
            AfterAttempt::Deliver => {
                let resp = resp.ok_or_else(|| Reply::origin_failed("origin response lost"))?;
                return Ok(Delivery::new(resp, &request.method, &fwd));
            }
            AfterAttempt::Retry(next) => fwd = *next,
            AfterAttempt::Reply(reply) => return Err(reply),
        }
    }
}

/// The body of one attempt.
enum AttemptBody {
    Stream(Option<IncomingBody>),
    Bytes(Vec<u8>),
    /// A model route's body with this attempt's model.
    Rewritten(Vec<u8>),
}

/// Sends one attempt to the origin and waits for its response head. The
/// timeout covers the time spent waiting on the origin (connecting, taking
/// the body, sending the response headers; see [`pump::OriginTimer`]); the
/// body then streams at the origin's pace.
async fn forward(
    request: &OutboundRequest,
    body: AttemptBody,
    fwd: &Forward,
) -> Result<IncomingResponse, AttemptFailure> {
    let unreachable = |detail: String| {
        // The client gets a class of failure; the details name the origin.
        eprintln!("greenlight: {} origin: {detail}", fwd.decision.color);
        AttemptFailure::Unreachable(unreachable_class(&detail).to_string())
    };
    let target = UrlParts::parse(&fwd.url)
        .ok_or_else(|| unreachable(format!("bad origin URL {:?}", fwd.url)))?;
    let scheme = if target.scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    // A model route's rewritten body has its own length.
    let length = match &body {
        AttemptBody::Rewritten(bytes) => Some(bytes.len().to_string()),
        _ => request.content_length.clone(),
    };
    let entries = fwd.origin_fields(length.as_deref());
    let fields = Fields::from_list(&entries).map_err(|e| {
        AttemptFailure::NotSent(Reply::headers_not_forwardable(format!(
            "the runtime refused the request's headers: {e:?}"
        )))
    })?;
    let out = OutgoingRequest::new(fields);
    let set =
        |ok: Result<(), ()>, what: &str| ok.map_err(|()| unreachable(format!("invalid {what}")));
    set(out.set_method(&request.method), "method")?;
    set(out.set_scheme(Some(&scheme)), "scheme")?;
    set(out.set_authority(Some(target.authority)), "authority")?;
    set(out.set_path_with_query(Some(target.path_and_query)), "path")?;
    // Connecting is bounded by the host too; the wait for the response
    // head by `timer` alone (the host's first-byte timeout would count a
    // slow upload as the origin's silence).
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(fwd.timeout_ms.saturating_mul(1_000_000)));
    let rewritten = matches!(body, AttemptBody::Rewritten(_));
    let out_body = if request.has_body || rewritten {
        out.body().ok()
    } else {
        None
    };
    let pending = outgoing_handler::handle(out, Some(options)).map_err(|e| classify(e, fwd))?;
    let timer = pump::OriginTimer::new(fwd.timeout_ms);
    timer.run();
    let send_body = async {
        let Some(out_body) = out_body else {
            return;
        };
        let sent = match body {
            AttemptBody::Stream(Some(incoming)) => {
                pump::body_to_body(incoming, &out_body, &timer).await
            }
            AttemptBody::Stream(None) => Ok(()),
            AttemptBody::Bytes(bytes) | AttemptBody::Rewritten(bytes) => {
                pump::write_bytes(&out_body, &bytes).await
            }
        };
        // An unfinished body tells the origin the request was cut short.
        if sent.is_ok() {
            let _ = OutgoingBody::finish(out_body, None);
        }
    };
    let head = async {
        let resp = pump::response(pending).await;
        timer.stop();
        resp
    };
    let exchange = async {
        let (_, resp) = futures::join!(send_body, head);
        resp
    };
    let exchange = std::pin::pin!(exchange);
    let expired = std::pin::pin!(timer.expired());
    match futures::future::select(exchange, expired).await {
        futures::future::Either::Left((resp, _)) => resp.map_err(|e| classify(e, fwd)),
        // Dropping the exchange drops the request and its body.
        futures::future::Either::Right(_) if timer.fired_for_client() => {
            Err(AttemptFailure::ClientGone)
        }
        futures::future::Either::Right(_) => Err(AttemptFailure::TimedOut),
    }
}

/// An attempt's error: the class for the client, the details for the log.
fn classify(e: ErrorCode, fwd: &Forward) -> AttemptFailure {
    match e {
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => AttemptFailure::TimedOut,
        e => {
            let detail = format!("{e:?}");
            eprintln!(
                "greenlight: {} origin {}: {detail}",
                fwd.decision.color,
                edge::origin_of(&fwd.url)
            );
            AttemptFailure::Unreachable(unreachable_class(&detail).to_string())
        }
    }
}

/// An origin's answer, ready to be streamed to the client.
struct Delivery {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    resp: IncomingResponse,
    /// No body goes to the client (HEAD, 204, 304).
    bodyless: bool,
}

impl Delivery {
    /// The origin's status and the headers the client gets
    /// ([`Forward::client_response_headers`], on bytes: header values that
    /// are not UTF-8 pass unchanged).
    fn new(resp: IncomingResponse, method: &Method, fwd: &Forward) -> Delivery {
        let status = resp.status();
        let headers = fwd.client_response_headers(&resp.headers().entries());
        // A body-less answer (HEAD, 204, 304) keeps the origin's
        // `content-length` and sends no body stream (see `send`).
        let bodyless =
            matches!(method, Method::Head) || status == 204 || status == 304 || status < 200;
        Delivery {
            status,
            headers,
            resp,
            bodyless,
        }
    }

    /// Sends the head, then pumps the origin's body (and trailers) to the
    /// client. A body cut short by the origin is cut short for the client
    /// too (the outgoing body is not finished), never completed silently.
    async fn send(self, out: spin_sdk::wit::wasi::http0_2_0::types::ResponseOutparam) {
        let fields = match Fields::from_list(&self.headers) {
            Ok(fields) => fields,
            Err(e) => {
                let reply =
                    Reply::origin_failed(format!("origin response headers not accepted: {e:?}"));
                return send_reply(out, &reply).await;
            }
        };
        let response = OutgoingResponse::new(fields);
        if response.set_status_code(self.status).is_err() {
            let reply = Reply::origin_failed(format!("origin sent status {}", self.status));
            return send_reply(out, &reply).await;
        }
        if self.bodyless {
            // Without a body stream the host checks no length against it,
            // so the origin's `content-length` goes out as it was sent.
            spin_sdk::wit::wasi::http0_2_0::types::ResponseOutparam::set(out, Ok(response));
            drop(self.resp);
            return;
        }
        let body = response.body();
        spin_sdk::wit::wasi::http0_2_0::types::ResponseOutparam::set(out, Ok(response));
        let (Ok(out_body), Ok(in_body)) = (body, self.resp.consume()) else {
            return;
        };
        if pump::body_to_body_with_trailers(in_body, out_body)
            .await
            .is_err()
        {
            eprintln!("greenlight: origin response body ended early");
        }
        drop(self.resp);
    }
}

/// Sends a reply the edge made itself.
async fn send_reply(out: spin_sdk::wit::wasi::http0_2_0::types::ResponseOutparam, reply: &Reply) {
    let entries = reply.fields();
    let fields = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(reply.status);
    let body = response.body();
    spin_sdk::wit::wasi::http0_2_0::types::ResponseOutparam::set(out, Ok(response));
    if let Ok(body) = body {
        if pump::write_bytes(&body, reply.body.as_bytes())
            .await
            .is_ok()
        {
            let _ = OutgoingBody::finish(body, None);
        }
    }
}

/// The method as the core reads it.
fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(m) => m.clone(),
    }
}

/// Whether the client sends a body: a length other than 0, chunked framing,
/// or a method that usually carries one.
fn has_body(content_length: Option<&str>, transfer_encoding: bool, method: &str) -> bool {
    match content_length {
        Some(len) => len.trim() != "0",
        None => transfer_encoding || !(method == "GET" || method == "HEAD"),
    }
}

/// The configuration, from Spin variables (lower-cased names). Spin runs a
/// WASIp2 component in a fresh instance per request, so there is no
/// instance to cache it in; reading the variables is a local host call.
fn config() -> Result<EdgeConfig, ConfigError> {
    let cfg = read_config().and_then(|cfg| cfg.check_platform("Spin").map(|()| cfg));
    if let Err(e) = &cfg {
        // The 502 says only that the configuration is invalid.
        eprintln!("greenlight: configuration error: {}", e.0);
    }
    cfg
}

fn read_config() -> Result<EdgeConfig, ConfigError> {
    let mut values = Vec::with_capacity(CONFIG_VARIABLES.len());
    for name in CONFIG_VARIABLES {
        let lower = name.to_lowercase();
        match spin_sdk::variables::get(&lower) {
            Ok(v) => values.push((*name, v)),
            Err(spin_sdk::variables::Error::Undefined(_)) => {}
            Err(e) => return Err(ConfigError(format!("reading Spin variable {lower}: {e}"))),
        }
    }
    EdgeConfig::from_lookup(|name| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| (name == "STATE_CACHE_TTL_MS").then(|| "0".into()))
    })
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
