//! bench/propagation: how soon a change reaches every location of a
//! Workers edge, and what that costs the replicas.
//!
//! Serves the built Worker as one location per Durable Object region
//! (nine), plus a second isolate at three of them, under workerd
//! (`edge/cloudflare/serve-locations.mjs`: an isolate per location, one
//! rollout object, one replica per region, one KV namespace), with the
//! shipped settings (`STATE_CACHE_TTL_MS=500`, `LOCATION_CACHE_TTL_S=1`)
//! and injected delays: each replica takes its region's round trip from
//! the primary (Ashburn) before it holds a push, and each read of a
//! replica takes a location's round trip within its region. Every isolate
//! is polled every `--poll-ms`; `--flips` weight changes are made through
//! the first location, each at a random phase of the caches' periods.
//!
//! - `flip_seen_everywhere_ms` of one flip: from the admin answer to the
//!   first answer carrying the new epoch at the last location to serve it;
//! - `replica_reads_per_location_s`: the reads the replicas received over
//!   the run, per location (distinct code) and second;
//! - the baseline, measured in the same run: `location_one_ms`, the same
//!   figure at the location that made the change (it learns it from the
//!   admin answer), and `bound_ms`, the design's worst case for these
//!   settings (slowest push + cache period + isolate TTL + read + poll).
//!
//! Last line: `flip_seen_everywhere_p99_ms=<x> replica_reads_per_location_s=<y>
//! flip_seen_everywhere_p50_ms=<z> flip_seen_everywhere_max_ms=<m> bound_ms=<b>
//! location_one_p99_ms=<o> degraded_answers=<d> went_back=<w> flips=<n>
//! locations=<l> isolates=<i> poll_ms=<p>`.

use anyhow::{bail, Context};
use clap::Parser;
use greenlight_e2e::cloudflare::{self, Location};
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN};
use greenlight_e2e::flips::percentile;
use greenlight_engine::admin_client::AdminClient;
use greenlight_test_origin::{Behavior, Origin};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Weight changes to time.
    #[arg(long, default_value_t = 100)]
    flips: usize,
    /// How often each isolate is asked which epoch it serves (ms).
    #[arg(long, default_value_t = 40)]
    poll_ms: u64,
}

/// A location, its region and the injected round trips: the primary's
/// push to that region's replica, and the location's read of it (ms).
/// Round trips from Ashburn are public inter-city latencies, rounded up.
const PLACES: [(Location, &str, u64, u64); 12] = [
    (Location::at("IAD", 39.0, -77.5), "enam", 5, 5),
    (Location::at("SJC", 37.4, -122.0), "wnam", 70, 10),
    (Location::at("GRU", -23.4, -46.5), "sam", 120, 15),
    (Location::at("FRA", 50.1, 8.7), "weur", 90, 10),
    (Location::at("WAW", 52.2, 21.0), "eeur", 110, 15),
    (Location::at("SIN", 1.35, 103.8), "apac", 230, 20),
    (Location::at("SYD", -33.9, 151.2), "oc", 200, 20),
    (Location::at("JNB", -26.2, 28.0), "afr", 230, 25),
    (Location::at("DXB", 25.3, 55.3), "me", 190, 20),
    // A second isolate at three busy locations.
    (Location::at("FRA", 50.1, 8.7), "weur", 90, 10),
    (Location::at("SIN", 1.35, 103.8), "apac", 230, 20),
    (Location::at("IAD", 39.0, -77.5), "enam", 5, 5),
];

const STATE_CACHE_TTL_MS: u64 = 500;
const LOCATION_CACHE_TTL_S: u64 = 1;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(1..=1000).contains(&args.flips) || !(5..=1000).contains(&args.poll_ms) {
        bail!("--flips must be within 1..=1000 and --poll-ms within 5..=1000");
    }
    let any = "127.0.0.1:0".parse()?;
    let blue = Origin::start(any, "blue", Behavior::default()).await?;
    let green = Origin::start(any, "green", Behavior::default()).await?;
    let mut setup = fixtures::edge_setup(&blue.url(), &green.url());
    setup
        .vars
        .insert("STATE_CACHE_TTL_MS".into(), STATE_CACHE_TTL_MS.to_string());
    setup.vars.insert(
        "LOCATION_CACHE_TTL_S".into(),
        LOCATION_CACHE_TTL_S.to_string(),
    );
    let places: Vec<Location> = PLACES.iter().map(|p| p.0).collect();
    eprintln!("starting {} isolates at {} locations", places.len(), 9);
    let edge = cloudflare::start_locations(&setup, &places).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut regions = BTreeSet::new();
    for (_, region, push_ms, read_ms) in PLACES {
        if regions.insert(region) {
            edge.replica_fault(
                &http,
                region,
                serde_json::json!({"push_ms": push_ms, "read_ms": read_ms}),
            )
            .await?;
        }
    }
    let admin = AdminClient::new(edge.url(0), Some(ADMIN_TOKEN.into()))?;

    let stop = Arc::new(AtomicBool::new(false));
    // Bounded: stopped after the last flip, and never past an hour.
    let (answers, pollers) = edge.poll(
        &http,
        Duration::from_millis(args.poll_ms),
        stop.clone(),
        Duration::from_secs(3600),
    );
    // Every isolate has read the state once before the first flip.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reads_before = replica_reads(&edge, &http, &regions).await?;
    let started = Instant::now();

    let mut everywhere = Vec::with_capacity(args.flips);
    let mut here = Vec::with_capacity(args.flips);
    let mut missed = 0usize;
    for flip in 0..args.flips {
        let percent = if flip % 2 == 0 { 20.0 } else { 10.0 };
        let view = admin
            .set_weight(percent, None, "bench/propagation")
            .await
            .context("a flip")?;
        let at = Instant::now();
        let epoch = view.state.epoch;
        let limit = at + Duration::from_secs(15);
        let firsts = loop {
            let firsts: Vec<Option<Instant>> = {
                let a = answers.lock().unwrap_or_else(|e| e.into_inner());
                a.iter()
                    .map(|seen| {
                        seen.iter()
                            .find(|(_, e, _)| *e >= epoch)
                            .map(|(t, _, _)| *t)
                    })
                    .collect()
            };
            if firsts.iter().all(Option::is_some) || Instant::now() > limit {
                break firsts;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if firsts.iter().any(Option::is_none) {
            missed += 1;
            eprintln!("flip {flip}: epoch {epoch} not seen everywhere within 15 s");
            continue;
        }
        let took =
            |t: &Option<Instant>| t.map_or(Duration::ZERO, |t| t.saturating_duration_since(at));
        let last = firsts.iter().map(took).max().unwrap_or_default();
        everywhere.push(last);
        here.push(took(&firsts[0]));
        if (flip + 1) % 10 == 0 {
            eprintln!(
                "{} flips: last seen everywhere after {} ms",
                flip + 1,
                last.as_millis()
            );
        }
        // The next flip lands at a random phase of the caches' periods.
        let pause = 200 + rand::random::<u64>() % 1000;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let reads_after = replica_reads(&edge, &http, &regions).await?;
    stop.store(true, Ordering::Relaxed);
    for p in pollers {
        p.await?;
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    let degraded: usize = answers.iter().flatten().filter(|(_, _, d)| *d).count();
    let went_back: usize = answers
        .iter()
        .map(|a| a.windows(2).filter(|w| w[1].1 < w[0].1).count())
        .sum();
    if everywhere.is_empty() {
        bail!("no flip was seen everywhere\n{}", edge.log_tail());
    }
    let locations = places.iter().map(|p| p.colo).collect::<BTreeSet<_>>().len();
    let reads_per_location_s = (reads_after - reads_before) as f64 / locations as f64 / seconds;
    let slowest_push = PLACES.iter().map(|p| p.2).max().unwrap_or(0);
    let slowest_read = PLACES.iter().map(|p| p.3).max().unwrap_or(0);
    let bound = slowest_push
        + LOCATION_CACHE_TTL_S * 1000
        + STATE_CACHE_TTL_MS
        + slowest_read
        + args.poll_ms;
    if missed > 0 {
        eprintln!("{missed} flips were not seen everywhere within 15 s (left out of the figures)");
    }
    println!(
        "flip_seen_everywhere_p99_ms={} replica_reads_per_location_s={:.2} \
         flip_seen_everywhere_p50_ms={} flip_seen_everywhere_max_ms={} bound_ms={bound} \
         location_one_p99_ms={} degraded_answers={degraded} went_back={went_back} \
         flips={} missed={missed} locations={locations} isolates={} poll_ms={}",
        percentile(&everywhere, 0.99).as_millis(),
        reads_per_location_s,
        percentile(&everywhere, 0.50).as_millis(),
        percentile(&everywhere, 1.0).as_millis(),
        percentile(&here, 0.99).as_millis(),
        everywhere.len(),
        places.len(),
        args.poll_ms,
    );
    Ok(())
}

/// The reads the replicas of `regions` received, summed.
async fn replica_reads(
    edge: &cloudflare::Locations,
    http: &reqwest::Client,
    regions: &BTreeSet<&str>,
) -> anyhow::Result<u64> {
    let mut reads = 0;
    for region in regions {
        reads += edge.replica_stats(http, region).await?.0;
    }
    Ok(reads)
}
