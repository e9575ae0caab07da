//! The key-value rules against an in-memory store: one that compares on
//! swap, and one that swaps unconditionally.

use super::*;
use crate::edge::kv::{self, AtomicStore, Swap};
use crate::http::{LAST_GOOD_KEY, STATE_KEY};
use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs a future whose awaits never wait (the memory store's pause is
/// immediate).
fn run<T>(f: impl Future<Output = T>) -> T {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[derive(Default)]
struct Memory {
    map: RefCell<HashMap<String, Vec<u8>>>,
    /// Swaps without comparing (a store that would lose updates).
    blind: bool,
    /// Written by "another instance" between a watch and its swap.
    interleave: RefCell<Option<(String, Vec<u8>)>>,
    fail_reads: bool,
}

impl AtomicStore for Memory {
    type Cas = (String, Option<Vec<u8>>);

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        if self.fail_reads {
            return Err("store down".into());
        }
        Ok(self.map.borrow().get(key).cloned())
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.map.borrow_mut().insert(key.into(), value.to_vec());
        Ok(())
    }

    fn watch(&self, key: &str) -> Result<(Self::Cas, Option<Vec<u8>>), String> {
        let current = self.get(key)?;
        Ok(((key.to_string(), current.clone()), current))
    }

    fn swap(&self, (key, seen): Self::Cas, value: &[u8]) -> Result<Swap, String> {
        if key == STATE_KEY {
            if let Some((k, v)) = self.interleave.borrow_mut().take() {
                self.set(&k, &v)?;
            }
        }
        if !self.blind && self.map.borrow().get(&key) != seen.as_ref() {
            return Ok(Swap::Lost);
        }
        self.set(&key, value)?;
        Ok(Swap::Done)
    }

    fn increment(&self, key: &str, by: i64) -> Result<i64, String> {
        let now = self
            .get(key)?
            .and_then(|v| String::from_utf8(v).ok()?.parse::<i64>().ok())
            .unwrap_or(0)
            + by;
        self.set(key, now.to_string().as_bytes())?;
        Ok(now)
    }

    async fn pause(&self, _ms: u64) {}

    fn random(&self) -> u64 {
        // Distinct per call, so probes never repeat a value.
        self.map.borrow().len() as u64 ^ 0x5eed
    }
}

fn weight(store: &Memory, expected_epoch: u64, percent: u32) -> Reply {
    let call = AdminCall {
        route: AdminRoute::Weight,
        identity: "admin-token".into(),
    };
    let body = format!(r#"{{"expected_epoch":{expected_epoch},"weight_percent":{percent}}}"#);
    run(kv::commit_admin(
        store,
        &config(),
        &call,
        "POST",
        body.as_bytes(),
        NOW_MS,
    ))
}

fn stored(store: &Memory, key: &str) -> RolloutState {
    let bytes = store.map.borrow().get(key).cloned().unwrap();
    RolloutState::from_json(std::str::from_utf8(&bytes).unwrap()).unwrap()
}

#[test]
fn the_first_change_creates_the_document_and_its_backup() {
    let store = Memory::default();
    assert_eq!(weight(&store, 0, 20).status, 200);
    let state = stored(&store, STATE_KEY);
    assert_eq!((state.epoch, state.candidate_weight_bp), (1, 2_000));
    assert_eq!(stored(&store, LAST_GOOD_KEY).epoch, 1);
    assert_eq!(weight(&store, 0, 30).status, 409, "a stale epoch");
    assert_eq!(weight(&store, 1, 30).status, 200);
    assert_eq!(stored(&store, LAST_GOOD_KEY).epoch, 2);
}

#[test]
fn a_change_that_loses_the_swap_is_a_409() {
    let store = Memory::default();
    assert_eq!(weight(&store, 0, 20).status, 200);
    // Another instance commits epoch 2 between this call's read and swap.
    let mut other = stored(&store, STATE_KEY);
    other.epoch = 2;
    *store.interleave.borrow_mut() = Some((STATE_KEY.into(), other.to_json().into_bytes()));
    assert_eq!(weight(&store, 1, 50).status, 409);
    assert_eq!(stored(&store, STATE_KEY).epoch, 2);
}

#[test]
fn a_store_that_does_not_compare_refuses_changes() {
    let store = Memory {
        blind: true,
        ..Memory::default()
    };
    store
        .set(STATE_KEY, RolloutState::initial("s").to_json().as_bytes())
        .unwrap();
    let reply = weight(&store, 0, 20);
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("compare-and-swap"), "{}", reply.body);
    assert_eq!(stored(&store, STATE_KEY).epoch, 0, "nothing written");
}

#[test]
fn routing_reads_the_document_then_the_last_good_state_then_the_backup() {
    let cfg = config();
    let store = Memory::default();
    assert_eq!(kv::read_state(Some(&store), None, &cfg).state.epoch, 0);
    assert_eq!(weight(&store, 0, 20).status, 200);
    assert_eq!(kv::read_state(Some(&store), None, &cfg).state.epoch, 1);
    store.set(STATE_KEY, b"{corrupt").unwrap();
    let backup = kv::read_state(Some(&store), None, &cfg);
    assert_eq!((backup.state.epoch, backup.degraded), (1, true));
    let mut held = RolloutState::initial("s");
    held.epoch = 7;
    let kept = kv::read_state(Some(&store), Some(&held), &cfg);
    assert_eq!((kept.state.epoch, kept.degraded), (7, true));
    let down = Memory {
        fail_reads: true,
        ..Memory::default()
    };
    let none = kv::read_state(Some(&down), None, &cfg);
    assert_eq!((none.state.epoch, none.degraded), (0, true));
    assert!(kv::read_state::<Memory>(None, None, &cfg).degraded);
}

#[test]
fn keys_are_collected_across_pages_and_a_cursor_that_never_ends_stops() {
    let pages = [vec!["a", "b"], vec!["c"]];
    let keys = kv::collect_pages(|cursor| {
        let i = cursor.map_or(0, |c| c.parse::<usize>().unwrap());
        let next = (i + 1 < pages.len()).then(|| (i + 1).to_string());
        Ok((pages[i].iter().map(|k| k.to_string()).collect(), next))
    })
    .unwrap();
    assert_eq!(keys, ["a", "b", "c"]);
    let mut calls = 0;
    let endless = kv::collect_pages(|_| {
        calls += 1;
        Ok((Vec::new(), Some("again".into())))
    });
    assert_eq!((endless.unwrap().len(), calls), (0, 10_000));
    assert!(kv::collect_pages(|_| Err("down".into())).is_err());
}
