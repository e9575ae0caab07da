//! The engine's HTTP transport: keep-alive HTTP/1.1 connections (one request
//! per connection at a time) or multiplexed HTTP/2 connections, over plain
//! TCP or TLS (rustls, ALPN `h2` then `http/1.1`, SNI from the URL).
//!
//! A general-purpose client (reqwest) costs about a third of the throughput
//! a load generator needs on two cores; this does only what the engine
//! needs (keep-alive, multiplexing, per-request timeout) with little
//! per-request work. The admin client keeps using reqwest.
//!
//! Connecting (TCP + TLS handshake + HTTP/2 preface) is timed apart from
//! requests in [`ConnectionStats`]; request latency is still measured by the
//! engine from the intended send time, connecting included.

use crate::histogram::{LatencySummary, SeenColor};
use crate::tls::{self, TlsOptions};
use bytes::Bytes;
use greenlight_common::failover;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
pub use hyper::client::conn::http1::SendRequest;
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderMap, HeaderValue, HOST};
use hyper::{Method, Request, Response, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

/// Why a request got no (complete) response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Connect,
    Other,
}

/// The HTTP version a response came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "HTTP/1.1")]
    Http1,
    #[serde(rename = "HTTP/2")]
    Http2,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the engine keeps of a response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// The first bytes of the body, only with [`Pool::send_keeping_body`]
    /// (the load engine reads and drops bodies: empty).
    pub body: Bytes,
    pub protocol: Protocol,
    /// When the response head arrived, and the first body byte.
    pub head_at: Instant,
    pub first_byte_at: Option<Instant>,
    /// `text/event-stream` answers: events with content (see
    /// [`crate::sse::EventCounter`]), when the first and the last completed.
    pub events: u64,
    pub first_event_at: Option<Instant>,
    pub last_event_at: Option<Instant>,
}

impl Answer {
    /// The answer's first byte as a reader of it sees it: the first event of
    /// an event stream (a model's first token), else the first body byte,
    /// else the head (an empty body).
    pub fn first_byte(&self) -> Instant {
        self.first_event_at
            .or(self.first_byte_at)
            .unwrap_or(self.head_at)
    }
}

/// How the engine speaks HTTP to its target.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// Fail unless the server speaks HTTP/2 (ALPN `h2` over TLS; prior
    /// knowledge, h2c, over plain TCP).
    pub require_http2: bool,
    /// HTTP/2: connections opened at most (streams are multiplexed on them).
    pub connections: usize,
    /// HTTP/2: requests in flight at once on one connection.
    pub streams_per_connection: usize,
    pub tls: TlsOptions,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            require_http2: false,
            connections: 4,
            streams_per_connection: 100,
            tls: TlsOptions::default(),
        }
    }
}

/// Connections made during a run: handshake times, protocols, resumptions,
/// and which protocol each color's answers came with.
pub struct ConnectionStats {
    handshake_us: Mutex<Histogram<u64>>,
    opened: [AtomicU64; 2],
    resumed: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Why the last request failed on an open connection (hyper's error
    /// with its causes), beside the connection failures above.
    last_request_error: Mutex<Option<String>>,
    /// Idempotent requests sent again on a fresh connection because the
    /// server closed the kept one under them (see `Pool::exchange`).
    resent: AtomicU64,
    served: [[AtomicU64; 2]; 3],
}

impl Default for ConnectionStats {
    fn default() -> Self {
        ConnectionStats {
            handshake_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds"),
            ),
            opened: Default::default(),
            resumed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_request_error: Mutex::new(None),
            resent: AtomicU64::new(0),
            served: Default::default(),
        }
    }
}

impl ConnectionStats {
    fn opened(&self, protocol: Protocol, took: Duration, resumed: bool) {
        self.opened[protocol.index()].fetch_add(1, Ordering::Relaxed);
        if resumed {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut h) = self.handshake_us.lock() {
            h.saturating_record((took.as_micros() as u64).max(1));
        }
    }

    fn failed(&self, reason: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(reason.to_string());
        }
    }

    fn request_failed(&self, e: &dyn std::error::Error) {
        if let Ok(mut last) = self.last_request_error.lock() {
            *last = Some(with_causes(e));
        }
    }

    /// Counts one answer of `color` served over `protocol`.
    pub fn served(&self, color: SeenColor, protocol: Protocol) {
        self.served[color.index()][protocol.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn summary(&self, tls: bool, insecure: bool) -> ConnectionSummary {
        let mut protocols = BTreeMap::new();
        for c in SeenColor::ALL {
            let mut per = BTreeMap::new();
            for p in Protocol::ALL {
                let n = self.served[c.index()][p.index()].load(Ordering::Relaxed);
                if n > 0 {
                    per.insert(p.as_str().to_string(), n);
                }
            }
            if !per.is_empty() {
                protocols.insert(c, per);
            }
        }
        let handshake = self
            .handshake_us
            .lock()
            .map(|h| LatencySummary::of(&h))
            .unwrap_or_default();
        ConnectionSummary {
            tls,
            insecure,
            opened_http1: self.opened[0].load(Ordering::Relaxed),
            opened_http2: self.opened[1].load(Ordering::Relaxed),
            resumed: self.resumed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            last_request_error: self.last_request_error.lock().ok().and_then(|e| e.clone()),
            resent: self.resent.load(Ordering::Relaxed),
            handshake_ms: handshake,
            protocols,
        }
    }
}

/// The connections of a run, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSummary {
    pub tls: bool,
    /// `--insecure` was in force: certificates were not verified.
    pub insecure: bool,
    pub opened_http1: u64,
    pub opened_http2: u64,
    /// TLS handshakes that resumed an earlier session.
    pub resumed: u64,
    pub failed: u64,
    pub last_error: Option<String>,
    /// Why the last request failed on an open connection (absent in older
    /// reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_error: Option<String>,
    /// Idempotent requests sent again on a fresh connection because the
    /// server had closed the kept-alive one they were written to (0 in
    /// older reports).
    #[serde(default)]
    pub resent: u64,
    /// TCP connect + TLS handshake (+ HTTP/2 preface), apart from requests.
    pub handshake_ms: LatencySummary,
    /// Answers per color and protocol, e.g. `{"blue": {"HTTP/2": 1200}}`.
    pub protocols: BTreeMap<SeenColor, BTreeMap<String, u64>>,
}

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    pub failure: Failure,
    /// One line naming the host and the reason.
    pub reason: String,
    /// A TLS or protocol refusal that retrying will not mend.
    pub fatal: bool,
}

enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

struct H2Conn {
    sender: http2::SendRequest<Full<Bytes>>,
    streams: Arc<Semaphore>,
}

/// Keep-alive connections to one `host:port`.
pub struct Pool {
    authority: String,
    host: HeaderValue,
    /// `https` or `http`, for HTTP/2's absolute request targets.
    scheme: hyper::http::uri::Scheme,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    require_http2: bool,
    h2_max_connections: usize,
    streams_per_connection: usize,
    idle: Mutex<Vec<http1::SendRequest<Full<Bytes>>>>,
    h2: Mutex<Vec<H2Conn>>,
    h2_connecting: AtomicUsize,
    h2_turn: AtomicUsize,
    h2_changed: tokio::sync::Notify,
    /// Learnt from the first connection (ALPN).
    protocol: OnceLock<Protocol>,
    /// `host` as HTTP/2's `:authority`, parsed once (not per request).
    h2_authority: Option<hyper::http::uri::Authority>,
    connect_timeout: Duration,
    insecure: bool,
    pub stats: ConnectionStats,
}

impl Pool {
    /// Plain HTTP/1.1 to `authority` (`host:port`).
    pub fn new(authority: &str, connect_timeout: Duration) -> Result<Pool, String> {
        Pool::build(
            authority,
            authority,
            hyper::http::uri::Scheme::HTTP,
            None,
            connect_timeout,
            &HttpOptions::default(),
        )
    }

    /// Connections to the host of `url` (`http://` or `https://`).
    pub fn for_url(
        url: &Url,
        connect_timeout: Duration,
        opts: &HttpOptions,
    ) -> Result<Pool, String> {
        let Some(host) = url.host_str() else {
            return Err(format!("URL {url} has no host"));
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = format!("{host}:{port}");
        let pool_authority = match url.port() {
            Some(_) => authority.clone(),
            None => host.to_string(),
        };
        match url.scheme() {
            "http" => Pool::build(
                &authority,
                &pool_authority,
                hyper::http::uri::Scheme::HTTP,
                None,
                connect_timeout,
                opts,
            ),
            "https" => {
                let config = tls::client_config(&opts.tls, tls::ALPN_H2_AND_H1)?;
                let name = tls::server_name(host)?;
                Pool::build(
                    &authority,
                    &pool_authority,
                    hyper::http::uri::Scheme::HTTPS,
                    Some((TlsConnector::from(config), name)),
                    connect_timeout,
                    opts,
                )
            }
            other => Err(format!("URL {url}: scheme {other} is not http or https")),
        }
    }

    /// Connections to `authority` (`host:port`), naming the server `host`
    /// in requests (`Host`, HTTP/2's `:authority`; the port only when the
    /// URL gave one, else `authority`).
    fn build(
        authority: &str,
        host: &str,
        scheme: hyper::http::uri::Scheme,
        tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
        connect_timeout: Duration,
        opts: &HttpOptions,
    ) -> Result<Pool, String> {
        let host = HeaderValue::from_str(host)
            .or_else(|_| HeaderValue::from_str(authority))
            .map_err(|_| format!("bad host {authority:?}"))?;
        if opts.connections == 0 || opts.streams_per_connection == 0 {
            return Err("connections and streams per connection must be at least 1".into());
        }
        let h2_authority = host.to_str().ok().and_then(|h| h.parse().ok());
        Ok(Pool {
            authority: authority.to_string(),
            host,
            scheme,
            tls,
            require_http2: opts.require_http2,
            h2_max_connections: opts.connections,
            streams_per_connection: opts.streams_per_connection,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(Vec::new()),
            h2_connecting: AtomicUsize::new(0),
            h2_turn: AtomicUsize::new(0),
            h2_changed: tokio::sync::Notify::new(),
            protocol: OnceLock::new(),
            h2_authority,
            connect_timeout,
            insecure: opts.tls.insecure,
            stats: ConnectionStats::default(),
        })
    }

    /// The protocol the server chose on the first connection, once known.
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol.get().copied()
    }

    /// What the report says about this run's connections.
    pub fn summary(&self) -> ConnectionSummary {
        self.stats.summary(self.tls.is_some(), self.insecure)
    }

    /// Opens the first connection before any load: a TLS or protocol refusal
    /// (untrusted or expired certificate, wrong host name, no HTTP/2 when
    /// required) is an error here, before anything is measured. A server
    /// that is merely unreachable is not: the run counts connect errors.
    pub async fn probe(&self) -> Result<Option<Protocol>, ConnectError> {
        match self.connect().await {
            Ok(conn) => {
                self.keep(conn);
                Ok(self.protocol())
            }
            Err(e) if e.fatal => Err(e),
            Err(_) => Ok(None),
        }
    }

    fn keep(&self, conn: Conn) {
        match conn {
            Conn::H1(s) => self.put(s),
            Conn::H2(s) => self.add_h2(s),
        }
    }

    fn add_h2(&self, sender: http2::SendRequest<Full<Bytes>>) {
        if let Ok(mut list) = self.h2.lock() {
            list.push(H2Conn {
                sender,
                streams: Arc::new(Semaphore::new(self.streams_per_connection)),
            });
        }
        self.h2_changed.notify_waiters();
    }

    fn take_idle(&self) -> Option<http1::SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, s: http1::SendRequest<Full<Bytes>>) {
        if !s.is_closed() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(s);
            }
        }
    }

    fn host_name(&self) -> &str {
        self.authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.authority)
    }

    async fn connect(&self) -> Result<Conn, ConnectError> {
        let t0 = Instant::now();
        let result = match tokio::time::timeout(self.connect_timeout, self.connect_inner()).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError {
                failure: Failure::Timeout,
                reason: format!(
                    "{}: connecting timed out after {:?}",
                    self.authority, self.connect_timeout
                ),
                fatal: false,
            }),
        };
        match &result {
            Ok((conn, resumed)) => {
                let protocol = match conn {
                    Conn::H1(_) => Protocol::Http1,
                    Conn::H2(_) => Protocol::Http2,
                };
                let _ = self.protocol.set(protocol);
                self.stats.opened(protocol, t0.elapsed(), *resumed);
            }
            Err(e) => self.stats.failed(&e.reason),
        }
        result.map(|(c, _)| c)
    }

    async fn connect_inner(&self) -> Result<(Conn, bool), ConnectError> {
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| ConnectError {
                failure: Failure::Connect,
                reason: format!("cannot connect to {}: {e}", self.authority),
                fatal: false,
            })?;
        let _ = tcp.set_nodelay(true);
        let Some((connector, name)) = &self.tls else {
            return Ok((self.handshake(tcp, self.require_http2).await?, false));
        };
        let stream = connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| ConnectError {
                failure: Failure::Connect,
                reason: tls::describe_error(self.host_name(), &e),
                fatal: e.kind() != std::io::ErrorKind::ConnectionReset,
            })?;
        let (_, session) = stream.get_ref();
        let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let h2 = session.alpn_protocol() == Some(b"h2");
        if self.require_http2 && !h2 {
            let got = session
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_else(|| "no ALPN protocol".into());
            return Err(ConnectError {
                failure: Failure::Connect,
                reason: format!(
                    "{}: the server does not offer HTTP/2 (ALPN answered {got}) and --http2 requires it",
                    self.host_name()
                ),
                fatal: true,
            });
        }
        Ok((self.handshake(stream, h2).await?, resumed))
    }

    async fn handshake<I>(&self, io: I, h2: bool) -> Result<Conn, ConnectError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let refused = |e: hyper::Error| ConnectError {
            failure: Failure::Connect,
            reason: format!("{}: HTTP handshake failed: {e}", self.host_name()),
            fatal: false,
        };
        if h2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(TokioIo::new(io))
                .await
                .map_err(refused)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Conn::H2(sender))
        } else {
            let (sender, conn) = http1::handshake(TokioIo::new(io)).await.map_err(refused)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Conn::H1(sender))
        }
    }

    /// Like [`Pool::send`] on a connection the caller keeps in `slot` (closed
    /// loop: one connection per worker, no pool lock). Over HTTP/2 the slot
    /// stays empty and streams share the pool's connections.
    pub async fn send_on(
        &self,
        slot: &mut Option<SendRequest<Full<Bytes>>>,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Option<&Bytes>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        if self.protocol() == Some(Protocol::Http2) {
            return self.send(method, uri, headers, body, timeout).await;
        }
        let work = async {
            // A worker's first request takes the probe's idle connection.
            let conn = slot.take().or_else(|| self.take_idle());
            let (result, conn) = self.exchange(conn, method, uri, headers, body, 0).await;
            *slot = conn;
            result
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Sends one request and reads the whole body, within `timeout`.
    pub async fn send(
        &self,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Option<&Bytes>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        self.send_keeping_body(method, uri, headers, body, timeout, 0)
            .await
    }

    /// Like [`Pool::send`], keeping the first `keep` bytes of the response
    /// body in [`Answer::body`] (the rest is read and dropped).
    pub async fn send_keeping_body(
        &self,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Option<&Bytes>,
        timeout: Duration,
        keep: usize,
    ) -> Result<Answer, Failure> {
        let work = self.send_inner(method, uri, headers, body, keep);
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        }
    }

    async fn send_inner(
        &self,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Option<&Bytes>,
        keep: usize,
    ) -> Result<Answer, Failure> {
        if self.protocol() == Some(Protocol::Http2) {
            let req = self.request(method, uri, headers, body, false);
            return self.exchange_h2(req, keep).await;
        }
        let (result, conn) = self
            .exchange(self.take_idle(), method, uri, headers, body, keep)
            .await;
        if let Some(c) = conn {
            self.put(c);
        }
        result
    }

    fn request(
        &self,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Option<&Bytes>,
        http1: bool,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body.cloned().unwrap_or_default()));
        *req.method_mut() = method.clone();
        *req.headers_mut() = headers;
        if http1 {
            *req.uri_mut() = uri.clone();
            req.headers_mut().insert(HOST, self.host.clone());
        } else {
            // HTTP/2 carries scheme and authority as pseudo-headers: an
            // absolute target.
            let mut parts = uri.clone().into_parts();
            parts.scheme = Some(self.scheme.clone());
            parts.authority = self.h2_authority.clone();
            if parts.path_and_query.is_none() {
                parts.path_and_query = Some(hyper::http::uri::PathAndQuery::from_static("/"));
            }
            *req.uri_mut() = Uri::from_parts(parts).unwrap_or_else(|_| uri.clone());
            *req.version_mut() = Version::HTTP_2;
        }
        req
    }

    /// A stream on one of the HTTP/2 connections: the least busy one with a
    /// free stream, else a new connection while fewer than the maximum are
    /// open, else wait for a stream on the next connection in turn.
    async fn h2_stream(
        &self,
    ) -> Result<(http2::SendRequest<Full<Bytes>>, OwnedSemaphorePermit), Failure> {
        enum Next {
            Use(http2::SendRequest<Full<Bytes>>, Arc<Semaphore>),
            Open,
            Wait,
        }
        loop {
            let next = {
                let Ok(mut list) = self.h2.lock() else {
                    return Err(Failure::Other);
                };
                list.retain(|c| !c.sender.is_closed());
                let best = list
                    .iter()
                    .max_by_key(|c| c.streams.available_permits())
                    .filter(|c| c.streams.available_permits() > 0);
                let opening = self.h2_connecting.load(Ordering::Relaxed);
                match best {
                    Some(c) => Next::Use(c.sender.clone(), c.streams.clone()),
                    None if list.len() + opening < self.h2_max_connections => {
                        self.h2_connecting.fetch_add(1, Ordering::Relaxed);
                        Next::Open
                    }
                    None if list.is_empty() => Next::Wait,
                    None => {
                        let i = self.h2_turn.fetch_add(1, Ordering::Relaxed) % list.len();
                        Next::Use(list[i].sender.clone(), list[i].streams.clone())
                    }
                }
            };
            match next {
                Next::Use(sender, streams) => {
                    let permit = streams.acquire_owned().await.map_err(|_| Failure::Other)?;
                    return Ok((sender, permit));
                }
                Next::Open => {
                    let opened = self.connect().await;
                    self.h2_connecting.fetch_sub(1, Ordering::Relaxed);
                    match opened {
                        Ok(conn) => self.keep(conn),
                        Err(e) => {
                            self.h2_changed.notify_waiters();
                            return Err(e.failure);
                        }
                    }
                }
                Next::Wait => {
                    let changed = self.h2_changed.notified();
                    let _ = tokio::time::timeout(Duration::from_millis(20), changed).await;
                }
            }
        }
    }

    async fn exchange_h2(&self, req: Request<Full<Bytes>>, keep: usize) -> Result<Answer, Failure> {
        let (mut sender, permit) = self.h2_stream().await?;
        if let Err(e) = sender.ready().await {
            self.stats.request_failed(&e);
            return Err(Failure::Other);
        }
        let answer = match sender.send_request(req).await {
            Ok(resp) => read_answer(resp, keep, &self.stats).await,
            Err(e) => {
                self.stats.request_failed(&e);
                Err(Failure::Other)
            }
        };
        drop(permit);
        answer
    }

    /// One exchange on `conn` (or a new connection), keeping the first
    /// `keep` bytes of the body; gives back the connection when it can be reused.
    async fn exchange(
        &self,
        conn: Option<http1::SendRequest<Full<Bytes>>>,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Option<&Bytes>,
        keep: usize,
    ) -> (
        Result<Answer, Failure>,
        Option<http1::SendRequest<Full<Bytes>>>,
    ) {
        // A kept connection the server closed meanwhile fails before the
        // request is written: hyper hands the request back, and it is sent
        // once more on a fresh connection. If the close crossed the request
        // on the wire (the server's idle timeout fired as the request went
        // out: workerd closes a kept connection after 5 s idle, and one
        // written to then answers with a reset), nothing came back and an
        // idempotent request is sent again on a fresh connection too, once,
        // as browsers and Go's client do (RFC 9110 section 9.2.2). Counted
        // in the report (`resent`); the latency includes both tries.
        let mut replay =
            (conn.is_some() && failover::is_idempotent(method.as_str())).then(|| headers.clone());
        let mut req = self.request(method, uri, headers, body, true);
        let mut fresh = false;
        let mut conn = conn.filter(|c| !c.is_closed());
        loop {
            let mut sender = match conn.take() {
                Some(s) => s,
                None => {
                    fresh = true;
                    match self.connect().await {
                        Ok(Conn::H1(s)) => s,
                        Ok(h2 @ Conn::H2(_)) => {
                            // The server chose HTTP/2 (ALPN): from now on
                            // requests go over multiplexed streams.
                            self.keep(h2);
                            let (parts, body) = req.into_parts();
                            let headers = parts.headers;
                            let body = body_bytes(body);
                            let req2 = self.request(
                                &parts.method,
                                &parts.uri,
                                headers,
                                Some(&body),
                                false,
                            );
                            return (self.exchange_h2(req2, keep).await, None);
                        }
                        Err(e) => return (Err(e.failure), None),
                    }
                }
            };
            if let Err(e) = sender.ready().await {
                if fresh {
                    self.stats.request_failed(&e);
                    return (Err(Failure::Other), None);
                }
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let answer = read_answer(resp, keep, &self.stats).await;
                    let reuse = answer.is_ok();
                    return (answer, Some(sender).filter(|s| reuse && !s.is_closed()));
                }
                Err(mut e) => match (e.take_message(), replay.take()) {
                    (Some(unsent), _) if !fresh => req = unsent,
                    (None, Some(headers)) if !fresh => {
                        self.stats.resent.fetch_add(1, Ordering::Relaxed);
                        req = self.request(method, uri, headers, body, true);
                    }
                    _ => {
                        self.stats.request_failed(e.error());
                        return (Err(Failure::Other), None);
                    }
                },
            }
        }
    }
}

/// An error and its causes (`error sending request for url (...): operation
/// timed out`, `connection error: Connection reset by peer`): the top
/// message of reqwest's and hyper's errors does not say what went wrong.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The bytes of a request body built by [`Pool::request`] (always `Full`).
fn body_bytes(body: Full<Bytes>) -> Bytes {
    use http_body_util::BodyExt as _;
    futures_util::FutureExt::now_or_never(body.collect())
        .and_then(|r| r.ok())
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

/// Reads the body frame by frame, keeping the first `keep` bytes.
async fn read_answer(
    resp: Response<Incoming>,
    keep: usize,
    stats: &ConnectionStats,
) -> Result<Answer, Failure> {
    let protocol = if resp.version() == Version::HTTP_2 {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    let head_at = Instant::now();
    let (parts, mut body) = resp.into_parts();
    let mut events = crate::sse::is_event_stream(
        parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
    .then(crate::sse::EventCounter::new);
    let (mut first_byte_at, mut first_event_at, mut last_event_at) = (None, None, None);
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Err(e) => {
                stats.request_failed(&e);
                return Err(Failure::Other);
            }
            Ok(frame) => {
                if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
                    let now = Instant::now();
                    first_byte_at.get_or_insert(now);
                    if events.as_mut().is_some_and(|c| c.feed(data) > 0) {
                        first_event_at.get_or_insert(now);
                        last_event_at = Some(now);
                    }
                    let room = keep.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: Bytes::from(kept),
        protocol,
        head_at,
        first_byte_at,
        events: events.map_or(0, |c| c.events()),
        first_event_at,
        last_event_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_test_origin::{Behavior, LatencyDist, Origin};

    #[tokio::test]
    async fn keeps_connections_alive_and_times_out() {
        let o = Origin::start(
            "127.0.0.1:0".parse().unwrap(),
            "blue",
            Behavior {
                latency: LatencyDist::Fixed(Duration::from_millis(50)),
                ..Behavior::default()
            },
        )
        .await
        .unwrap();
        let pool = Pool::new(&o.addr.to_string(), Duration::from_secs(1)).unwrap();
        let uri: Uri = "/hello?x=1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-test", HeaderValue::from_static("1"));
        for _ in 0..3 {
            let a = pool
                .send(
                    &Method::POST,
                    &uri,
                    h.clone(),
                    Some(&Bytes::from_static(b"abc")),
                    Duration::from_secs(2),
                )
                .await
                .unwrap();
            assert_eq!(a.status, 200);
            assert_eq!(a.headers.get("x-origin-color").unwrap(), "blue");
        }
        assert_eq!(pool.idle.lock().unwrap().len(), 1, "one connection reused");
        let seen = o.recent();
        assert_eq!(
            (seen[0].method.as_str(), seen[0].path.as_str()),
            ("POST", "/hello")
        );
        assert_eq!(
            (seen[0].query.as_deref(), seen[0].body_len),
            (Some("x=1"), 3)
        );
        assert_eq!(seen[0].header("x-test"), Some("1"));
        assert_eq!(seen[0].header("host"), Some(o.addr.to_string().as_str()));
        let t = pool
            .send(
                &Method::GET,
                &uri,
                HeaderMap::new(),
                None,
                Duration::from_millis(10),
            )
            .await;
        assert_eq!(t.unwrap_err(), Failure::Timeout);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = Pool::new(&format!("127.0.0.1:{port}"), Duration::from_secs(1)).unwrap();
        let e = dead
            .send(
                &Method::GET,
                &uri,
                HeaderMap::new(),
                None,
                Duration::from_secs(1),
            )
            .await;
        assert_eq!(e.unwrap_err(), Failure::Connect);
    }

    /// A server that answers the first request on each connection and resets
    /// the connection on the second, after reading it: the race of a request
    /// written to a kept connection as the server's idle timeout closes it.
    async fn one_answer_per_connection() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut answered = false;
                    let mut seen = Vec::new();
                    while let Ok(n) = sock.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        if answered {
                            let _ = sock.set_zero_linger();
                            return;
                        }
                        seen.drain(..end + 4);
                        answered = true;
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn an_idempotent_request_is_sent_again_when_its_kept_connection_is_reset() {
        let (addr, accepted) = one_answer_per_connection().await;
        let pool = Pool::new(&addr.to_string(), Duration::from_secs(1)).unwrap();
        let uri: Uri = "/x".parse().unwrap();
        let send = |method: Method| {
            let pool = &pool;
            let uri = &uri;
            async move {
                pool.send(&method, uri, HeaderMap::new(), None, Duration::from_secs(2))
                    .await
            }
        };
        assert_eq!(send(Method::GET).await.unwrap().status, 200);
        assert_eq!(pool.summary().resent, 0);
        // Written to the kept connection, reset: sent again on a new one.
        assert_eq!(send(Method::GET).await.unwrap().status, 200);
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
        assert_eq!(pool.summary().resent, 1);
        assert_eq!(pool.summary().last_request_error, None);
        // A POST is not sent twice: it fails, and says why.
        assert_eq!(send(Method::POST).await.unwrap_err(), Failure::Other);
        let s = pool.summary();
        assert_eq!((s.resent, accepted.load(Ordering::Relaxed)), (1, 2));
        assert!(s.last_request_error.is_some(), "{s:?}");
        // A fresh connection is never retried: the GET after the failed
        // POST opens one and is answered there.
        assert_eq!(send(Method::GET).await.unwrap().status, 200);
        assert_eq!(pool.summary().resent, 1);
    }
}
