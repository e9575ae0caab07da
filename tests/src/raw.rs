//! A raw HTTP/1.1 client for requests other clients would not send as
//! written: `reqwest` (like every WHATWG URL parser) resolves `..`, turns
//! `\` into `/` and never sends an absolute-form target, so path-confusion
//! tests write the request line themselves (`curl --path-as-is`).

use anyhow::{bail, Context};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A response read to the end of the connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Names lower-case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body (names lower-case).
    pub trailers: Vec<(String, String)>,
    /// Informational (1xx) heads that came before the answer, by status.
    pub informational: Vec<u16>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `METHOD <target> HTTP/1.1` exactly as given to the server at
/// `base_url` (`http://127.0.0.1:PORT`), with `Host` naming that server,
/// `Connection: close` and `headers`, and reads the whole response.
pub async fn request(
    base_url: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<RawResponse> {
    request_with_body(base_url, method, target, headers, b"").await
}

/// [`request`] with a body (sent right after the head; give the framing
/// header, e.g. `content-length`, in `headers`).
pub async fn request_with_body(
    base_url: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<RawResponse> {
    let authority = base_url
        .strip_prefix("http://")
        .context("the raw client speaks plain http only")?
        .trim_end_matches('/');
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let exchange = async {
        let mut stream = TcpStream::connect(authority).await?;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        // Read until the response is complete (servers may keep the
        // connection open a while despite `Connection: close`) or closed.
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(resp) = complete(&raw, method == "HEAD") {
                return resp;
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return parse(&raw);
            }
            raw.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .context("no complete answer within 30 s")?
        .with_context(|| format!("answer to {method} {target}"))
}

/// Skips informational (1xx) heads at the start of `raw`; returns their
/// statuses and where the final answer starts.
fn skip_informational(raw: &[u8]) -> (Vec<u16>, usize) {
    let mut statuses = Vec::new();
    let mut at = 0;
    while raw[at..].starts_with(b"HTTP/1.1 1") {
        let Some(end) = raw[at..].windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let status = std::str::from_utf8(&raw[at + 9..at + 12])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(100);
        if status == 101 {
            break;
        }
        statuses.push(status);
        at += end + 4;
    }
    (statuses, at)
}

/// The response in `raw`, once all of it has arrived (by its framing).
fn complete(raw: &[u8], head_only: bool) -> Option<anyhow::Result<RawResponse>> {
    let (_, start) = skip_informational(raw);
    let raw_all = raw;
    let raw = &raw[start..];
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let body = &raw[head_end..];
    let done = if head_only || head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304")
    {
        true
    } else if field("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        dechunk(body).is_ok()
    } else if let Some(len) = field("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        body.len() >= len
    } else {
        false
    };
    done.then(|| parse(raw_all))
}

fn parse(raw_all: &[u8]) -> anyhow::Result<RawResponse> {
    let (informational, start) = skip_informational(raw_all);
    let raw = &raw_all[start..];
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut fields);
    let httparse::Status::Complete(head_len) = resp.parse(raw)? else {
        bail!("incomplete response head ({} bytes)", raw.len());
    };
    let status = resp.code.context("no status")?;
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let rest = &raw[head_len..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let (body, trailers) = if chunked {
        dechunk(rest)?
    } else {
        (rest.to_vec(), Vec::new())
    };
    Ok(RawResponse {
        status,
        headers,
        body,
        trailers,
        informational,
    })
}

/// Header or trailer fields, names lower-case.
type Fields = Vec<(String, String)>;

/// A chunked body and its trailer fields; an error until all of it is there.
fn dechunk(mut rest: &[u8]) -> anyhow::Result<(Vec<u8>, Fields)> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("truncated trailers")?;
            if end == 0 {
                return Ok((body, Vec::new()));
            }
            let block_end = rest
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .context("truncated trailers")?;
            let trailers = String::from_utf8_lossy(&rest[..block_end])
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            return Ok((body, trailers));
        }
        if rest.len() < size + 2 {
            bail!("truncated chunk");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A one-trick origin that writes `response` as given (bytes an HTTP
/// library would not send: informational heads, trailers it was not asked
/// for) to every connection, then closes it; it records each request head.
pub struct RawOrigin {
    pub addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawOrigin {
    pub async fn start(response: &[u8]) -> anyhow::Result<RawOrigin> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let response = response.to_vec();
        let recorded = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let response = response.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut raw = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !raw.windows(4).any(|w| w == b"\r\n\r\n") && raw.len() < 65_536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => raw.extend_from_slice(&buf[..n]),
                        }
                    }
                    if let Ok(mut h) = recorded.lock() {
                        h.push(String::from_utf8_lossy(&raw).into_owned());
                    }
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(RawOrigin { addr, heads, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request heads received so far (lower-cased).
    pub fn heads(&self) -> Vec<String> {
        self.heads
            .lock()
            .map(|h| h.iter().map(|s| s.to_ascii_lowercase()).collect())
            .unwrap_or_default()
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let r = parse(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/problem+json\r\ncontent-length: 2\r\n\r\n{}")
            .unwrap();
        assert_eq!(
            (r.status, r.header("content-type"), r.text().as_str()),
            (400, Some("application/problem+json"), "{}")
        );
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(r.text(), "abcde");
        let r = parse(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 7\r\n\r\n")
            .unwrap();
        assert_eq!((r.status, r.informational.clone()), (200, vec![103]));
        assert_eq!(r.trailers, vec![("x-sum".to_string(), "7".to_string())]);
        assert!(complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 7\r\n",
            false
        )
        .is_none());
    }
}
