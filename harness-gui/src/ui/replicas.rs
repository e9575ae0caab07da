//! A Workers edge's read replicas: the epoch each region confirmed and how
//! far behind the rollout object it is (`GET replicas`).

use egui::{Color32, RichText, Ui};
use greenlight_common::propagation::ReplicasView;

pub(super) fn ui(ui: &mut Ui, view: &ReplicasView) {
    ui.heading("Replicas (edge)");
    let summary = if view.behind == 0 {
        RichText::new(format!("epoch {}: every replica holds it", view.epoch)).weak()
    } else {
        RichText::new(format!(
            "epoch {}: {} of {} replicas behind",
            view.epoch,
            view.behind,
            view.replicas.len()
        ))
        .color(Color32::from_rgb(0xd0, 0x60, 0x20))
    };
    ui.label(summary);
    egui::Grid::new("replicas").striped(true).show(ui, |ui| {
        for h in ["region", "epoch", "lag", "failures"] {
            ui.label(RichText::new(h).strong());
        }
        ui.end_row();
        for r in &view.replicas {
            ui.label(&r.region);
            ui.label(r.epoch.map_or("-".into(), |e| e.to_string()));
            let lag = r.lag_ms.map_or("-".into(), |l| format!("{l} ms"));
            if r.current {
                ui.label(lag);
            } else {
                ui.label(RichText::new(format!("BEHIND {lag}")).strong())
                    .on_hover_text(r.last_error.as_deref().unwrap_or("no answer yet"));
            }
            ui.label(r.failures.to_string());
            ui.end_row();
        }
    });
}
