//! The origin's server: plain HTTP/1.1, or HTTPS with HTTP/2 over ALPN; it
//! records what it received and answers with its color.

use crate::behavior::Behavior;
use crate::body::{full, OriginBody};
use crate::scripts::script;
use crate::stream::{body_model, event_stream};
use bytes::Bytes;
use greenlight_common::http::CF_RAY;
use http_body_util::BodyExt;
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
        return script(&parts, color, upgrade)
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
        ok = ok.header(CF_RAY, format!("{id:016x}-{code}"));
    }
    ok.body(full(payload))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behavior::LatencyDist;
    use crate::stream::{sse_chunk, SseStream, SSE_DONE};

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
