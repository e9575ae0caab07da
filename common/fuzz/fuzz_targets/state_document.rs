//! The state document parser, `RolloutState::from_json`, on arbitrary text.
//!
//! Invariants: nothing panics; whatever is accepted holds every documented
//! bound (schema 1, weight ≤ 10 000 bp, candidate ≠ active, rollback target
//! ≠ active, salt/header/cookie/text limits via `validate`), and survives
//! `to_json` → `from_json` unchanged, with `to_json` a fixed point.
#![no_main]

use greenlight_common::state::{RolloutState, MAX_TEXT_LEN, SCHEMA_VERSION, WEIGHT_SCALE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(state) = RolloutState::from_json(text) else {
        return;
    };
    assert_eq!(state.schema, SCHEMA_VERSION);
    assert!(
        state.candidate_weight_bp <= WEIGHT_SCALE,
        "weight out of range"
    );
    assert_ne!(state.active, state.candidate);
    assert_ne!(state.rollback_target, Some(state.active));
    assert!(!state.stickiness.salt.is_empty() && state.stickiness.salt.len() <= MAX_TEXT_LEN);
    assert_eq!(state.validate(), Ok(()));

    let json = state.to_json();
    let again = RolloutState::from_json(&json).expect("a serialised state parses back");
    assert_eq!(again, state, "round trip changed the state");
    assert_eq!(again.to_json(), json, "to_json is not a fixed point");
});
