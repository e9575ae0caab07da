//! The verdict on the load's evidence: pass, fail or inconclusive, the
//! statistics it rests on, and its reasons.

use super::style::{color_text, verdict_color};
use crate::metrics::MetricsView;
use egui::{RichText, Ui};
use greenlight_common::Color;
use greenlight_verdict::Judgement;

/// The verdict, or a hint when there is no evidence yet.
pub(super) fn ui(ui: &mut Ui, metrics: Option<&MetricsView>) {
    ui.heading("Verdict");
    match metrics.and_then(|m| m.judgement.as_ref().map(|j| (m, j))) {
        None => {
            ui.label(RichText::new("no evidence yet: start load").weak());
        }
        Some((m, j)) => {
            headline(ui, m, j);
            statistics(ui, m);
            differences(ui, j);
            egui::CollapsingHeader::new("Reasons")
                .default_open(true)
                .show(ui, |ui| {
                    for r in &j.reasons {
                        ui.label(RichText::new(r).small());
                    }
                });
        }
    }
}

/// The verdict in large, what was compared, and the live analysis's verdict.
fn headline(ui: &mut Ui, m: &MetricsView, j: &Judgement) {
    ui.label(
        RichText::new(format!("{}", j.verdict))
            .size(28.0)
            .strong()
            .color(verdict_color(j.verdict)),
    );
    let base = m.baseline.unwrap_or(Color::Blue);
    ui.label(format!(
        "candidate {} vs baseline {} · {} · judged on {}",
        base.other(),
        base,
        m.window,
        m.policy.metric.describe()
    ));
    if let Some(seq) = &m.sequential {
        ui.label(
            RichText::new(format!("live (anytime-valid): {}", seq.verdict))
                .color(verdict_color(seq.verdict)),
        );
    }
}

/// Both colors side by side: requests, errors, latency and TTFB percentiles.
fn statistics(ui: &mut Ui, m: &MetricsView) {
    egui::Grid::new("verdict-stats")
        .num_columns(3)
        .striped(true)
        .show(ui, |ui| {
            ui.label("");
            ui.label(color_text(Color::Blue));
            ui.label(color_text(Color::Green));
            ui.end_row();
            ui.label("requests");
            ui.label(m.blue.requests.to_string());
            ui.label(m.green.requests.to_string());
            ui.end_row();
            ui.label("error rate");
            ui.label(format!("{:.3}%", m.blue.error_rate() * 100.0));
            ui.label(format!("{:.3}%", m.green.error_rate() * 100.0));
            ui.end_row();
            for (i, name) in ["p50", "p90", "p99", "p99.9", "max"].iter().enumerate() {
                ui.label(*name);
                ui.label(format!("{:.2} ms", m.blue.quantiles_ms[i]));
                ui.label(format!("{:.2} ms", m.green.quantiles_ms[i]));
                ui.end_row();
            }
            // Time to first byte (a stream's first event) beside the latency.
            for (i, name) in ["TTFB p50", "TTFB p90", "TTFB p99"].iter().enumerate() {
                ui.label(*name);
                ui.label(format!("{:.2} ms", m.blue.ttfb_quantiles_ms[i]));
                ui.label(format!("{:.2} ms", m.green.ttfb_quantiles_ms[i]));
                ui.end_row();
            }
            if m.blue.events_per_s.is_some() || m.green.events_per_s.is_some() {
                let rate = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.1}"));
                ui.label("events/s p50");
                ui.label(rate(m.blue.events_per_s));
                ui.label(rate(m.green.events_per_s));
                ui.end_row();
            }
        });
}

/// The candidate's latency shift and percentile deltas, with their intervals.
fn differences(ui: &mut Ui, j: &Judgement) {
    if let Some(l) = &j.latency {
        ui.label(format!(
            "shift {:+.3} ms ({:+.1}%), CI {:+.3}..{:+.3} ms",
            l.shift_ms.estimate,
            l.relative_shift * 100.0,
            l.shift_ms.ci_low,
            l.shift_ms.ci_high
        ));
    }
    for d in &j.percentiles {
        ui.label(format!(
            "p{} delta {:+.3} ms (CI {:+.3}..{:+.3})",
            d.q * 100.0,
            d.delta,
            d.ci_low,
            d.ci_high
        ));
    }
}
