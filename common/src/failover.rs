//! What the edge does when the chosen origin fails: retry idempotent requests
//! once on the other live color within a deadline, answer 502 for the rest,
//! 503 with `Retry-After` when no live origin answered.
//!
//! The adapter runs the attempts (it owns the clock and the network) and asks
//! [`crate::edge::Forward::after_attempt`] what to do after each one.

use crate::color::Color;
use crate::config_error::ConfigError;
use crate::rollout::Phase;
use crate::state::RolloutState;

/// Default time an origin gets to send its response headers, per attempt.
pub const DEFAULT_ORIGIN_TIMEOUT_MS: u64 = 10_000;
/// Default budget for a request including its retry.
pub const DEFAULT_FAILOVER_DEADLINE_MS: u64 = 15_000;
/// `Retry-After` sent with a 503 when no live origin answered.
pub const DEFAULT_RETRY_AFTER_S: u64 = 5;
/// Methods retried on the other color unless `RETRY_METHODS` says otherwise.
pub const DEFAULT_RETRY_METHODS: &[&str] = &["GET", "HEAD", "OPTIONS"];
/// Largest request body an edge keeps in memory so a PUT or DELETE can be
/// sent twice; bigger (or unknown-length) bodies are streamed and not retried.
pub const MAX_REPLAY_BODY: u64 = 1024 * 1024;

/// Methods that may ever be configured for retry: idempotent per RFC 9110
/// §9.2.2. POST and PATCH are refused, a retry could apply them twice.
const RETRYABLE: &[&str] = &["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"];

/// Whether `method` (upper case) is idempotent (RFC 9110 §9.2.2): a client
/// may send it again when the connection failed before an answer came.
pub fn is_idempotent(method: &str) -> bool {
    RETRYABLE.contains(&method)
}

/// How the edge treats its origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Time an attempt may take until the response headers arrive.
    pub timeout_ms: u64,
    /// Time the whole request may take, retry included.
    pub deadline_ms: u64,
    /// Upper-case methods that are retried on the other live color.
    pub retry_methods: Vec<String>,
    pub retry_after_s: u64,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        OriginPolicy {
            timeout_ms: DEFAULT_ORIGIN_TIMEOUT_MS,
            deadline_ms: DEFAULT_FAILOVER_DEADLINE_MS,
            retry_methods: DEFAULT_RETRY_METHODS
                .iter()
                .map(|m| m.to_string())
                .collect(),
            retry_after_s: DEFAULT_RETRY_AFTER_S,
        }
    }
}

impl OriginPolicy {
    /// Parses `RETRY_METHODS`: a comma-separated list of idempotent methods,
    /// or `none`.
    pub fn parse_methods(list: &str) -> Result<Vec<String>, ConfigError> {
        if list.trim().eq_ignore_ascii_case("none") {
            return Ok(Vec::new());
        }
        list.split(',')
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .map(|m| {
                if is_idempotent(&m) {
                    Ok(m)
                } else {
                    Err(ConfigError(format!(
                        "RETRY_METHODS: {m} is not idempotent and cannot be retried \
                         (allowed: {})",
                        RETRYABLE.join(", ")
                    )))
                }
            })
            .collect()
    }

    pub fn retries(&self, method: &str) -> bool {
        self.retry_methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method))
    }
}

/// The colors that serve traffic in `state`, the ones a retry may go to:
/// the active color always; the candidate while it holds a share; the
/// previous active after a promote (it served everyone until just now and is
/// the rollback target). A candidate at 0 % is not live: it may be the very
/// release that was just rolled back.
pub fn live_colors(state: &RolloutState) -> Vec<Color> {
    match state.phase() {
        Phase::Stable => vec![state.active],
        Phase::Canary => vec![state.active, state.candidate],
        Phase::Promoted => {
            let mut v = vec![state.active];
            v.extend(state.rollback_target.filter(|c| *c != state.active));
            v
        }
    }
}

/// How one attempt at an origin ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Response headers arrived with this status.
    Answered(u16),
    /// No response: connection refused, reset, DNS, TLS... (the detail is
    /// for the problem body).
    Unreachable(String),
    /// No response headers within the attempt's timeout.
    TimedOut { after_ms: u64 },
}

/// What a client may be told about why an origin could not be reached:
/// a class of failure, never the runtime's message, which can name the
/// origin's address (the adapters log the message itself).
pub fn unreachable_class(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if has(&["refused"]) {
        "connection refused"
    } else if has(&["reset"]) {
        "connection reset"
    } else if has(&["dns", "resolve", "not known", "lookup"]) {
        "DNS lookup failed"
    } else if has(&["tls", "ssl", "certificate"]) {
        "TLS failure"
    } else if has(&["lost", "disconnect", "closed", "eof"]) {
        "connection lost"
    } else if has(&["denied", "not allowed", "forbidden"]) {
        "destination not allowed"
    } else {
        "connection failed"
    }
}

/// The lowest status that makes an answer a failed attempt (a 5xx).
pub const FIRST_FAILED_STATUS: u16 = 500;

impl AttemptOutcome {
    /// A failed attempt: no answer, or a 5xx.
    pub fn failed(&self) -> bool {
        match self {
            AttemptOutcome::Answered(status) => *status >= FIRST_FAILED_STATUS,
            _ => true,
        }
    }

    /// One line for problem bodies and logs, naming the color.
    pub fn describe(&self, color: Color) -> String {
        match self {
            AttemptOutcome::Answered(status) => format!("{color} origin answered {status}"),
            AttemptOutcome::Unreachable(detail) => format!("{color} origin unreachable: {detail}"),
            AttemptOutcome::TimedOut { after_ms } => {
                format!("{color} origin sent no response within {after_ms} ms")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{ChangeMeta, RolloutOp};

    fn meta() -> ChangeMeta {
        ChangeMeta {
            actor: "t".into(),
            at_ms: 1,
            reason: String::new(),
        }
    }

    #[test]
    fn only_idempotent_methods_can_be_configured_for_retry() {
        assert_eq!(
            OriginPolicy::parse_methods("get, head,PUT").unwrap(),
            vec!["GET", "HEAD", "PUT"]
        );
        assert_eq!(
            OriginPolicy::parse_methods("none").unwrap(),
            Vec::<String>::new()
        );
        for bad in ["POST", "GET,PATCH", "BREW"] {
            let e = OriginPolicy::parse_methods(bad).unwrap_err();
            assert!(e.0.contains("not idempotent"), "{bad}: {}", e.0);
        }
        let p = OriginPolicy::default();
        assert!(p.retries("get") && p.retries("OPTIONS"));
        assert!(!p.retries("POST") && !p.retries("PUT"));
    }

    #[test]
    fn live_colors_follow_the_phase() {
        let s0 = RolloutState::initial("s");
        assert_eq!(live_colors(&s0), vec![Color::Blue]);
        let canary = s0
            .apply(RolloutOp::SetWeight { weight_bp: 500 }, 0, meta())
            .unwrap();
        assert_eq!(live_colors(&canary), vec![Color::Blue, Color::Green]);
        let promoted = canary.apply(RolloutOp::Promote, 1, meta()).unwrap();
        assert_eq!(live_colors(&promoted), vec![Color::Green, Color::Blue]);
        let back = promoted.apply(RolloutOp::Rollback, 2, meta()).unwrap();
        assert_eq!(live_colors(&back), vec![Color::Blue]);
    }

    #[test]
    fn unreachable_details_are_classes_without_addresses() {
        for (message, class) in [
            (
                "connect(): Connection refused; address = 127.0.0.1:9",
                "connection refused",
            ),
            ("ConnectionRefused", "connection refused"),
            ("TypeError: Network connection lost.", "connection lost"),
            (
                "DnsError(DnsErrorPayload { rcode: Some(\"address not available\") })",
                "DNS lookup failed",
            ),
            ("HttpRequestDenied", "destination not allowed"),
            ("something else at 10.0.0.1:8080", "connection failed"),
        ] {
            let c = unreachable_class(message);
            assert_eq!(c, class, "{message}");
            assert!(!c.contains("127.0.0.1") && !c.contains(':'));
        }
    }

    #[test]
    fn five_hundreds_and_silence_are_failures_four_hundreds_are_not() {
        assert!(!AttemptOutcome::Answered(200).failed());
        assert!(!AttemptOutcome::Answered(404).failed());
        assert!(!AttemptOutcome::Answered(499).failed());
        assert!(AttemptOutcome::Answered(500).failed());
        assert!(AttemptOutcome::Answered(503).failed());
        assert!(AttemptOutcome::Unreachable("refused".into()).failed());
        assert!(AttemptOutcome::TimedOut { after_ms: 5 }.failed());
        assert_eq!(
            AttemptOutcome::TimedOut { after_ms: 250 }.describe(Color::Green),
            "green origin sent no response within 250 ms"
        );
    }
}
