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
//! - `admin\n<call>`: send the call line and the request's body to the
//!   rollout object (`crate::object`), then hand its answer to
//!   `adminAnswered`.
//! - `reply\n<status>\n<header count>\n<headers…>\n<body>`: answer this.
//! - `forward\n<id>\n<method>\n<url>\n<timeout ms>\n<body>\n<deliver below>\n
//!   <request delta>\n<response delta>`: send one attempt with the client's
//!   headers changed by the request delta. `<body>` is `empty`, `buffer`
//!   (read it once, send it again on a retry), `stream` (send the client's
//!   stream, once) or `rewrite` (read up to `rewriteReadLimit()` bytes once
//!   and send what `modelBody` makes of them for this attempt: a model
//!   route's body, see `crate::model`). An answer with a status below `<deliver below>` and no
//!   `Connection` header is delivered at once with its headers changed by
//!   the response delta, and the id goes back with the next `beginRequest`
//!   as finished; anything else goes back to `afterAttempt` with the id.
//! - `deliver\n<status>\n<response delta>`: pass the origin's response on
//!   with its headers changed by the delta.
//!
//! A delta is `<n>\n<n names to delete…>\n<m>\n<m name/value pairs to
//! append…>`: the shell copies a header list natively (`new
//! Headers(request.headers)`, `new Response(body, response)`) and applies the
//! few changes, rather than building every header again from strings; and
//! the common answer (no 5xx, no `Connection` header) needs no second call,
//! since the core can say in advance what it would do with it.
//!
//! Any step may be preceded by `persist\n<delay ms>\n`: the shell then
//! sends this isolate's health record to the rollout object that many ms
//! after responding (one report a second at most, however many failures:
//! `crate::object::ReportThrottle`); and by `flush\n<delay ms>\n`: the
//! shell then sends this isolate's telemetry batch that many ms later
//! (`crate::telemetry::FlushThrottle`).
//!
//! Attempt results (shell → Rust): `<status>\n<headers…>` for an answer,
//! `timeout` when no response headers came in time, `error\n<message>`
//! otherwise.

use crate::edge::{BodyMode, Forward, Reply, RequestHead};
use crate::failover::{unreachable_class, AttemptOutcome, FIRST_FAILED_STATUS};
use crate::http::{path_and_query, split_lines};

/// Where each field of a step sits once the step is split at `\n`. The
/// shell reads them through tables of the same names (`FORWARD`, `REPLY`,
/// `DELIVER` in shell.js), which a unit test checks against these.
pub mod field {
    /// `forward\n<id>\n<method>\n<url>\n<timeout ms>\n<body>\n<deliver below>\n<request delta>\n<response delta>`
    pub mod forward {
        pub const ID: usize = 1;
        pub const METHOD: usize = 2;
        pub const URL: usize = 3;
        pub const TIMEOUT_MS: usize = 4;
        pub const BODY: usize = 5;
        pub const DELIVER_BELOW: usize = 6;
        /// The request delta; the response delta follows where it ends.
        pub const REQUEST_DELTA: usize = 7;
    }
    /// `reply\n<status>\n<header count>\n<headers…>\n<body>`
    pub mod reply {
        pub const STATUS: usize = 1;
        pub const HEADER_COUNT: usize = 2;
        pub const HEADERS: usize = 3;
    }
    /// `deliver\n<status>\n<response delta>`
    pub mod deliver {
        pub const STATUS: usize = 1;
        pub const RESPONSE_DELTA: usize = 2;
    }
}

/// Step: read configuration and state first.
pub const LOAD: &str = "load";
/// Step: the rollout object takes the admin call (`admin\n<call>`).
pub const ADMIN: &str = "admin";
/// Prefix of a step after which the health record must be reported
/// (`persist\n<delay ms>\n<step>`).
pub const PERSIST_PREFIX: &str = "persist\n";

/// An `admin` step for `call_line` ([`crate::object::encode_call`]).
pub fn admin(call_line: &str) -> String {
    format!("{ADMIN}\n{call_line}")
}

/// `step` preceded by a health report due in `delay_ms`.
pub fn persist(delay_ms: u64, step: &str) -> String {
    format!("{PERSIST_PREFIX}{delay_ms}\n{step}")
}

/// Prefix of a step after which the telemetry batch must be flushed
/// (`flush\n<delay ms>\n<step>`).
pub const FLUSH_PREFIX: &str = "flush\n";

/// `step` preceded by a telemetry flush due in `delay_ms`.
pub fn flush(delay_ms: u64, step: &str) -> String {
    format!("{FLUSH_PREFIX}{delay_ms}\n{step}")
}

/// Prefix of a step whose request goes on with the state the isolate
/// holds while the shell reads a newer one in the background
/// (`refresh\n<step>`; [`crate::propagation`]).
pub const REFRESH_PREFIX: &str = "refresh\n";

/// `step` preceded by a background refresh of the state.
pub fn refresh(step: &str) -> String {
    format!("{REFRESH_PREFIX}{step}")
}

/// The value of header `name` in the shell's header lines
/// (`<name>\n<value>\n…`).
pub fn header_in_lines<'a>(lines: &'a str, name: &str) -> Option<&'a str> {
    let mut fields = lines.split('\n');
    while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
        if k.eq_ignore_ascii_case(name) {
            return Some(v);
        }
    }
    None
}

/// A request head as the shell sends it: `<method>\n<url>\n<headers…>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellRequest<'a> {
    pub method: &'a str,
    /// The URL's scheme (`http`, `https`), as the runtime saw the request.
    pub scheme: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: Vec<(String, String)>,
}

impl<'a> ShellRequest<'a> {
    pub fn parse(head: &'a str) -> Self {
        let mut fields = head.splitn(3, '\n');
        let method = fields.next().unwrap_or_default();
        let url = fields.next().unwrap_or_default();
        let headers = split_lines(fields.next().unwrap_or_default());
        let (path, query) = path_and_query(url);
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        ShellRequest {
            method,
            scheme,
            path,
            query,
            headers,
        }
    }

    /// The core's view; `client_addr_header` names the header the platform
    /// itself sets to the caller's address (never one the client chooses).
    pub fn head(&self, client_addr_header: &str) -> RequestHead<'_> {
        RequestHead {
            method: self.method,
            path: self.path,
            query: self.query,
            headers: &self.headers,
            scheme: self.scheme,
            client_addr: self
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(client_addr_header))
                .map(|(_, v)| v.as_str()),
        }
    }
}

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

/// A `forward` step for attempt `id`: the client's headers (`client`, as
/// the shell reported them) become `fwd.request_headers`.
pub fn forward(
    id: u32,
    method: &str,
    body: BodyMode,
    client: &[(String, String)],
    fwd: &Forward,
) -> String {
    let body = match body {
        BodyMode::Empty => "empty",
        BodyMode::Buffer => "buffer",
        BodyMode::Stream => "stream",
        BodyMode::Rewrite => "rewrite",
    };
    // An answer whose delivery depends on its headers goes back to Rust.
    let deliver_below = if fwd.needs_origin_headers() {
        0
    } else {
        FIRST_FAILED_STATUS
    };
    let mut out = format!(
        "forward\n{id}\n{method}\n{}\n{}\n{body}\n{deliver_below}\n",
        fwd.url, fwd.timeout_ms
    );
    push_delta(&mut out, client, &fwd.request_headers);
    out.push('\n');
    push_direct_delivery_delta(&mut out, fwd);
    out
}

/// What [`deliver`] does to an answer without a `Connection` header,
/// without seeing it (only for a forward that does not
/// [`Forward::needs_origin_headers`]): drop every hop-by-hop name and every
/// header the edge sets itself, then append the edge's headers
/// (`set-cookie` and `vary` are added to the origin's own, never replace
/// them).
fn push_direct_delivery_delta(out: &mut String, fwd: &Forward) {
    let fixed = fwd.fixed_delivery();
    push_fields(out, &fixed.deletes, fixed.appends.iter().copied());
}

/// A `deliver` step: the origin's headers minus hop-by-hop ones and the
/// ones the edge sets itself, rewritten where the forward says
/// ([`Forward::client_response_headers`]), plus the edge's headers.
pub fn deliver(status: u16, origin_header_lines: &str, fwd: &Forward) -> String {
    let origin = split_lines(origin_header_lines);
    let wanted = fwd.client_response_headers(&origin);
    let mut out = format!("deliver\n{status}\n");
    push_delta(&mut out, &origin, &wanted);
    out
}

/// Appends the delta that turns header list `from` into `to`: per name
/// (case-insensitive), when the values differ, delete the name and append
/// every wanted value in order; names whose values match are left alone.
/// (Runs on every forwarded request: no allocation per header.)
fn push_delta(out: &mut String, from: &[(String, String)], to: &[(String, String)]) {
    fn values<'a>(
        list: &'a [(String, String)],
        name: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        list.iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    let all = || from.iter().chain(to).map(|(k, _)| k.as_str());
    let mut deletes = Vec::new();
    let mut appends = Vec::new();
    for (i, name) in all().enumerate() {
        // Each name once, at its first occurrence.
        if all().take(i).any(|seen| seen.eq_ignore_ascii_case(name)) {
            continue;
        }
        if values(from, name).eq(values(to, name)) {
            continue;
        }
        if values(from, name).next().is_some() {
            deletes.push(name);
        }
        appends.extend(values(to, name).map(|v| (name, v)));
    }
    push_fields(out, &deletes, appends);
}

/// `<n>\n<names…>\n<m>\n<pairs…>`.
fn push_fields<'a>(
    out: &mut String,
    deletes: &[&str],
    appends: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    out.push_str(&deletes.len().to_string());
    for name in deletes {
        out.push('\n');
        out.push_str(name);
    }
    let mut pairs = String::new();
    let mut count = 0;
    for (name, value) in appends {
        pairs.push('\n');
        pairs.push_str(name);
        pairs.push('\n');
        pairs.push_str(value);
        count += 1;
    }
    out.push('\n');
    out.push_str(&count.to_string());
    out.push_str(&pairs);
}

/// An attempt's result as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult<'a> {
    pub outcome: AttemptOutcome,
    /// The response's header fields, when it answered.
    pub header_lines: Option<&'a str>,
}

/// Reads the shell's report of an attempt that waited up to `timeout_ms`.
/// Anything unreadable counts as an unreachable origin, never as an answer.
/// A runtime's error message becomes a class of failure
/// ([`unreachable_class`]): it may name the origin's address, and the
/// outcome ends up in problem bodies (the adapter logs the message).
pub fn attempt_result(report: &str, timeout_ms: u64) -> AttemptResult<'_> {
    let (first, rest) = report.split_once('\n').unwrap_or((report, ""));
    let failed = |outcome| AttemptResult {
        outcome,
        header_lines: None,
    };
    match first {
        "timeout" => failed(AttemptOutcome::TimedOut {
            after_ms: timeout_ms,
        }),
        "error" => failed(AttemptOutcome::Unreachable(
            unreachable_class(rest).to_owned(),
        )),
        status => match status.parse::<u16>() {
            Ok(status) if (100..=599).contains(&status) => AttemptResult {
                outcome: AttemptOutcome::Answered(status),
                header_lines: Some(rest),
            },
            _ => failed(AttemptOutcome::Unreachable(format!(
                "unreadable attempt report {:?}",
                first.chars().take(40).collect::<String>()
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_header_is_found_in_the_shells_lines_in_any_case() {
        let lines = "content-type\ntext/plain\nContent-Length\n42";
        assert_eq!(super::header_in_lines(lines, "content-length"), Some("42"));
        assert_eq!(super::header_in_lines(lines, "etag"), None);
        assert_eq!(super::header_in_lines("", "etag"), None);
        assert_eq!(super::header_in_lines("odd", "odd"), None);
    }

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
            websocket: false,
            private: false,
            location_rewrite: None,
            origin_headers: Default::default(),
            models: None,
            signing: None,
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

    fn client() -> Vec<(String, String)> {
        vec![
            ("accept".into(), "*/*".into()),
            ("host".into(), "edge.test".into()),
            ("x-api-key".into(), "secret".into()),
        ]
    }

    /// The response delta for [`fwd`]'s headers: the seven response
    /// hop-by-hop names other than `connection`, the edge's own names, then
    /// its headers.
    const DIRECT: &str = "9\nkeep-alive\nproxy-authenticate\nproxy-authorization\n\
                          proxy-connection\nte\ntransfer-encoding\nupgrade\n\
                          x-greenlight-color\nx-greenlight-epoch\n\
                          3\nx-greenlight-color\ngreen\nx-greenlight-epoch\n7\n\
                          set-cookie\ngreenlight-id=u1";

    #[test]
    fn forward_step_carries_both_deltas() {
        let fwd = fwd();
        let step = forward(3, "GET", BodyMode::Empty, &client(), &fwd);
        assert_eq!(
            step,
            format!(
                "forward\n3\nGET\nhttp://127.0.0.1:9/api?q=1\n1500\nempty\n500\n\
                 2\nhost\nx-api-key\n1\nx-greenlight-principal\napp\n{DIRECT}"
            )
        );
        // Nothing to change in the request: an empty request delta.
        let mut same = fwd.clone();
        same.request_headers = client();
        let step = forward(4, "PUT", BodyMode::Buffer, &client(), &same);
        assert!(step.starts_with(
            "forward\n4\nPUT\nhttp://127.0.0.1:9/api?q=1\n1500\nbuffer\n500\n0\n0\n9\n"
        ));
        let step = forward(5, "POST", BodyMode::Stream, &[], &same);
        assert!(step
            .contains("\nstream\n500\n0\n3\naccept\n*/*\nhost\nedge.test\nx-api-key\nsecret\n9\n"));
    }

    /// Applies a delta the way shell.js does; returns the list and where
    /// the delta ended.
    fn apply(
        from: &[(String, String)],
        fields: &[&str],
        at: usize,
    ) -> (Vec<(String, String)>, usize) {
        let n: usize = fields[at].parse().unwrap();
        let deletes = &fields[at + 1..=at + n];
        let mut out: Vec<(String, String)> = from
            .iter()
            .filter(|(k, _)| !deletes.iter().any(|d| d.eq_ignore_ascii_case(k)))
            .cloned()
            .collect();
        let m: usize = fields[at + n + 1].parse().unwrap();
        let start = at + n + 2;
        for pair in fields[start..start + 2 * m].chunks(2) {
            out.push((pair[0].to_string(), pair[1].to_string()));
        }
        (out, start + 2 * m)
    }

    fn normalised(v: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = v
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        // Order matters only within a name.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn a_delta_reaches_its_target_per_name() {
        let from = client();
        for to in [
            vec![],
            client(),
            vec![("accept".to_string(), "text/html".to_string())],
            vec![
                ("x-new".to_string(), "1".to_string()),
                ("x-new".to_string(), "2".to_string()),
                ("HOST".to_string(), "edge.test".to_string()),
            ],
        ] {
            let mut delta = String::new();
            push_delta(&mut delta, &from, &to);
            let fields: Vec<&str> = delta.split('\n').collect();
            let (got, end) = apply(&from, &fields, 0);
            assert_eq!(end, fields.len(), "delta {delta:?}");
            assert_eq!(normalised(got), normalised(to.clone()), "delta {delta:?}");
        }
    }

    #[test]
    fn deliver_drops_hop_by_hop_and_edge_owned_headers() {
        let origin = "content-type\ntext/plain\nconnection\nclose, x-hop\nx-hop\n1\n\
                      transfer-encoding\nchunked\nx-greenlight-color\nblue\nset-cookie\na=1";
        // Deleted: connection, x-hop, transfer-encoding, x-greenlight-color
        // (the edge's own), set-cookie (the edge adds one: all are appended
        // again in order); appended: the edge's headers.
        assert_eq!(
            deliver(200, origin, &fwd()),
            "deliver\n200\n5\nconnection\nx-hop\ntransfer-encoding\nx-greenlight-color\n\
             set-cookie\n4\nx-greenlight-color\ngreen\nset-cookie\na=1\nset-cookie\n\
             greenlight-id=u1\nx-greenlight-epoch\n7"
        );
        let mut bare = fwd();
        bare.response_headers.clear();
        assert_eq!(deliver(304, "", &bare), "deliver\n304\n0\n0");
        // The origin's content-length stays (a HEAD answer has no other).
        assert_eq!(
            deliver(200, "content-length\n12\netag\nx", &bare),
            "deliver\n200\n0\n0"
        );
    }

    /// The direct delivery the forward step announces must do what
    /// `deliver` would have done, for any answer without `Connection`.
    #[test]
    fn direct_delivery_matches_deliver() {
        let origins = [
            "content-type\ntext/plain",
            "",
            "content-length\n12\ntransfer-encoding\nchunked\nkeep-alive\ntimeout=5",
            "x-greenlight-color\nblue\nx-greenlight-epoch\n1\nset-cookie\na=1\nset-cookie\nb=2",
            "X-Greenlight-Color\nblue\nTE\ntrailers\netag\n\"x\"\nhost\norigin.test",
        ];
        for origin in origins {
            for fwd in [fwd(), {
                let mut f = fwd();
                f.response_headers.clear();
                f
            }] {
                let from = split_lines(origin);
                let step = forward(1, "GET", BodyMode::Empty, &client(), &fwd);
                let fields: Vec<&str> = step.split('\n').collect();
                let (_, request_end) = apply(&client(), &fields, field::forward::REQUEST_DELTA);
                let (direct, end) = apply(&from, &fields, request_end);
                assert_eq!(end, fields.len());
                let slow = deliver(200, origin, &fwd);
                let slow_fields: Vec<&str> = slow.split('\n').collect();
                let (slow, _) = apply(&from, &slow_fields, field::deliver::RESPONSE_DELTA);
                assert_eq!(normalised(direct), normalised(slow), "origin {origin:?}");
            }
        }
    }

    #[test]
    fn request_heads() {
        let r = ShellRequest::parse(
            "POST\nhttp://edge.test/api/items?x=1\naccept\n*/*\ncf-connecting-ip\n192.0.2.7",
        );
        assert_eq!(
            (r.method, r.scheme, r.path, r.query),
            ("POST", Some("http"), "/api/items", Some("x=1"))
        );
        assert_eq!(r.headers.len(), 2);
        let head = r.head("cf-connecting-ip");
        assert_eq!(head.client_addr, Some("192.0.2.7"));
        assert_eq!(head.header("Accept"), Some("*/*"));
        let bare = ShellRequest::parse("GET\nhttp://edge.test/");
        assert_eq!((bare.path, bare.query, bare.headers.len()), ("/", None, 0));
        assert_eq!(bare.head("cf-connecting-ip").client_addr, None);
        assert_eq!(ShellRequest::parse("").path, "/");
    }

    #[test]
    fn attempt_reports() {
        assert_eq!(
            attempt_result("200\ncontent-type\ntext/plain", 1500),
            AttemptResult {
                outcome: AttemptOutcome::Answered(200),
                header_lines: Some("content-type\ntext/plain"),
            }
        );
        assert_eq!(
            attempt_result("503", 1500).outcome,
            AttemptOutcome::Answered(503)
        );
        assert_eq!(
            attempt_result("timeout", 1500).outcome,
            AttemptOutcome::TimedOut { after_ms: 1500 }
        );
        assert_eq!(
            attempt_result("error\nTypeError: Network connection lost.", 1500).outcome,
            AttemptOutcome::Unreachable("connection lost".into())
        );
        for junk in ["", "abc", "99", "600\nx\ny", "-1"] {
            let r = attempt_result(junk, 1500);
            assert!(
                matches!(r.outcome, AttemptOutcome::Unreachable(_)),
                "{junk:?}"
            );
            assert_eq!(r.header_lines, None);
        }
    }

    /// The shell's tables of field positions (`const FORWARD = { … };` in
    /// shell.js), as name → position.
    fn shell_table(name: &str) -> Vec<(String, usize)> {
        let js = include_str!("../../edge/cloudflare/shell.js");
        let start = js
            .find(&format!("const {name} = {{"))
            .unwrap_or_else(|| panic!("shell.js defines no {name} table"));
        let body = &js[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
        body.split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| {
                let (k, v) = entry.split_once(':').unwrap();
                (k.trim().to_string(), v.trim().parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn the_shell_reads_every_field_where_the_core_writes_it() {
        use super::field::{deliver, forward as fwd, reply as rep};
        let expected = [
            (
                "FORWARD",
                vec![
                    ("id", fwd::ID),
                    ("method", fwd::METHOD),
                    ("url", fwd::URL),
                    ("timeoutMs", fwd::TIMEOUT_MS),
                    ("body", fwd::BODY),
                    ("deliverBelow", fwd::DELIVER_BELOW),
                    ("requestDelta", fwd::REQUEST_DELTA),
                ],
            ),
            (
                "REPLY",
                vec![
                    ("status", rep::STATUS),
                    ("headerCount", rep::HEADER_COUNT),
                    ("headers", rep::HEADERS),
                ],
            ),
            (
                "DELIVER",
                vec![
                    ("status", deliver::STATUS),
                    ("responseDelta", deliver::RESPONSE_DELTA),
                ],
            ),
        ];
        for (table, fields) in expected {
            let fields: Vec<(String, usize)> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            assert_eq!(shell_table(table), fields, "{table}");
        }
        // And the core writes them there.
        let limited = Reply::rate_limited(crate::ratelimit::RetryAfter { seconds: 2 });
        let r = reply(&limited);
        let f: Vec<&str> = r.split('\n').collect();
        assert_eq!(f[rep::STATUS], "429");
        let count: usize = f[rep::HEADER_COUNT].parse().unwrap();
        assert_eq!(count, limited.headers.len());
        assert_eq!(f[rep::HEADERS], limited.headers[0].0);
        let d = deliver(204, "", &fwd());
        let f: Vec<&str> = d.split('\n').collect();
        assert_eq!((f[0], f[deliver::STATUS]), ("deliver", "204"));
        let s = forward(9, "PATCH", BodyMode::Rewrite, &[], &fwd());
        let f: Vec<&str> = s.split('\n').collect();
        assert_eq!(
            [f[fwd::ID], f[fwd::METHOD], f[fwd::BODY]],
            ["9", "PATCH", "rewrite"]
        );
        assert_eq!(f[fwd::URL], fwd().url);
        assert_eq!(f[fwd::TIMEOUT_MS], fwd().timeout_ms.to_string());
        assert!(f[fwd::DELIVER_BELOW].parse::<u16>().is_ok());
        assert!(f[fwd::REQUEST_DELTA].parse::<usize>().is_ok());
    }
}
