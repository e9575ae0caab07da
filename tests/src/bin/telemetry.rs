//! bench/telemetry: whether the edge's real-user counts add up, and how
//! soon a request shows in them.
//!
//! Starts the two test origins and the Worker served directly on workerd
//! (`--runtime spin`: the WASIp3 Spin build under `spin up`), sets a 50 %
//! canary, then sends `--requests` (100 000) requests from fresh anonymous
//! users open-loop at `--rate` (1 000/s) while reading
//! `GET /__greenlight/metrics` every 50 ms. The baseline is measured in the
//! same run: the requests the origins themselves received.
//! - count error: |counted − received| / received, once the counts settle;
//! - lag: request k (in the order the answers arrived) is in the metrics
//!   at the first read that counts k answers or more; its lag is that
//!   read's time minus its answer's (the counts do not say which requests
//!   they hold, so this is the lag of the k-th answer, within a read's
//!   50 ms).
//!
//! Last line: `telemetry_count_error=<x> telemetry_lag_p99_ms=<y>
//! telemetry_lag_p50_ms=<z> requests=<n> received=<n> counted=<n>
//! rate_achieved=<r> runtime=<r> flush_interval_ms=<ms>`.

use anyhow::{bail, Context};
use clap::Parser;
use greenlight_common::telemetry::{MetricsView, FLUSH_INTERVAL_MS};
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN, VIEWER_TOKEN};
use greenlight_e2e::Runtime;
use greenlight_test_origin::{Behavior, Origin};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// cloudflare or spin.
    #[arg(long, default_value = "cloudflare")]
    runtime: String,
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Requests per second, open loop.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = match args.runtime.as_str() {
        "cloudflare" => Runtime::Cloudflare,
        "spin" => Runtime::Spin,
        other => bail!("unknown runtime {other}"),
    };
    if !(args.rate > 0.0 && args.rate <= 20_000.0) || args.requests == 0 {
        bail!("--rate must be within 0..=20000 and --requests at least 1");
    }
    let any = "127.0.0.1:0".parse()?;
    let blue = Origin::start(any, "blue", Behavior::default()).await?;
    let green = Origin::start(any, "green", Behavior::default()).await?;
    let setup = fixtures::edge_setup(&blue.url(), &green.url());
    let edge = match runtime {
        Runtime::Cloudflare => runtime.start_direct(&setup).await?,
        Runtime::Spin => runtime.start(&setup).await?,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()?;
    let base = edge.base_url.clone();
    let resp = http
        .post(format!("{base}/__greenlight/weight"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"expected_epoch": 0, "weight_percent": 50}))
        .send()
        .await?
        .error_for_status()
        .context("setting the canary")?;
    let epoch = resp.json::<serde_json::Value>().await?["state"]["epoch"]
        .as_u64()
        .context("the canary's epoch")?;
    // Warm-up, not counted: the origins' counts start after it.
    for _ in 0..200 {
        http.get(format!("{base}/public/warm")).send().await?;
    }
    tokio::time::sleep(Duration::from_millis(2 * FLUSH_INTERVAL_MS)).await;
    let before = counted(&http, &base, epoch).await?;
    let hits_before = blue.hits() + green.hits();

    let start = Instant::now();
    let answers: Arc<Mutex<Vec<Duration>>> =
        Arc::new(Mutex::new(Vec::with_capacity(args.requests as usize)));
    let reads: Arc<Mutex<Vec<(Duration, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (http, base, reads, reading) =
            (http.clone(), base.clone(), reads.clone(), reading.clone());
        tokio::spawn(async move {
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = counted(&http, &base, epoch).await {
                    let at = start.elapsed();
                    reads
                        .lock()
                        .expect("reads")
                        .push((at, n.saturating_sub(before)));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut sends = Vec::with_capacity(args.requests as usize);
    for i in 0..args.requests {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (http, url, answers) = (http.clone(), format!("{base}/public/t"), answers.clone());
        sends.push(tokio::spawn(async move {
            if let Ok(resp) = http.get(url).send().await {
                if resp.bytes().await.is_ok() {
                    answers.lock().expect("answers").push(start.elapsed());
                }
            }
        }));
    }
    for s in sends {
        let _ = s.await;
    }
    let wall = start.elapsed();
    let received = blue.hits() + green.hits() - hits_before;
    // Until the counts settle: two flush intervals without a change.
    let settle_by = Instant::now() + Duration::from_secs(15);
    let mut last = (counted(&http, &base, epoch).await?, Instant::now());
    while Instant::now() < settle_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = counted(&http, &base, epoch).await?;
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_millis(2 * FLUSH_INTERVAL_MS + 500) {
            break;
        }
    }
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.await;
    let counted_n = last.0.saturating_sub(before);

    let mut answers = answers.lock().expect("answers").clone();
    answers.sort();
    let reads = reads.lock().expect("reads").clone();
    let mut lags: Vec<f64> = Vec::with_capacity(answers.len());
    let mut r = 0;
    for (k, answered) in answers.iter().enumerate() {
        while r < reads.len() && (reads[r].1 < (k as u64 + 1) || reads[r].0 < *answered) {
            r += 1;
        }
        if let Some((at, _)) = reads.get(r) {
            lags.push((*at - *answered).as_secs_f64() * 1_000.0);
        }
    }
    lags.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        lags.get(((lags.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let error = (counted_n as f64 - received as f64).abs() / received.max(1) as f64;
    eprintln!(
        "{} answers, {} lags measured ({} answered after the last read), {received} received by the origins, {counted_n} counted",
        answers.len(),
        lags.len(),
        answers.len() - lags.len()
    );
    println!(
        "telemetry_count_error={error:.6} telemetry_lag_p99_ms={:.0} telemetry_lag_p50_ms={:.0} requests={} received={received} counted={counted_n} rate_achieved={:.0} runtime={} flush_interval_ms={FLUSH_INTERVAL_MS}",
        pct(0.99),
        pct(0.5),
        args.requests,
        args.requests as f64 / wall.as_secs_f64(),
        runtime.name()
    );
    Ok(())
}

/// Every answer the edge counted in `epoch`, both colors.
async fn counted(http: &reqwest::Client, base: &str, epoch: u64) -> anyhow::Result<u64> {
    let view: MetricsView = http
        .get(format!("{base}/__greenlight/metrics"))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(view
        .epoch(epoch)
        .map(|e| e.colors.values().map(|c| c.requests).sum())
        .unwrap_or(0))
}
