//! The audit log: every action taken from the dashboard and by its rollouts.

use super::style::{GREEN, RED};
use egui::{RichText, Ui};
use rollout::audit::{format_time, AuditEntry, AuditOutcome};
use std::collections::VecDeque;
use std::path::Path;

/// The newest entries first; the file keeps them all.
pub(super) fn ui(ui: &mut Ui, path: Option<&Path>, entries: &VecDeque<AuditEntry>) {
    ui.heading("Audit log");
    if let Some(p) = path {
        ui.label(
            RichText::new(format!("appended to {}", p.display()))
                .small()
                .weak(),
        );
    }
    egui::ScrollArea::vertical()
        .id_salt("audit-scroll")
        .max_height(260.0)
        .show(ui, |ui| {
            egui::Grid::new("audit-grid")
                .num_columns(4)
                .striped(true)
                .show(ui, |ui| {
                    for e in entries.iter().rev().take(200) {
                        ui.label(RichText::new(format_time(e.at_ms)).monospace().small());
                        ui.label(RichText::new(&e.action).small());
                        let epochs = match (e.epoch_before, e.epoch_after) {
                            (Some(a), Some(b)) if a != b => format!("{a}->{b}"),
                            (Some(a), _) => a.to_string(),
                            (None, Some(b)) => b.to_string(),
                            _ => "-".into(),
                        };
                        ui.label(RichText::new(epochs).small());
                        let c = match e.outcome {
                            AuditOutcome::Ok => GREEN,
                            AuditOutcome::Info => ui.visuals().weak_text_color(),
                            _ => RED,
                        };
                        ui.label(
                            RichText::new(format!("{} · {}", e.outcome.as_str(), e.actor))
                                .small()
                                .color(c),
                        )
                        .on_hover_text(match &e.committed {
                            Some(c) => format!("{}\ncommitted: {c}", e.detail),
                            None => e.detail.clone(),
                        });
                        ui.end_row();
                    }
                });
        });
}
