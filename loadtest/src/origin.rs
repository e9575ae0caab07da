//! A fast demo/test origin: answers with its color, records what it
//! received, and (see `Behavior`) can be told to be slow or failing.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// How the origin misbehaves (all off by default).
#[derive(Debug, Clone, Default)]
pub struct Behavior {}

#[derive(Debug, Default)]
struct Shared {
    hits: AtomicU64,
    recent: Mutex<Vec<RecordedRequest>>,
}

/// A running origin. Dropping it stops the server.
pub struct Origin {
    pub addr: SocketAddr,
    pub color: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Origin {
    /// Starts an origin on `addr` (use port 0 for any free port).
    pub async fn start(addr: SocketAddr, color: &str, behavior: Behavior) -> anyhow::Result<Origin> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
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
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        let color = color.clone();
                        let behavior = behavior.clone();
                        async move { Ok::<_, hyper::Error>(serve(req, &color, &state, &behavior).await) }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Origin {
            addr,
            color: color.to_string(),
            shared,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received since start (or the last `reset`).
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// The most recent requests, oldest first.
    pub fn recent(&self) -> Vec<RecordedRequest> {
        self.shared.recent.lock().map(|r| r.clone()).unwrap_or_default()
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

async fn serve(req: Request<Incoming>, color: &str, shared: &Shared, _behavior: &Behavior) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
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
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
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
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("x-origin-color", color)
        .body(Full::new(payload))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
