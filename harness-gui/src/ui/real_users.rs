//! Real users' answers as the edge counted them in the epoch in force,
//! beside the synthetic figures: rate, error rate, time to first byte.

use super::style::color_text;
use egui::{RichText, Ui};
use greenlight_common::telemetry::MetricsView;
use greenlight_common::Color;

/// The panel for `epoch`; a hint when the edge counted none.
pub(super) fn ui(ui: &mut Ui, view: Option<&MetricsView>, epoch: Option<u64>) {
    ui.heading("Real users (edge)");
    let Some(e) = epoch.and_then(|epoch| view.and_then(|v| v.epoch(epoch))) else {
        ui.label(RichText::new("no real-user counts for this epoch yet").weak());
        return;
    };
    let seconds = match (e.from_ms, e.to_ms) {
        (Some(from), Some(to)) if to > from => (to - from) as f64 / 1_000.0,
        _ => 0.0,
    };
    ui.label(
        RichText::new(format!(
            "epoch {} · over {seconds:.0} s · TTFB at the edge",
            e.epoch
        ))
        .small()
        .weak(),
    );
    let cell = |color: Color, f: &dyn Fn(&greenlight_common::telemetry::CountsView) -> String| {
        e.colors.get(&color).map_or("-".to_string(), f)
    };
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} ms"));
    egui::Grid::new("real-users")
        .num_columns(3)
        .striped(true)
        .show(ui, |ui| {
            ui.label("");
            ui.label(color_text(Color::Blue));
            ui.label(color_text(Color::Green));
            ui.end_row();
            type Row<'a> = (
                &'a str,
                Box<dyn Fn(&greenlight_common::telemetry::CountsView) -> String + 'a>,
            );
            let rows: [Row; 5] = [
                ("requests", Box::new(|c| c.requests.to_string())),
                (
                    "req/s",
                    Box::new(move |c| {
                        if seconds > 0.0 {
                            format!("{:.1}", c.requests as f64 / seconds)
                        } else {
                            "-".into()
                        }
                    }),
                ),
                (
                    "error rate",
                    Box::new(|c| format!("{:.3}%", c.error_rate * 100.0)),
                ),
                ("TTFB p50", Box::new(move |c| ms(c.ttfb_p50_ms))),
                ("TTFB p99", Box::new(move |c| ms(c.ttfb_p99_ms))),
            ];
            for (name, f) in rows.iter() {
                ui.label(*name);
                ui.label(cell(Color::Blue, f.as_ref()));
                ui.label(cell(Color::Green, f.as_ref()));
                ui.end_row();
            }
        });
}
