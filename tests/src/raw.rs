//! A raw HTTP/1.1 client for requests other clients would not send as
//! written: `reqwest` (like every WHATWG URL parser) resolves `..`, turns
//! `\` into `/` and never sends an absolute-form target, so path-confusion
//! tests write the request line themselves (`curl --path-as-is`).

use anyhow::{bail, Context};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read to the end of the connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Names lower-case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
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

/// The response in `raw`, once all of it has arrived (by its framing).
fn complete(raw: &[u8], head_only: bool) -> Option<anyhow::Result<RawResponse>> {
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
        body.ends_with(b"0\r\n\r\n")
    } else if let Some(len) = field("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        body.len() >= len
    } else {
        false
    };
    done.then(|| parse(raw))
}

fn parse(raw: &[u8]) -> anyhow::Result<RawResponse> {
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
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
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
            return Ok(body);
        }
        if rest.len() < size + 2 {
            bail!("truncated chunk");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
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
    }
}
