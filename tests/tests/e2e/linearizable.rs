//! One winner per epoch, through both real runtimes: rollout changes are
//! linearizable.
//!
//! Each round sends 50 changes at once, all naming the current epoch, from
//! several clients (separate connection pools, two credentials): exactly
//! one is answered `200`, the other 49 `409`; the state read afterwards is
//! the winner's answer; each committed change moves the epoch up by exactly
//! one. The same with promote, rollback and abort mixed in. Meanwhile
//! ordinary traffic keeps flowing through the edge: no transport error, no
//! 5xx, and every response was routed by a state that was committed (its
//! epoch is one some winner was told about, and its color and reason are
//! what that state gives the caller).
//!
//! Cloudflare: changes are decided one at a time by the rollout's Durable
//! Object. Spin: compare-and-swap in the key-value store.

use futures::future::join_all;
use greenlight_common::admin::{Problem, StateView};
use greenlight_common::{Color, RolloutState};
use greenlight_e2e::fixtures::{ADMIN_TOKEN, APP_KEY, OPS_KEY, QA_KEY};
use greenlight_e2e::flips::{origin_color, Identity};
use greenlight_e2e::rig::{header, Rig};
use greenlight_e2e::Runtime;
use reqwest::Client;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUNDS: u64 = 20;
const CONCURRENT: usize = 50;
/// Independent clients the 50 calls are spread over.
const CLIENTS: usize = 5;

/// One admin change to send.
#[derive(Debug, Clone)]
struct Call {
    route: &'static str,
    body: serde_json::Value,
}

fn clients() -> Vec<Client> {
    (0..CLIENTS)
        .map(|_| {
            Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client")
        })
        .collect()
}

/// What came back for one call.
#[derive(Debug)]
struct Answered {
    call: usize,
    status: u16,
    text: String,
}

/// Sends all `calls` at once, alternating clients and credentials (the
/// admin secret; an API key with the admin role).
async fn storm(rig: &Rig, clients: &[Client], calls: &[Call]) -> Vec<Answered> {
    let sends = calls.iter().enumerate().map(|(i, call)| {
        let client = &clients[i % clients.len()];
        let url = rig.url(&format!("/__greenlight/{}", call.route));
        let rb = client.post(url).json(&call.body);
        let rb = if i % 2 == 0 {
            rb.bearer_auth(ADMIN_TOKEN)
        } else {
            rb.header("x-api-key", OPS_KEY)
        };
        async move {
            let resp = rb
                .send()
                .await
                .unwrap_or_else(|e| panic!("admin call {i}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            Answered {
                call: i,
                status,
                text,
            }
        }
    });
    join_all(sends).await
}

/// Checks one round: exactly one 200 (returned), 49 409s naming the
/// winner's epoch, and the state now in force is the winner's.
async fn judge_round(
    rig: &Rig,
    round: u64,
    before: &RolloutState,
    calls: &[Call],
    answers: Vec<Answered>,
) -> (usize, RolloutState) {
    let mut winners = Vec::new();
    for a in &answers {
        match a.status {
            200 => {
                let view: StateView = serde_json::from_str(&a.text)
                    .unwrap_or_else(|e| panic!("round {round}: a 200 that is no state: {e}"));
                winners.push((a.call, view.state));
            }
            409 => {
                let p: Problem = serde_json::from_str(&a.text)
                    .unwrap_or_else(|e| panic!("round {round}: a 409 that is no problem: {e}"));
                // Stale epoch (lost the race) or a transition the winner's
                // state does not allow: both name nothing newer than it.
                if let Some(current) = p.current_epoch {
                    assert_eq!(current, before.epoch + 1, "round {round}: {p:?}");
                }
            }
            s => panic!("round {round}: call {} answered {s}: {}", a.call, a.text),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "round {round}: {} calls were told they won: {:?}",
        winners.len(),
        winners
            .iter()
            .map(|(i, s)| (i, s.epoch, s.candidate_weight_bp, &s.last_change.op))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        answers.iter().filter(|a| a.status == 409).count(),
        CONCURRENT - 1,
        "round {round}"
    );
    let (winner, won) = winners.remove(0);
    assert_eq!(
        won.epoch,
        before.epoch + 1,
        "round {round}: the epoch moves up by one per committed change"
    );
    // The winner's answer is what it asked for.
    let asked = &calls[winner];
    assert_eq!(
        won.last_change.op,
        match asked.route {
            "weight" => "set_weight",
            other => other,
        },
        "round {round}"
    );
    assert_eq!(
        won.last_change.reason,
        asked.body["reason"].as_str().unwrap_or_default(),
        "round {round}"
    );
    if asked.route == "weight" {
        assert_eq!(
            u64::from(won.candidate_weight_bp),
            asked.body["weight_bp"].as_u64().unwrap_or_default(),
            "round {round}"
        );
    }
    // And it is what is in force now.
    let now = rig.state().await.state;
    assert_eq!(
        now, won,
        "round {round}: the state in force is the winner's"
    );
    (winner, won)
}

/// Weight changes only: every call is valid at the epoch it names.
fn weight_calls(round: u64, epoch: u64) -> Vec<Call> {
    (0..CONCURRENT)
        .map(|i| Call {
            route: "weight",
            body: json!({
                "expected_epoch": epoch,
                "weight_bp": 1 + (round as usize * CONCURRENT + i) % 9_999,
                "reason": format!("round {round} call {i}"),
            }),
        })
        .collect()
}

/// Weight, promote, rollback and abort mixed: ops the phase does not allow
/// are refused (409) whatever the order; a weight change is always valid,
/// so one call wins.
fn mixed_calls(round: u64, state: &RolloutState) -> Vec<Call> {
    (0..CONCURRENT)
        .map(|i| {
            let reason = format!("round {round} call {i}");
            let (route, body) = match i % 4 {
                0 => (
                    "weight",
                    json!({"expected_epoch": state.epoch, "weight_bp": 100 + i * 37, "reason": reason}),
                ),
                1 => (
                    "promote",
                    json!({"expected_epoch": state.epoch, "reason": reason}),
                ),
                2 => (
                    "rollback",
                    json!({"expected_epoch": state.epoch, "reason": reason}),
                ),
                _ => (
                    "abort",
                    json!({"expected_epoch": state.epoch, "reason": reason}),
                ),
            };
            Call { route, body }
        })
        .collect()
}

/// One ordinary request: identity index, status, color, epoch, reason (or
/// the transport error), the origin's own color.
type Seen = (usize, u16, String, String, String, Option<String>);
/// An identity, the path it requests and its headers.
type Caller = (Identity, &'static str, Vec<(&'static str, &'static str)>);

/// Ordinary traffic during the storms, by identity: what it saw.
struct Traffic {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

fn identities() -> Vec<Caller> {
    vec![
        (
            Identity::new("app-key", "k:app"),
            "/api/storm",
            vec![("x-api-key", APP_KEY)],
        ),
        (
            Identity::new("qa-preview-green", "k:qa").previewing(Color::Green, true),
            "/api/storm",
            vec![("x-api-key", QA_KEY), ("x-greenlight-color", "green")],
        ),
        (
            Identity::new("anon", "c:storm-anon-0001"),
            "/public/storm",
            vec![("cookie", "greenlight-id=storm-anon-0001")],
        ),
    ]
}

/// One sender per identity, each sending its next request 10 ms after the
/// last answer.
fn start_traffic(rig: &Rig) -> Traffic {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = rig.edge.base_url.clone();
    let (stop2, seen2) = (stop.clone(), seen.clone());
    let task = tokio::spawn(async move {
        let client = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        let ids = identities();
        let senders = (0..ids.len()).map(|i| {
            let (client, stop, seen, base) = (&client, &stop2, &seen2, &base);
            let (_, path, headers) = &ids[i];
            async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut rb = client.get(format!("{base}{path}"));
                    for (k, v) in headers {
                        rb = rb.header(*k, *v);
                    }
                    let row = match rb.send().await {
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            let color = header(&resp, "x-greenlight-color").to_string();
                            let epoch = header(&resp, "x-greenlight-epoch").to_string();
                            let reason = header(&resp, "x-greenlight-reason").to_string();
                            let body = resp.bytes().await.unwrap_or_default();
                            (i, status, color, epoch, reason, origin_color(&body))
                        }
                        Err(e) => (i, 0, String::new(), String::new(), e.to_string(), None),
                    };
                    seen.lock().unwrap().push(row);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        join_all(senders).await;
    });
    Traffic { stop, seen, task }
}

/// Every response of the traffic was served, by a committed state.
async fn judge_traffic(traffic: Traffic, committed: &BTreeMap<u64, RolloutState>) {
    traffic.stop.store(true, Ordering::Relaxed);
    traffic.task.await.expect("traffic task");
    let seen = traffic.seen.lock().unwrap();
    let ids = identities();
    assert!(seen.len() > 20, "only {} requests went through", seen.len());
    let mut failures = Vec::new();
    for (i, status, color, epoch, reason, origin) in seen.iter() {
        let label = &ids[*i].0.label;
        if *status != 200 {
            failures.push(format!("{label}: status {status} ({reason})"));
            continue;
        }
        let Some(state) = epoch.parse().ok().and_then(|e: u64| committed.get(&e)) else {
            failures.push(format!(
                "{label}: epoch {epoch:?} was never committed (committed: {:?})",
                committed.keys().collect::<Vec<_>>()
            ));
            continue;
        };
        if origin.as_deref() != Some(color.as_str()) {
            failures.push(format!(
                "{label}: edge says {color}, origin {origin:?} (epoch {epoch})"
            ));
        }
        match ids[*i].0.expect(state) {
            Ok(d) => {
                if d.color.to_string() != *color || d.reason.to_string() != *reason {
                    failures.push(format!(
                        "{label}: epoch {epoch} routes to {}/{}, served {color}/{reason}",
                        d.color, d.reason
                    ));
                }
            }
            Err(e) => failures.push(format!("{label}: {e:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests went wrong, e.g. {:?}",
        failures.len(),
        seen.len(),
        &failures[..failures.len().min(10)]
    );
    eprintln!(
        "linearizable: {} requests served during the storms, all by committed states",
        seen.len()
    );
}

async fn start(runtime: Runtime) -> Rig {
    Rig::start(runtime, |setup| {
        setup.vars.insert("STATE_CACHE_TTL_MS".into(), "200".into());
    })
    .await
}

async fn one_winner_per_epoch(runtime: Runtime) {
    let rig = start(runtime).await;
    let clients = clients();
    let mut state = rig.state().await.state;
    let mut committed = BTreeMap::from([(state.epoch, state.clone())]);
    let traffic = start_traffic(&rig);
    for round in 0..ROUNDS {
        let calls = weight_calls(round, state.epoch);
        let answers = storm(&rig, &clients, &calls).await;
        let (_, won) = judge_round(&rig, round, &state, &calls, answers).await;
        committed.insert(won.epoch, won.clone());
        state = won;
    }
    judge_traffic(traffic, &committed).await;
    assert_eq!(rig.state().await.state.epoch, ROUNDS);
}

async fn one_winner_per_epoch_with_promote_rollback_abort(runtime: Runtime) {
    let rig = start(runtime).await;
    let clients = clients();
    let mut state = rig.state().await.state;
    let mut committed = BTreeMap::from([(state.epoch, state.clone())]);
    let traffic = start_traffic(&rig);
    let mut ops = BTreeMap::<String, u32>::new();
    for round in 0..ROUNDS {
        let calls = mixed_calls(round, &state);
        let answers = storm(&rig, &clients, &calls).await;
        let (_, won) = judge_round(&rig, round, &state, &calls, answers).await;
        *ops.entry(won.last_change.op.clone()).or_default() += 1;
        committed.insert(won.epoch, won.clone());
        state = won;
    }
    judge_traffic(traffic, &committed).await;
    eprintln!("linearizable: winning ops {ops:?}");
    assert!(
        ops.len() >= 2,
        "the mix should commit more than one kind: {ops:?}"
    );
}

/// Cloudflare: the rollout object publishes every committed change to KV
/// (where the edges read it) without ever failing an admin call on KV's
/// write limit: a burst of changes, each answered `200` at once, is
/// coalesced into a few KV writes, and KV ends up holding the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_kv_holds_the_newest_change_after_a_burst() {
    const CHANGES: u64 = 30;
    let rig = start(Runtime::Cloudflare).await;
    let started = std::time::Instant::now();
    for epoch in 0..CHANGES {
        let resp = rig
            .admin_post(
                if epoch % 2 == 0 {
                    "promote"
                } else {
                    "rollback"
                },
                json!({"expected_epoch": epoch, "reason": "burst"}),
            )
            .await;
        assert_eq!(resp.status(), 200, "change {epoch}");
    }
    let burst = started.elapsed();
    let last = rig.state().await.state;
    assert_eq!(last.epoch, CHANGES);
    let scratch = rig.edge._process.scratch.as_ref().expect("scratch dir");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let doc = greenlight_e2e::cloudflare::get_document(
            scratch.path(),
            greenlight_common::http::STATE_KEY,
        )
        .await
        .expect("wrangler kv key get");
        let published = doc.as_deref().and_then(|d| RolloutState::from_json(d).ok());
        if published.as_ref() == Some(&last) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "KV still holds {:?} (epoch {:?}), not epoch {}",
            doc.map(|d| d.chars().take(80).collect::<String>()),
            published.map(|p| p.epoch),
            last.epoch
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "kv_publish changes={CHANGES} burst_ms={} kv_holds_newest_after_ms={}",
        burst.as_millis(),
        started.elapsed().as_millis()
    );
}

greenlight_e2e::for_each_runtime!(
    one_winner_per_epoch,
    one_winner_per_epoch_with_promote_rollback_abort
);
