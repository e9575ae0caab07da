//! The scripted routes (test-only, [`crate::Behavior::scripts`]), under any
//! prefix (`/public/script/...` for anonymous callers):
//! - `/script/redirect?status=302&to=URL`: a redirect to `to` (default
//!   `/public/landing`) with two cookies and a body;
//! - `/script/status/CODE`: that status with an `etag` (no body for
//!   204/304; HEAD gets the length of the GET body);
//! - `/script/headers?cc=VALUE`: three cookies and `cache-control: VALUE`
//!   (if given), `content-length` of a 1 234-byte body (HEAD: headers only);
//! - `/script/slow-body?chunks=N&every_ms=MS`: the head at once, then N
//!   chunks MS apart;
//! - `/script/ws`: a WebSocket echo (`<color>:<message>`);
//! - `/script/sse?events=N&pause_ms=MS&cut=1`: an event stream whose first
//!   event goes with the head, then after MS the other N-1 and `[DONE]`;
//!   with `cut=1` the connection is cut after the pause instead (an origin
//!   failing mid-stream).
//!
//! Any other route under `/script/` is a 404. The routes answer every
//! method alike.

use crate::body::{full, OriginBody};
use crate::stream::{sse_chunk, SSE_DONE};
use bytes::Bytes;
use http_body_util::{BodyExt, Channel};
use hyper::header::HeaderMap;
use hyper::http::response::Builder;
use hyper::upgrade::OnUpgrade;
use hyper::Response;
use hyper_util::rt::TokioIo;
use std::time::Duration;

type ScriptResponse = hyper::http::Result<Response<OriginBody>>;

/// What answers one scripted route.
type Handler = fn(Call) -> ScriptResponse;

/// Which routes (the path after `/script/`) a script answers.
enum Matcher {
    /// This route exactly.
    Exact(&'static str),
    /// Routes starting with this; the rest is the script's argument.
    Prefix(&'static str),
}

impl Matcher {
    /// The argument of a matching route (empty for [`Matcher::Exact`]).
    fn matches<'a>(&self, route: &'a str) -> Option<&'a str> {
        match self {
            Matcher::Exact(r) => (route == *r).then_some(""),
            Matcher::Prefix(p) => route.strip_prefix(p),
        }
    }
}

/// One scripted request, as its handler sees it.
struct Call<'a> {
    /// The path after `/script/`.
    route: &'a str,
    /// What [`Matcher::Prefix`] left of the route.
    arg: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    color: &'a str,
    /// The connection's upgrade, taken for `/script/ws` only.
    upgrade: Option<OnUpgrade>,
}

impl Call<'_> {
    /// A response naming the color and the script that answered.
    fn base(&self) -> Builder {
        Response::builder()
            .header("x-origin-color", self.color)
            .header("x-script", self.route.split('/').next().unwrap_or(""))
    }

    /// A numeric query parameter, `default` when absent or not a number.
    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        param(self.query, name)
            .and_then(|s| s.parse::<T>().ok())
            .unwrap_or(default)
    }
}

/// The route table, tried in order.
const ROUTES: &[(Matcher, Handler)] = &[
    (Matcher::Exact("redirect"), redirect),
    (Matcher::Prefix("status/"), status),
    (Matcher::Exact("headers"), headers),
    (Matcher::Exact("slow-body"), slow_body),
    (Matcher::Exact("sse"), sse),
    (Matcher::Exact("ws"), websocket_echo),
];

/// Answers a request whose path contains `/script/` from [`ROUTES`].
pub(crate) fn script(
    parts: &hyper::http::request::Parts,
    color: &str,
    upgrade: Option<OnUpgrade>,
) -> ScriptResponse {
    let route = parts
        .uri
        .path()
        .split_once("/script/")
        .map_or("", |(_, r)| r);
    let mut call = Call {
        route,
        arg: "",
        query: parts.uri.query(),
        headers: &parts.headers,
        color,
        upgrade,
    };
    for (matcher, handler) in ROUTES {
        if let Some(arg) = matcher.matches(route) {
            call.arg = arg;
            return handler(call);
        }
    }
    call.base().status(404).body(full("no such script\n"))
}

fn redirect(call: Call) -> ScriptResponse {
    let status = call.number::<u16>("status", 302);
    let to = param(call.query, "to").map_or_else(|| "/public/landing".to_string(), decode);
    call.base()
        .status(status)
        .header("location", to)
        .header("set-cookie", "session=abc; Path=/; HttpOnly")
        .header("set-cookie", "theme=dark; Path=/")
        .header("content-type", "text/plain")
        .body(full("moved\n"))
}

fn status(call: Call) -> ScriptResponse {
    let status = call.arg.parse::<u16>().unwrap_or(200);
    let body: &'static [u8] = if status == 204 || status == 304 {
        b""
    } else {
        b"status body\n"
    };
    call.base()
        .status(status)
        .header("etag", "\"v1\"")
        .header("cache-control", "max-age=60")
        .body(full(body))
}

fn headers(call: Call) -> ScriptResponse {
    let mut b = call
        .base()
        .status(200)
        .header("set-cookie", "a=1; Path=/")
        .header("set-cookie", "b=2; Path=/")
        .header("set-cookie", "c=3; Path=/")
        .header("content-type", "text/plain");
    if let Some(cc) = param(call.query, "cc") {
        b = b.header("cache-control", decode(cc));
    }
    // hyper sends the length of a full body, and only the head for HEAD.
    b.body(full(vec![b'x'; 1234]))
}

fn slow_body(call: Call) -> ScriptResponse {
    let chunks = call.number::<u32>("chunks", 4).min(100);
    let every = Duration::from_millis(call.number::<u64>("every_ms", 500).min(10_000));
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
    call.base()
        .status(200)
        .header("content-type", "text/plain")
        .body(body.boxed_unsync())
}

fn sse(call: Call) -> ScriptResponse {
    let events = call.number::<u32>("events", 5).clamp(1, 1000);
    let pause = Duration::from_millis(call.number::<u64>("pause_ms", 500).min(10_000));
    let cut = param(call.query, "cut") == Some("1");
    let model = call.color.to_string();
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
    call.base()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body.boxed_unsync())
}

fn websocket_echo(mut call: Call) -> ScriptResponse {
    let key = call
        .headers
        .get("sec-websocket-key")
        .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()));
    let (Some(key), Some(upgrade)) = (key, call.upgrade.take()) else {
        return call
            .base()
            .status(400)
            .body(full("not a websocket request\n"));
    };
    let color = call.color.to_string();
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
    call.base()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", key)
        .body(full(Bytes::new()))
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
