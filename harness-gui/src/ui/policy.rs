//! The verdict policy editor: what the analysis demands of the candidate
//! before it passes.

use crate::app::Action;
use egui::Ui;
use greenlight_verdict::{ErrorCheck, Metric, Policy};

/// The policy's fields, folded away until opened; Save validates and keeps them.
pub(super) fn ui(ui: &mut Ui, p: &mut Policy, out: &mut Vec<Action>) {
    egui::CollapsingHeader::new("Policy")
        .default_open(false)
        .show(ui, |ui| {
            egui::Grid::new("policy-grid")
                .num_columns(2)
                .show(ui, |ui| fields(ui, p));
            if ui.button("Save settings").clicked() {
                out.push(Action::SaveSettings);
            }
        });
}

fn fields(ui: &mut Ui, p: &mut Policy) {
    grid_drag(
        ui,
        "alpha",
        egui::DragValue::new(&mut p.alpha)
            .range(0.0001..=0.49)
            .speed(0.001),
    );
    grid_drag(
        ui,
        "min samples / color",
        egui::DragValue::new(&mut p.min_samples).range(1..=10_000_000),
    );
    grid_drag(
        ui,
        "latency tolerance",
        egui::DragValue::new(&mut p.latency_tolerance)
            .range(0.0..=10.0)
            .speed(0.01),
    );
    grid_drag(
        ui,
        "p99 ratio max",
        egui::DragValue::new(&mut p.p99_ratio_max)
            .range(1.0..=10.0)
            .speed(0.01),
    );
    ui.label("metric");
    egui::ComboBox::from_id_salt("policy-metric")
        .selected_text(p.metric.as_str())
        .show_ui(ui, |ui| {
            for m in Metric::ALL {
                ui.selectable_value(&mut p.metric, m, m.as_str())
                    .on_hover_text(m.describe());
            }
        });
    ui.end_row();
    grid_drag(
        ui,
        "error delta max (pp)",
        egui::DragValue::new(&mut p.error_rate_delta_max_pp)
            .range(0.0..=100.0)
            .speed(0.01),
    );
    ui.label("error check");
    egui::ComboBox::from_id_salt("error-check")
        .selected_text(p.error_check.to_string())
        .show_ui(ui, |ui| {
            for check in [ErrorCheck::NotWorse, ErrorCheck::NonInferior] {
                ui.selectable_value(&mut p.error_check, check, check.to_string());
            }
        })
        .response
        .on_hover_text(
            "not-worse: passes when green's observed error rate is within the \
             allowance; non-inferior: only when the interval shows it (needs \
             many samples when both colors have errors)",
        );
    ui.end_row();
}

/// One labelled row of a two-column grid: the label names the field for
/// screen readers and kittest (`labelled_by`).
fn grid_drag(ui: &mut Ui, label: &str, value: egui::DragValue<'_>) {
    let l = ui.label(label);
    ui.add(value).labelled_by(l.id);
    ui.end_row();
}
