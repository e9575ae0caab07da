//! Frame-build benchmark for the dashboard (run by `bench/dashboard-frame`).
//!
//! Records 1 M requests spread over 10 minutes of per-second time series in
//! a real `Recorder`, builds the metrics view the worker would send, then
//! builds dashboard frames headless (`egui::Context::run_ui` + tessellation,
//! no GPU) and reports the frame-time p99 and the peak RSS.
//! Last line: `frame_p99_ms=<x.x> rss_mb=<n>`.

use greenlight_common::admin::StateView;
use greenlight_common::rollout::{ChangeMeta, RolloutOp};
use greenlight_common::RolloutState;
use greenlight_engine::histogram::{RequestOutcome, Sample, SeenColor};
use greenlight_engine::recorder::Recorder;
use greenlight_verdict::Policy;
use harness_gui::app::AppState;
use harness_gui::metrics;
use harness_gui::settings::Settings;
use rollout::audit::AuditEntry;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Lognormal around `median_ms` (σ 0.35).
    fn latency(&mut self, median_ms: f64) -> Duration {
        let (u1, u2) = (self.next().max(1e-12), self.next());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        Duration::from_secs_f64(median_ms * (0.35 * z).exp() / 1000.0)
    }
}

fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb.div_ceil(1024))
        .unwrap_or(0)
}

fn pctl(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let requests = arg("--requests", 1_000_000);
    let seconds = arg("--seconds", 600).max(1);
    let frames = arg("--frames", 600) as usize;

    let t0 = Instant::now();
    let rec = record_canary(requests, seconds);
    let record_s = t0.elapsed().as_secs_f64();

    // The view the worker computes (off the UI thread in the app).
    let t1 = Instant::now();
    let snap = rec.snapshot();
    let view = metrics::build(
        &snap,
        None,
        &Policy::default(),
        greenlight_common::Color::Blue,
        false,
    );
    let view_ms = t1.elapsed().as_secs_f64() * 1000.0;
    let verdict = view
        .judgement
        .as_ref()
        .map(|j| j.verdict.to_string())
        .unwrap_or_default();
    let view = Arc::new(view);

    let mut state = canary_state(view.clone());
    let times = time_frames(&mut state, &view, frames);
    println!(
        "recorded {} requests over {} s ({} series points) in {record_s:.2} s; view built in {view_ms:.1} ms (verdict {verdict}, off the UI thread)",
        snap.requests(),
        seconds,
        snap.series.len()
    );
    println!(
        "frames {} at 1600x1000: run_ui p50 {:.2} ms p99 {:.2} ms; run_ui+tessellate p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        times.total.len(),
        pctl(&times.run, 0.5),
        pctl(&times.run, 0.99),
        pctl(&times.total, 0.5),
        pctl(&times.total, 0.99),
        times.total.last().copied().unwrap_or(0.0)
    );
    println!(
        "frame_p99_ms={:.1} rss_mb={}",
        pctl(&times.total, 0.99),
        peak_rss_mb()
    );
}

/// `requests` spread over `seconds` of per-second time series, green a
/// canary at 10 %, 15 % slower and with more errors.
fn record_canary(requests: u64, seconds: u64) -> Arc<Recorder> {
    let rec = Recorder::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut seq = 0u64;
    for s in 1..=seconds {
        // Spread the remainder so exactly `requests` are recorded.
        let this_second = requests * s / seconds - requests * (s - 1) / seconds;
        for _ in 0..this_second {
            let green = rng.next() < 0.10;
            let (color, median) = if green {
                (SeenColor::Green, 11.5)
            } else {
                (SeenColor::Blue, 10.0)
            };
            let latency = rng.latency(median);
            let outcome = if rng.next() < if green { 0.004 } else { 0.001 } {
                RequestOutcome::Status(503)
            } else {
                RequestOutcome::Status(200)
            };
            rec.record(
                seq,
                &Sample {
                    color,
                    latency,
                    service: latency,
                    ttfb: latency / 2,
                    events_per_s: None,
                    outcome,
                    epoch: Some(3),
                },
            );
            seq += 1;
        }
        rec.tick_at(Duration::from_secs(s));
    }
    rec
}

/// The dashboard's state during a canary at 10 %, with a full audit panel
/// and a full edge history.
fn canary_state(view: Arc<metrics::MetricsView>) -> AppState {
    let mut state = AppState::new(Settings::default(), None, Some("t".into()));
    let mut s = RolloutState::initial("bench");
    s = s
        .apply(
            RolloutOp::SetWeight { weight_bp: 1000 },
            0,
            ChangeMeta {
                actor: "bench".into(),
                at_ms: 1_700_000_000_000,
                reason: "canary".into(),
            },
        )
        .unwrap_or(s);
    // A full edge history: its limit of changes, each with evidence.
    let mut history = greenlight_common::history::History::default();
    let mut at = s.clone();
    for i in 0..greenlight_common::history::HISTORY_LIMIT as u64 {
        let weight_bp = if at.candidate_weight_bp == 1000 {
            2000
        } else {
            1000
        };
        let Ok(next) = at.apply(
            RolloutOp::SetWeight { weight_bp },
            at.epoch,
            ChangeMeta {
                actor: format!("operator {i}"),
                at_ms: 1_700_000_000_000 + i * 1000,
                reason: "step".into(),
            },
        ) else {
            break;
        };
        history.record(&at, &next, Some(serde_json::json!({"verdict": "pass"})));
        at = next;
    }
    state.apply(harness_gui::backend::Event::History(history.view()));
    state.apply(harness_gui::backend::Event::State(Ok(StateView::of(
        s, false,
    ))));
    for i in 0..2000u64 {
        state.audit.push_back(AuditEntry::info(
            "bench",
            format!("action {i}"),
            Some(i),
            "detail",
        ));
    }
    state.metrics = Some(view);
    state
}

/// Frame times in ms, sorted: building the frame, and building plus tessellating it.
struct FrameTimes {
    run: Vec<f64>,
    total: Vec<f64>,
}

/// Builds `frames` dashboard frames (after a warm-up) at 1600x1000.
fn time_frames(
    state: &mut AppState,
    view: &Arc<metrics::MetricsView>,
    frames: usize,
) -> FrameTimes {
    let ctx = egui::Context::default();
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1600.0, 1000.0));
    let mut times = FrameTimes {
        run: Vec::with_capacity(frames),
        total: Vec::with_capacity(frames),
    };
    let warmup = 20;
    for f in 0..frames + warmup {
        let input = egui::RawInput {
            screen_rect: Some(screen),
            time: Some(f as f64 / 60.0),
            predicted_dt: 1.0 / 60.0,
            ..Default::default()
        };
        if f % 30 == 0 {
            // The worker sends a fresh view twice a second.
            state.metrics = Some(Arc::new((**view).clone()));
        }
        let start = Instant::now();
        let out = ctx.run_ui(input, |ui| {
            let _ = harness_gui::ui::dashboard(ui, state);
        });
        let run = start.elapsed();
        let prims = ctx.tessellate(out.shapes, out.pixels_per_point);
        let total = start.elapsed();
        std::hint::black_box(prims.len());
        if f >= warmup {
            times.total.push(total.as_secs_f64() * 1000.0);
            times.run.push(run.as_secs_f64() * 1000.0);
        }
    }
    times.total.sort_by(f64::total_cmp);
    times.run.sort_by(f64::total_cmp);
    times
}
