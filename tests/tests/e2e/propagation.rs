//! How a change reaches every location of a Workers edge, under workerd:
//! several locations of one edge (`cloudflare::start_locations`: an
//! isolate per location, one rollout object, one replica per region, one
//! KV namespace), each polled all along. Asserted: when each location
//! first serves a change's epoch, that none ever serves an older epoch
//! than one it served, which answers say they come from the fallback, and
//! what `GET replicas` shows while a replica is slow, down or refusing
//! pushes. Cloudflare only: a Spin edge reads one store.

use greenlight_e2e::cloudflare::{self, Location, Locations};
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN};
use greenlight_e2e::process::built_binary;
use greenlight_engine::admin_client::AdminClient;
use greenlight_test_origin::{Behavior, Origin};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frankfurt, Singapore, Sydney, São Paulo: four regions (weur, apac, oc,
/// sam), and a second isolate in Frankfurt.
const PLACES: [Location; 5] = [
    Location::at("FRA", 50.1, 8.7),
    Location::at("SIN", 1.35, 103.8),
    Location::at("SYD", -33.9, 151.2),
    Location::at("GRU", -23.4, -46.5),
    Location::at("FRA", 50.1, 8.7),
];
const SIN: usize = 1;
const SYD: usize = 2;
const GRU: usize = 3;

/// The Worker's shipped settings (wrangler.toml).
const STATE_CACHE_TTL_MS: &str = "500";
const LOCATION_CACHE_TTL_S: &str = "1";

/// What each location served, as seen by a poller per location.
#[derive(Default)]
struct Seen {
    /// Per location: (when, epoch, degraded) of every answer, in order.
    answers: Vec<Vec<cloudflare::Answer>>,
}

impl Seen {
    /// When location `i` first served `epoch` (or a later one).
    fn first(&self, i: usize, epoch: u64) -> Option<Instant> {
        self.answers[i]
            .iter()
            .find(|(_, e, _)| *e >= epoch)
            .map(|(at, _, _)| *at)
    }

    /// Whether location `i` served a degraded answer after `since`.
    fn degraded_since(&self, i: usize, since: Instant) -> bool {
        self.answers[i]
            .iter()
            .any(|(at, _, degraded)| *at >= since && *degraded)
    }

    /// Every location's epochs never went down.
    fn assert_never_back(&self) {
        for (i, answers) in self.answers.iter().enumerate() {
            for pair in answers.windows(2) {
                assert!(
                    pair[1].1 >= pair[0].1,
                    "location {i} went back from epoch {} to {}",
                    pair[0].1,
                    pair[1].1
                );
            }
        }
    }
}

struct Rig {
    _blue: Origin,
    _green: Origin,
    edge: Locations,
    admin: AdminClient,
    client: reqwest::Client,
    answers: cloudflare::Answers,
    stop: Arc<std::sync::atomic::AtomicBool>,
    pollers: Vec<tokio::task::JoinHandle<()>>,
}

impl Rig {
    async fn start() -> Rig {
        let any = "127.0.0.1:0".parse().unwrap();
        let blue = Origin::start(any, "blue", Behavior::default())
            .await
            .unwrap();
        let green = Origin::start(any, "green", Behavior::default())
            .await
            .unwrap();
        let mut setup = fixtures::edge_setup(&blue.url(), &green.url());
        setup
            .vars
            .insert("STATE_CACHE_TTL_MS".into(), STATE_CACHE_TTL_MS.into());
        setup
            .vars
            .insert("LOCATION_CACHE_TTL_S".into(), LOCATION_CACHE_TTL_S.into());
        let edge = cloudflare::start_locations(&setup, &PLACES).await.unwrap();
        let admin = AdminClient::new(edge.url(0), Some(ADMIN_TOKEN.into())).unwrap();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Bounded: stopped by the test, and never past two minutes.
        let (answers, pollers) = edge.poll(
            &client,
            Duration::from_millis(20),
            stop.clone(),
            Duration::from_secs(120),
        );
        Rig {
            _blue: blue,
            _green: green,
            edge,
            admin,
            client,
            answers,
            stop,
            pollers,
        }
    }

    /// What every location served so far.
    fn seen(&self) -> Seen {
        Seen {
            answers: self.answers.lock().unwrap().clone(),
        }
    }

    /// A weight change through location 0; its epoch and when it was
    /// acknowledged.
    async fn flip(&self, percent: f64) -> (u64, Instant) {
        let view = self
            .admin
            .set_weight(percent, None, "propagation")
            .await
            .unwrap();
        (view.state.epoch, Instant::now())
    }

    /// Waits until every location in `which` served `epoch`, up to `limit`;
    /// returns how long each took after `since`.
    async fn reached(
        &self,
        which: &[usize],
        epoch: u64,
        since: Instant,
        limit: Duration,
    ) -> BTreeMap<usize, Duration> {
        loop {
            let got: BTreeMap<usize, Duration> = {
                let seen = self.seen();
                which
                    .iter()
                    .filter_map(|&i| {
                        Some((i, seen.first(i, epoch)?.saturating_duration_since(since)))
                    })
                    .collect()
            };
            if got.len() == which.len() || since.elapsed() > limit {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(mut self) -> Seen {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for p in std::mem::take(&mut self.pollers) {
            p.await.unwrap();
        }
        let seen = self.seen();
        seen.assert_never_back();
        seen
    }
}

const ALL: [usize; 5] = [0, 1, 2, 3, 4];

#[tokio::test]
async fn every_location_serves_each_change_within_two_seconds_and_never_goes_back() {
    let rig = Rig::start().await;
    // A realistic spread of push round trips from the primary.
    for (region, push_ms, read_ms) in [
        ("weur", 10, 5),
        ("apac", 180, 10),
        ("oc", 220, 10),
        ("sam", 120, 10),
    ] {
        rig.edge
            .replica_fault(
                &rig.client,
                region,
                serde_json::json!({"push_ms": push_ms, "read_ms": read_ms}),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut worst = Duration::ZERO;
    for percent in [10.0, 20.0, 30.0] {
        let (epoch, at) = rig.flip(percent).await;
        let took = rig.reached(&ALL, epoch, at, Duration::from_secs(10)).await;
        assert_eq!(
            took.len(),
            ALL.len(),
            "epoch {epoch} reached only {took:?}\n{}",
            rig.edge.log_tail()
        );
        worst = worst.max(*took.values().max().unwrap());
        greenlight_e2e::report(&format!(
            "propagation: epoch {epoch} reached every location: {took:?}"
        ));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // Push (≤ 0.22 s) + the location's cache (≤ 1 s) + the isolate's TTL
    // (≤ 0.5 s) + a read: under 2 s, with room for a loaded machine.
    assert!(worst < Duration::from_millis(2_500), "worst {worst:?}");
    let view = rig.admin.replicas().await.unwrap();
    assert_eq!(view.behind, 0, "{view:?}");
    assert_eq!(
        view.replicas.len(),
        9,
        "every region has a replica: {view:?}"
    );
    let oc = view.replicas.iter().find(|r| r.region == "oc").unwrap();
    assert!(
        oc.lag_ms.unwrap() >= 220,
        "the push delay shows as lag: {oc:?}"
    );
    let since = Instant::now() - Duration::from_secs(3600);
    let seen = rig.finish().await;
    for i in ALL {
        assert!(
            !seen.degraded_since(i, since),
            "location {i} fell back with every replica up"
        );
    }
}

#[tokio::test]
async fn a_location_whose_replica_is_down_falls_back_to_kv_says_so_and_recovers() {
    let rig = Rig::start().await;
    let (first, at) = rig.flip(10.0).await;
    rig.reached(&ALL, first, at, Duration::from_secs(10)).await;
    rig.edge
        .replica_fault(&rig.client, "apac", serde_json::json!({"down": true}))
        .await
        .unwrap();
    let down_at = Instant::now();
    // Until its cache runs out Singapore still serves its copy; then KV.
    let (epoch, at) = rig.flip(20.0).await;
    let took = rig.reached(&ALL, epoch, at, Duration::from_secs(10)).await;
    assert_eq!(took.len(), ALL.len(), "{took:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        let seen = rig.seen();
        assert!(
            seen.degraded_since(SIN, down_at),
            "Singapore reads KV: its answers say so"
        );
        for i in [0, SYD, GRU, 4] {
            assert!(
                !seen.degraded_since(i, down_at),
                "location {i} has its replica"
            );
        }
    }
    let view = rig.admin.replicas().await.unwrap();
    let apac = view.replicas.iter().find(|r| r.region == "apac").unwrap();
    assert!(!apac.current && apac.failures >= 1, "{apac:?}");
    assert!(
        apac.last_error.as_deref().unwrap_or("").contains("503"),
        "{apac:?}"
    );
    assert!(
        apac.retry_at_ms.is_some() && apac.lag_ms.unwrap() >= 1_000,
        "{apac:?}"
    );
    assert_eq!(view.behind, 1, "{view:?}");
    // The CLI shows the same, and exits 1 while a replica is behind.
    let out = tokio::process::Command::new(built_binary("greenlight", "greenlight-cli"))
        .args(["replicas", "--edge", rig.edge.url(0)])
        .env("GREENLIGHT_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("apac") && text.contains("BEHIND") && text.contains("1 of 9 replicas behind"),
        "{text}"
    );

    // Mended: the primary's retry (or the replica's own pull) catches it
    // up, and Singapore is back on the fast path by itself.
    rig.edge
        .replica_fault(&rig.client, "apac", serde_json::json!({}))
        .await
        .unwrap();
    let mended = Instant::now();
    let deadline = mended + Duration::from_secs(40);
    loop {
        let view = rig.admin.replicas().await.unwrap();
        if view.behind == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "apac never caught up: {view:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let recovered = caught_up + Duration::from_secs(2);
    {
        let seen = rig.seen();
        assert!(
            !seen.degraded_since(SIN, recovered),
            "Singapore still degraded after its replica came back"
        );
    }
    let seen = rig.finish().await;
    greenlight_e2e::report(&format!(
        "propagation: apac caught up {:?} after it was mended; Singapore answered {} times",
        caught_up - mended,
        seen.answers[SIN].len()
    ));
}

#[tokio::test]
async fn a_failed_push_is_retried_and_only_its_region_waits() {
    let rig = Rig::start().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    rig.edge
        .replica_fault(&rig.client, "sam", serde_json::json!({"fail_pushes": 2}))
        .await
        .unwrap();
    let (_, pushes_before) = rig.edge.replica_stats(&rig.client, "sam").await.unwrap();
    let (epoch, at) = rig.flip(25.0).await;
    let took = rig.reached(&ALL, epoch, at, Duration::from_secs(15)).await;
    assert_eq!(took.len(), ALL.len(), "{took:?}");
    let others = [0, SIN, SYD, 4].iter().map(|i| took[i]).max().unwrap();
    // Two refused pushes: retried after 1 s, then 2 s. São Paulo's
    // isolate keeps the old epoch meanwhile (its replica's copy is still
    // readable) unless the replica pulled it itself first.
    assert!(others < Duration::from_millis(2_500), "{took:?}");
    assert!(
        took[&GRU] >= Duration::from_millis(900),
        "São Paulo waited for the retry: {took:?}"
    );
    let (_, pushes_after) = rig.edge.replica_stats(&rig.client, "sam").await.unwrap();
    assert!(
        pushes_after > pushes_before,
        "sam was pushed again: {pushes_before} → {pushes_after}"
    );
    let view = rig.admin.replicas().await.unwrap();
    let sam = view.replicas.iter().find(|r| r.region == "sam").unwrap();
    assert!(sam.current && sam.failures == 0, "{sam:?}");
    greenlight_e2e::report(&format!(
        "propagation: with sam refusing two pushes: {took:?}"
    ));
    let seen = rig.finish().await;
    assert!(
        !seen.degraded_since(GRU, at),
        "a refused push is not a failed read"
    );
}
