//! greenlight's edge function as a WASIp3 Spin component (spin-sdk 6,
//! `wasi:http@0.3.0-rc-2026-03-15`, which Spin 4.0.x implements). Spin
//! reuses such an instance for many requests, several at once, so the
//! instance keeps its configuration, state cache and tables between them
//! (`instance`), as a Worker isolate does.
//!
//! A thin adapter: all decisions live in [`greenlight_common::edge`]. This
//! file turns the incoming request into a [`RequestHead`] and carries out
//! what `edge::begin` says: replies, admin calls (`edge::kv` over the
//! key-value store) and forwards to the chosen origin. An upload is pumped
//! to the origin under the origin timer; the origin's answer is handed to
//! the client as the stream it is.
//!
//! Nothing on a request path panics: configuration and origin failures become
//! 502 problem documents, store failures during admin calls 503.

mod body;
mod instance;
mod store;

use body::{ClientBody, OriginTimer};
use futures::future::{join, select, Either};
use greenlight_common::admin::MAX_ADMIN_BODY;
use greenlight_common::edge::kv;
use greenlight_common::edge::{
    self, AfterAttempt, AttemptFailure, Begin, BodyMode, Forward, Reply, SpinHead, UrlParts,
    REWRITE_READ_LIMIT,
};
use greenlight_common::failover::{unreachable_class, MAX_REPLAY_BODY};
use spin_sdk::wasip3::http::client;
use spin_sdk::wasip3::http::types::{
    ErrorCode, Fields, Method, Request, RequestOptions, Response, Scheme,
};
use spin_sdk::wasip3::{wit_future, wit_stream};
use std::pin::pin;
use std::time::{SystemTime, UNIX_EPOCH};

/// The component's `wasi:http/handler` export (what spin-sdk's
/// `#[http_service]` writes, on the raw `wasi:http` types: the bodies stay
/// the streams they are).
struct Component;
spin_sdk::wasip3::http::service::export!(Component);

impl spin_sdk::wasip3::exports::http::handler::Guest for Component {
    async fn handle(req: Request) -> Result<Response, ErrorCode> {
        Ok(match serve(req, now_ms()).await {
            Ok(resp) => resp,
            Err(answer) => {
                if let Some(body) = answer.unread {
                    body.drain();
                }
                reply_response(&answer.reply)
            }
        })
    }
}

/// An answer the edge makes itself, and the client's body it did not read
/// (read and dropped after the answer: [`ClientBody::drain`]).
struct EdgeAnswer {
    reply: Reply,
    unread: Option<ClientBody>,
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
async fn serve(req: Request, now_ms: u64) -> Result<Response, EdgeAnswer> {
    let cfg = instance::config()
        .await
        .map_err(|e| Reply::misconfigured(&e))?;
    let method = req.get_method();
    let scheme = match req.get_scheme() {
        Some(Scheme::Http) => Some("http"),
        Some(Scheme::Https) => Some("https"),
        _ => None,
    };
    let raw = SpinHead::read(
        method_name(&method),
        req.get_path_with_query(),
        &req.get_headers().copy_all(),
        || req.get_authority(),
        scheme,
    );
    let head = raw.head();
    let kv = store::Kv::open();
    let kv = kv.as_deref().ok();
    let cfg = match (&cfg.jwks_url, edge::jwks_key_id(&head)) {
        (Some(url), Some(kid)) => std::rc::Rc::new(
            kv::remote_jwks_config(kv, &cfg, kid.as_deref(), now_ms, || fetch_jwks(url)).await,
        ),
        _ => cfg,
    };
    let mut loaded = instance::state(kv, &cfg, now_ms);
    // The first request after a plan's deadline makes its change.
    if let Some(state) = kv::plan_check(kv, &cfg, &loaded.state, now_ms) {
        loaded = instance::changed_to(state, now_ms);
    }
    let mut tables = kv::StoreTables {
        store: kv,
        cfg: &cfg,
    };
    let random = random_u64();
    let begun = edge::begin(&cfg, &loaded, &head, now_ms, random, &mut tables);
    let length = raw.content_length.clone();
    // The client's body is opened only where it is read or drained.
    let client = || ClientBody::open(req);
    match begun {
        // Refused or answered by the edge itself: at once, whatever the
        // body; what the client still sends is read and dropped after.
        Begin::Reply(reply) => Err(EdgeAnswer {
            reply,
            unread: Some(client()),
        }),
        Begin::Admin(call) => {
            let mut client = client();
            let body = client
                .read(MAX_ADMIN_BODY + 1)
                .await
                .map_err(|_| Reply::incomplete_body())?;
            let Some(kv) = kv else {
                return Err(Reply::store_unavailable("opening the store failed").into());
            };
            let reply = kv::commit_admin(kv, &cfg, &call, raw.method(), &body, now_ms).await;
            instance::state_changed();
            Err(EdgeAnswer {
                reply,
                unread: Some(client),
            })
        }
        Begin::Forward(fwd, mode) => {
            let body = match mode {
                // Known to be at most MAX_REPLAY_BODY: kept to send twice.
                BodyMode::Buffer => RequestBody::Buffered(
                    read_whole(client(), MAX_REPLAY_BODY as usize, length.as_deref()).await?,
                ),
                BodyMode::Stream => RequestBody::Stream(Some(client())),
                BodyMode::Empty => RequestBody::Empty,
                // A model route's body: read whole (one byte over the limit
                // tells it is too large), rewritten per attempt.
                BodyMode::Rewrite => RequestBody::Rewrite(
                    read_whole(client(), REWRITE_READ_LIMIT as usize, length.as_deref()).await?,
                ),
            };
            let request = OutboundRequest {
                method,
                content_length: length,
            };
            forward_with_failover(&request, body, fwd, &mut tables)
                .await
                .map_err(EdgeAnswer::from)
        }
    }
}

/// Reads a body the edge keeps before forwarding (up to `limit` bytes).
/// A body that broke off, went silent, or ended short of its announced
/// length is the client's failure: the request is answered 400 and never
/// reaches (nor counts against) an origin.
async fn read_whole(
    client: ClientBody,
    limit: usize,
    content_length: Option<&str>,
) -> Result<Vec<u8>, Reply> {
    let bytes = client
        .read_whole(limit)
        .await
        .map_err(|_| Reply::incomplete_body())?;
    if edge::body_complete(content_length, bytes.len(), limit) {
        Ok(bytes)
    } else {
        Err(Reply::incomplete_body())
    }
}

/// What a forwarded request carries: the client's stream (sent once), a
/// small body kept in memory so a retry can send it again, a model route's
/// body, rewritten for each attempt's color, or nothing.
enum RequestBody {
    Stream(Option<ClientBody>),
    Buffered(Vec<u8>),
    Rewrite(Vec<u8>),
    Empty,
}

/// What every attempt at an origin sends besides its URL and headers.
struct OutboundRequest {
    method: Method,
    content_length: Option<String>,
}

/// Forwards to the chosen origin; on failure, retries once on the other live
/// color when the core says so, and otherwise answers 502/503.
async fn forward_with_failover(
    request: &OutboundRequest,
    mut body: RequestBody,
    mut fwd: Forward,
    tables: &mut kv::StoreTables<'_, store::Kv>,
) -> Result<Response, Reply> {
    loop {
        let started = now_ms();
        let attempt_body = match &mut body {
            RequestBody::Stream(client) => AttemptBody::Stream(client.take()),
            RequestBody::Buffered(bytes) => AttemptBody::Bytes(bytes.clone()),
            // A body the edge cannot rewrite is refused before any origin
            // sees it.
            RequestBody::Rewrite(raw) => AttemptBody::Rewritten(fwd.model_body(raw)?),
            RequestBody::Empty => AttemptBody::Empty,
        };
        let (result, resp) = match forward(request, attempt_body, &fwd).await {
            Ok(resp) => (Ok(resp.get_status_code()), Some(resp)),
            Err(failure) => (Err(failure), None),
        };
        let outcome = fwd.attempt_outcome(result)?;
        let now = now_ms();
        let length = resp
            .as_ref()
            .and_then(|r| r.get_headers().get("content-length").into_iter().next())
            .and_then(|v| String::from_utf8(v).ok());
        instance::count_attempt(
            &fwd,
            &outcome,
            now.saturating_sub(started),
            length.as_deref(),
            now,
        );
        match edge::attempted(&fwd, &outcome, now.saturating_sub(started), now, tables) {
            AfterAttempt::Deliver => {
                let resp = resp.ok_or_else(|| Reply::origin_failed("origin response lost"))?;
                return deliver(resp, &request.method, &fwd);
            }
            AfterAttempt::Retry(next) => fwd = *next,
            AfterAttempt::Reply(reply) => return Err(reply),
        }
    }
}

/// The body of one attempt.
enum AttemptBody {
    /// The client's stream; `None` once an earlier attempt sent it.
    Stream(Option<ClientBody>),
    Bytes(Vec<u8>),
    /// A model route's body with this attempt's model.
    Rewritten(Vec<u8>),
    Empty,
}

/// Sends one attempt to the origin and waits for its response head. The
/// timeout covers the time spent waiting on the origin (connecting, taking
/// the body, sending the response headers; see [`OriginTimer`]); the body
/// then streams at the origin's pace.
async fn forward(
    request: &OutboundRequest,
    body: AttemptBody,
    fwd: &Forward,
) -> Result<Response, AttemptFailure> {
    let unreachable = |detail: String| {
        // The client gets a class of failure; the details name the origin.
        eprintln!("greenlight: {} origin: {detail}", fwd.decision.color);
        AttemptFailure::Unreachable(unreachable_class(&detail).to_string())
    };
    let target = UrlParts::parse(&fwd.url)
        .ok_or_else(|| unreachable(format!("bad origin URL {:?}", fwd.url)))?;
    // A model route's rewritten body has its own length.
    let length = match &body {
        AttemptBody::Rewritten(bytes) => Some(bytes.len().to_string()),
        AttemptBody::Empty => None,
        _ => request.content_length.clone(),
    };
    let entries = fwd.origin_fields(length.as_deref());
    let fields = Fields::from_list(&entries).map_err(|e| {
        AttemptFailure::NotSent(Reply::headers_not_forwardable(format!(
            "the runtime refused the request's headers: {e:?}"
        )))
    })?;
    // The body: the client's stream pumped under the timer, bytes written
    // by a task of their own, or none.
    let (contents, trailers, upload) = match body {
        AttemptBody::Stream(Some(client)) => {
            let (writer, reader) = wit_stream::new::<u8>();
            let (trailers_writer, trailers) = wit_future::new(|| Ok(None));
            (
                Some(reader),
                trailers,
                Some((client, writer, trailers_writer)),
            )
        }
        AttemptBody::Bytes(bytes) | AttemptBody::Rewritten(bytes) => {
            (Some(body::bytes_stream(bytes)), body::no_trailers(), None)
        }
        AttemptBody::Stream(None) | AttemptBody::Empty => (None, body::no_trailers(), None),
    };
    // Connecting is bounded by the host. The wait for the response head
    // is bounded by the host's first-byte timeout when the body is in
    // memory (or there is none): the edge then waits on nobody but the
    // origin. A streamed upload waits on the client too, so `timer` bounds
    // it, paused while the client sends nothing (the host's first-byte
    // timeout would count a slow upload as the origin's silence).
    let timeout_ns = fwd.timeout_ms.saturating_mul(1_000_000);
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(timeout_ns));
    if upload.is_none() {
        let _ = options.set_first_byte_timeout(Some(timeout_ns));
    }
    let (out, _sent) = Request::new(fields, contents, trailers, Some(options));
    let scheme = if target.scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let set =
        |ok: Result<(), ()>, what: &str| ok.map_err(|()| unreachable(format!("invalid {what}")));
    set(out.set_method(&request.method), "method")?;
    set(out.set_scheme(Some(&scheme)), "scheme")?;
    set(out.set_authority(Some(target.authority)), "authority")?;
    set(out.set_path_with_query(Some(target.path_and_query)), "path")?;
    let Some((client, writer, trailers)) = upload else {
        return client::send(out).await.map_err(|e| classify(e, fwd));
    };
    let timer = OriginTimer::new(fwd.timeout_ms);
    timer.run();
    let head = async {
        let resp = client::send(out).await;
        timer.stop();
        resp
    };
    let exchange = pin!(join(client.pump(writer, trailers, &timer), head));
    let expired = pin!(timer.expired());
    let result = match select(exchange, expired).await {
        Either::Left(((_, resp), _)) => Some(resp),
        // Dropping the exchange drops the request and its body.
        Either::Right(_) => None,
    };
    if timer.fired_for_client() {
        return Err(AttemptFailure::ClientGone);
    }
    match result {
        Some(resp) => resp.map_err(|e| classify(e, fwd)),
        None => Err(AttemptFailure::TimedOut),
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

/// The origin's answer for the client: its status, the headers the client
/// gets ([`Forward::client_response_headers`], on bytes: header values
/// that are not UTF-8 pass unchanged), and its body and trailers as the
/// streams they are. A body cut short by the origin is cut short for the
/// client too, never completed silently. A body-less answer (HEAD, 204,
/// 304) keeps the origin's `content-length` and sends no body stream.
fn deliver(resp: Response, method: &Method, fwd: &Forward) -> Result<Response, Reply> {
    let status = resp.get_status_code();
    let headers = fwd.client_response_headers(&resp.get_headers().copy_all());
    let fields = Fields::from_list(&headers).map_err(|e| {
        Reply::origin_failed(format!("origin response headers not accepted: {e:?}"))
    })?;
    let bodyless = matches!(method, Method::Head) || status == 204 || status == 304 || status < 200;
    let (result, reader) = wit_future::new(|| Ok(()));
    let (stream, trailers) = Response::consume_body(resp, reader);
    drop(result);
    let (out, _) = if bodyless {
        drop((stream, trailers));
        Response::new(fields, None, body::no_trailers())
    } else {
        Response::new(fields, Some(stream), trailers)
    };
    out.set_status_code(status)
        .map_err(|()| Reply::origin_failed(format!("origin sent status {status}")))?;
    Ok(out)
}

/// A reply the edge made itself.
fn reply_response(reply: &Reply) -> Response {
    let entries = reply.fields();
    let fields = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
    let contents = body::bytes_stream(reply.body.as_bytes().to_vec());
    let (resp, _) = Response::new(fields, Some(contents), body::no_trailers());
    let _ = resp.set_status_code(reply.status);
    resp
}

async fn fetch_jwks(url: &str) -> Option<(u16, Option<String>, Vec<u8>)> {
    let resp = match spin_sdk::http::get(url).await {
        Ok(resp) => resp,
        Err(e) => {
            eprintln!("greenlight: JWKS fetch failed: {e}");
            return None;
        }
    };
    let status = resp.status().as_u16();
    let cache_control = resp
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    use spin_sdk::http::body::IncomingBodyExt;
    let body = resp.into_body().bytes().await.ok()?;
    Some((status, cache_control, body.to_vec()))
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

// ---- time and randomness ------------------------------------------------

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Fresh randomness (wasi:random).
pub(crate) fn random_u64() -> u64 {
    spin_sdk::wasip3::random::random::get_random_u64()
}
