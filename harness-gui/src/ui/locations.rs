//! Requests per color and convergence after the last change, per location
//! (when the edge names its locations).

use egui::{RichText, Ui};
use greenlight_engine::histogram::SeenColor;
use greenlight_engine::locations::LocationSummary;

/// Requests per color and convergence after the last change, per location.
pub(super) fn ui(ui: &mut Ui, l: &LocationSummary) {
    ui.heading(format!("Locations ({})", l.header));
    let last = l.changes.last();
    if let Some(c) = last {
        ui.label(format!(
            "epoch {} {} at {:.1} s: new epoch first seen / old last seen",
            c.epoch,
            if c.acknowledged {
                "acknowledged"
            } else {
                "first seen"
            },
            c.at_s
        ));
    }
    let secs = |v: Option<f64>| {
        v.map(|s| format!("{s:+.2} s"))
            .unwrap_or_else(|| "-".into())
    };
    egui::Grid::new("locations").striped(true).show(ui, |ui| {
        for h in ["location", "blue", "green", "epochs", "new", "old"] {
            ui.label(RichText::new(h).strong());
        }
        ui.end_row();
        for (name, loc) in &l.locations {
            let n = |c: SeenColor| loc.requests.get(&c).copied().unwrap_or(0).to_string();
            ui.label(name);
            ui.label(n(SeenColor::Blue));
            ui.label(n(SeenColor::Green));
            let epochs: Vec<String> = loc.epochs.iter().map(u64::to_string).collect();
            ui.label(epochs.join(","));
            let c = loc.convergence.last();
            ui.label(secs(c.and_then(|c| c.new_first_seen_s)));
            ui.label(secs(c.and_then(|c| c.old_last_seen_s)));
            ui.end_row();
        }
    });
}
