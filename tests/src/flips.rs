//! Judging a run of flips under load: promote/rollback calls made while
//! open-loop traffic goes through the edge (see `tests/e2e/flips_under_load.rs`).
//!
//! The inputs are plain data (what each request was, when it was sent and
//! answered, what came back; when each admin change was acknowledged and the
//! state it produced), so the rules are unit-tested here without an edge.
//!
//! The rules, for every answered request:
//! - it succeeded: an answer came (no transport error, no timeout) and its
//!   status is 2xx (a 5xx is a failure, and so is any other status: every
//!   request of the mix is authorised);
//! - **origin agreement**: the `x-greenlight-color` the edge reports is the
//!   color the origin itself wrote in the body (the request finished on the
//!   origin it was routed to, even when a flip happened meanwhile);
//! - **consistent with its epoch**: the color and reason are what
//!   [`decide`] gives for this request's fixed identity under the state the
//!   admin API returned for the epoch the response carries
//!   (`x-greenlight-epoch`); an epoch no change produced is an error, as is
//!   an epoch seen before the change that made it was even requested;
//! - **not stale beyond the window**: a request *sent* more than `window`
//!   after the acknowledgement of a change must not carry an epoch older
//!   than that change's. `window` is the edge's state cache TTL plus a
//!   documented slack.
//!
//! And per change: the convergence time, from the admin acknowledgement to
//! the receipt of the last response carrying an older epoch (zero when none
//! arrives after the acknowledgement), and how many requests were in flight
//! (sent before, answered after) when it was acknowledged.

use greenlight_common::decide::PreviewDenied;
use greenlight_common::{decide, Color, RequestFacts, RolloutState, RouteDecision};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The fixed identity behind one kind of request, as the edge sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub label: String,
    /// The stickiness key the edge derives: `c:<cookie id>`, where a
    /// credential (`k:<key id>`, `s:<sub>`) sent without the cookie counts
    /// as the id derived from it (`common::identity`).
    pub sticky_key: String,
    /// The preview color asked for, if any.
    pub preview: Option<Color>,
    pub may_preview: bool,
}

impl Identity {
    /// `principal_or_cookie`: `k:<key id>` or `s:<sub>` for a caller that
    /// sends that credential and no cookie, `c:<id>` for the cookie.
    pub fn new(label: &str, principal_or_cookie: &str) -> Identity {
        let sticky_key = if principal_or_cookie.starts_with("c:") {
            principal_or_cookie.to_string()
        } else {
            format!(
                "c:{}",
                greenlight_common::identity::credential_id(principal_or_cookie)
            )
        };
        Identity {
            label: label.to_string(),
            sticky_key,
            preview: None,
            may_preview: false,
        }
    }

    /// The same caller asking for `color` through the preview header.
    pub fn previewing(mut self, color: Color, may_preview: bool) -> Identity {
        self.preview = Some(color);
        self.may_preview = may_preview;
        self
    }

    /// The routing decision the edge must make for this identity under `state`.
    pub fn expect(&self, state: &RolloutState) -> Result<RouteDecision, PreviewDenied> {
        decide(
            &RequestFacts {
                sticky_key: Some(&self.sticky_key),
                preview: self.preview,
                may_preview: self.may_preview,
                // Unused: every identity here has a sticky key.
                roll: 0,
            },
            state,
        )
    }
}

/// An accepted admin change. Times are offsets from the run's start.
#[derive(Debug, Clone)]
pub struct Change {
    pub op: String,
    /// When the admin call was sent.
    pub requested: Duration,
    /// When its 200 was received: the state was written by then.
    pub acked: Duration,
    /// The state the call returned (its epoch is the change's).
    pub state: RolloutState,
    /// Counted in the convergence figures (the promote/rollback flips).
    pub is_flip: bool,
}

/// What came back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No (complete) answer: connect error, timeout, broken response.
    Transport(String),
    Answer {
        status: u16,
        /// `x-greenlight-color`, `x-greenlight-epoch`, `x-greenlight-reason`.
        color: Option<String>,
        epoch: Option<String>,
        reason: Option<String>,
        /// The `color` field of the origin's JSON body.
        origin_color: Option<String>,
    },
}

/// One request. Times are offsets from the run's start.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Index into the identities.
    pub identity: usize,
    pub sent: Duration,
    pub done: Duration,
    pub outcome: Outcome,
}

/// The `color` field of an origin's JSON answer.
pub fn origin_color(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("color")?.as_str().map(str::to_string)
}

/// Everything found, with a few examples of each kind of violation.
#[derive(Debug, Clone, Default)]
pub struct Judgement {
    pub requests: u64,
    pub transport_errors: u64,
    pub status_5xx: u64,
    /// Statuses other than 2xx and 5xx.
    pub status_other: u64,
    /// Edge color header missing, or different from the origin's own color.
    pub origin_mismatches: u64,
    /// Color or reason not what the state of the carried epoch gives.
    pub wrong_for_epoch: u64,
    /// Missing or unknown epoch, or one seen before its change was requested.
    pub epoch_errors: u64,
    /// Sent more than the window after a change's acknowledgement, yet
    /// carrying an older epoch.
    pub stale_responses: u64,
    /// The latest send, relative to the acknowledgement of a newer change,
    /// of a response that still carried an older epoch (negative: every
    /// old-epoch response was sent before the acknowledgement).
    pub latest_old_send_after_ack_ms: f64,
    /// Per flip: acknowledgement → last old-epoch response received.
    pub convergence: Vec<Duration>,
    /// Per flip: requests sent before the acknowledgement and answered after.
    pub in_flight_at_ack: Vec<u64>,
    /// Per flip: admin call duration (request → acknowledgement).
    pub admin_latency: Vec<Duration>,
    /// The first few of each kind, in the order found.
    pub examples: Vec<String>,
    /// Examples kept so far, per kind.
    example_counts: BTreeMap<&'static str, usize>,
}

/// Examples kept per kind of violation, so one kind cannot hide the others.
const EXAMPLES_PER_KIND: usize = 4;

impl Judgement {
    pub fn failed(&self) -> u64 {
        self.transport_errors + self.status_5xx + self.status_other
    }

    /// True when no rule was broken.
    pub fn clean(&self) -> bool {
        self.failed() == 0
            && self.origin_mismatches == 0
            && self.wrong_for_epoch == 0
            && self.epoch_errors == 0
            && self.stale_responses == 0
    }

    fn example(&mut self, kind: &'static str, what: String) {
        let n = self.example_counts.entry(kind).or_default();
        if *n < EXAMPLES_PER_KIND {
            *n += 1;
            self.examples.push(what);
        }
    }

    /// `key=value` figures (times in ms).
    pub fn figures(&self) -> String {
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        let mut out = String::new();
        let _ = write!(
            out,
            "requests={} failed={} transport_errors={} status_5xx={} status_other={} \
             origin_mismatches={} wrong_for_epoch={} epoch_errors={} stale_responses={} \
             latest_old_send_after_ack_ms={:.1} flips={} convergence_p50_ms={} \
             convergence_p99_ms={} convergence_max_ms={} min_in_flight_at_ack={} \
             admin_latency_max_ms={}",
            self.requests,
            self.failed(),
            self.transport_errors,
            self.status_5xx,
            self.status_other,
            self.origin_mismatches,
            self.wrong_for_epoch,
            self.epoch_errors,
            self.stale_responses,
            self.latest_old_send_after_ack_ms,
            self.convergence.len(),
            ms(percentile(&self.convergence, 0.50)),
            ms(percentile(&self.convergence, 0.99)),
            ms(percentile(&self.convergence, 1.0)),
            self.in_flight_at_ack.iter().min().copied().unwrap_or(0),
            ms(percentile(&self.admin_latency, 1.0)),
        );
        out
    }
}

/// Nearest-rank percentile (`q` in 0..=1) of unsorted durations; zero when empty.
pub fn percentile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut v = values.to_vec();
    v.sort();
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Applies the rules of this module to a run. `initial` is the state before
/// the first change; `changes` are in the order they were made (each one's
/// epoch the previous one's + 1).
pub fn judge(
    identities: &[Identity],
    initial: &RolloutState,
    changes: &[Change],
    observations: &[Observation],
    window: Duration,
) -> Judgement {
    let mut j = Judgement {
        requests: observations.len() as u64,
        latest_old_send_after_ack_ms: f64::NEG_INFINITY,
        ..Judgement::default()
    };
    let mut states: BTreeMap<u64, (&RolloutState, Option<Duration>)> = BTreeMap::new();
    states.insert(initial.epoch, (initial, None));
    for c in changes {
        states.insert(c.state.epoch, (&c.state, Some(c.requested)));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // The epoch of each answered request, for the per-change figures.
    let mut epochs: Vec<Option<u64>> = Vec::with_capacity(observations.len());
    for (i, o) in observations.iter().enumerate() {
        let who = identities
            .get(o.identity)
            .map_or("?", |id| id.label.as_str());
        let at = format!("request {i} ({who}, sent {:.1} ms)", ms(o.sent));
        let (status, color, epoch, reason, origin) = match &o.outcome {
            Outcome::Transport(e) => {
                j.transport_errors += 1;
                j.example("transport", format!("{at}: no answer: {e}"));
                epochs.push(None);
                continue;
            }
            Outcome::Answer {
                status,
                color,
                epoch,
                reason,
                origin_color,
            } => (*status, color, epoch, reason, origin_color),
        };
        if !(200..300).contains(&status) {
            if status >= 500 {
                j.status_5xx += 1;
            } else {
                j.status_other += 1;
            }
            j.example("status", format!("{at}: status {status}"));
            epochs.push(None);
            continue;
        }
        if color.is_none() || color != origin {
            j.origin_mismatches += 1;
            j.example(
                "origin",
                format!("{at}: edge says color {color:?}, the origin that answered is {origin:?}"),
            );
        }
        let parsed = epoch.as_deref().and_then(|e| e.trim().parse::<u64>().ok());
        epochs.push(parsed);
        let Some(e) = parsed else {
            j.epoch_errors += 1;
            j.example("epoch", format!("{at}: epoch header {epoch:?}"));
            continue;
        };
        let Some(&(state, requested)) = states.get(&e) else {
            j.epoch_errors += 1;
            j.example(
                "epoch",
                format!(
                    "{at}: epoch {e} was not produced by any acknowledged change \
                     (an admin call that failed on the client's side may still have been applied)"
                ),
            );
            continue;
        };
        if let Some(req) = requested {
            if o.done < req {
                j.epoch_errors += 1;
                j.example(
                    "epoch",
                    format!(
                        "{at}: carried epoch {e}, answered at {:.1} ms, before the change to it was requested ({:.1} ms)",
                        ms(o.done),
                        ms(req)
                    ),
                );
            }
        }
        if let Some(id) = identities.get(o.identity) {
            let expected = id.expect(state);
            let got = (color.as_deref(), reason.as_deref());
            let ok = match &expected {
                Ok(d) => got == (Some(d.color.as_str()), Some(d.reason.as_str())),
                Err(_) => false,
            };
            if !ok {
                j.wrong_for_epoch += 1;
                j.example(
                    "wrong",
                    format!(
                        "{at}: epoch {e} answered (color, reason) {got:?}, its state gives {:?}",
                        expected.map(|d| (d.color.as_str(), d.reason.as_str()))
                    ),
                );
            }
        }
        // The newest change acknowledged more than `window` before the send.
        let limit = o.sent.checked_sub(window);
        let newest_due = limit.and_then(|l| changes.iter().rev().find(|c| c.acked < l));
        if let Some(c) = newest_due {
            if e < c.state.epoch {
                j.stale_responses += 1;
                j.example(
                    "stale",
                    format!(
                        "{at}: carried epoch {e} although epoch {} was acknowledged at {:.1} ms ({:.1} ms before the send; window {:.1} ms)",
                        c.state.epoch,
                        ms(c.acked),
                        ms(o.sent - c.acked),
                        ms(window)
                    ),
                );
            }
        }
        // How late an old epoch was still sent out, relative to the ack of
        // the first change it was older than.
        if let Some(c) = changes.iter().find(|c| c.state.epoch > e) {
            let after = ms(o.sent) - ms(c.acked);
            j.latest_old_send_after_ack_ms = j.latest_old_send_after_ack_ms.max(after);
        }
    }
    if !j.latest_old_send_after_ack_ms.is_finite() {
        j.latest_old_send_after_ack_ms = 0.0;
    }
    for c in changes.iter().filter(|c| c.is_flip) {
        let mut last_old: Option<Duration> = None;
        let mut in_flight = 0u64;
        for (o, e) in observations.iter().zip(&epochs) {
            if o.sent < c.acked && o.done >= c.acked {
                in_flight += 1;
            }
            if matches!(e, Some(e) if *e < c.state.epoch) {
                last_old = Some(last_old.map_or(o.done, |l: Duration| l.max(o.done)));
            }
        }
        j.convergence.push(
            last_old
                .map(|l| l.saturating_sub(c.acked))
                .unwrap_or_default(),
        );
        j.in_flight_at_ack.push(in_flight);
        j.admin_latency.push(c.acked.saturating_sub(c.requested));
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_common::rollout::ChangeMeta;
    use greenlight_common::RolloutOp;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn apply(s: &RolloutState, op: RolloutOp) -> RolloutState {
        let meta = ChangeMeta {
            actor: "t".into(),
            at_ms: 0,
            reason: String::new(),
        };
        s.apply(op, s.epoch, meta).unwrap()
    }

    /// Stable blue (epoch 0), promote acked at 100 ms (epoch 1, green),
    /// rollback acked at 300 ms (epoch 2, blue).
    fn history() -> (RolloutState, Vec<Change>) {
        let s0 = RolloutState::initial("salt");
        let s1 = apply(&s0, RolloutOp::Promote);
        let s2 = apply(&s1, RolloutOp::Rollback);
        let change = |op: &str, requested, acked, state| Change {
            op: op.into(),
            requested: ms(requested),
            acked: ms(acked),
            state,
            is_flip: true,
        };
        (
            s0,
            vec![
                change("promote", 95, 100, s1),
                change("rollback", 295, 300, s2),
            ],
        )
    }

    fn answer(sent: u64, done: u64, epoch: u64, color: &str, reason: &str) -> Observation {
        Observation {
            identity: 0,
            sent: ms(sent),
            done: ms(done),
            outcome: Outcome::Answer {
                status: 200,
                color: Some(color.into()),
                epoch: Some(epoch.to_string()),
                reason: Some(reason.into()),
                origin_color: Some(color.into()),
            },
        }
    }

    fn ids() -> Vec<Identity> {
        vec![Identity::new("app", "k:app")]
    }

    #[test]
    fn a_clean_run_and_its_convergence() {
        let (s0, changes) = history();
        let obs = vec![
            answer(10, 40, 0, "blue", "stable"),
            // In flight across the promote: old epoch, answered 30 ms after the ack.
            answer(90, 130, 0, "blue", "stable"),
            // Sent after the ack but inside the 50 ms window: old epoch allowed.
            answer(140, 170, 0, "blue", "stable"),
            answer(200, 230, 1, "green", "promoted"),
            answer(310, 350, 2, "blue", "stable"),
        ];
        let j = judge(&ids(), &s0, &changes, &obs, ms(50));
        assert!(j.clean(), "{j:?}");
        assert_eq!(j.requests, 5);
        // Promote: last epoch-0 answer at 170 ms → 70 ms; rollback: last
        // epoch < 2 answer at 230 ms, before its ack → 0.
        assert_eq!(j.convergence, vec![ms(70), ms(0)]);
        assert_eq!(j.in_flight_at_ack, vec![1, 0]);
        assert_eq!(j.admin_latency, vec![ms(5), ms(5)]);
        assert!((j.latest_old_send_after_ack_ms - 40.0).abs() < 1e-9);
        let f = j.figures();
        assert!(f.contains("stale_responses=0") && f.contains("convergence_max_ms=70.0"));
    }

    #[test]
    fn an_old_epoch_sent_after_the_window_is_stale() {
        let (s0, changes) = history();
        let obs = vec![answer(151, 180, 0, "blue", "stable")];
        let j = judge(&ids(), &s0, &changes, &obs, ms(50));
        assert_eq!(j.stale_responses, 1);
        assert!(j.examples[0].contains("acknowledged at 100.0 ms"), "{j:?}");
        // Two changes behind is stale against the newest one due.
        let j = judge(
            &ids(),
            &s0,
            &changes,
            &[answer(400, 420, 0, "blue", "stable")],
            ms(50),
        );
        assert_eq!(j.stale_responses, 1);
        assert!(j.examples[0].contains("epoch 2 was acknowledged"), "{j:?}");
    }

    #[test]
    fn colors_must_match_the_origin_and_the_epoch() {
        let (s0, changes) = history();
        let mut lying = answer(200, 230, 1, "green", "promoted");
        if let Outcome::Answer { origin_color, .. } = &mut lying.outcome {
            *origin_color = Some("blue".into());
        }
        let obs = vec![
            lying,
            // Epoch 1 is green for everyone: blue is wrong for it.
            answer(210, 240, 1, "blue", "promoted"),
            // Right color, wrong reason.
            answer(220, 250, 1, "green", "stable"),
        ];
        let j = judge(&ids(), &s0, &changes, &obs, ms(50));
        assert_eq!((j.origin_mismatches, j.wrong_for_epoch), (1, 2), "{j:?}");
        assert!(!j.clean());
    }

    #[test]
    fn identities_follow_canary_buckets_and_previews() {
        let s0 = RolloutState::initial("salt");
        let canary = apply(&s0, RolloutOp::SetWeight { weight_bp: 5_000 });
        let keys: Vec<String> = (0..64).map(|i| format!("c:user-{i}")).collect();
        let colors: Vec<Color> = keys
            .iter()
            .map(|k| Identity::new("u", k).expect(&canary).unwrap().color)
            .collect();
        assert!(colors.contains(&Color::Blue) && colors.contains(&Color::Green));
        let qa = Identity::new("qa", "k:qa").previewing(Color::Green, true);
        assert_eq!(qa.expect(&s0).unwrap().color, Color::Green);
        let app = Identity::new("app", "k:app").previewing(Color::Green, false);
        assert!(app.expect(&s0).is_err());
    }

    #[test]
    fn failures_and_bad_epochs_are_counted() {
        let (s0, changes) = history();
        let unknown = answer(10, 20, 7, "blue", "stable");
        let mut early = answer(10, 20, 1, "green", "promoted");
        early.done = ms(50); // before the promote was requested at 95 ms
        let mut e503 = answer(10, 20, 0, "blue", "stable");
        if let Outcome::Answer { status, .. } = &mut e503.outcome {
            *status = 503;
        }
        let obs = vec![
            Observation {
                identity: 0,
                sent: ms(1),
                done: ms(2),
                outcome: Outcome::Transport("connect".into()),
            },
            e503,
            unknown,
            early,
        ];
        let j = judge(&ids(), &s0, &changes, &obs, ms(50));
        assert_eq!(
            (j.transport_errors, j.status_5xx, j.epoch_errors, j.failed()),
            (1, 1, 2, 2),
            "{j:?}"
        );
        // Many failures of one kind do not hide another kind's examples.
        let mut many: Vec<Observation> = (0..20)
            .map(|i| Observation {
                identity: 0,
                sent: ms(i),
                done: ms(i + 1),
                outcome: Outcome::Transport("timeout".into()),
            })
            .collect();
        many.push(answer(10, 20, 7, "blue", "stable"));
        let j = judge(&ids(), &s0, &changes, &many, ms(50));
        assert_eq!(j.examples.len(), EXAMPLES_PER_KIND + 1, "{j:?}");
        assert!(j.examples.last().unwrap().contains("epoch 7"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&v, 0.5), ms(50));
        assert_eq!(percentile(&v, 0.99), ms(99));
        assert_eq!(percentile(&v, 1.0), ms(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        assert_eq!(
            origin_color(br#"{"color":"green","x":1}"#).as_deref(),
            Some("green")
        );
        assert_eq!(origin_color(b"not json"), None);
    }
}
