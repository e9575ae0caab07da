//! The per-request routing decision.

use crate::color::Color;
use crate::rollout::Phase;
use crate::state::{RolloutState, WEIGHT_SCALE};
use serde::{Deserialize, Serialize};
use std::fmt;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Everything about one request that the decision depends on. The adapter
/// fills it in; authentication has already happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// Stable identity for stickiness (API key id, JWT `sub`, or the
    /// anonymous cookie), already namespaced by its kind.
    pub sticky_key: Option<&'a str>,
    /// Color asked for through the preview header or cookie.
    pub preview: Option<Color>,
    /// Whether this caller may use a preview override.
    pub may_preview: bool,
    /// A uniformly random number, used only when there is no sticky key or
    /// stickiness is off.
    pub roll: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteReason {
    /// A permitted preview override.
    Override,
    /// The user's sticky bucket fell inside (or outside) the candidate share.
    Sticky,
    /// An independent weighted draw (no identity, or stickiness off).
    Weight,
    /// No canary: everyone on the active color.
    Stable,
    /// Just promoted: everyone on the new active color.
    Promoted,
    /// The chosen color failed and the request was retried on this one.
    Failover,
}

impl RouteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteReason::Override => "override",
            RouteReason::Sticky => "sticky",
            RouteReason::Weight => "weight",
            RouteReason::Stable => "stable",
            RouteReason::Promoted => "promoted",
            RouteReason::Failover => "failover",
        }
    }
}

impl fmt::Display for RouteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDecision {
    pub color: Color,
    pub epoch: u64,
    pub reason: RouteReason,
}

/// The caller asked for a preview it is not allowed to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewDenied;

/// The sticky bucket (0..10 000) of `key` under `salt`. The same pair always
/// lands in the same bucket, on every edge and platform.
pub fn bucket(salt: &str, key: &str) -> u16 {
    let seed = xxh3_64(salt.as_bytes());
    // u64 % 10_000 has a bias below 1e-15: irrelevant for traffic splitting.
    (xxh3_64_with_seed(key.as_bytes(), seed) % u64::from(WEIGHT_SCALE)) as u16
}

/// Picks the color for one request.
///
/// A user is on the candidate iff their bucket is below the weight, so raising
/// the weight only ever moves users from active to candidate, never back.
pub fn decide(
    facts: &RequestFacts<'_>,
    state: &RolloutState,
) -> Result<RouteDecision, PreviewDenied> {
    let decision = |color, reason| RouteDecision {
        color,
        epoch: state.epoch,
        reason,
    };
    if let Some(color) = facts.preview {
        if state.preview.require_role && !facts.may_preview {
            return Err(PreviewDenied);
        }
        return Ok(decision(color, RouteReason::Override));
    }
    match state.phase() {
        Phase::Stable => return Ok(decision(state.active, RouteReason::Stable)),
        Phase::Promoted => return Ok(decision(state.active, RouteReason::Promoted)),
        Phase::Canary => {}
    }
    let (slot, reason) = match facts.sticky_key {
        Some(key) if state.stickiness.enabled => {
            (bucket(&state.stickiness.salt, key), RouteReason::Sticky)
        }
        _ => (
            (facts.roll % u32::from(WEIGHT_SCALE)) as u16,
            RouteReason::Weight,
        ),
    };
    let color = if slot < state.candidate_weight_bp {
        state.candidate
    } else {
        state.active
    };
    Ok(decision(color, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{ChangeMeta, RolloutOp};

    fn canary(weight_bp: u16) -> RolloutState {
        let s = RolloutState::initial("salt-A");
        s.apply(
            RolloutOp::SetWeight { weight_bp },
            0,
            ChangeMeta {
                actor: "t".into(),
                at_ms: 0,
                reason: String::new(),
            },
        )
        .unwrap()
    }

    fn facts(key: Option<&str>) -> RequestFacts<'_> {
        RequestFacts {
            sticky_key: key,
            preview: None,
            may_preview: false,
            roll: 0,
        }
    }

    #[test]
    fn split_converges_to_weight_for_100k_users() {
        let state = canary(1_000);
        let keys: Vec<String> = (0..100_000).map(|i| format!("c:user-{i}")).collect();
        let green = keys
            .iter()
            .filter(|k| decide(&facts(Some(k)), &state).unwrap().color == Color::Green)
            .count();
        let share = green as f64 / keys.len() as f64;
        assert!((share - 0.10).abs() <= 0.005, "share {share}");
    }

    #[test]
    fn users_on_green_stay_on_green_as_weight_grows() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("s:{i}")).collect();
        let mut previous: Vec<bool> = vec![false; keys.len()];
        for w in [100u16, 500, 1_000, 2_500, 5_000, 7_500, 10_000] {
            let state = canary(w);
            for (i, k) in keys.iter().enumerate() {
                let d = decide(&facts(Some(k)), &state).unwrap();
                assert_eq!(d.reason, RouteReason::Sticky);
                let on_green = d.color == Color::Green;
                assert!(on_green || !previous[i], "user {k} left green at {w} bp");
                previous[i] = on_green;
            }
        }
        assert!(previous.iter().all(|g| *g), "100 % means everyone");
    }

    #[test]
    fn same_user_same_color_and_salt_reshuffles() {
        let state = canary(5_000);
        let a = decide(&facts(Some("k:alice")), &state).unwrap();
        for _ in 0..10 {
            assert_eq!(decide(&facts(Some("k:alice")), &state).unwrap(), a);
        }
        let keys: Vec<String> = (0..2_000).map(|i| format!("u{i}")).collect();
        let mut other = state.clone();
        other.stickiness.salt = "salt-B".into();
        let moved = keys
            .iter()
            .filter(|k| bucket("salt-A", k) != bucket("salt-B", k))
            .count();
        assert!(
            moved > 1_900,
            "a new salt should reshuffle nearly everyone, moved {moved}"
        );
    }

    #[test]
    fn anonymous_or_non_sticky_uses_the_roll() {
        let mut state = canary(2_000);
        let mut f = facts(None);
        f.roll = 1_999;
        assert_eq!(
            decide(&f, &state).unwrap(),
            RouteDecision {
                color: Color::Green,
                epoch: 1,
                reason: RouteReason::Weight
            }
        );
        f.roll = 12_000; // 12 000 % 10 000 = 2 000: not below the weight
        assert_eq!(decide(&f, &state).unwrap().color, Color::Blue);
        state.stickiness.enabled = false;
        let mut g = facts(Some("k:alice"));
        g.roll = 5;
        assert_eq!(decide(&g, &state).unwrap().reason, RouteReason::Weight);
        let rolled = (0..100_000u32)
            .filter(|r| {
                let mut f = facts(None);
                f.roll = r.wrapping_mul(2_654_435_761);
                decide(&f, &state).unwrap().color == Color::Green
            })
            .count();
        assert!((rolled as f64 / 100_000.0 - 0.2).abs() < 0.005);
    }

    #[test]
    fn stable_and_promoted_send_everyone_to_active() {
        let s = RolloutState::initial("x");
        let d = decide(&facts(Some("k:a")), &s).unwrap();
        assert_eq!((d.color, d.reason), (Color::Blue, RouteReason::Stable));
        let p = s
            .apply(
                RolloutOp::Promote,
                0,
                ChangeMeta {
                    actor: "t".into(),
                    at_ms: 0,
                    reason: String::new(),
                },
            )
            .unwrap();
        let d = decide(&facts(Some("k:a")), &p).unwrap();
        assert_eq!(
            (d.color, d.reason, d.epoch),
            (Color::Green, RouteReason::Promoted, 1)
        );
    }

    #[test]
    fn preview_needs_permission_unless_rules_say_otherwise() {
        let mut state = RolloutState::initial("x");
        let mut f = facts(Some("k:a"));
        f.preview = Some(Color::Green);
        assert_eq!(decide(&f, &state), Err(PreviewDenied));
        f.may_preview = true;
        assert_eq!(decide(&f, &state).unwrap().reason, RouteReason::Override);
        assert_eq!(decide(&f, &state).unwrap().color, Color::Green);
        f.may_preview = false;
        state.preview.require_role = false;
        assert_eq!(decide(&f, &state).unwrap().color, Color::Green);
    }

    const PINNED_ALICE: u16 = 3322;

    #[test]
    fn buckets_are_in_range_and_stable_across_builds() {
        for i in 0..10_000 {
            assert!(bucket("s", &format!("{i}")) < WEIGHT_SCALE);
        }
        // Pinned so a dependency bump that changes the hash (and would move
        // every user) fails loudly.
        assert_eq!(bucket("salt-A", "k:alice"), PINNED_ALICE);
    }
}
