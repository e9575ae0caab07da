//! Origin failures seen by the edge, kept in key-value next to the state
//! document so `GET /__greenlight/state` can say "the color under test is
//! unhealthy" and the harness can roll back.
//!
//! A separate document (not a field of the state) on purpose: edges write it
//! on failures, and those writes must never bump the rollout epoch or race
//! with a release manager's optimistic-concurrency write.

use crate::color::Color;
use crate::rollout::Phase;
use crate::state::RolloutState;
use serde::{Deserialize, Serialize};

/// Key of the health document in the key-value store.
pub const HEALTH_KEY: &str = "origin-health";
/// Failures within [`DEFAULT_FAILURE_WINDOW_MS`] that make a color unhealthy.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// Length of the window failures are counted in.
pub const DEFAULT_FAILURE_WINDOW_MS: u64 = 60_000;
/// Longest failure detail kept, so the document stays small.
const MAX_DETAIL: usize = 200;

/// Failure counts for the rollout epoch they were seen in. A new epoch (any
/// admin change) starts from zero: the counts judge the current step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    pub epoch: u64,
    pub blue: ColorFailures,
    pub green: ColorFailures,
    /// Writes of this record to the store in this epoch, where the store
    /// counts them (the Cloudflare rollout object): health reporting must
    /// cost O(seconds) writes, not one per failure.
    #[serde(default)]
    pub writes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColorFailures {
    /// Failures in this epoch.
    pub total: u64,
    /// Start of the current counting window (Unix ms).
    pub window_start_ms: u64,
    /// Failures since `window_start_ms`.
    pub in_window: u32,
    pub last_at_ms: u64,
    pub last_detail: String,
}

impl HealthRecord {
    /// Reads a stored document; anything unreadable counts as no record
    /// (health is advisory, it must never fail a request).
    pub fn from_json(doc: Option<&str>) -> Option<HealthRecord> {
        doc.and_then(|d| serde_json::from_str(d).ok())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn of(&mut self, color: Color) -> &mut ColorFailures {
        match color {
            Color::Blue => &mut self.blue,
            Color::Green => &mut self.green,
        }
    }

    pub fn get(&self, color: Color) -> &ColorFailures {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }
}

/// The stored record with one more failure of `color` counted.
pub fn count_failure(
    stored: Option<HealthRecord>,
    epoch: u64,
    color: Color,
    detail: &str,
    now_ms: u64,
    window_ms: u64,
) -> HealthRecord {
    let mut rec = match stored {
        Some(r) if r.epoch == epoch => r,
        _ => HealthRecord {
            epoch,
            ..HealthRecord::default()
        },
    };
    let f = rec.of(color);
    if now_ms.saturating_sub(f.window_start_ms) >= window_ms {
        f.window_start_ms = now_ms;
        f.in_window = 0;
    }
    f.total = f.total.saturating_add(1);
    f.in_window = f.in_window.saturating_add(1);
    f.last_at_ms = now_ms;
    f.last_detail = detail.chars().take(MAX_DETAIL).collect();
    rec
}

/// Combines two views of the same counts (the store's and an edge
/// instance's own), keeping the larger of each: an instance that remembers
/// its failures can write them back without losing ones it raced with, and
/// without adding up the same failure twice.
///
/// The record follows the state's epoch (`current_epoch`), in whichever
/// direction it moved: a record of any other epoch counts for nothing, so a
/// state rewritten by hand with a lower epoch starts from a fresh record
/// instead of keeping one that [`assess`] ignores (which would never report
/// the color under test unhealthy again).
pub fn merge(
    stored: Option<HealthRecord>,
    mine: &HealthRecord,
    current_epoch: u64,
) -> HealthRecord {
    let stored = stored.filter(|s| s.epoch == current_epoch);
    if mine.epoch != current_epoch {
        // An instance reporting for an epoch that is over: nothing to add.
        return stored.unwrap_or(HealthRecord {
            epoch: current_epoch,
            ..HealthRecord::default()
        });
    }
    let Some(stored) = stored else {
        return mine.clone();
    };
    let pick = |a: &ColorFailures, b: &ColorFailures| -> ColorFailures {
        let (window_start_ms, in_window) = match a.window_start_ms.cmp(&b.window_start_ms) {
            std::cmp::Ordering::Less => (b.window_start_ms, b.in_window),
            std::cmp::Ordering::Greater => (a.window_start_ms, a.in_window),
            std::cmp::Ordering::Equal => (a.window_start_ms, a.in_window.max(b.in_window)),
        };
        let latest = if a.last_at_ms >= b.last_at_ms { a } else { b };
        ColorFailures {
            total: a.total.max(b.total),
            window_start_ms,
            in_window,
            last_at_ms: latest.last_at_ms,
            last_detail: latest.last_detail.clone(),
        }
    };
    HealthRecord {
        epoch: mine.epoch,
        blue: pick(&stored.blue, &mine.blue),
        green: pick(&stored.green, &mine.green),
        writes: stored.writes.max(mine.writes),
    }
}

/// When a color counts as unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    pub threshold: u32,
    pub window_ms: u64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            threshold: DEFAULT_FAILURE_THRESHOLD,
            window_ms: DEFAULT_FAILURE_WINDOW_MS,
        }
    }
}

/// Health as `GET /__greenlight/state` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// The color whose health decides the rollout: the candidate during a
    /// canary, the new active color after a promote.
    pub under_test: Color,
    /// True when `under_test` failed `threshold` times within the window.
    pub unhealthy: bool,
    pub blue_failures: u64,
    pub green_failures: u64,
    /// Failures of `under_test` in the current window.
    pub recent_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// Writes of the health record in this epoch, where the store counts
    /// them (see [`HealthRecord::writes`]).
    #[serde(default)]
    pub writes: u64,
}

/// The color whose failures should trigger a rollback.
pub fn under_test(state: &RolloutState) -> Color {
    match state.phase() {
        Phase::Promoted => state.active,
        Phase::Stable | Phase::Canary => state.candidate,
    }
}

/// Judges the stored record against `state` at `now_ms`. A record from
/// another epoch is stale and counts as no failures.
pub fn assess(
    stored: Option<&HealthRecord>,
    state: &RolloutState,
    policy: HealthPolicy,
    now_ms: u64,
) -> HealthView {
    let empty = HealthRecord::default();
    let rec = stored.filter(|r| r.epoch == state.epoch).unwrap_or(&empty);
    let subject = under_test(state);
    let f = rec.get(subject);
    let recent = if now_ms.saturating_sub(f.window_start_ms) < policy.window_ms {
        f.in_window
    } else {
        0
    };
    HealthView {
        under_test: subject,
        unhealthy: recent >= policy.threshold,
        blue_failures: rec.blue.total,
        green_failures: rec.green.total,
        recent_failures: recent,
        last_failure: (f.total > 0).then(|| f.last_detail.clone()),
        writes: rec.writes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{ChangeMeta, RolloutOp};

    fn canary() -> RolloutState {
        let meta = ChangeMeta {
            actor: "t".into(),
            at_ms: 1,
            reason: String::new(),
        };
        RolloutState::initial("s")
            .apply(RolloutOp::SetWeight { weight_bp: 1000 }, 0, meta)
            .unwrap()
    }

    fn fail_n(n: u32, epoch: u64, color: Color, start_ms: u64) -> Option<HealthRecord> {
        (0..n).fold(None, |rec, i| {
            Some(count_failure(
                rec,
                epoch,
                color,
                "refused",
                start_ms + u64::from(i),
                60_000,
            ))
        })
    }

    #[test]
    fn the_candidate_turns_unhealthy_at_the_threshold() {
        let s = canary();
        let policy = HealthPolicy::default();
        let four = fail_n(4, s.epoch, Color::Green, 10_000);
        let v = assess(four.as_ref(), &s, policy, 10_100);
        assert_eq!(
            (v.under_test, v.unhealthy, v.recent_failures),
            (Color::Green, false, 4)
        );
        let five = fail_n(5, s.epoch, Color::Green, 10_000);
        let v = assess(five.as_ref(), &s, policy, 10_100);
        assert!(v.unhealthy);
        assert_eq!(v.green_failures, 5);
        assert_eq!(v.last_failure.as_deref(), Some("refused"));
    }

    #[test]
    fn failures_of_the_stable_color_do_not_blame_the_candidate() {
        let s = canary();
        let rec = fail_n(50, s.epoch, Color::Blue, 0);
        let v = assess(rec.as_ref(), &s, HealthPolicy::default(), 100);
        assert!(!v.unhealthy);
        assert_eq!((v.blue_failures, v.green_failures), (50, 0));
    }

    #[test]
    fn old_failures_age_out_and_a_new_epoch_starts_from_zero() {
        let s = canary();
        let rec = fail_n(9, s.epoch, Color::Green, 0);
        let later = assess(rec.as_ref(), &s, HealthPolicy::default(), 70_000);
        assert!(!later.unhealthy);
        assert_eq!(later.green_failures, 9, "the epoch total is kept");
        // One failure in a new window counts from one.
        let rec = count_failure(rec, s.epoch, Color::Green, "x", 70_000, 60_000);
        assert_eq!(rec.green.in_window, 1);
        assert_eq!(rec.green.total, 10);
        // A record of an older epoch is ignored and replaced.
        let next_epoch = count_failure(
            Some(rec.clone()),
            s.epoch + 1,
            Color::Green,
            "y",
            70_001,
            60_000,
        );
        assert_eq!(next_epoch.green.total, 1);
        let mut newer = s.clone();
        newer.epoch += 1;
        assert_eq!(
            assess(Some(&rec), &newer, HealthPolicy::default(), 70_000).green_failures,
            0
        );
    }

    #[test]
    fn after_a_promote_the_new_active_color_is_under_test() {
        let meta = ChangeMeta {
            actor: "t".into(),
            at_ms: 2,
            reason: String::new(),
        };
        let promoted = canary().apply(RolloutOp::Promote, 1, meta).unwrap();
        assert_eq!(under_test(&promoted), Color::Green);
        let rec = fail_n(5, promoted.epoch, Color::Green, 0);
        assert!(assess(rec.as_ref(), &promoted, HealthPolicy::default(), 10).unhealthy);
    }

    #[test]
    fn merging_keeps_the_larger_counts_and_the_newer_epoch() {
        // An instance counted 3 failures; the store holds 2 of them (a write raced).
        let mine = fail_n(3, 4, Color::Green, 1_000).unwrap();
        let stored = fail_n(2, 4, Color::Green, 1_000).unwrap();
        let m = merge(Some(stored.clone()), &mine, 4);
        assert_eq!((m.green.total, m.green.in_window), (3, 3));
        // Another instance's blue failures survive the write back.
        let mut other = stored;
        other = count_failure(Some(other), 4, Color::Blue, "x", 1_500, 60_000);
        let m = merge(Some(other), &mine, 4);
        assert_eq!((m.blue.total, m.green.total), (1, 3));
        // A later window wins over an older one.
        let fresh = count_failure(None, 4, Color::Green, "late", 90_000, 60_000);
        let m = merge(Some(fresh), &mine, 4);
        assert_eq!((m.green.window_start_ms, m.green.in_window), (90_000, 1));
        assert_eq!(m.green.last_detail, "late");
        // Epochs: the state's current one wins whole.
        let newer = fail_n(1, 5, Color::Blue, 2_000).unwrap();
        assert_eq!(merge(Some(newer.clone()), &mine, 5), newer);
        assert_eq!(merge(Some(mine.clone()), &newer, 5), newer);
        assert_eq!(merge(None, &mine, 4), mine);
    }

    #[test]
    fn the_record_follows_the_state_when_a_hand_edit_lowers_the_epoch() {
        // The store holds failures of epoch 40; the state is rewritten by
        // hand to epoch 7, a canary whose green now fails.
        let mut s = canary();
        s.epoch = 7;
        let policy = HealthPolicy {
            threshold: 5,
            window_ms: 60_000,
        };
        let old = fail_n(3, 40, Color::Green, 1_000);
        let mine = fail_n(5, 7, Color::Green, 2_000).unwrap();
        // Before: the higher epoch won the merge and assess ignored it.
        let merged = merge(old.clone(), &mine, s.epoch);
        assert_eq!((merged.epoch, merged.green.total), (7, 5));
        let view = assess(Some(&merged), &s, policy, 2_500);
        assert!(view.unhealthy, "{view:?}");
        assert_eq!(view.recent_failures, 5);
        // A late report for the old epoch neither revives it nor erases the
        // current counts.
        let late = fail_n(9, 40, Color::Green, 2_100).unwrap();
        assert_eq!(merge(Some(merged.clone()), &late, 7), merged);
        let none_yet = merge(old, &late, 7);
        assert_eq!((none_yet.epoch, none_yet.green.total), (7, 0));
        // count_failure follows the epoch down as well as up.
        let rec = count_failure(
            fail_n(9, 40, Color::Green, 0),
            7,
            Color::Green,
            "x",
            10,
            60_000,
        );
        assert_eq!((rec.epoch, rec.green.total), (7, 1));
    }

    #[test]
    fn unreadable_records_are_ignored_and_details_are_bounded() {
        assert_eq!(HealthRecord::from_json(Some("{oops")), None);
        let rec = count_failure(None, 1, Color::Blue, &"x".repeat(5_000), 5, 60_000);
        assert_eq!(rec.blue.last_detail.len(), MAX_DETAIL);
        assert_eq!(HealthRecord::from_json(Some(&rec.to_json())), Some(rec));
    }
}
