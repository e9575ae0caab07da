//! Coordinated-omission accuracy: a constant-rate open-loop run against an
//! origin that stalls S every T. A request intended during a stall waits
//! until the stall ends, so the corrected latency tail is known
//! analytically: P(L > x) = (S/T)·(S - x)/S, hence the q-quantile is
//! S - (1 - q)·T (for 1 - q < S/T), plus the (sub-ms) service time.
//!
//! Usage: co_accuracy [rate=1000] [seconds=10] [stall_every_ms=1000] [stall_ms=200] [in_flight=1024]
//! Last line: key=value figures.

use greenlight_engine::client::{run, Control, LoadConfig, Mode};
use greenlight_engine::histogram::SeenColor;
use greenlight_engine::recorder::Recorder;
use greenlight_engine::schedule::RateProfile;
use greenlight_test_origin::{Behavior, Origin, Stall};
use std::time::Duration;

fn arg(i: usize, default: f64) -> f64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let (rate, secs, every_ms, stall_ms, in_flight) = (
        arg(1, 1000.0),
        arg(2, 10.0),
        arg(3, 1000.0),
        arg(4, 200.0),
        arg(5, 1024.0),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stall = Stall {
            every: Duration::from_secs_f64(every_ms / 1000.0),
            duration: Duration::from_secs_f64(stall_ms / 1000.0),
        };
        let origin = Origin::start(
            "127.0.0.1:0".parse()?,
            "blue",
            Behavior { stall: Some(stall), ..Behavior::default() },
        )
        .await?;
        let mut cfg = LoadConfig::constant(origin.url().parse()?, rate, Duration::from_secs_f64(secs))?;
        cfg.mode = Mode::Open {
            profile: RateProfile::Constant { rps: rate },
            max_in_flight: in_flight as usize,
        };
        let rec = Recorder::new();
        run(cfg.clone(), rec.clone(), Control::default()).await?;
        let snap = rec.snapshot();
        let c = snap.color(SeenColor::Unknown);
        let ms = |us: u64| us as f64 / 1000.0;
        // Service time outside stalls (the median request is not stalled).
        let base = ms(c.uncorrected.value_at_quantile(0.5));
        let expected = |q: f64| stall_ms - (1.0 - q) * every_ms + base;
        let p99 = ms(c.corrected.value_at_quantile(0.99));
        let p999 = ms(c.corrected.value_at_quantile(0.999));

        // The same origin measured the way closed-loop tools do (8 connections,
        // each waiting for its previous answer): the stall hides most requests.
        cfg.mode = Mode::Closed { concurrency: 8 };
        cfg.max_requests = Some((rate * secs) as u64 * 20);
        let closed = Recorder::new();
        run(cfg, closed.clone(), Control::default()).await?;
        let cs = closed.snapshot();
        let u = cs.color(SeenColor::Unknown);
        let (u99, u999) = (ms(u.uncorrected.value_at_quantile(0.99)), ms(u.uncorrected.value_at_quantile(0.999)));
        println!(
            "open loop {rate}/s for {secs} s, stall {stall_ms} ms every {every_ms} ms, in-flight cap {in_flight}: {} requests, {} late, base service p50 {base:.3} ms",
            c.requests(),
            snap.counters.late
        );
        println!(
            "corrected    p99 {p99:.2} ms  p99.9 {p999:.2} ms  (analytic {:.2} / {:.2} ms)",
            expected(0.99),
            expected(0.999)
        );
        println!(
            "closed loop  p99 {u99:.2} ms  p99.9 {u999:.2} ms  ({} requests, 8 connections: what an uncorrected tool reports)",
            u.requests()
        );
        println!(
            "co_p99_rel_error={:.3} co_p999_rel_error={:.3} p99_ms={p99:.2} p99_expected_ms={:.2} p99_uncorrected_ms={u99:.2} p999_ms={p999:.2} p999_expected_ms={:.2} p999_uncorrected_ms={u999:.2}",
            (p99 - expected(0.99)).abs() / expected(0.99),
            (p999 - expected(0.999)).abs() / expected(0.999),
            expected(0.99),
            expected(0.999)
        );
        Ok(())
    })
}
