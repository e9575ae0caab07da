//! bench/edge-overhead: what the greenlight edge costs per request.
//!
//! Runs, in one process and one run, the greenlight Worker and a bare
//! pass-through Worker under the same workerd build (`wrangler dev`), in
//! front of the same origin, and alternates requests between them so both
//! see the same machine load. Last line:
//! `edge_overhead_ratio=<p50 greenlight / p50 pass-through> wasm_gzip_bytes=<n>`.

use anyhow::Context;
use greenlight_e2e::{cloudflare, fixtures, EdgeSetup};
use hdrhistogram::Histogram;
use loadtest::origin::{Behavior, Origin};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let requests: u64 = std::env::var("EDGE_OVERHEAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let origin = Origin::start("127.0.0.1:0".parse()?, "blue", Behavior::default()).await?;
    let green = Origin::start("127.0.0.1:0".parse()?, "green", Behavior::default()).await?;

    let greenlight = cloudflare::start(&fixtures::edge_setup(&origin.url(), &green.url())).await?;
    let mut pass_setup = EdgeSetup::default();
    pass_setup.vars.insert("ORIGIN".into(), origin.url());
    let passthrough_js =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/passthrough-worker/index.js");
    let passthrough = cloudflare::start_worker(&passthrough_js, &pass_setup).await?;
    let tagging =
        cloudflare::start_worker(&passthrough_js.with_file_name("tagging.js"), &pass_setup).await?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let gl_url = format!("{}/api/items", greenlight.base_url);
    let pt_url = format!("{}/api/items", passthrough.base_url);
    let tg_url = format!("{}/api/items", tagging.base_url);
    let send = |url: String, key: bool| {
        let mut req = client.get(url);
        if key {
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
    // Warm-up: isolate start, wasm compile, connection pools, state cache.
    for _ in 0..200 {
        send(gl_url.clone(), true).await?;
        send(pt_url.clone(), false).await?;
        send(tg_url.clone(), false).await?;
    }
    let mut h_gl = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut h_pt = h_gl.clone();
    let mut h_tg = h_gl.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..requests {
        if Instant::now() > deadline {
            eprintln!("stopping early at {i} requests: 120 s budget used");
            break;
        }
        // Alternate which goes first so neither always follows the other.
        // Rotate the order so none always follows another.
        for k in 0..3 {
            match (i + k) % 3 {
                0 => h_gl.record(send(gl_url.clone(), true).await?)?,
                1 => h_pt.record(send(pt_url.clone(), false).await?)?,
                _ => h_tg.record(send(tg_url.clone(), false).await?)?,
            }
        }
    }
    let wasm = cloudflare::built_wasm()?;
    let raw = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw)?;
    let gz_bytes = gz.finish()?.len();
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (name, h) in [
        ("greenlight", &h_gl),
        ("pass-through", &h_pt),
        ("tagging pass-through", &h_tg),
    ] {
        eprintln!(
            "{name:>22}: n={} p50={:.3} ms p90={:.3} ms p99={:.3} ms",
            h.len(),
            ms(h, 0.5),
            ms(h, 0.9),
            ms(h, 0.99)
        );
    }
    eprintln!(
        "wasm {} B raw; greenlight / tagging pass-through p50 = {:.2}",
        raw.len(),
        ms(&h_gl, 0.5) / ms(&h_tg, 0.5)
    );
    println!(
        "edge_overhead_ratio={:.2} wasm_gzip_bytes={}",
        ms(&h_gl, 0.5) / ms(&h_pt, 0.5),
        gz_bytes
    );
    Ok(())
}
