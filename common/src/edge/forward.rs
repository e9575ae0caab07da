use super::config::EdgeConfig;
use super::headers::{
    appended_response_header, keep_origin_response_header, private_cache_control, HEADER_PRINCIPAL,
};
use super::reply::Reply;
use crate::color::Color;
use crate::decide::{RouteDecision, RouteReason};
use crate::failover::{AttemptOutcome, MAX_REPLAY_BODY};
use crate::health::HealthRecord;
use crate::http::{connection_tokens, HEADER_COLOR, HEADER_REASON, RESPONSE_HOP_BY_HOP};
use crate::model::{self, ModelRoutes, HEADER_MODEL, MAX_MODEL_BODY};
use crate::origin_auth;
use crate::origin_headers::OriginHeaders;
use crate::telemetry::{AnswerClass, Measured};
use std::sync::Arc;

/// A request to forward to an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub decision: RouteDecision,
    /// Absolute URL at the chosen origin.
    pub url: String,
    /// Request headers to send (hop-by-hop and edge-only ones removed).
    pub request_headers: Vec<(String, String)>,
    /// Headers to add to the origin's response.
    pub response_headers: Vec<(String, String)>,
    /// Where the request goes if this attempt fails: the other live color
    /// and its URL. Only for methods that may be retried.
    pub fallback: Option<(Color, String)>,
    /// Whether the method may be retried at all: a failure is then a 503
    /// ("no live origin") rather than a 502.
    pub retryable: bool,
    /// Time this attempt may wait for response headers.
    pub timeout_ms: u64,
    /// Time left for the whole request, retry included, when this attempt starts.
    pub deadline_ms: u64,
    pub retry_after_s: u64,
    /// Key to count this caller's requests under, when a rate limit is set.
    pub rate_key: Option<String>,
    /// The request asks to become a WebSocket (`Upgrade: websocket` is
    /// forwarded); the adapter passes the socket through or refuses.
    pub websocket: bool,
    /// The response goes to one caller only: the edge sets its identity
    /// cookie, so `Cache-Control` is made `private` (see
    /// [`private_cache_control`]).
    pub private: bool,
    /// `location` headers that start with one of these origin URLs get the
    /// client's `scheme://host` instead (`REWRITE_LOCATION`).
    pub location_rewrite: Option<LocationRewrite>,
    /// Upstream credentials of both colors: a retry on the other color
    /// swaps one set for the other.
    pub origin_headers: OriginHeaders,
    /// The models per color when the request body's `model` is set per
    /// color ([`crate::model`]); see [`Forward::model_body`].
    pub models: Option<Arc<ModelRoutes>>,
    /// How attempts are signed for their origin (`ORIGIN_SIGNING_SECRET`).
    pub signing: Option<Arc<Signing>>,
}

/// What a forwarded request is signed with ([`crate::origin_auth`]), kept
/// so that a retry is signed for the other color's origin: the origin's
/// URL is part of the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Signing {
    pub(super) secret: Arc<[u8]>,
    pub(super) method: String,
    pub(super) created: u64,
    pub(super) nonce: String,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("method", &self.method)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Signing {
    /// The signature fields of an attempt at `url` whose other headers are
    /// `headers` (the principal among them, when there is one).
    pub(super) fn headers(&self, url: &str, headers: &[(String, String)]) -> [(String, String); 2] {
        let principal = headers
            .iter()
            .find(|(k, _)| k == HEADER_PRINCIPAL)
            .map(|(_, v)| v.as_str());
        origin_auth::sign(
            &self.secret,
            &self.method,
            url,
            principal,
            self.created,
            &self.nonce,
        )
    }
}

/// Which `location` values are rewritten and to what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationRewrite {
    /// The configured origin URLs (`scheme://authority[/base]`).
    pub origins: Vec<String>,
    /// `scheme://host` of the edge as the client addressed it.
    pub edge: String,
}

impl LocationRewrite {
    /// The value with an origin's URL prefix replaced by the edge's, or
    /// `None` when it does not point at an origin (relative, elsewhere).
    /// Scheme and host compare ignoring case, and a default port equals
    /// no port.
    pub fn apply(&self, location: &str) -> Option<String> {
        let loc = location.trim();
        for origin in &self.origins {
            if let Some(rest) = strip_origin(loc, origin) {
                // `rest` is empty or starts with `/`, `?` or `#`.
                let slash = if rest.starts_with('/') { "" } else { "/" };
                return Some(format!("{}{slash}{rest}", self.edge));
            }
        }
        None
    }
}

/// What follows `origin` at the start of `url`, when `url` starts with it
/// (scheme and authority ignoring case and default ports) at a boundary.
pub(super) fn strip_origin<'a>(url: &'a str, origin: &str) -> Option<&'a str> {
    let (o_scheme, o_rest) = origin.split_once("://")?;
    let (u_scheme, u_rest) = url.split_once("://")?;
    if !o_scheme.eq_ignore_ascii_case(u_scheme) {
        return None;
    }
    let split = |s: &str| s.find(['/', '?', '#']).unwrap_or(s.len());
    let (o_auth, o_path) = o_rest.split_at(split(o_rest));
    let (u_auth, u_tail) = u_rest.split_at(split(u_rest));
    let default_port = if o_scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let bare = |a: &str| {
        a.strip_suffix(default_port)
            .unwrap_or(a)
            .to_ascii_lowercase()
    };
    if bare(o_auth) != bare(u_auth) {
        return None;
    }
    let rest = u_tail.strip_prefix(o_path)?;
    (o_path.is_empty() || rest.is_empty() || rest.starts_with(['/', '?', '#'])).then_some(rest)
}

/// What the adapter does after an attempt at an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAttempt {
    /// Pass the origin's response on.
    Deliver,
    /// Try again with this forward (the other color); its `deadline_ms` is
    /// the time left.
    Retry(Box<Forward>),
    /// Answer with this instead of the origin's response.
    Reply(Reply),
}

impl Forward {
    /// Decides what follows `outcome`, `elapsed_ms` after this attempt started.
    pub fn after_attempt(&self, outcome: &AttemptOutcome, elapsed_ms: u64) -> AfterAttempt {
        if let AttemptOutcome::Answered(status @ 100..=199) = outcome {
            // An interim answer taken for the final one (workerd's fetch
            // resolves with an origin's `103 Early Hints`): it cannot be
            // delivered, and it is no failure of the origin's either.
            return AfterAttempt::Reply(Reply::origin_failed(format!(
                "{} origin sent an interim {status} answer, which this platform \
                 cannot pass on",
                self.decision.color
            )));
        }
        if !outcome.failed() {
            return AfterAttempt::Deliver;
        }
        let what = outcome.describe(self.decision.color);
        let left_ms = self.deadline_ms.saturating_sub(elapsed_ms);
        if let (Some(retry), true) = (self.retry(left_ms), left_ms > 0) {
            return AfterAttempt::Retry(Box::new(retry));
        }
        if !self.retryable {
            AfterAttempt::Reply(Reply::origin_failed(format!(
                "{what}; requests with this method are not retried"
            )))
        } else {
            AfterAttempt::Reply(Reply::no_live_origin(
                format!("{what}; no other live origin to try"),
                self.retry_after_s,
            ))
        }
    }

    /// The same request aimed at the fallback color, with no fallback of its own.
    fn retry(&self, left_ms: u64) -> Option<Forward> {
        let (color, url) = self.fallback.clone()?;
        let decision = RouteDecision {
            color,
            epoch: self.decision.epoch,
            reason: RouteReason::Failover,
        };
        let response_headers = self
            .response_headers
            .iter()
            .map(|(k, v)| match k.as_str() {
                HEADER_COLOR => (k.clone(), color.to_string()),
                HEADER_REASON => (k.clone(), RouteReason::Failover.to_string()),
                HEADER_MODEL => (k.clone(), self.model_of(color).unwrap_or_default().into()),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        let mut request_headers =
            self.origin_headers
                .switch(&self.request_headers, self.decision.color, color);
        if let Some(signing) = &self.signing {
            // Signed for the other origin: its URL is part of the signature.
            request_headers.retain(|(k, _)| !origin_auth::HEADERS.contains(&k.as_str()));
            request_headers.extend(signing.headers(&url, &request_headers));
        }
        Some(Forward {
            decision,
            url,
            request_headers,
            response_headers,
            fallback: None,
            retryable: self.retryable,
            timeout_ms: self.timeout_ms.min(left_ms),
            deadline_ms: left_ms,
            retry_after_s: self.retry_after_s,
            rate_key: self.rate_key.clone(),
            websocket: self.websocket,
            private: self.private,
            location_rewrite: self.location_rewrite.clone(),
            origin_headers: self.origin_headers.clone(),
            models: self.models.clone(),
            signing: self.signing.clone(),
        })
    }

    fn model_of(&self, color: Color) -> Option<&str> {
        self.models.as_ref().map(|m| m.of(color))
    }

    /// The model this attempt's body is sent with, on a model route.
    pub fn model(&self) -> Option<&str> {
        self.model_of(self.decision.color)
    }

    /// The body to send this attempt ([`BodyMode::Rewrite`]): the client's
    /// `body` (read up to [`MAX_MODEL_BODY`] + 1 bytes) with `model` set
    /// to this color's model, or the `400` to answer instead.
    pub fn model_body(&self, body: &[u8]) -> Result<Vec<u8>, Reply> {
        let model = self.model().unwrap_or_default();
        model::rewrite(body, model).map_err(|e| Reply::bad_model_request(&e))
    }

    /// Whether delivering the origin's answer depends on its headers
    /// (`Cache-Control` to make private, `location` to rewrite); otherwise
    /// a fixed change, known before the answer, delivers it.
    pub fn needs_origin_headers(&self) -> bool {
        self.private || self.location_rewrite.is_some()
    }

    /// What the pipeline counts for an attempt ([`super::attempted`]): the
    /// status it answered with, or why it got no response. `Err` is the
    /// answer when no origin is to blame: the client went away, or the
    /// request could not be built.
    pub fn attempt_outcome(
        &self,
        result: Result<u16, AttemptFailure>,
    ) -> Result<AttemptOutcome, Reply> {
        match result {
            Ok(status) => Ok(AttemptOutcome::Answered(status)),
            Err(AttemptFailure::TimedOut) => Ok(AttemptOutcome::TimedOut {
                after_ms: self.timeout_ms,
            }),
            Err(AttemptFailure::Unreachable(class)) => Ok(AttemptOutcome::Unreachable(class)),
            // Its answer goes nowhere, and the origin did nothing wrong
            // (not counted, not retried).
            Err(AttemptFailure::ClientGone) => Err(Reply::incomplete_body()),
            // No origin saw it.
            Err(AttemptFailure::NotSent(reply)) => Err(reply),
        }
    }

    /// The origin request's header fields for a runtime that takes raw
    /// fields (`wasi:http`): [`Forward::request_headers`], and the
    /// `content-length` given. The core drops `content-length` as
    /// hop-by-hop (platforms that build the body compute it); where the
    /// adapter passes the body through unchanged it frames that body, and a
    /// model route's rewritten body has its own.
    pub fn origin_fields(&self, content_length: Option<&str>) -> Vec<(String, Vec<u8>)> {
        self.request_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .chain(
                content_length.map(|len| ("content-length".to_string(), len.as_bytes().to_vec())),
            )
            .collect()
    }

    /// How the origin's answer is delivered without reading its headers:
    /// delete every hop-by-hop name and every header the edge sets itself,
    /// then append the edge's headers (`set-cookie` and `vary` are added to
    /// the origin's own, never replace them). It gives what
    /// [`Forward::client_response_headers`] gives (order aside) when the
    /// forward does not [`Forward::needs_origin_headers`] and the answer
    /// carries no `Connection` header (whose tokens name more hop-by-hop
    /// fields; `wasi:http` never shows one).
    pub fn fixed_delivery(&self) -> FixedDelivery<'_> {
        let mut deletes: Vec<&str> = RESPONSE_HOP_BY_HOP
            .iter()
            .copied()
            .filter(|name| *name != "connection")
            .collect();
        for (name, _) in &self.response_headers {
            let owned = !appended_response_header(name);
            if owned && !deletes.iter().any(|d| d.eq_ignore_ascii_case(name)) {
                deletes.push(name);
            }
        }
        let appends = self
            .response_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        FixedDelivery { deletes, appends }
    }

    /// The value the client gets for origin response header `name`
    /// (already kept by [`keep_origin_response_header`]), when the edge
    /// changes it.
    pub fn rewrite_origin_header(&self, name: &str, value: &str) -> Option<String> {
        if self.private && name.eq_ignore_ascii_case("cache-control") {
            return Some(private_cache_control(Some(value)));
        }
        if name.eq_ignore_ascii_case("location") {
            return self.location_rewrite.as_ref()?.apply(value);
        }
        None
    }

    /// The headers the edge adds after the origin's: its own
    /// ([`Forward::response_headers`]), and `cache-control: private` for a
    /// private answer whose origin sent no `Cache-Control`.
    pub fn added_response_headers(
        &self,
        origin_sent_cache_control: bool,
    ) -> impl Iterator<Item = (&str, &str)> + '_ {
        let private =
            (self.private && !origin_sent_cache_control).then_some(("cache-control", "private"));
        self.response_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(private)
    }

    /// The whole header list the client gets for an origin answer with
    /// headers `origin` (names as the platform reports them; values as it
    /// holds them, see [`FieldValue`]).
    pub fn client_response_headers<V: FieldValue>(
        &self,
        origin: &[(String, V)],
    ) -> Vec<(String, V)> {
        let connection = origin
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("connection"))
            .and_then(|(_, v)| v.text());
        let tokens = connection_tokens(connection);
        let mut cache_control = false;
        let mut out: Vec<(String, V)> = Vec::with_capacity(origin.len() + 4);
        for (k, v) in origin {
            if !keep_origin_response_header(k, &tokens, self) {
                continue;
            }
            cache_control |= k.eq_ignore_ascii_case("cache-control");
            let rewritten = v
                .text()
                .and_then(|text| self.rewrite_origin_header(k, text));
            out.push((k.clone(), rewritten.map_or_else(|| v.clone(), V::from_text)));
        }
        out.extend(
            self.added_response_headers(cache_control)
                .map(|(k, v)| (k.to_string(), V::from_text(v.to_string()))),
        );
        out
    }

    /// Decides how the adapter sends the request body, from its framing:
    /// nothing to send; kept in memory (known to be at most
    /// [`MAX_REPLAY_BODY`]), so a retry can send it again; or streamed
    /// once, in which case the retry is dropped, since the body cannot be
    /// sent twice. A small body is kept even when the request may not be
    /// retried: its attempt is then timed whole, and on workerd a failed
    /// attempt with a streamed body lost the client's connection for its
    /// next request (5 of 10 runs of `failover`; 0 of 10 kept).
    pub fn body_mode(&mut self, content_length: Option<&str>, chunked: bool) -> BodyMode {
        let length = content_length.map(|v| v.trim().parse::<u64>().ok());
        let empty = !chunked && matches!(length, None | Some(Some(0)));
        if empty {
            // Nothing to set a model in: passed on as it is, and the
            // answer names no model.
            if self.models.take().is_some() {
                self.response_headers.retain(|(k, _)| k != HEADER_MODEL);
            }
            return BodyMode::Empty;
        }
        if self.models.is_some() {
            // Read whole (and refused when over the limit) to be
            // rewritten; kept in memory, so a retry can send it again.
            return BodyMode::Rewrite;
        }
        match length {
            Some(Some(n)) if !chunked && n <= MAX_REPLAY_BODY => BodyMode::Buffer,
            _ => {
                self.fallback = None;
                self.retryable = false;
                BodyMode::Stream
            }
        }
    }
}

/// Whether a body the edge read whole before forwarding it (up to `limit`
/// bytes: [`BodyMode::Buffer`], [`BodyMode::Rewrite`]) is complete: it
/// holds its announced `content-length`, or `limit` bytes when it
/// announced more. A shorter one ended early, which is the client's
/// failure ([`Reply::incomplete_body`]), never the origin's.
pub fn body_complete(content_length: Option<&str>, read: usize, limit: usize) -> bool {
    match content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        Some(n) => read as u64 >= n.min(limit as u64),
        None => true,
    }
}

/// How a forwarded request's body is sent (see [`Forward::body_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    Empty,
    Buffer,
    Stream,
    /// Read up to [`MAX_MODEL_BODY`] + 1 bytes and send
    /// [`Forward::model_body`] of them (each attempt its color's model).
    Rewrite,
}

/// How much of the body a [`BodyMode::Rewrite`] reads: one byte over the
/// limit tells a body that is too large.
pub const REWRITE_READ_LIMIT: u64 = MAX_MODEL_BODY + 1;

/// What one attempt at an origin counts in real users' telemetry
/// ([`crate::telemetry`]): its color and epoch, its class, the time to the
/// origin's response head (`elapsed_ms`, when it answered) and the body's
/// announced length ([`announced_bytes`]). The body itself streams through untouched, so its
/// last byte is not timed. `None` for a preview override: a tester's (or
/// the harness's comparison) request, which follows no weight, is no
/// real user's.
pub fn measured(
    fwd: &Forward,
    outcome: &AttemptOutcome,
    elapsed_ms: u64,
    bytes: u64,
    now_ms: u64,
) -> Option<(Color, u64, Measured)> {
    if fwd.decision.reason == RouteReason::Override {
        return None;
    }
    let (class, ttfb_us) = match outcome {
        AttemptOutcome::Answered(status) => (
            AnswerClass::of_status(*status),
            Some(elapsed_ms.saturating_mul(1_000)),
        ),
        _ => (AnswerClass::OriginFailure, None),
    };
    Some((
        fwd.decision.color,
        fwd.decision.epoch,
        Measured {
            class,
            ttfb_us,
            total_us: None,
            bytes,
            at_ms: now_ms,
        },
    ))
}

/// `record` (the instance's own, or the stored one parsed) with one more
/// failure of `color` counted, for the adapter to keep or store under
/// [`crate::health::HEALTH_KEY`].
/// A body's announced length (`content-length`), 0 when it has none.
pub fn announced_bytes(content_length: Option<&str>) -> u64 {
    content_length
        .and_then(|l| l.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

pub fn count_failure(
    cfg: &EdgeConfig,
    record: Option<HealthRecord>,
    epoch: u64,
    color: Color,
    outcome: &AttemptOutcome,
    now_ms: u64,
) -> HealthRecord {
    crate::health::count_failure(
        record,
        epoch,
        color,
        &outcome.describe(color),
        now_ms,
        cfg.health.window_ms,
    )
}

/// A header value as a runtime holds it: text, or bytes (`wasi:http`
/// fields), which pass through unchanged when they are not UTF-8.
pub trait FieldValue: Clone {
    /// The value as text, when it is.
    fn text(&self) -> Option<&str>;
    fn from_text(text: String) -> Self;
}

impl FieldValue for String {
    fn text(&self) -> Option<&str> {
        Some(self)
    }

    fn from_text(text: String) -> Self {
        text
    }
}

impl FieldValue for Vec<u8> {
    fn text(&self) -> Option<&str> {
        std::str::from_utf8(self).ok()
    }

    fn from_text(text: String) -> Self {
        text.into_bytes()
    }
}

/// The change [`Forward::fixed_delivery`] makes to an origin's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedDelivery<'a> {
    /// Names removed (in any spelling) from the origin's headers.
    pub deletes: Vec<&'a str>,
    /// Headers then appended, in order.
    pub appends: Vec<(&'a str, &'a str)>,
}

/// Why an attempt an adapter made got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptFailure {
    TimedOut,
    /// The class of failure the client is told
    /// ([`crate::failover::unreachable_class`]).
    Unreachable(String),
    /// The client's upload broke off: no origin's fault, nothing to retry.
    ClientGone,
    /// The request could not be built (the runtime refused its headers):
    /// answered as it says, no origin's fault.
    NotSent(Reply),
}
