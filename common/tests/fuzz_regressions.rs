//! Inputs found by the cargo-fuzz targets in `common/fuzz` (run with
//! `scripts/fuzz.sh`), kept as regression tests.

use greenlight_common::admin::{self, AdminRoute, Problem};
use greenlight_common::rollout::{ChangeMeta, RolloutError, RolloutOp};
use greenlight_common::RolloutState;

/// admin_request: a valid state document at epoch u64::MAX. Any accepted
/// change computed `epoch + 1`: a panic in debug builds, a wrap to epoch 0 in
/// release ones. Now the change is refused (409) and nothing is written.
#[test]
fn admin_change_at_max_epoch_is_refused_not_wrapped() {
    let mut state = RolloutState::initial("salt");
    state.epoch = u64::MAX;
    state.rollback_target = Some(state.candidate);
    // The document itself is valid and round-trips.
    assert_eq!(RolloutState::from_json(&state.to_json()), Ok(state.clone()));

    let body = br#"{"expected_epoch":18446744073709551615}"#;
    let out = admin::handle(
        AdminRoute::Rollback,
        "POST",
        body,
        "k:ops",
        &state,
        true,
        8_125_435,
    );
    assert_eq!((out.status, out.new_state), (409, None), "{}", out.body);
    let p: Problem = serde_json::from_str(&out.body).unwrap();
    assert!(p.detail.contains("epoch is at its maximum"), "{}", p.detail);

    let meta = || ChangeMeta {
        actor: "t".into(),
        at_ms: 0,
        reason: String::new(),
    };
    for op in [
        RolloutOp::SetWeight { weight_bp: 100 },
        RolloutOp::Promote,
        RolloutOp::Rollback,
        RolloutOp::Abort,
    ] {
        assert!(
            matches!(
                state.apply(op, u64::MAX, meta()),
                Err(RolloutError::InvalidTransition { .. })
            ),
            "{op:?}"
        );
    }
    // One below the maximum still has a next epoch.
    state.epoch = u64::MAX - 1;
    let next = state.apply(RolloutOp::Rollback, u64::MAX - 1, meta());
    assert_eq!(next.map(|s| s.epoch), Ok(u64::MAX));
}
