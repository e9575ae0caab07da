//! What runs beside the load: Ctrl-C, the progress bar, and the watcher
//! that looks at the recorder once a second (the sequential verdict of
//! `--stop-early`, and the intervals of `--hlog`).

use crate::verdicts::summaries;
use greenlight_engine::client::Control;
use greenlight_engine::histogram::SeenColor;
use greenlight_engine::recorder::{Recorder, Snapshot};
use greenlight_verdict::{judge_sequential, Judgement, Policy, Verdict};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Ctrl-C: stop cleanly and still report; a second Ctrl-C exits at once.
pub fn stop_on_ctrl_c(control: Control) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ngreenlight: stopping (Ctrl-C again to quit without a report)");
            control.stop();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}

/// A bar over the run's duration, or a hidden one with `--quiet`.
pub fn progress_bar(quiet: bool, duration: Duration) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(duration.as_millis() as u64);
    if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {percent:>3}% {msg}") {
        b.set_style(style.progress_chars("=> "));
    }
    b
}

/// The `--hlog` writer: a thread that writes one interval per look it is
/// sent; the look marked last (the run's end) closes the log.
pub struct HlogWriter {
    pub looks: Sender<(Snapshot, bool)>,
    pub written: JoinHandle<Result<(), String>>,
}

impl HlogWriter {
    pub fn start(path: &Path, started: SystemTime) -> Result<HlogWriter, String> {
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let (tx, rx) = std::sync::mpsc::channel::<(Snapshot, bool)>();
        let written = std::thread::spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            // Looks up to and including the last one (the run's end),
            // without waiting for another after it.
            let mut ended = false;
            let looks = std::iter::from_fn(|| {
                if ended {
                    return None;
                }
                let (snap, last) = rx.recv().ok()?;
                ended = last;
                Some(snap)
            });
            greenlight_engine::hlog::write_intervals(&mut out, started, looks)
                .and_then(|()| std::io::Write::flush(&mut out).map_err(|e| e.to_string()))
        });
        Ok(HlogWriter { looks: tx, written })
    }

    /// Sends the last look and waits for the log to be written.
    pub fn finish(self, last: Snapshot) -> Result<(), String> {
        let _ = self.looks.send((last, true));
        drop(self.looks);
        self.written
            .join()
            .unwrap_or_else(|_| Err("the writer stopped".into()))
    }
}

/// What the watcher needs.
pub struct Watch {
    pub recorder: Arc<Recorder>,
    pub control: Control,
    pub bar: ProgressBar,
    pub policy: Policy,
    pub baseline: SeenColor,
    /// The verdict compares comparison traffic only.
    pub comparing: bool,
    pub stop_early: bool,
    pub hlog: Option<Sender<(Snapshot, bool)>>,
    /// Where a decided sequential verdict is left for the report.
    pub decided: Arc<Mutex<Option<Judgement>>>,
}

/// Looks once a second: moves the bar, sends `--hlog` intervals, and with
/// `--stop-early` stops the run once the sequential verdict decides.
pub fn spawn_watcher(w: Watch) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(1000));
        loop {
            every.tick().await;
            let snap = w.recorder.snapshot();
            w.bar.set_position(snap.elapsed.as_millis() as u64);
            w.bar.set_message(live_message(&snap));
            let decided = if w.stop_early {
                summaries(&snap, w.baseline, w.comparing)
                    .map(|(b, c)| judge_sequential(&w.policy, &b, &c))
                    .filter(|j| j.verdict != Verdict::Inconclusive)
            } else {
                None
            };
            if let Some(tx) = &w.hlog {
                let _ = tx.send((snap, false));
            }
            if let Some(j) = decided {
                if let Ok(mut s) = w.decided.lock() {
                    *s = Some(j);
                }
                w.control.stop();
                break;
            }
        }
    })
}

fn live_message(snap: &Snapshot) -> String {
    SeenColor::ALL
        .iter()
        .filter(|c| snap.color(**c).requests() > 0)
        .map(|c| {
            let s = snap.color(*c);
            format!(
                "{} {} req p99 {:.1} ms ttfb p50 {:.1} ms err {}",
                c.as_str(),
                s.requests(),
                s.latency_us(0.99) as f64 / 1000.0,
                s.ttfb_us(0.5) as f64 / 1000.0,
                s.outcomes.errors()
            )
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
