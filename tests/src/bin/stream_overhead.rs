//! bench/stream-overhead: what the greenlight edge adds to the time to the
//! first event of a streamed answer.
//!
//! One streaming origin (`text/event-stream`, the first event at once,
//! then two more 1 ms apart); per runtime, the greenlight edge and a bare
//! pass-through edge under the same runtime build, in front of that
//! origin, in the same run, visited in rounds (one request each, a random
//! order per round, as in bench/edge-overhead). Per request: the time from
//! sending to the first body byte (the first event), then the rest is read.
//! Spin's two builds are each measured against a pass-through of their own
//! WASI version. Last line: `stream_ttfb_ratio=<x.xx>
//! spin_stream_ttfb_ratio=<x.xx> spin_p2_stream_ttfb_ratio=<x.xx>` (p50
//! through greenlight ÷ p50 through the pass-through; the unprefixed Spin
//! key is the WASIp3 build's).

use greenlight_e2e::{cloudflare, fixtures, spin, EdgeSetup, RunningEdge};
use greenlight_test_origin::{Behavior, Origin, SseStream};
use hdrhistogram::Histogram;
use rand::{seq::SliceRandom, SeedableRng};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Target {
    name: String,
    url: String,
    api_key: bool,
}

fn target(name: impl Into<String>, edge: &RunningEdge, api_key: bool) -> Target {
    Target {
        name: name.into(),
        url: format!("{}/v1/chat/stream", edge.base_url),
        api_key,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let env_u64 = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = env_u64("STREAM_OVERHEAD_REQUESTS", 2_000);
    let budget = Duration::from_secs(env_u64("STREAM_OVERHEAD_BUDGET_S", 120));
    let stream = Behavior {
        sse: Some(SseStream {
            ttft: Duration::ZERO,
            events: 3,
            inter_event: Duration::from_millis(1),
        }),
        ..Behavior::default()
    };
    let blue = Origin::start("127.0.0.1:0".parse()?, "blue", stream.clone()).await?;
    let green = Origin::start("127.0.0.1:0".parse()?, "green", stream).await?;
    let setup = fixtures::edge_setup(&blue.url(), &green.url());
    let mut pass_setup = EdgeSetup::default();
    pass_setup.vars.insert("ORIGIN".into(), blue.url());
    // The Spin host only lets a component reach the origins it was given.
    pass_setup.vars.insert("BLUE_ORIGIN".into(), blue.url());
    let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench");
    // STREAM_OVERHEAD_ONLY=spin|cloudflare measures one runtime.
    let only = std::env::var("STREAM_OVERHEAD_ONLY").unwrap_or_default();
    let mut line = Vec::new();
    if only != "spin" {
        let pass =
            cloudflare::start_worker(&bench.join("passthrough-worker/index.js"), &pass_setup)
                .await?;
        let greenlight = cloudflare::start(&setup).await?;
        let targets = [
            target("cloudflare greenlight", &greenlight, true),
            target("cloudflare pass-through", &pass, false),
        ];
        let h = measure(&targets, rounds, budget).await?;
        line.push(format!("stream_ttfb_ratio={:.2}", p50(&h[0]) / p50(&h[1])));
    }
    if only != "cloudflare" {
        // Both Spin builds, each against a pass-through of its own WASI
        // version, in the same rounds.
        let edges = spin::start_builds_beside_passthroughs(&setup, &pass_setup).await?;
        let mut targets: Vec<Target> = edges
            .iter()
            .map(|(name, edge)| target(*name, edge, name.contains("greenlight")))
            .collect();
        // Other builds of the greenlight component (`:`-separated), measured
        // in the same rounds and printed; not part of the last line.
        let variants = std::env::var("STREAM_OVERHEAD_VARIANT_COMPONENTS").unwrap_or_default();
        let mut variant_edges = Vec::new();
        for variant in variants.split(':').filter(|v| !v.is_empty()) {
            variant_edges.push(spin::start_component(std::path::Path::new(variant), &setup).await?);
            eprintln!("spin variant {}: {variant}", variant_edges.len());
        }
        for (i, edge) in variant_edges.iter().enumerate() {
            targets.push(target(format!("spin variant {}", i + 1), edge, true));
        }
        let h = measure(&targets, rounds, budget).await?;
        line.push(format!(
            "spin_stream_ttfb_ratio={:.2} spin_p2_stream_ttfb_ratio={:.2}",
            p50(&h[0]) / p50(&h[1]),
            p50(&h[2]) / p50(&h[3])
        ));
    }
    println!("{}", line.join(" "));
    Ok(())
}

fn p50(h: &Histogram<u64>) -> f64 {
    h.value_at_quantile(0.5) as f64
}

/// Time to the first body byte of one streamed answer (µs); the rest of
/// the body is read before the next request.
async fn first_event(client: &reqwest::Client, t: &Target) -> anyhow::Result<u64> {
    let mut req = client.get(&t.url);
    if t.api_key {
        req = req.header("x-api-key", fixtures::APP_KEY);
    }
    let start = Instant::now();
    let mut resp = req.send().await?;
    anyhow::ensure!(resp.status() == 200, "{}: status {}", t.name, resp.status());
    let mut first = None;
    while let Some(chunk) = resp.chunk().await? {
        if !chunk.is_empty() && first.is_none() {
            first = Some(start.elapsed().as_micros() as u64);
        }
    }
    first.ok_or_else(|| anyhow::anyhow!("{}: empty body", t.name))
}

/// Rounds of one request per target in a random order (fixed seed), after
/// a warm-up; bounded by `rounds` and `budget`.
async fn measure(
    targets: &[Target],
    rounds: u64,
    budget: Duration,
) -> anyhow::Result<Vec<Histogram<u64>>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()?;
    for _ in 0..100 {
        for t in targets {
            first_event(&client, t).await?;
        }
    }
    let mut hs = vec![Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?; targets.len()];
    let deadline = Instant::now() + budget;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7374_7265_616d);
    let mut order: Vec<usize> = (0..targets.len()).collect();
    for i in 0..rounds {
        if Instant::now() > deadline {
            eprintln!("stopping at {i} rounds: budget used");
            break;
        }
        order.shuffle(&mut rng);
        for &j in &order {
            hs[j].record(first_event(&client, &targets[j]).await?)?;
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (t, h) in targets.iter().zip(&hs) {
        eprintln!(
            "{:>24}: n={} first event p50={:.3} ms p90={:.3} ms p99={:.3} ms",
            t.name,
            h.len(),
            ms(h, 0.5),
            ms(h, 0.9),
            ms(h, 0.99)
        );
    }
    Ok(hs)
}
