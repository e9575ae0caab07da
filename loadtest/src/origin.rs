//! A fast demo/test origin: answers with its color, records what it
//! received, and (see `Behavior`) can be told to be slow or failing.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Channel, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How many requests an origin remembers for inspection.
const RECORD_LIMIT: usize = 256;

/// What a request looked like when it reached the origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    pub body_sha256: String,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A latency distribution the origin adds before answering.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum LatencyDist {
    /// Answer at once.
    #[default]
    None,
    Fixed(Duration),
    /// Uniform between the two bounds.
    Uniform(Duration, Duration),
    /// Normal, truncated at 0.
    Normal {
        mean: Duration,
        sd: Duration,
    },
    /// Log-normal with this median and shape σ (natural-log units).
    LogNormal {
        median: Duration,
        sigma: f64,
    },
    /// Exponential with this mean.
    Exponential(Duration),
}

fn parse_ms(s: &str) -> Result<Duration, String> {
    crate::schedule::parse_duration(s).map_err(|e| e.0)
}

impl LatencyDist {
    /// Parses `fixed:5ms`, `uniform:1ms,10ms`, `normal:5ms,1ms`,
    /// `lognormal:5ms,0.5`, `exp:5ms` or `none`.
    pub fn parse(spec: &str) -> Result<LatencyDist, String> {
        let spec = spec.trim();
        if spec == "none" || spec.is_empty() {
            return Ok(LatencyDist::None);
        }
        let (kind, args) = spec.split_once(':').ok_or_else(|| {
            format!("latency {spec:?} is not like fixed:5ms, normal:5ms,1ms, uniform:1ms,9ms, lognormal:5ms,0.5 or exp:5ms")
        })?;
        let args: Vec<&str> = args.split(',').map(str::trim).collect();
        let want = |n: usize| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "latency {kind} takes {n} argument(s), got {spec:?}"
                ))
            }
        };
        match kind.trim() {
            "fixed" => {
                want(1)?;
                Ok(LatencyDist::Fixed(parse_ms(args[0])?))
            }
            "uniform" => {
                want(2)?;
                let (a, b) = (parse_ms(args[0])?, parse_ms(args[1])?);
                if b < a {
                    return Err(format!(
                        "latency uniform:{},{}: the upper bound is below the lower",
                        args[0], args[1]
                    ));
                }
                Ok(LatencyDist::Uniform(a, b))
            }
            "normal" => {
                want(2)?;
                Ok(LatencyDist::Normal {
                    mean: parse_ms(args[0])?,
                    sd: parse_ms(args[1])?,
                })
            }
            "lognormal" => {
                want(2)?;
                let sigma: f64 = args[1]
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s < 10.0)
                    .ok_or_else(|| {
                        format!(
                            "latency lognormal: sigma {:?} must be a number in 0..10",
                            args[1]
                        )
                    })?;
                Ok(LatencyDist::LogNormal {
                    median: parse_ms(args[0])?,
                    sigma,
                })
            }
            "exp" => {
                want(1)?;
                Ok(LatencyDist::Exponential(parse_ms(args[0])?))
            }
            other => Err(format!(
                "unknown latency distribution {other:?} (fixed, uniform, normal, lognormal, exp)"
            )),
        }
    }

    /// Draws one delay.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let secs = match *self {
            LatencyDist::None => return Duration::ZERO,
            LatencyDist::Fixed(d) => return d,
            LatencyDist::Uniform(a, b) => {
                a.as_secs_f64() + (b - a).as_secs_f64() * rng.gen::<f64>()
            }
            LatencyDist::Normal { mean, sd } => {
                mean.as_secs_f64() + sd.as_secs_f64() * std_normal(rng)
            }
            LatencyDist::LogNormal { median, sigma } => {
                median.as_secs_f64() * (sigma * std_normal(rng)).exp()
            }
            LatencyDist::Exponential(mean) => -mean.as_secs_f64() * (1.0 - rng.gen::<f64>()).ln(),
        };
        Duration::from_secs_f64(secs.clamp(0.0, 3600.0))
    }
}

/// Box-Muller standard normal draw.
pub fn std_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(1e-300);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A periodic stall: every `every` (from the origin's start), requests that
/// arrive during the first `duration` of the period are held until it ends,
/// like a stop-the-world GC pause.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    pub every: Duration,
    pub duration: Duration,
}

impl Stall {
    /// Parses `every,duration`, e.g. `5s,500ms`.
    pub fn parse(spec: &str) -> Result<Stall, String> {
        let (a, b) = spec
            .split_once(',')
            .ok_or_else(|| format!("stall {spec:?} is not like 5s,500ms (every, duration)"))?;
        let (every, duration) = (parse_ms(a)?, parse_ms(b)?);
        if every.is_zero() || duration >= every {
            return Err(format!(
                "stall {spec:?}: the duration must be shorter than the period, and the period > 0"
            ));
        }
        Ok(Stall { every, duration })
    }

    /// How long a request arriving `since_start` after the origin started waits.
    pub fn wait_at(&self, since_start: Duration) -> Duration {
        let phase = Duration::from_nanos((since_start.as_nanos() % self.every.as_nanos()) as u64);
        self.duration.saturating_sub(phase)
    }
}

/// A streamed answer like an OpenAI-compatible chat-completions endpoint's
/// (`stream: true`): `text/event-stream`, the first event `ttft` after the
/// head, then one event every `inter_event`, then `data: [DONE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseStream {
    /// Time to the first token: from the response head to the first event.
    pub ttft: Duration,
    /// Events with a token each (the `[DONE]` event comes on top).
    pub events: u32,
    pub inter_event: Duration,
}

impl Default for SseStream {
    fn default() -> SseStream {
        SseStream {
            ttft: Duration::from_millis(300),
            events: 50,
            inter_event: Duration::from_millis(20),
        }
    }
}

/// One chat-completion chunk event carrying token `i` of `model`'s answer.
pub fn sse_chunk(model: &str, i: u32) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-greenlight",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": {"content": format!("token{i} ")}, "finish_reason": null}],
    });
    format!("data: {chunk}\n\n")
}

/// The event that ends a chat-completions stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// The `model` field of a JSON object body, if it has one.
fn body_model(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("model")?.as_str().map(str::to_string)
}

/// How the origin misbehaves (all off by default).
#[derive(Debug, Clone, Default)]
pub struct Behavior {
    /// Delay added to every answer.
    pub latency: LatencyDist,
    /// Fraction (0..=1) of requests answered with a 500.
    pub error_rate: f64,
    pub stall: Option<Stall>,
    /// When set, requests without a valid edge signature get 401.
    pub signing_secret: Option<Vec<u8>>,
    /// Test-only: answer the scripted routes under `/script/` (redirects
    /// with cookies, chosen statuses, slow bodies, a WebSocket echo; see
    /// [`script`]). Off in the CLI's origin: a redirect to any URL the
    /// caller names is an open redirect.
    pub scripts: bool,
    /// Answer every request (but `/echo` and scripts) with a streamed
    /// chat completion (see [`SseStream`]); the events name the request
    /// body's `model`, or the origin's color.
    pub sse: Option<SseStream>,
}

#[derive(Debug, Default)]
struct Shared {
    started: Option<Instant>,
    /// `https` when serving TLS: part of the signed `@target-uri`.
    scheme: &'static str,
    hits: AtomicU64,
    /// Requests refused for a missing/bad/stale/replayed edge signature.
    refused: AtomicU64,
    replay_guard: Mutex<greenlight_common::origin_auth::ReplayGuard>,
    recent: Mutex<Vec<RecordedRequest>>,
    /// A point-of-presence code answered in `cf-ray: <id>-<CODE>` (tests
    /// of per-location tracking).
    location: Mutex<Option<String>>,
}

/// A running origin. Dropping it stops the server.
pub struct Origin {
    pub addr: SocketAddr,
    pub color: String,
    /// Serves HTTPS (see [`Origin::start_with_tls`]).
    pub https: bool,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Origin {
    /// Starts an origin on `addr` (use port 0 for any free port).
    pub async fn start(
        addr: SocketAddr,
        color: &str,
        behavior: Behavior,
    ) -> anyhow::Result<Origin> {
        Origin::start_with_tls(addr, color, behavior, None).await
    }

    /// Like [`Origin::start`], serving HTTPS with `tls` (HTTP/2 when the
    /// client offers `h2` over ALPN and `tls` lists it, else HTTP/1.1).
    pub async fn start_with_tls(
        addr: SocketAddr,
        color: &str,
        behavior: Behavior,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<Origin> {
        let https = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            started: Some(Instant::now()),
            scheme: if https { "https" } else { "http" },
            ..Shared::default()
        });
        let color_owned = color.to_string();
        let state = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let color = color_owned.clone();
                let behavior = behavior.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        let color = color.clone();
                        let behavior = behavior.clone();
                        async move { Ok::<_, hyper::Error>(serve(req, &color, &state, &behavior).await) }
                    });
                    let Some(acceptor) = acceptor else {
                        let _ = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), svc)
                            .with_upgrades()
                            .await;
                        return;
                    };
                    // A failed handshake (untrusted certificate on the
                    // client's side, plain HTTP) just ends the connection.
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                    } else {
                        let _ = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(tls), svc)
                            .with_upgrades()
                            .await;
                    }
                });
            }
        });
        Ok(Origin {
            addr,
            color: color.to_string(),
            https,
            shared,
            task,
        })
    }

    /// A server configuration from PEM files, offering `h2` and `http/1.1`.
    pub fn tls_config(
        cert_pem: &std::path::Path,
        key_pem: &std::path::Path,
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(cert_pem)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("--tls-cert {}: {e}", cert_pem.display()))?;
        let key = PrivateKeyDer::from_pem_file(key_pem)
            .map_err(|e| format!("--tls-key {}: {e}", key_pem.display()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| format!("TLS certificate: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Answers from now on carry `cf-ray: <id>-<code>`, the way Cloudflare
    /// names the location that served a request.
    pub fn set_location(&self, code: &str) {
        if let Ok(mut l) = self.shared.location.lock() {
            *l = Some(code.to_string());
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Requests received since start (or the last `reset`).
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Requests refused because they did not carry a valid edge signature
    /// (only with `Behavior::signing_secret`). They do not count as hits.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// The most recent requests, oldest first.
    pub fn recent(&self) -> Vec<RecordedRequest> {
        self.shared
            .recent
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn reset(&self) {
        self.shared.hits.store(0, Ordering::SeqCst);
        if let Ok(mut r) = self.shared.recent.lock() {
            r.clear();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks the edge's RFC 9421 signature (see
/// `greenlight_common::origin_auth`) over the URL this origin was sent:
/// its own scheme, the `Host` it received (the `:authority` over HTTP/2),
/// and the request target.
fn check_signature(
    secret: &[u8],
    parts: &hyper::http::request::Parts,
    shared: &Shared,
) -> Result<(), greenlight_common::origin_auth::OriginAuthError> {
    use greenlight_common::origin_auth::{target_uri, verify, OriginAuthError, DEFAULT_WINDOW_S};
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| header("host"))
        .unwrap_or_default();
    let target = target_uri(shared.scheme, host, path);
    let mut guard = shared
        .replay_guard
        .lock()
        .map_err(|_| OriginAuthError::Missing)?;
    verify(
        secret,
        parts.method.as_str(),
        &target,
        header,
        now_s,
        DEFAULT_WINDOW_S,
        &mut guard,
    )
}

/// What the origin answers with: a whole body, or one it streams (which
/// may fail mid-body: the connection is then cut).
pub type OriginBody = UnsyncBoxBody<Bytes, std::io::Error>;

fn full(bytes: impl Into<Bytes>) -> OriginBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

async fn serve(
    mut req: Request<Incoming>,
    color: &str,
    shared: &Shared,
    behavior: &Behavior,
) -> Response<OriginBody> {
    let arrived = Instant::now();
    let upgrade = (behavior.scripts && req.uri().path().ends_with("/script/ws"))
        .then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    if let Some(secret) = &behavior.signing_secret {
        if let Err(e) = check_signature(secret, &parts, shared) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("content-type", "text/plain")
                .body(full(format!("{e}\n")))
                .unwrap_or_else(|_| Response::new(full(Bytes::new())));
        }
    }
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_len: body.len(),
        body_sha256: hex::encode(Sha256::digest(&body)),
    };
    shared.hits.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut r) = shared.recent.lock() {
        if r.len() == RECORD_LIMIT {
            r.remove(0);
        }
        r.push(recorded.clone());
    }
    // Misbehaviour: a stall in progress holds the request, then the drawn
    // latency (counted from arrival), then maybe an error.
    let (delay, fail) = {
        let mut rng = rand::thread_rng();
        let delay = behavior.latency.sample(&mut rng);
        let fail = behavior.error_rate > 0.0 && rng.gen::<f64>() < behavior.error_rate;
        (delay, fail)
    };
    let stall = match (behavior.stall, shared.started) {
        (Some(s), Some(t0)) => s.wait_at(arrived.saturating_duration_since(t0)),
        _ => Duration::ZERO,
    };
    let total = stall + delay;
    if !total.is_zero() {
        tokio::time::sleep_until(tokio::time::Instant::from_std(arrived + total)).await;
    }
    if fail {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header("content-type", "text/plain")
            .header("x-origin-color", color)
            .body(full(Bytes::from_static(b"injected error\n")))
            .unwrap_or_else(|_| Response::new(full(Bytes::new())));
    }
    if behavior.scripts && recorded.path.contains("/script/") {
        return script(&parts, &recorded, color, upgrade)
            .unwrap_or_else(|_| Response::new(full(Bytes::new())));
    }
    if let (Some(sse), false) = (behavior.sse, recorded.path.starts_with("/echo")) {
        let model = body_model(&body).unwrap_or_else(|| color.to_string());
        return event_stream(color, &model, sse);
    }
    // `/echo...` returns the request body byte for byte (body pass-through
    // tests); everything else returns a JSON description of the request.
    let (content_type, payload) = if recorded.path.starts_with("/echo") {
        ("application/octet-stream", body)
    } else {
        let summary = serde_json::json!({
            "color": color,
            "method": recorded.method,
            "path": recorded.path,
            "body_len": recorded.body_len,
            "body_sha256": recorded.body_sha256,
        });
        ("application/json", Bytes::from(summary.to_string()))
    };
    let mut ok = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("x-origin-color", color);
    if let Some(code) = shared.location.lock().ok().and_then(|l| l.clone()) {
        let id = shared.hits.load(Ordering::Relaxed);
        ok = ok.header(crate::locations::CF_RAY, format!("{id:016x}-{code}"));
    }
    ok.body(full(payload))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// A streamed chat completion (see [`SseStream`]), sent as it is made.
fn event_stream(color: &str, model: &str, sse: SseStream) -> Response<OriginBody> {
    let (mut tx, body) = Channel::<Bytes, std::io::Error>::new(4);
    let model = model.to_string();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for i in 0..sse.events {
            // On a schedule from the head, so a slow reader does not
            // stretch the origin's own pace.
            tokio::time::sleep_until(start + sse.ttft + sse.inter_event * i).await;
            if tx
                .send_data(Bytes::from(sse_chunk(&model, i)))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = tx.send_data(Bytes::from_static(SSE_DONE.as_bytes())).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-origin-color", color)
        .body(body.boxed_unsync())
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// A query parameter's (undecoded) value.
fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name))
        .map(|(_, v)| v)
}

/// Percent-decodes a query value (test knobs: `to=http%3A%2F%2F...`).
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The scripted routes (test-only, `Behavior::scripts`), under any prefix
/// (`/public/script/...` for anonymous callers):
/// - `/script/redirect?status=302&to=URL`: a redirect to `to` (default
///   `/public/landing`) with two cookies and a body;
/// - `/script/status/CODE`: that status with an `etag` (no body for
///   204/304; HEAD gets the length of the GET body);
/// - `/script/headers?cc=VALUE`: three cookies and `cache-control: VALUE`
///   (if given), `content-length` of a 1 234-byte body (HEAD: headers only);
/// - `/script/slow-body?chunks=N&every_ms=MS`: the head at once, then N
///   chunks MS apart;
/// - `/script/ws`: a WebSocket echo (`<color>:<message>`);
/// - `/script/sse?events=N&pause_ms=MS&cut=1`: an event stream whose first
///   event goes with the head, then after MS the other N-1 and `[DONE]`;
///   with `cut=1` the connection is cut after the pause instead (an origin
///   failing mid-stream).
fn script(
    parts: &hyper::http::request::Parts,
    recorded: &RecordedRequest,
    color: &str,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> hyper::http::Result<Response<OriginBody>> {
    let query = recorded.query.as_deref();
    let route = recorded.path.split_once("/script/").map_or("", |(_, r)| r);
    let base = || {
        Response::builder()
            .header("x-origin-color", color)
            .header("x-script", route.split('/').next().unwrap_or(""))
    };
    if route == "redirect" {
        let status = param(query, "status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(302);
        let to = param(query, "to").map_or_else(|| "/public/landing".to_string(), decode);
        return base()
            .status(status)
            .header("location", to)
            .header("set-cookie", "session=abc; Path=/; HttpOnly")
            .header("set-cookie", "theme=dark; Path=/")
            .header("content-type", "text/plain")
            .body(full("moved\n"));
    }
    if let Some(code) = route.strip_prefix("status/") {
        let status = code.parse::<u16>().unwrap_or(200);
        let body: &'static [u8] = if status == 204 || status == 304 {
            b""
        } else {
            b"status body\n"
        };
        return base()
            .status(status)
            .header("etag", "\"v1\"")
            .header("cache-control", "max-age=60")
            .body(full(body));
    }
    if route == "headers" {
        let mut b = base()
            .status(200)
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; Path=/")
            .header("set-cookie", "c=3; Path=/")
            .header("content-type", "text/plain");
        if let Some(cc) = param(query, "cc") {
            b = b.header("cache-control", decode(cc));
        }
        // hyper sends the length of a full body, and only the head for HEAD.
        return b.body(full(vec![b'x'; 1234]));
    }
    if route == "slow-body" {
        let chunks = param(query, "chunks")
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(4)
            .min(100);
        let every = Duration::from_millis(
            param(query, "every_ms")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(500)
                .min(10_000),
        );
        let (mut tx, body) = Channel::<Bytes, std::io::Error>::new(1);
        tokio::spawn(async move {
            for i in 0..chunks {
                if i > 0 {
                    tokio::time::sleep(every).await;
                }
                if tx
                    .send_data(Bytes::from(format!("chunk {i}\n")))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        return base()
            .status(200)
            .header("content-type", "text/plain")
            .body(body.boxed_unsync());
    }
    if route == "sse" {
        let events = param(query, "events")
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(5)
            .clamp(1, 1000);
        let pause = Duration::from_millis(
            param(query, "pause_ms")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(500)
                .min(10_000),
        );
        let cut = param(query, "cut") == Some("1");
        let model = color.to_string();
        let (mut tx, body) = Channel::<Bytes, std::io::Error>::new(4);
        tokio::spawn(async move {
            if tx
                .send_data(Bytes::from(sse_chunk(&model, 0)))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(pause).await;
            if cut {
                // An error instead of the chunked body's end: hyper drops
                // the connection mid-body.
                tx.abort(std::io::Error::other("cut by the script"));
                return;
            }
            for i in 1..events {
                if tx
                    .send_data(Bytes::from(sse_chunk(&model, i)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = tx.send_data(Bytes::from_static(SSE_DONE.as_bytes())).await;
        });
        return base()
            .status(200)
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(body.boxed_unsync());
    }
    if route == "ws" {
        let key = parts
            .headers
            .get("sec-websocket-key")
            .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()));
        let (Some(key), Some(upgrade)) = (key, upgrade) else {
            return base().status(400).body(full("not a websocket request\n"));
        };
        let color = color.to_string();
        tokio::spawn(async move {
            use futures_util::{SinkExt, StreamExt};
            use tokio_tungstenite::tungstenite::protocol::Role;
            use tokio_tungstenite::tungstenite::Message;
            let Ok(upgraded) = upgrade.await else {
                return;
            };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                let reply = match msg {
                    Message::Text(t) => Message::text(format!("{color}:{}", t.as_str())),
                    Message::Binary(b) => Message::Binary(b),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
        });
        return base()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", key)
            .body(full(Bytes::new()));
    }
    base().status(404).body(full("no such script\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn latency_specs_parse_and_sample() {
        let ms = Duration::from_millis;
        assert_eq!(
            LatencyDist::parse("fixed:5ms"),
            Ok(LatencyDist::Fixed(ms(5)))
        );
        assert_eq!(
            LatencyDist::parse("normal:5ms,1ms"),
            Ok(LatencyDist::Normal {
                mean: ms(5),
                sd: ms(1)
            })
        );
        assert_eq!(LatencyDist::parse("none"), Ok(LatencyDist::None));
        for (bad, needle) in [
            ("slow", "not like"),
            ("fixed:5ms,1ms", "takes 1"),
            ("gamma:1ms", "unknown latency"),
            ("uniform:9ms,1ms", "upper bound"),
            ("lognormal:5ms,x", "sigma"),
            ("fixed:fast", "duration"),
        ] {
            let e = LatencyDist::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let mut rng = SmallRng::seed_from_u64(7);
        let d = LatencyDist::parse("normal:5ms,1ms").unwrap();
        let mean: f64 = (0..20_000)
            .map(|_| d.sample(&mut rng).as_secs_f64())
            .sum::<f64>()
            / 20_000.0;
        assert!((mean - 0.005).abs() < 0.0001, "{mean}");
        let u = LatencyDist::parse("uniform:1ms,3ms").unwrap();
        assert!((0..1000).all(|_| (ms(1)..=ms(3)).contains(&u.sample(&mut rng))));
        let e = LatencyDist::parse("exp:2ms").unwrap();
        let mean: f64 = (0..20_000)
            .map(|_| e.sample(&mut rng).as_secs_f64())
            .sum::<f64>()
            / 20_000.0;
        assert!((mean - 0.002).abs() < 0.0001, "{mean}");
    }

    #[test]
    fn stall_windows() {
        let s = Stall::parse("2s,500ms").unwrap();
        assert_eq!(
            s.wait_at(Duration::from_millis(100)),
            Duration::from_millis(400)
        );
        assert_eq!(
            s.wait_at(Duration::from_millis(2100)),
            Duration::from_millis(400)
        );
        assert_eq!(s.wait_at(Duration::from_millis(600)), Duration::ZERO);
        assert!(Stall::parse("1s,2s").is_err());
        assert!(Stall::parse("1s").is_err());
    }

    #[tokio::test]
    async fn streams_a_chat_completion() {
        let b = Behavior {
            sse: Some(SseStream {
                ttft: Duration::from_millis(150),
                events: 3,
                inter_event: Duration::from_millis(10),
            }),
            ..Behavior::default()
        };
        let o = Origin::start("127.0.0.1:0".parse().unwrap(), "blue", b)
            .await
            .unwrap();
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let sent = Instant::now();
        let mut r = c
            .post(format!("{}/v1/chat/completions", o.url()))
            .body(r#"{"model":"m-1","stream":true}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let mut body = Vec::new();
        let mut first = None;
        while let Some(chunk) = r.chunk().await.unwrap() {
            first.get_or_insert(sent.elapsed());
            body.extend_from_slice(&chunk);
        }
        assert!(first.unwrap() >= Duration::from_millis(140), "{first:?}");
        let text = String::from_utf8(body).unwrap();
        let expected: String = (0..3).map(|i| sse_chunk("m-1", i)).collect::<String>() + SSE_DONE;
        assert_eq!(text, expected);
    }

    #[tokio::test]
    async fn injected_errors_and_latency() {
        let b = Behavior {
            latency: LatencyDist::Fixed(Duration::from_millis(30)),
            error_rate: 1.0,
            stall: None,
            signing_secret: None,
            scripts: false,
            sse: None,
        };
        let o = Origin::start("127.0.0.1:0".parse().unwrap(), "green", b)
            .await
            .unwrap();
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let t = Instant::now();
        let r = c.get(format!("{}/x", o.url())).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 500);
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert_eq!(o.hits(), 1);
    }
}
