//! bench/edge-overhead: what the greenlight edge costs per request.
//!
//! For each runtime, runs in one process and one run the greenlight edge and
//! a bare pass-through edge under the same runtime build, in front of the
//! same origin, and sends requests to them in rounds (one request each, in
//! a random order per round) so both see the same machine load. Cloudflare
//! then measures two references against the same pass-through, for the
//! record (see `measure_cloudflare`). Spin has two builds, each measured
//! against a pass-through of its own WASI version. Last line:
//! `edge_overhead_ratio=<x.xx> wasm_gzip_bytes=<n> spin_edge_overhead_ratio=<x.xx>
//! spin_wasm_gzip_bytes=<n> spin_p99_ms=<x> spin_passthrough_p99_ms=<x>
//! spin_p2_edge_overhead_ratio=<x.xx> spin_p2_wasm_gzip_bytes=<n>` (the
//! unprefixed Spin keys are the WASIp3 build's).

use anyhow::Context;
use greenlight_e2e::spin::SpinBuild;
use greenlight_e2e::{cloudflare, fixtures, spin, EdgeSetup, RunningEdge};
use greenlight_test_origin::{Behavior, Origin};
use hdrhistogram::Histogram;
use rand::{seq::SliceRandom, SeedableRng};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One edge under test: its URL and whether it needs the API key.
struct Target {
    name: String,
    url: String,
    api_key: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let requests: u64 = std::env::var("EDGE_OVERHEAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let blue = Origin::start("127.0.0.1:0".parse()?, "blue", Behavior::default()).await?;
    let green = Origin::start("127.0.0.1:0".parse()?, "green", Behavior::default()).await?;
    let mut setup = fixtures::edge_setup(&blue.url(), &green.url());
    // For experiments: EDGE_OVERHEAD_EDGE_VARS="NAME=VALUE,..." sets edge
    // variables beyond the manifests' defaults.
    for pair in std::env::var("EDGE_OVERHEAD_EDGE_VARS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.split_once('='))
    {
        setup.vars.insert(pair.0.into(), pair.1.into());
    }
    let mut pass_setup = EdgeSetup::default();
    pass_setup.vars.insert("ORIGIN".into(), blue.url());
    // The Spin host only lets a component reach the origins it was given.
    pass_setup.vars.insert("BLUE_ORIGIN".into(), blue.url());

    let bench_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench");
    // EDGE_OVERHEAD_ONLY=spin|cloudflare measures one runtime (experiments;
    // the last line then carries only its keys).
    let only = std::env::var("EDGE_OVERHEAD_ONLY").unwrap_or_default();
    let cf_result = if only == "spin" {
        None
    } else {
        Some(measure_cloudflare(&bench_dir, &setup, &pass_setup, &blue, requests).await?)
    };
    if only == "cloudflare" {
        if let Some((greenlight, pass)) = &cf_result {
            println!(
                "edge_overhead_ratio={:.2} wasm_gzip_bytes={}",
                p50(greenlight) / p50(pass),
                gzip_len(&cloudflare::built_wasm()?)?
            );
        }
        return Ok(());
    }

    // Both Spin builds, each against the pass-through of its own WASI
    // version, all four in the same rounds.
    let p3_wasm = spin::built_build(SpinBuild::Wasip3)?;
    let p2_wasm = spin::built_build(SpinBuild::Wasip2)?;
    let mut spin_edges = Vec::new();
    let mut names = Vec::new();
    for (name, edge) in spin::start_builds_beside_passthroughs(&setup, &pass_setup).await? {
        names.push(name);
        spin_edges.push(edge);
    }
    let mut spin_targets: Vec<Target> = names
        .iter()
        .zip(&spin_edges)
        .map(|(name, edge)| target(*name, edge, name.contains("greenlight")))
        .collect();
    // For experiments: other builds of the greenlight component.
    let variants = std::env::var("EDGE_OVERHEAD_VARIANT_COMPONENTS").unwrap_or_default();
    for (i, variant) in variants.split(':').filter(|v| !v.is_empty()).enumerate() {
        spin_edges.push(spin::start_component(Path::new(variant), &setup).await?);
        let name = format!("spin variant {}", i + 1);
        eprintln!("{name}: {variant}");
        spin_targets.push(target(name, &spin_edges[spin_edges.len() - 1], true));
    }
    let spin_h = measure(&spin_targets, requests).await?;
    let p99_ms = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
    let spin_keys = format!(
        "spin_edge_overhead_ratio={:.2} spin_wasm_gzip_bytes={} spin_p99_ms={:.2} \
         spin_passthrough_p99_ms={:.2} spin_p2_edge_overhead_ratio={:.2} spin_p2_wasm_gzip_bytes={}",
        p50(&spin_h[0]) / p50(&spin_h[1]),
        gzip_len(&p3_wasm)?,
        p99_ms(&spin_h[0]),
        p99_ms(&spin_h[1]),
        p50(&spin_h[2]) / p50(&spin_h[3]),
        gzip_len(&p2_wasm)?,
    );
    if only == "spin" {
        println!("{spin_keys}");
        return Ok(());
    }
    let Some((cf_greenlight, cf_pass)) = cf_result else {
        return Ok(());
    };
    println!(
        "edge_overhead_ratio={:.2} wasm_gzip_bytes={} {spin_keys}",
        p50(&cf_greenlight) / p50(&cf_pass),
        gzip_len(&cloudflare::built_wasm()?)?,
    );
    Ok(())
}

/// The Cloudflare half, in two phases. First greenlight and the JS
/// pass-through alone (plus any experiment variants): the ratio on the last
/// line. Then, for the record, the pass-through again against two references:
/// a "tagging" JS Worker (copies the response to add a header, as any tagging
/// edge must) and the same pass-through written with worker-rs (what the
/// Rust/wasm-bindgen glue costs before any logic runs).
///
/// Why not one rotation: every `wrangler dev` runs its own node and two
/// workerd processes, and with the references in the same rotation the
/// greenlight Worker read 1.05-1.07 where the pair alone read 1.03-1.05 on
/// this 2-core machine. The likely reason (no hardware counters here to prove
/// it): a JS Worker runs on workerd's own code, shared by all those processes
/// and kept warm by all of them; a wasm Worker's compiled code is private to
/// its process, so each extra process between two of its requests leaves it
/// colder. The pair alone is the comparison the ratio is
/// defined by (same workerd build, same origin, same run).
/// Returns the greenlight and pass-through histograms.
async fn measure_cloudflare(
    bench_dir: &Path,
    setup: &EdgeSetup,
    pass_setup: &EdgeSetup,
    blue: &Origin,
    requests: u64,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let passthrough_js = bench_dir.join("passthrough-worker/index.js");
    // For experiments: EDGE_OVERHEAD_SERVE=direct serves every Worker with
    // serve-direct.mjs instead of `wrangler dev` (no proxy Worker, no
    // devtools relay: one workerd per Worker).
    let direct = std::env::var("EDGE_OVERHEAD_SERVE").as_deref() == Ok("direct");
    let start = |bundle: PathBuf, setup: EdgeSetup| async move {
        if direct {
            cloudflare::start_worker_direct(&bundle, &setup).await
        } else {
            cloudflare::start_worker(&bundle, &setup).await
        }
    };
    let passthrough = start(passthrough_js.clone(), pass_setup.clone()).await?;
    let mut edges = vec![start(cloudflare::built_bundle(), setup.clone()).await?];
    let mut targets = vec![
        target("cloudflare greenlight", &edges[0], true),
        target("cloudflare pass-through", &passthrough, false),
    ];
    // For experiments: other builds of the greenlight Worker (entry modules,
    // ':'-separated) measured in the same rounds; printed, not part of the
    // last line.
    let variants = std::env::var("EDGE_OVERHEAD_VARIANT_WORKERS").unwrap_or_default();
    let mut variant_setup = setup.clone();
    variant_setup.vars.insert("ORIGIN".into(), blue.url());
    for (i, variant) in variants.split(':').filter(|v| !v.is_empty()).enumerate() {
        edges.push(start(PathBuf::from(variant), variant_setup.clone()).await?);
        let name = format!("cloudflare variant {}", i + 1);
        eprintln!("{name}: {variant}");
        targets.push(target(name, &edges[edges.len() - 1], true));
    }
    let mut pair = measure(&targets, requests).await?;
    drop(edges);
    // In the order measured: greenlight, the pass-through, then variants.
    let greenlight = pair.remove(0);
    let pass = pair.remove(0);

    // EDGE_OVERHEAD_REFERENCES=none skips the second phase (experiments).
    if std::env::var("EDGE_OVERHEAD_REFERENCES").as_deref() == Ok("none") {
        return Ok((greenlight, pass));
    }
    let mut references = vec![
        cloudflare::start_worker(&passthrough_js.with_file_name("tagging.js"), pass_setup).await?,
    ];
    let mut targets = vec![
        target("cloudflare pass-through", &passthrough, false),
        target("cloudflare tagging pass-through", &references[0], false),
    ];
    let rust_passthrough = bench_dir.join("passthrough-worker-rs/build/index.js");
    if rust_passthrough.exists() {
        references.push(cloudflare::start_worker(&rust_passthrough, pass_setup).await?);
        targets.push(target(
            "cloudflare worker-rs pass-through",
            &references[1],
            false,
        ));
    } else {
        eprintln!(
            "{} not built: skipping the worker-rs reference",
            rust_passthrough.display()
        );
    }
    let h = measure(&targets, requests).await?;
    eprintln!(
        "cloudflare references: tagging / JS pass-through p50 = {:.2} (copying the response to tag it)",
        p50(&h[1]) / p50(&h[0])
    );
    if h.len() > 2 {
        eprintln!(
            "cloudflare references: worker-rs / JS pass-through p50 = {:.2} (the Rust/wasm-bindgen glue alone)",
            p50(&h[2]) / p50(&h[0])
        );
    }
    Ok((greenlight, pass))
}

fn p50(h: &Histogram<u64>) -> f64 {
    h.value_at_quantile(0.5) as f64
}

fn target(name: impl Into<String>, edge: &RunningEdge, api_key: bool) -> Target {
    Target {
        name: name.into(),
        url: format!("{}/api/items", edge.base_url),
        api_key,
    }
}

/// Sequential requests, one connection per target, rotating the order each
/// round; after a warm-up (isolate start, wasm compile, state cache).
async fn measure(targets: &[Target], rounds: u64) -> anyhow::Result<Vec<Histogram<u64>>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let send = |t: &Target| {
        let mut req = client.get(&t.url);
        if t.api_key {
            req = req.header("x-api-key", fixtures::APP_KEY);
        }
        async move {
            let start = Instant::now();
            let resp = req.send().await?;
            anyhow::ensure!(resp.status() == 200, "status {}", resp.status());
            resp.bytes().await?;
            Ok::<u64, anyhow::Error>(start.elapsed().as_micros() as u64)
        }
    };
    for _ in 0..200 {
        for t in targets {
            send(t).await?;
        }
    }
    let mut hs = vec![Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?; targets.len()];
    // EDGE_OVERHEAD_BUDGET_S (default 120) caps each runtime's measurement.
    let budget_s = std::env::var("EDGE_OVERHEAD_BUDGET_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let deadline = Instant::now() + Duration::from_secs(budget_s);
    // Each round visits every target once in a fresh random order (fixed
    // seed, so runs are comparable): a request's latency picks up whatever
    // work the previous one left running (its runtime's logging, GC), and a
    // fixed rotation would always put the same target after the same one.
    // EDGE_OVERHEAD_GAP_MS (default 0) pauses between requests.
    let gap = Duration::from_millis(
        std::env::var("EDGE_OVERHEAD_GAP_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6772_6565_6e6c);
    let mut order: Vec<usize> = (0..targets.len()).collect();
    for i in 0..rounds {
        if Instant::now() > deadline {
            eprintln!("stopping at {i} rounds: {budget_s} s budget used");
            break;
        }
        order.shuffle(&mut rng);
        for &j in &order {
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            hs[j].record(send(&targets[j]).await?)?;
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (t, h) in targets.iter().zip(&hs) {
        eprintln!(
            "{:>32}: n={} p50={:.3} ms p90={:.3} ms p99={:.3} ms",
            t.name,
            h.len(),
            ms(h, 0.5),
            ms(h, 0.9),
            ms(h, 0.99)
        );
    }
    Ok(hs)
}

fn gzip_len(path: &Path) -> anyhow::Result<usize> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw)?;
    Ok(gz.finish()?.len())
}
