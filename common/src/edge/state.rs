use crate::state::RolloutState;

/// The rollout state an edge works from, and whether it had to fall back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedState {
    pub state: RolloutState,
    pub degraded: bool,
}

/// Turns the stored document (if any) into the state to serve from. An
/// unreadable document never fails a request: the last good state (or the
/// initial one) is used and the edge says it is degraded.
pub fn load_state(
    document: Option<&str>,
    last_good: Option<&RolloutState>,
    default_salt: &str,
) -> LoadedState {
    match document.map(RolloutState::from_json) {
        None => LoadedState {
            state: RolloutState::initial(default_salt),
            degraded: false,
        },
        Some(Ok(state)) => LoadedState {
            state,
            degraded: false,
        },
        Some(Err(_)) => fallback_state(last_good, default_salt),
    }
}

/// The state to serve when the document cannot be read at all (the store
/// failed): the last good state, or the initial one, flagged degraded.
pub fn fallback_state(last_good: Option<&RolloutState>, default_salt: &str) -> LoadedState {
    LoadedState {
        state: last_good
            .cloned()
            .unwrap_or_else(|| RolloutState::initial(default_salt)),
        degraded: true,
    }
}

/// The state to serve when the stored document is unreadable and the
/// instance has no last good state in memory: the backup copy under
/// [`crate::http::LAST_GOOD_KEY`] if it parses, else the initial state;
/// flagged degraded either way.
pub fn fallback_from_backup(backup: Option<&str>, default_salt: &str) -> LoadedState {
    LoadedState {
        state: backup
            .and_then(|b| RolloutState::from_json(b).ok())
            .unwrap_or_else(|| RolloutState::initial(default_salt)),
        degraded: true,
    }
}

/// Whether a backup copy ([`crate::http::LAST_GOOD_KEY`]) holding
/// `backup` is replaced by a committed document of `epoch`: when it is
/// missing, unreadable or older. Changes committed back to back by two
/// instances may write their backups in either order; the backup must
/// never go back to an older epoch.
pub fn replaces_backup(backup: Option<&str>, epoch: u64) -> bool {
    match backup.map(RolloutState::from_json) {
        Some(Ok(held)) => held.epoch < epoch,
        _ => true,
    }
}
