//! What an instance keeps between the requests Spin gives it, as a Worker
//! isolate does: the configuration (read once), the rollout state (reused
//! for `STATE_CACHE_TTL_MS`, never older than one it served), the
//! rate-limit buckets and the admin failure table. Requests an instance
//! serves at once share these tables and nothing else; no borrow of them
//! is held across an await.

use crate::store::Kv;
use greenlight_common::admin::TableSize;
use greenlight_common::admin_guard::AdminFailures;
use greenlight_common::config_error::ConfigError;
use greenlight_common::edge::kv;
use greenlight_common::edge::CONFIG_VARIABLES;
use greenlight_common::edge::{self, Action, EdgeConfig, Forward, LoadedState, Platform};
use greenlight_common::failover::AttemptOutcome;
use greenlight_common::ratelimit::{Limiter, RateLimit, RetryAfter};
use std::cell::RefCell;
use std::rc::Rc;

/// Callers with a rate-limit bucket, and with an admin failure record, an
/// instance keeps at most (a flood of distinct callers cannot grow them).
const MAX_LIMITED_CALLERS: usize = 10_000;
const MAX_ADMIN_FAILURE_CALLERS: usize = 10_000;

thread_local! {
    static CONFIG: RefCell<Option<Result<Rc<EdgeConfig>, ConfigError>>> = const { RefCell::new(None) };
    /// The state served and when it was read (ms).
    static STATE: RefCell<Option<(Rc<LoadedState>, u64)>> = const { RefCell::new(None) };
    static LIMITER: RefCell<Option<Limiter>> = const { RefCell::new(None) };
    static ADMIN_FAILURES: RefCell<AdminFailures> = RefCell::new(AdminFailures::default());
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

/// The instance as the pipeline's platform: tables in memory, health in
/// the store (`GET state` reads it there, whichever instance counted).
/// `wasi:http` 0.3 (as Spin 4.0 implements it) has no upgrade and hides
/// `transfer-encoding`.
pub struct Instance<'a> {
    pub kv: Option<&'a Kv>,
    pub cfg: &'a EdgeConfig,
}

impl Platform for Instance<'_> {
    const RUNTIME: &'static str = "spin";
    const TABLES_IN: &'static str = "instance";
    const REFUSES_WEBSOCKETS: Option<&'static str> = Some("Spin (wasi:http 0.3)");
    const HIDES_TRANSFER_ENCODING: bool = true;
    const DROPS_GET_BODY: bool = false;

    fn guard_admin(&mut self, action: Action, caller: &str, now_ms: u64) -> Action {
        ADMIN_FAILURES.with_borrow_mut(|failures| {
            edge::guard_admin(action, caller, failures, now_ms, MAX_ADMIN_FAILURE_CALLERS).0
        })
    }

    fn take_token(&mut self, limit: RateLimit, key: &str, now_ms: u64) -> Result<(), RetryAfter> {
        LIMITER.with_borrow_mut(|l| {
            l.get_or_insert_with(|| Limiter::new(limit, MAX_LIMITED_CALLERS))
                .take(key, now_ms)
        })
    }

    fn count_failure(&mut self, fwd: &Forward, outcome: &AttemptOutcome, now_ms: u64) {
        if let Some(kv) = self.kv {
            kv::count_failure_in(kv, self.cfg, fwd, outcome, now_ms);
        }
    }

    fn sizes(&self) -> Result<Vec<(&'static str, TableSize)>, String> {
        let size = |entries: usize, cap: usize| TableSize {
            entries: entries as u64,
            cap: cap as u64,
        };
        Ok(vec![
            (
                "admin_failure_callers",
                ADMIN_FAILURES.with_borrow(|f| size(f.len(), MAX_ADMIN_FAILURE_CALLERS)),
            ),
            (
                "rate_limit_callers",
                LIMITER.with_borrow(|l| {
                    size(l.as_ref().map_or(0, Limiter::callers), MAX_LIMITED_CALLERS)
                }),
            ),
        ])
    }
}
