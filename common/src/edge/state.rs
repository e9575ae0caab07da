use crate::state::RolloutState;

/// The rollout state an edge works from, and whether it had to fall back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedState {
    pub state: RolloutState,
    pub degraded: bool,
}

/// What a read of the state document leaves to do.
// Returned once per read and unpacked at once: boxing the state would cost
// an allocation on every read for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLoad {
    Ready(LoadedState),
    /// The document is unreadable (or the store failed) and there is no
    /// last good state in memory: read the backup copy under
    /// [`crate::http::LAST_GOOD_KEY`] and pass it to [`state_from_backup`].
    NeedsBackup,
}

/// The one rule for the state an edge serves, from its read of the
/// document (`Err`: the store failed): the document when it parses, the
/// initial state when there is none; otherwise the last good state in
/// memory, else the backup copy, else the initial state, flagged degraded.
/// An unreadable document never fails a request.
pub fn load_state(
    document: Result<Option<&str>, ()>,
    last_good: Option<&RolloutState>,
    default_salt: &str,
) -> StateLoad {
    let parsed = match document {
        Ok(None) => {
            return StateLoad::Ready(LoadedState {
                state: RolloutState::initial(default_salt),
                degraded: false,
            })
        }
        Ok(Some(doc)) => RolloutState::from_json(doc).ok(),
        Err(()) => None,
    };
    match (parsed, last_good) {
        (Some(state), _) => StateLoad::Ready(LoadedState {
            state,
            degraded: false,
        }),
        (None, Some(good)) => StateLoad::Ready(LoadedState {
            state: good.clone(),
            degraded: true,
        }),
        (None, None) => StateLoad::NeedsBackup,
    }
}

/// The last step of [`load_state`]'s rule: the backup copy if it parses,
/// else the initial state; flagged degraded either way.
pub fn state_from_backup(backup: Option<&str>, default_salt: &str) -> LoadedState {
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
