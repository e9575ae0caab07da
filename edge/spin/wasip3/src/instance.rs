//! What an instance keeps between the requests Spin gives it, as a Worker
//! isolate does: the configuration (read once) and the rollout state
//! (reused for `STATE_CACHE_TTL_MS`, never older than one it served). The
//! per-caller tables stay in the store (`edge::kv::StoreTables`): Spin runs
//! as many instances as its load asks for, and a caller spread over them
//! would get each instance's limit. Requests an instance serves at once
//! share these and nothing else; no borrow of them is held across an
//! await.

use crate::store::Kv;
use greenlight_common::config_error::ConfigError;
use greenlight_common::edge::kv;
use greenlight_common::edge::{self, EdgeConfig, Forward, LoadedState, CONFIG_VARIABLES};
use greenlight_common::failover::AttemptOutcome;
use greenlight_common::telemetry::Pending;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    static CONFIG: RefCell<Option<Result<Rc<EdgeConfig>, ConfigError>>> = const { RefCell::new(None) };
    /// The state served and when it was read (ms).
    static STATE: RefCell<Option<(Rc<LoadedState>, u64)>> = const { RefCell::new(None) };
    /// Real users' answers counted since this instance's last flush.
    static TELEMETRY: RefCell<Pending> = RefCell::new(Pending::default());
}

/// Counts one attempt at an origin in this instance's telemetry, and
/// schedules the flush that sends it (at most one a second, jittered) as a
/// task that runs after the answer: no request waits on the store for it.
pub fn count_attempt(
    fwd: &Forward,
    outcome: &AttemptOutcome,
    elapsed_ms: u64,
    content_length: Option<&str>,
    now_ms: u64,
) {
    let bytes = edge::announced_bytes(content_length);
    let Some((color, epoch, m)) = edge::measured(fwd, outcome, elapsed_ms, bytes, now_ms) else {
        return;
    };
    let Some(delay) = TELEMETRY.with_borrow_mut(|t| t.record(color, epoch, &m)) else {
        return;
    };
    spin_sdk::wasip3::spawn(async move {
        crate::body::sleep_ms(delay).await;
        let Some(batch) = TELEMETRY.with_borrow_mut(|t| t.take(crate::now_ms())) else {
            return;
        };
        // A batch that cannot be stored is lost: its counts only.
        let stored = match Kv::open() {
            Ok(store) => kv::add_telemetry(&*store, &batch).await,
            Err(e) => Err(format!("opening the store: {e}")),
        };
        if let Err(e) = stored {
            eprintln!("greenlight: telemetry batch lost: {e}");
        }
    });
}

/// The configuration from Spin variables (lower-cased names), read by the
/// instance's first request; an invalid one is logged once and answered
/// 502 on every request.
pub async fn config() -> Result<Rc<EdgeConfig>, ConfigError> {
    if let Some(cfg) = CONFIG.with_borrow(Clone::clone) {
        return cfg;
    }
    let cfg = read_config()
        .await
        .and_then(|cfg| cfg.check_platform("Spin").map(|()| Rc::new(cfg)));
    if let Err(e) = &cfg {
        // The 502 says only that the configuration is invalid.
        eprintln!("greenlight: configuration error: {}", e.0);
    }
    CONFIG.set(Some(cfg.clone()));
    cfg
}

async fn read_config() -> Result<EdgeConfig, ConfigError> {
    let mut values = Vec::with_capacity(CONFIG_VARIABLES.len());
    for name in CONFIG_VARIABLES {
        let lower = name.to_lowercase();
        match spin_sdk::variables::get(&lower).await {
            Ok(v) => values.push((*name, v)),
            Err(spin_sdk::variables::Error::Undefined(_)) => {}
            Err(e) => return Err(ConfigError(format!("reading Spin variable {lower}: {e:?}"))),
        }
    }
    EdgeConfig::from_lookup(|name| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    })
}

/// The rollout state to route by: the one this instance read less than
/// `STATE_CACHE_TTL_MS` ago, else a fresh read of the store. A read that
/// gives an older epoch than the one served keeps the newer state; an
/// unreadable document serves the last good state, flagged degraded
/// (`edge::kv::read_state`).
pub fn state(kv: Option<&Kv>, cfg: &EdgeConfig, now_ms: u64) -> Rc<LoadedState> {
    let held = STATE.with_borrow(Clone::clone);
    if let Some((state, read_at)) = &held {
        if now_ms.saturating_sub(*read_at) < cfg.state_cache_ttl_ms {
            return state.clone();
        }
    }
    let last_good = held.as_ref().map(|(s, _)| &s.state);
    let read = kv::read_state(kv, last_good, cfg);
    let state = match &held {
        Some((served, _)) if served.state.epoch > read.state.epoch => served.clone(),
        _ => Rc::new(read),
    };
    STATE.set(Some((state.clone(), now_ms)));
    state
}

/// An admin call through this instance changed the state: its next
/// request reads it, whatever the cache's age.
pub fn state_changed() {
    STATE.with_borrow_mut(|s| {
        if let Some((_, read_at)) = s {
            *read_at = 0;
        }
    });
}

/// This instance committed `state` (a plan's change): it routes by it from
/// now on, as if just read.
pub fn changed_to(state: greenlight_common::RolloutState, now_ms: u64) -> Rc<LoadedState> {
    let loaded = Rc::new(LoadedState {
        state,
        degraded: false,
    });
    STATE.set(Some((loaded.clone(), now_ms)));
    loaded
}
