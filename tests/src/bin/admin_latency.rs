//! bench/admin-latency: how long one committed rollout change takes, end to
//! end through the real runtime on loopback.
//!
//! Starts the two test origins and one edge (`--runtime cloudflare|spin`,
//! default cloudflare), makes a few warm-up changes, then `--changes` (200)
//! sequential `POST /__greenlight/weight` calls, each naming the epoch the
//! previous one returned, and times each from send to the last body byte.
//! Every call must be a `200` at exactly the next epoch. Last line:
//! `admin_change_p50_ms=<x> admin_change_p99_ms=<x> admin_change_max_ms=<x> changes=<n> runtime=<r>`,
//! then with `--edge-reads N` `edge_read_p50_ms=<x> edge_read_p99_ms=<x> edge_reads=<n>`.

use anyhow::{bail, Context};
use clap::Parser;
use greenlight_common::admin::StateView;
use greenlight_e2e::cloudflare;
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN};
use greenlight_e2e::Runtime;
use greenlight_test_origin::{Behavior, Origin};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// cloudflare or spin.
    #[arg(long, default_value = "cloudflare")]
    runtime: String,
    /// Timed changes.
    #[arg(long, default_value_t = 200)]
    changes: u32,
    /// Untimed changes first (isolate, object and store warm-up).
    #[arg(long, default_value_t = 10)]
    warmup: u32,
    /// Cloudflare: another build of the Worker (its `index.js`), e.g. one
    /// of an older commit for a before/after figure.
    #[arg(long)]
    bundle: Option<std::path::PathBuf>,
    /// Extra edge variables, `NAME=VALUE` (e.g. `STATE_CACHE_TTL_MS=0`,
    /// `STATE_SOURCE=object`).
    #[arg(long = "var")]
    vars: Vec<String>,
    /// After the changes, this many sequential ordinary requests (the app
    /// key, `GET /api/read`), timed like the changes: what the state read
    /// path costs (with `STATE_CACHE_TTL_MS=0` every request reads it).
    #[arg(long, default_value_t = 0)]
    edge_reads: u32,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = match args.runtime.as_str() {
        "cloudflare" => Runtime::Cloudflare,
        "spin" => Runtime::Spin,
        other => bail!("unknown runtime {other}"),
    };
    let any = "127.0.0.1:0".parse()?;
    let blue = Origin::start(any, "blue", Behavior::default()).await?;
    let green = Origin::start(any, "green", Behavior::default()).await?;
    let mut setup = fixtures::edge_setup(&blue.url(), &green.url());
    for var in &args.vars {
        let Some((k, v)) = var.split_once('=') else {
            bail!("--var {var}: expected NAME=VALUE");
        };
        setup.vars.insert(k.to_string(), v.to_string());
    }
    let edge = match (&args.bundle, runtime) {
        (Some(bundle), Runtime::Cloudflare) => cloudflare::start_worker(bundle, &setup).await?,
        _ => runtime.start(&setup).await?,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = edge.base_url.clone();
    let view: StateView = http
        .get(format!("{base}/__greenlight/state"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut epoch = view.state.epoch;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for i in 0..args.warmup + args.changes {
        let body = serde_json::json!({
            "expected_epoch": epoch,
            "weight_bp": 1 + i % 500,
            "reason": "admin-latency bench",
        });
        let started = Instant::now();
        let resp = http
            .post(format!("{base}/__greenlight/weight"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("change {i}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        let took = started.elapsed();
        if status != 200 {
            bail!("change {i} at epoch {epoch}: {status} {text}");
        }
        let view: StateView = serde_json::from_str(&text)?;
        if view.state.epoch != epoch + 1 {
            bail!(
                "change {i} at epoch {epoch} answered epoch {}",
                view.state.epoch
            );
        }
        epoch = view.state.epoch;
        if i >= args.warmup {
            hist.record(took.as_micros().max(1) as u64)?;
        }
    }
    let mut reads = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for i in 0..args.edge_reads {
        let started = Instant::now();
        let resp = http
            .get(format!("{base}/api/read"))
            .header("x-api-key", fixtures::APP_KEY)
            .send()
            .await
            .with_context(|| format!("read {i}"))?;
        let status = resp.status();
        let seen = resp
            .headers()
            .get("x-greenlight-epoch")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        resp.bytes().await?;
        // Every read is routed by the last committed change.
        if status != 200 || seen != epoch.to_string() {
            bail!("read {i}: {status}, epoch {seen:?} (committed: {epoch})");
        }
        reads.record(started.elapsed().as_micros().max(1) as u64)?;
    }
    let ms = |us: u64| us as f64 / 1_000.0;
    let read_figures = if reads.is_empty() {
        String::new()
    } else {
        format!(
            " edge_read_p50_ms={:.2} edge_read_p99_ms={:.2} edge_reads={}",
            ms(reads.value_at_quantile(0.50)),
            ms(reads.value_at_quantile(0.99)),
            reads.len()
        )
    };
    println!(
        "admin_change_p50_ms={:.2} admin_change_p99_ms={:.2} admin_change_max_ms={:.2} changes={} runtime={}{read_figures}",
        ms(hist.value_at_quantile(0.50)),
        ms(hist.value_at_quantile(0.99)),
        ms(hist.max()),
        hist.len(),
        runtime.name()
    );
    Ok(())
}
