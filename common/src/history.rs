//! The rollout's history at the edge: the last [`HISTORY_LIMIT`] committed
//! states, each with the change that made it and the evidence its caller
//! sent.
//!
//! A committed state document already says who changed it, when, why and
//! with which credential (`last_change`), so the history is a list of
//! states: the state before a change is the entry of the epoch below it.
//! The writer of a change appends its `before` when that epoch is missing
//! (its writer stopped between committing and recording), then its `after`:
//! an entry is lost only when two consecutive writers both stop in that
//! gap. On Cloudflare the rollout object stores the history in the same
//! transactional write as the state, so nothing is lost there.

use crate::state::RolloutState;
use serde::{Deserialize, Serialize};

/// The key-value key (Spin) and storage key (the Workers rollout object)
/// of the history document.
pub const HISTORY_KEY: &str = "rollout-history";
/// How many committed states the history keeps (the oldest go first).
pub const HISTORY_LIMIT: usize = 100;
/// Largest `evidence` a change may carry, serialised.
pub const MAX_EVIDENCE_BYTES: usize = 4 * 1024;
/// Largest stored history, serialised: the oldest entries go first beyond
/// it, so a history full of evidence stays within every store's value
/// limit (128 KiB for a key-value-backed Durable Object; Spin's stores
/// allow more).
pub const MAX_HISTORY_BYTES: usize = 96 * 1024;

/// The stored history, oldest first; epochs strictly increase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
}

/// One committed state and the evidence that decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub state: RolloutState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<serde_json::Value>,
}

impl History {
    /// The stored document; a missing or unreadable one is an empty history
    /// (the next change starts it again rather than failing).
    pub fn from_json(document: Option<&str>) -> History {
        document
            .and_then(|d| serde_json::from_str::<History>(d).ok())
            .map(|mut h| {
                h.entries.retain(|e| e.state.validate().is_ok());
                h.entries.dedup_by_key(|e| e.state.epoch);
                h
            })
            .filter(|h| {
                h.entries
                    .windows(2)
                    .all(|w| w[0].state.epoch < w[1].state.epoch)
            })
            .unwrap_or_default()
    }

    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Records a committed change from `before` to `after`. Entries at or
    /// above `after`'s epoch are replaced (a state rewritten by hand to a
    /// lower epoch starts the history over from there), `before` is added
    /// when its epoch is missing, and the oldest go beyond
    /// [`HISTORY_LIMIT`].
    pub fn record(
        &mut self,
        before: &RolloutState,
        after: &RolloutState,
        evidence: Option<serde_json::Value>,
    ) {
        self.entries.retain(|e| e.state.epoch < after.epoch);
        if before.epoch < after.epoch && self.last_epoch() < Some(before.epoch) {
            self.entries.push(HistoryEntry {
                state: before.clone(),
                evidence: None,
            });
        }
        self.entries.push(HistoryEntry {
            state: after.clone(),
            evidence,
        });
        let over = self.entries.len().saturating_sub(HISTORY_LIMIT);
        self.entries.drain(..over);
        // Each entry's share of the document (its JSON and a comma).
        let sizes: Vec<usize> = self
            .entries
            .iter()
            .map(|e| serde_json::to_string(e).map_or(0, |t| t.len() + 1))
            .collect();
        let mut total: usize = sizes.iter().sum::<usize>() + "{\"entries\":[]}".len();
        let mut drop = 0;
        while total > MAX_HISTORY_BYTES && drop + 1 < sizes.len() {
            total -= sizes[drop];
            drop += 1;
        }
        self.entries.drain(..drop);
    }

    /// The stored `document` with a change from `before` to `after`
    /// recorded ([`History::record`]), as the document to store.
    pub fn recorded(
        document: Option<&str>,
        before: &RolloutState,
        after: &RolloutState,
        evidence: Option<serde_json::Value>,
    ) -> String {
        let mut history = History::from_json(document);
        history.record(before, after, evidence);
        history.to_json()
    }

    fn last_epoch(&self) -> Option<u64> {
        self.entries.last().map(|e| e.state.epoch)
    }

    /// The state committed at `epoch`, when the history still holds it.
    pub fn state_at(&self, epoch: u64) -> Option<&RolloutState> {
        self.entries
            .iter()
            .find(|e| e.state.epoch == epoch)
            .map(|e| &e.state)
    }

    /// The epochs the history holds, oldest and newest.
    pub fn span(&self) -> Option<(u64, u64)> {
        Some((self.entries.first()?.state.epoch, self.last_epoch()?))
    }

    /// What `GET /__greenlight/history` answers: newest first.
    pub fn view(&self) -> HistoryView {
        let changes = self
            .entries
            .iter()
            .enumerate()
            .rev()
            .map(|(i, e)| {
                let before = i
                    .checked_sub(1)
                    .map(|j| &self.entries[j].state)
                    .filter(|b| b.epoch + 1 == e.state.epoch)
                    .cloned();
                let c = &e.state.last_change;
                ChangeView {
                    epoch: e.state.epoch,
                    op: c.op.clone(),
                    actor: c.actor.clone(),
                    credential: c.credential.clone(),
                    at_ms: c.at_ms,
                    reason: c.reason.clone(),
                    before,
                    after: e.state.clone(),
                    evidence: e.evidence.clone(),
                }
            })
            .collect();
        HistoryView {
            limit: HISTORY_LIMIT,
            changes,
        }
    }
}

/// `GET /__greenlight/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    /// The most the edge keeps.
    pub limit: usize,
    /// Newest first.
    pub changes: Vec<ChangeView>,
}

/// One committed change: who, when, why, the state before and after, and
/// the evidence its caller sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeView {
    pub epoch: u64,
    pub op: String,
    /// What the caller declared.
    pub actor: String,
    /// The credential the edge verified (empty for the initial state).
    #[serde(default)]
    pub credential: String,
    pub at_ms: u64,
    pub reason: String,
    /// `None` for the oldest entry kept (or one whose predecessor is lost).
    pub before: Option<RolloutState>,
    pub after: RolloutState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{ChangeMeta, RolloutOp};

    fn meta(actor: &str) -> ChangeMeta {
        ChangeMeta {
            actor: actor.into(),
            at_ms: 5,
            reason: "r".into(),
        }
    }

    /// The states of `n` weight changes from the initial state.
    fn chain(n: u64) -> Vec<RolloutState> {
        let mut states = vec![RolloutState::initial("s")];
        for i in 0..n {
            let last = states.last().unwrap();
            let w = if last.candidate_weight_bp == 100 {
                200
            } else {
                100
            };
            let next = last
                .apply(
                    RolloutOp::SetWeight { weight_bp: w },
                    i,
                    meta(&format!("a{i}")),
                )
                .unwrap();
            states.push(next);
        }
        states
    }

    #[test]
    fn each_change_keeps_its_state_and_the_one_before() {
        let s = chain(3);
        let mut h = History::default();
        for w in s.windows(2) {
            h.record(&w[0], &w[1], None);
        }
        let epochs: Vec<u64> = h.entries.iter().map(|e| e.state.epoch).collect();
        assert_eq!(epochs, [0, 1, 2, 3]);
        let view = h.view();
        assert_eq!(view.changes.len(), 4);
        assert_eq!(view.changes[0].epoch, 3);
        assert_eq!(view.changes[0].actor, "a2");
        assert_eq!(view.changes[0].before.as_ref(), Some(&s[2]));
        assert_eq!(view.changes[0].after, s[3]);
        assert_eq!(view.changes[3].before, None, "the oldest has no before");
        assert_eq!(h.state_at(1), Some(&s[1]));
        assert_eq!(h.span(), Some((0, 3)));
    }

    #[test]
    fn a_change_whose_writer_stopped_is_recovered_from_the_next() {
        let s = chain(3);
        let mut h = History::default();
        h.record(&s[0], &s[1], None);
        // The change to epoch 2 was committed but never recorded.
        h.record(&s[2], &s[3], Some(serde_json::json!({"verdict": "pass"})));
        let epochs: Vec<u64> = h.entries.iter().map(|e| e.state.epoch).collect();
        assert_eq!(epochs, [0, 1, 2, 3]);
        assert_eq!(h.state_at(2), Some(&s[2]));
        assert_eq!(h.entries[2].evidence, None);
        assert_eq!(
            h.entries[3].evidence,
            Some(serde_json::json!({"verdict": "pass"}))
        );
        // Two in a row lost: the gap stays, and the view says so.
        let mut gap = History::default();
        gap.record(&s[0], &s[1], None);
        gap.record(&s[3], &chain(4)[4], None);
        let view = gap.view();
        let third = view.changes.iter().find(|c| c.epoch == 3).unwrap();
        assert_eq!(third.before, None);
    }

    #[test]
    fn it_keeps_the_newest_up_to_the_limit() {
        let s = chain(HISTORY_LIMIT as u64 + 20);
        let mut h = History::default();
        for w in s.windows(2) {
            h.record(&w[0], &w[1], None);
        }
        assert_eq!(h.entries.len(), HISTORY_LIMIT);
        assert_eq!(
            h.span(),
            Some((21, HISTORY_LIMIT as u64 + 20)),
            "the oldest went first"
        );
    }

    #[test]
    fn evidence_never_grows_it_past_its_byte_budget() {
        let s = chain(HISTORY_LIMIT as u64);
        let big = serde_json::json!({ "notes": "x".repeat(MAX_EVIDENCE_BYTES - 20) });
        let mut h = History::default();
        for w in s.windows(2) {
            h.record(&w[0], &w[1], Some(big.clone()));
            assert!(h.to_json().len() <= MAX_HISTORY_BYTES);
        }
        assert!(h.entries.len() < HISTORY_LIMIT, "{}", h.entries.len());
        assert_eq!(h.span().map(|(_, last)| last), Some(HISTORY_LIMIT as u64));
    }

    #[test]
    fn a_lower_epoch_written_by_hand_starts_over_from_there() {
        let s = chain(3);
        let mut h = History::default();
        for w in s.windows(2) {
            h.record(&w[0], &w[1], None);
        }
        // The document was rewritten at epoch 1 and changed from there.
        let mut again = s[1].clone();
        again.candidate_weight_bp = 700;
        let next = again
            .apply(RolloutOp::SetWeight { weight_bp: 900 }, 1, meta("x"))
            .unwrap();
        h.record(&again, &next, None);
        let epochs: Vec<u64> = h.entries.iter().map(|e| e.state.epoch).collect();
        assert_eq!(epochs, [0, 1, 2]);
        assert_eq!(h.state_at(2), Some(&next));
    }

    #[test]
    fn round_trips_and_reads_a_broken_document_as_empty() {
        let s = chain(2);
        let mut h = History::default();
        h.record(&s[0], &s[1], Some(serde_json::json!({"p": 1})));
        h.record(&s[1], &s[2], None);
        assert_eq!(History::from_json(Some(&h.to_json())), h);
        assert_eq!(History::from_json(None), History::default());
        assert_eq!(History::from_json(Some("{")), History::default());
        assert_eq!(History::from_json(Some("[]")), History::default());
        // Out of order: not a history this edge wrote.
        let mut shuffled = h.clone();
        shuffled.entries.reverse();
        assert_eq!(
            History::from_json(Some(&shuffled.to_json())),
            History::default()
        );
    }
}
