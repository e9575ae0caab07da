//! `decide` on arbitrary valid states and request facts.
//!
//! Invariants: the color is the active or the candidate one (or the
//! permitted preview); weight 0 → never the candidate, weight 10 000 → always
//! the candidate (previews aside); a preview is refused exactly when the
//! rules require a role the caller lacks; a sticky user's color ignores the
//! random roll; and raising the weight never moves anyone from the candidate
//! back to the active color.
#![no_main]

use arbitrary::Arbitrary;
use greenlight_common::decide::{bucket, decide, PreviewDenied, RequestFacts, RouteReason};
use greenlight_common::state::{RolloutState, WEIGHT_SCALE};
use greenlight_common::Color;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    green_active: bool,
    weight_bp: u16,
    /// How far a second decision raises the weight.
    raise_bp: u16,
    rollback_target: bool,
    epoch: u64,
    sticky: bool,
    require_role: bool,
    /// `Some(true)` asks for green, `Some(false)` for blue.
    preview: Option<bool>,
    may_preview: bool,
    roll: u32,
    other_roll: u32,
    salt: &'a str,
    key: Option<&'a str>,
}

fn color(green: bool) -> Color {
    if green {
        Color::Green
    } else {
        Color::Blue
    }
}

fuzz_target!(|input: Input<'_>| {
    let mut state = RolloutState::initial(if input.salt.is_empty() || input.salt.len() > 256 {
        "salt"
    } else {
        input.salt
    });
    state.active = color(input.green_active);
    state.candidate = state.active.other();
    state.candidate_weight_bp = input.weight_bp % (WEIGHT_SCALE + 1);
    state.rollback_target = input.rollback_target.then_some(state.candidate);
    state.epoch = input.epoch;
    state.stickiness.enabled = input.sticky;
    state.preview.require_role = input.require_role;
    assert_eq!(state.validate(), Ok(()), "harness built an invalid state");

    let facts = RequestFacts {
        sticky_key: input.key,
        preview: input.preview.map(color),
        may_preview: input.may_preview,
        roll: input.roll,
    };
    let result = decide(&facts, &state);
    assert_eq!(result, decide(&facts, &state), "not deterministic");

    if let Some(asked) = facts.preview {
        if state.preview.require_role && !facts.may_preview {
            assert_eq!(result, Err(PreviewDenied));
        } else {
            let d = result.expect("permitted preview");
            assert_eq!(
                (d.color, d.reason, d.epoch),
                (asked, RouteReason::Override, state.epoch)
            );
        }
        return;
    }
    let d = result.expect("no preview, no denial");
    assert_eq!(d.epoch, state.epoch);
    assert!(d.color == state.active || d.color == state.candidate);
    let weight = state.candidate_weight_bp;
    let on_candidate = d.color == state.candidate;
    match weight {
        0 => {
            assert!(!on_candidate, "candidate at 0 bp");
            let want = if state.rollback_target.is_some() {
                RouteReason::Promoted
            } else {
                RouteReason::Stable
            };
            assert_eq!(d.reason, want);
        }
        WEIGHT_SCALE => assert!(on_candidate, "active at 100 %"),
        _ => {}
    }
    if weight > 0 {
        match (facts.sticky_key, state.stickiness.enabled) {
            (Some(key), true) => {
                assert_eq!(d.reason, RouteReason::Sticky);
                let b = bucket(&state.stickiness.salt, key);
                assert!(b < WEIGHT_SCALE);
                assert_eq!(on_candidate, b < weight);
                // The same user gets the same color whatever the roll.
                let rerolled = RequestFacts {
                    roll: input.other_roll,
                    ..facts
                };
                assert_eq!(
                    decide(&rerolled, &state),
                    Ok(d),
                    "sticky user moved by the roll"
                );
            }
            _ => {
                assert_eq!(d.reason, RouteReason::Weight);
                assert_eq!(
                    on_candidate,
                    facts.roll % u32::from(WEIGHT_SCALE) < u32::from(weight)
                );
            }
        }
    }

    // Raise the weight (same user, same roll): candidate stays candidate.
    let mut raised = state.clone();
    raised.candidate_weight_bp = weight + input.raise_bp % (WEIGHT_SCALE - weight + 1);
    let after = decide(&facts, &raised).expect("no preview");
    assert!(
        !on_candidate || after.color == raised.candidate,
        "moved from candidate back to active when the weight rose {weight} → {}",
        raised.candidate_weight_bp
    );
});
