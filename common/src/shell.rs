//! The text protocol between the Cloudflare Worker's JavaScript shell and
//! the core.
//!
//! On Workers the request's I/O runs in JavaScript (`edge/cloudflare/shell.js`)
//! and every decision in Rust, through synchronous calls that exchange one
//! string each way. Measured through workerd, a request path written as async
//! Rust (wasm-bindgen futures, a JS closure per await, a microtask per wake)
//! cost more than everything greenlight decides; a JS `await` on the
//! runtime's own `fetch` costs almost nothing. A string per call, rather than
//! one call per header or field, keeps the crossings between wasm and
//! JavaScript to a handful per request.
//!
//! Fields are separated by `\n`. HTTP header names and values can never
//! contain a line feed, so header lists travel as `name\nvalue\n…` with no
//! escaping; a reply body, which may contain line feeds, is always last.
//!
//! Steps (Rust → shell), first field is the kind:
//! - `load`: read configuration and state from the store, then begin again.
//! - `admin`: hand the request to the async admin handler.
//! - `reply\n<status>\n<header count>\n<headers…>\n<body>`: answer this.
//! - `forward\n<id>\n<method>\n<url>\n<timeout ms>\n<body>\n<headers…>`: send
//!   one attempt; `<body>` is `empty`, `buffer` (read it once, send it again
//!   on a retry) or `stream` (send the client's stream, once). The result goes
//!   back with the same id.
//! - `deliver\n<status>\n<headers…>`: pass the origin's response on with
//!   exactly these headers.
//!
//! Any step may be preceded by `persist\n`: the shell then writes this
//! isolate's health record to the store after responding.
//!
//! Attempt results (shell → Rust): `<status>\n<headers…>` for an answer,
//! `timeout` when no response headers came in time, `error\n<message>`
//! otherwise.

use crate::edge::{self, BodyPlan, Forward, Reply};
use crate::failover::Outcome;
use crate::http::{connection_tokens, join_lines, split_lines};

/// Step: read configuration and state first.
pub const LOAD: &str = "load";
/// Step: the admin API's async handler takes the request.
pub const ADMIN: &str = "admin";
/// Prefix of a step after which the health record must be written.
pub const PERSIST_PREFIX: &str = "persist\n";

/// A `reply` step.
pub fn reply(reply: &Reply) -> String {
    let mut out = format!("reply\n{}\n{}\n", reply.status, reply.headers.len());
    for (name, value) in &reply.headers {
        out.push_str(name);
        out.push('\n');
        out.push_str(value);
        out.push('\n');
    }
    out.push_str(&reply.body);
    out
}

/// A `forward` step for attempt `id`.
pub fn forward(id: u32, method: &str, body: BodyPlan, fwd: &Forward) -> String {
    let body = match body {
        BodyPlan::Empty => "empty",
        BodyPlan::Buffer => "buffer",
        BodyPlan::Stream => "stream",
    };
    let mut out = format!(
        "forward\n{id}\n{method}\n{}\n{}\n{body}",
        fwd.url, fwd.timeout_ms
    );
    let headers = join_lines(
        fwd.request_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if !headers.is_empty() {
        out.push('\n');
        out.push_str(&headers);
    }
    out
}

/// A `deliver` step: the origin's headers minus hop-by-hop ones and the
/// ones the edge sets itself, plus the plan's `x-greenlight-*` headers.
pub fn deliver(status: u16, origin_header_lines: &str, fwd: &Forward) -> String {
    let origin = split_lines(origin_header_lines);
    let connection = origin
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("connection"))
        .map(|(_, v)| v.as_str());
    let tokens = connection_tokens(connection);
    let kept = origin
        .iter()
        .filter(|(k, _)| edge::keep_origin_response_header(k, &tokens, fwd))
        .chain(&fwd.response_headers)
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let headers = join_lines(kept);
    if headers.is_empty() {
        format!("deliver\n{status}")
    } else {
        format!("deliver\n{status}\n{headers}")
    }
}

/// An attempt's result as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult<'a> {
    pub outcome: Outcome,
    /// The response's header fields, when it answered.
    pub header_lines: Option<&'a str>,
}

/// Reads the shell's report of an attempt that waited up to `timeout_ms`.
/// Anything unreadable counts as an unreachable origin, never as an answer.
pub fn attempt_result(report: &str, timeout_ms: u64) -> AttemptResult<'_> {
    let (first, rest) = report.split_once('\n').unwrap_or((report, ""));
    let failed = |outcome| AttemptResult {
        outcome,
        header_lines: None,
    };
    match first {
        "timeout" => failed(Outcome::TimedOut {
            after_ms: timeout_ms,
        }),
        "error" => failed(Outcome::Unreachable(rest.to_owned())),
        status => match status.parse::<u16>() {
            Ok(status) if (100..=599).contains(&status) => AttemptResult {
                outcome: Outcome::Answered(status),
                header_lines: Some(rest),
            },
            _ => failed(Outcome::Unreachable(format!(
                "unreadable attempt report {:?}",
                first.chars().take(40).collect::<String>()
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::color::Color;
    use crate::decide::{RouteDecision, RouteReason};

    fn fwd() -> Forward {
        Forward {
            decision: RouteDecision {
                color: Color::Green,
                epoch: 7,
                reason: RouteReason::Sticky,
            },
            url: "http://127.0.0.1:9/api?q=1".into(),
            request_headers: vec![
                ("accept".into(), "*/*".into()),
                ("x-greenlight-principal".into(), "app".into()),
            ],
            response_headers: vec![
                ("x-greenlight-color".into(), "green".into()),
                ("x-greenlight-epoch".into(), "7".into()),
                ("set-cookie".into(), "greenlight-id=u1".into()),
            ],
            fallback: None,
            retryable: true,
            timeout_ms: 1500,
            deadline_ms: 15_000,
            retry_after_s: 5,
            rate_key: None,
        }
    }

    #[test]
    fn reply_step_keeps_a_multi_line_body_last() {
        let r = Reply {
            status: 401,
            headers: vec![
                ("www-authenticate".into(), "Bearer".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: "{\n\"a\": 1\n}".into(),
        };
        assert_eq!(
            reply(&r),
            "reply\n401\n2\nwww-authenticate\nBearer\ncontent-type\napplication/json\n{\n\"a\": 1\n}"
        );
        let empty = Reply {
            status: 204,
            headers: vec![],
            body: String::new(),
        };
        assert_eq!(reply(&empty), "reply\n204\n0\n");
    }

    #[test]
    fn forward_step_carries_everything_the_shell_needs() {
        assert_eq!(
            forward(3, "GET", BodyPlan::Empty, &fwd()),
            "forward\n3\nGET\nhttp://127.0.0.1:9/api?q=1\n1500\nempty\naccept\n*/*\nx-greenlight-principal\napp"
        );
        let mut bare = fwd();
        bare.request_headers.clear();
        assert_eq!(
            forward(4, "PUT", BodyPlan::Buffer, &bare),
            "forward\n4\nPUT\nhttp://127.0.0.1:9/api?q=1\n1500\nbuffer"
        );
        assert!(forward(5, "POST", BodyPlan::Stream, &bare).ends_with("\nstream"));
    }

    #[test]
    fn deliver_drops_hop_by_hop_and_edge_owned_headers() {
        let origin = "content-type\ntext/plain\nconnection\nclose, x-hop\nx-hop\n1\n\
                      transfer-encoding\nchunked\nx-greenlight-color\nblue\nset-cookie\na=1";
        assert_eq!(
            deliver(200, origin, &fwd()),
            "deliver\n200\ncontent-type\ntext/plain\nset-cookie\na=1\n\
             x-greenlight-color\ngreen\nx-greenlight-epoch\n7\nset-cookie\ngreenlight-id=u1"
        );
        let mut bare = fwd();
        bare.response_headers.clear();
        assert_eq!(deliver(304, "", &bare), "deliver\n304");
    }

    #[test]
    fn attempt_reports() {
        assert_eq!(
            attempt_result("200\ncontent-type\ntext/plain", 1500),
            AttemptResult {
                outcome: Outcome::Answered(200),
                header_lines: Some("content-type\ntext/plain"),
            }
        );
        assert_eq!(attempt_result("503", 1500).outcome, Outcome::Answered(503));
        assert_eq!(
            attempt_result("timeout", 1500).outcome,
            Outcome::TimedOut { after_ms: 1500 }
        );
        assert_eq!(
            attempt_result("error\nTypeError: Network connection lost.", 1500).outcome,
            Outcome::Unreachable("TypeError: Network connection lost.".into())
        );
        for junk in ["", "abc", "99", "600\nx\ny", "-1"] {
            let r = attempt_result(junk, 1500);
            assert!(matches!(r.outcome, Outcome::Unreachable(_)), "{junk:?}");
            assert_eq!(r.header_lines, None);
        }
    }
}
