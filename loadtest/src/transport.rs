//! The engine's HTTP/1.1 transport: a small keep-alive connection pool on
//! hyper's client connections, one request per connection at a time.
//!
//! A general-purpose client (reqwest) costs about a third of the throughput
//! a load generator needs on two cores; this does only what the engine
//! needs (plain HTTP on loopback, keep-alive, per-request timeout) with
//! little per-request work. The admin client keeps using reqwest.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
pub use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderValue, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why a request got no (complete) response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Connect,
    Other,
}

/// What the engine keeps of a response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// The first bytes of the body, only with [`Pool::send_keeping_body`]
    /// (the load engine reads and drops bodies: empty).
    pub body: Bytes,
}

/// Keep-alive connections to one `host:port`.
pub struct Pool {
    authority: String,
    host: HeaderValue,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    connect_timeout: Duration,
}

impl Pool {
    /// `authority` is `host:port`.
    pub fn new(authority: &str, connect_timeout: Duration) -> Result<Pool, String> {
        let host =
            HeaderValue::from_str(authority).map_err(|_| format!("bad host {authority:?}"))?;
        Ok(Pool {
            authority: authority.to_string(),
            host,
            idle: Mutex::new(Vec::new()),
            connect_timeout,
        })
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, s: SendRequest<Full<Bytes>>) {
        if !s.is_closed() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(s);
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.authority))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(_)) => return Err(Failure::Connect),
                Err(_) => return Err(Failure::Timeout),
            };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Like [`Pool::send`] on a connection the caller keeps in `slot` (closed
    /// loop: one connection per worker, no pool lock).
    pub async fn send_on(
        &self,
        slot: &mut Option<SendRequest<Full<Bytes>>>,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Option<&Bytes>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let work = async {
            let (result, conn) = self
                .exchange(slot.take(), method, uri, headers, body, 0)
                .await;
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
        let (result, conn) = self
            .exchange(self.take_idle(), method, uri, headers, body, keep)
            .await;
        if let Some(c) = conn {
            self.put(c);
        }
        result
    }

    /// One exchange on `conn` (or a new connection), keeping the first
    /// `keep` bytes of the body; gives back the connection when it can be reused.
    async fn exchange(
        &self,
        conn: Option<SendRequest<Full<Bytes>>>,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Option<&Bytes>,
        keep: usize,
    ) -> (Result<Answer, Failure>, Option<SendRequest<Full<Bytes>>>) {
        // A kept connection the server closed meanwhile fails before the
        // request is written: hyper hands the request back, and it is sent
        // once more on a fresh connection.
        let mut req = Request::new(Full::new(body.cloned().unwrap_or_default()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers;
        req.headers_mut().insert(HOST, self.host.clone());
        let mut fresh = false;
        let mut conn = conn.filter(|c| !c.is_closed());
        loop {
            let mut sender = match conn.take() {
                Some(s) => s,
                None => {
                    fresh = true;
                    match self.connect().await {
                        Ok(s) => s,
                        Err(f) => return (Err(f), None),
                    }
                }
            };
            if sender.ready().await.is_err() {
                if fresh {
                    return (Err(Failure::Other), None);
                }
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let (parts, mut body) = resp.into_parts();
                    // Read the body frame by frame, dropping what is not kept.
                    let mut kept = Vec::new();
                    while let Some(frame) = body.frame().await {
                        match frame {
                            Err(_) => return (Err(Failure::Other), None),
                            Ok(frame) => {
                                if let Some(data) = frame.data_ref() {
                                    let room = keep.saturating_sub(kept.len());
                                    kept.extend_from_slice(&data[..data.len().min(room)]);
                                }
                            }
                        }
                    }
                    let answer = Answer {
                        status: parts.status.as_u16(),
                        headers: parts.headers,
                        body: Bytes::from(kept),
                    };
                    return (Ok(answer), Some(sender).filter(|s| !s.is_closed()));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return (Err(Failure::Other), None),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::{Behavior, LatencyDist, Origin};

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
}
