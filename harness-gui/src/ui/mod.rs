//! Drawing only: every function here reads [`AppState`], binds form fields
//! and returns the [`Action`]s the operator took. Each panel is a module
//! with a `ui` function; [`style`] holds the colors they share.
//!
//! - [`top_bar`]: the edge, whether it answers, the last notice
//! - [`controls`] (left): the edge's state, manual changes, the automated rollout, the load
//! - [`verdict`] (right): the verdict and its statistics
//! - [`policy`] (right): the verdict policy editor
//! - [`locations`] (right): requests and convergence per location
//! - [`replicas`] (right): a Workers edge's read replicas and their lag
//! - [`audit_log`] (right): every action taken
//! - [`charts`] (center): the four charts

mod audit_log;
mod charts;
mod controls;
mod history;
mod locations;
mod policy;
mod real_users;
mod replicas;
mod style;
mod top_bar;
mod verdict;

use crate::app::{Action, AppState};
use egui::Ui;

pub use controls::rollout_progress;
pub use style::{color32, BLUE, GREEN};

/// The whole dashboard.
pub fn dashboard(ui: &mut Ui, s: &mut AppState) -> Vec<Action> {
    let mut out = Vec::new();
    egui::Panel::top("top").show(ui, |ui| top_bar::ui(ui, s, &mut out));
    egui::Panel::left("controls")
        .default_size(340.0)
        .max_size(560.0)
        .resizable(true)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("controls-scroll")
                .show(ui, |ui| controls::ui(ui, s, &mut out));
        });
    egui::Panel::right("verdict")
        .default_size(380.0)
        .resizable(true)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("verdict-scroll")
                .show(ui, |ui| {
                    verdict::ui(ui, s.metrics.as_deref());
                    ui.separator();
                    real_users::ui(
                        ui,
                        s.real_users.as_ref(),
                        s.view.as_ref().map(|v| v.state.epoch),
                    );
                    if let Some(r) = &s.replicas {
                        ui.separator();
                        replicas::ui(ui, r);
                    }
                    ui.separator();
                    policy::ui(ui, &mut s.settings.policy, &mut out);
                    if let Some(l) = s.metrics.as_deref().and_then(|m| m.locations.as_ref()) {
                        ui.separator();
                        locations::ui(ui, l);
                    }
                    ui.separator();
                    history::ui(ui, s.history.as_ref());
                    ui.separator();
                    audit_log::ui(ui, s.audit_path.as_deref(), &s.audit);
                });
        });
    egui::CentralPanel::default_margins().show(ui, |ui| charts::ui(ui, s.metrics.as_deref()));
    confirm_dialog(ui, s, &mut out);
    out
}

/// The modal that asks before a manual change; closing it cancels.
fn confirm_dialog(ui: &mut Ui, s: &AppState, out: &mut Vec<Action>) {
    let Some(c) = &s.confirm else { return };
    let r = egui::Modal::new(egui::Id::unique("confirm-change")).show(ui.ctx(), |ui| {
        ui.set_max_width(420.0);
        ui.heading(format!("Confirm {}", c.op.name()));
        ui.label(&c.text);
        ui.horizontal(|ui| {
            if ui.button("Confirm").clicked() {
                out.push(Action::Confirm);
            }
            if ui.button("Cancel").clicked() {
                out.push(Action::Cancel);
            }
        });
    });
    if r.should_close() && !out.contains(&Action::Confirm) {
        out.push(Action::Cancel);
    }
}
