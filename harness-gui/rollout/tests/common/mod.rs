//! A fake edge for the tests: a real HTTP server on 127.0.0.1 that runs the
//! real admin handler, records every admin call, and serves tagged traffic
//! (each color with its own latency).
#![allow(dead_code)]

use greenlight_common::admin::{handle_in, AdminContext, AdminOutcome, AdminRoute, Problem};
use greenlight_common::history::History;
use greenlight_common::http::ADMIN_PREFIX;
use greenlight_common::rollout::{ChangeMeta, RolloutOp};
use greenlight_common::RolloutState;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

pub const TOKEN: &str = "test-admin-token";

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub route: String,
    pub body: serde_json::Value,
}

pub struct FakeEdge {
    pub url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    pub state: Arc<Mutex<RolloutState>>,
    _rt: tokio::runtime::Runtime,
}

impl FakeEdge {
    /// `delays_ms`: origin latency of blue and green.
    pub fn start(blue_ms: u64, green_ms: u64) -> FakeEdge {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(Mutex::new(RolloutState::initial("test")));
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (c2, s2) = (calls.clone(), state.clone());
        // The edge's history, as the real edges keep it.
        let history = Arc::new(Mutex::new(History::default()));
        let seq = Arc::new(AtomicU64::new(0));
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (calls, state, seq, history) =
                    (c2.clone(), s2.clone(), seq.clone(), history.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<Incoming>| {
                        let (calls, state, seq, history) =
                            (calls.clone(), state.clone(), seq.clone(), history.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let method = req.method().to_string();
                            let authed = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                == Some(&format!("Bearer {TOKEN}"));
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let resp = if let Some(rest) = path.strip_prefix(ADMIN_PREFIX) {
                                let route = AdminRoute::parse(rest).unwrap_or(AdminRoute::State);
                                // Reads are not calls the tests count.
                                if route.method() == "POST" {
                                    calls.lock().unwrap().push(Call {
                                        method: method.clone(),
                                        route: rest.to_string(),
                                        body: serde_json::from_slice(&body).unwrap_or_default(),
                                    });
                                }
                                let o = if !authed {
                                    AdminOutcome::problem(Problem::new(
                                        401,
                                        "unauthorized",
                                        "unauthorized",
                                        "bad token",
                                    ))
                                } else {
                                    let cur = state.lock().unwrap().clone();
                                    let mut kept = history.lock().unwrap();
                                    let o = handle_in(
                                        route,
                                        &method,
                                        &body,
                                        "k:test",
                                        &AdminContext {
                                            history: Some(&kept),
                                            ..AdminContext::of(&cur, false, 1_700_000_000_000)
                                        },
                                    );
                                    if let Some(n) = &o.new_state {
                                        kept.record(&cur, n, o.evidence.clone());
                                        *state.lock().unwrap() = n.clone();
                                    }
                                    o
                                };
                                hyper::Response::builder()
                                    .status(o.status)
                                    .header("content-type", o.content_type)
                                    .body(Full::new(bytes::Bytes::from(o.body)))
                                    .unwrap()
                            } else {
                                // Traffic: split by weight, tag the color, delay per color.
                                let s = state.lock().unwrap().clone();
                                let n = seq.fetch_add(1, Ordering::Relaxed);
                                let bucket = (n.wrapping_mul(2_654_435_761) % 10_000) as u16;
                                let color = if bucket < s.candidate_weight_bp {
                                    s.candidate
                                } else {
                                    s.active
                                };
                                let ms = match color {
                                    greenlight_common::Color::Blue => blue_ms,
                                    greenlight_common::Color::Green => green_ms,
                                };
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                // Blue answers "from FRA", green "from AMS"
                                // (Cloudflare's cf-ray suffix names the location).
                                let location = match color {
                                    greenlight_common::Color::Blue => "FRA",
                                    greenlight_common::Color::Green => "AMS",
                                };
                                hyper::Response::builder()
                                    .status(200)
                                    .header("cf-ray", format!("{n:016x}-{location}"))
                                    .header("x-greenlight-color", color.to_string())
                                    .header("x-greenlight-epoch", s.epoch.to_string())
                                    .body(Full::new(bytes::Bytes::from_static(b"ok")))
                                    .unwrap()
                            };
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeEdge {
            url: format!("http://{addr}"),
            calls,
            state,
            _rt: rt,
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Another release manager changes the state directly.
    pub fn change_elsewhere(&self, op: RolloutOp) {
        let mut s = self.state.lock().unwrap();
        let meta = ChangeMeta {
            actor: "someone-else".into(),
            at_ms: 1,
            reason: "by hand".into(),
        };
        *s = s.apply(op, s.epoch, meta).unwrap();
    }
}
