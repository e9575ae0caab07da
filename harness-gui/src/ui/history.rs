//! The edge's history: the last committed changes as the edge recorded
//! them, whoever made them (this dashboard, the CLI, another operator).

use egui::{RichText, Ui};
use greenlight_common::history::HistoryView;
use rollout::audit::format_time;

/// Newest first: epoch, time, op, weight after, who (declared actor and
/// verified credential); the reason and evidence on hover.
pub(super) fn ui(ui: &mut Ui, history: Option<&HistoryView>) {
    ui.heading("Edge history");
    let Some(h) = history else {
        ui.label(RichText::new("not read yet").small().weak());
        return;
    };
    ui.label(
        RichText::new(format!(
            "{} changes kept at the edge (last {})",
            h.changes.len(),
            h.limit
        ))
        .small()
        .weak(),
    );
    egui::ScrollArea::vertical()
        .id_salt("history-scroll")
        .max_height(220.0)
        .show(ui, |ui| {
            egui::Grid::new("history-grid")
                .num_columns(5)
                .striped(true)
                .show(ui, |ui| {
                    for c in &h.changes {
                        ui.label(RichText::new(c.epoch.to_string()).small());
                        ui.label(RichText::new(format_time(c.at_ms)).monospace().small());
                        ui.label(RichText::new(&c.op).small());
                        ui.label(
                            RichText::new(format!(
                                "{} · {:.2}%",
                                c.after.active,
                                c.after.candidate_percent()
                            ))
                            .small(),
                        );
                        let by = c.after.last_change.by();
                        let mut hover = c.reason.clone();
                        if let Some(e) = &c.evidence {
                            hover.push_str(&format!("\nevidence: {e}"));
                        }
                        ui.label(RichText::new(by).small()).on_hover_text(hover);
                        ui.end_row();
                    }
                });
        });
}
