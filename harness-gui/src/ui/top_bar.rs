//! The bar across the top: which edge, whether it answers, the last notice.

use super::style::{AMBER, RED};
use crate::app::{Action, AppState, Level, Reach};
use egui::{Color32, RichText, Ui};

/// The title, the edge, Refresh; a red banner while the edge cannot be
/// used, and the last notice.
pub(super) fn ui(ui: &mut Ui, s: &AppState, out: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.heading("greenlight");
        ui.label(RichText::new("release dashboard").weak());
        ui.separator();
        ui.label(format!("edge {}", s.settings.edge_url));
        if ui.button("Refresh").clicked() {
            out.push(Action::Refresh);
        }
    });
    let banner = match &s.reach {
        Reach::Unreachable(m) => Some(format!(
            "Edge unreachable: {m}. Retrying every second; the dashboard keeps running."
        )),
        Reach::Unauthorized(m) => Some(format!(
            "Admin token refused ({m}). Set ${} and press Apply connection.",
            s.settings.token_env
        )),
        Reach::Error(m) => Some(format!("Edge error: {m}")),
        _ => None,
    };
    if let Some(b) = banner {
        egui::Frame::new()
            .fill(RED)
            .inner_margin(6.0)
            .corner_radius(4.0)
            .show(ui, |ui| {
                ui.label(RichText::new(b).color(Color32::WHITE).strong());
            });
    }
    if let Some(n) = &s.notice {
        ui.horizontal(|ui| {
            let c = match n.level {
                Level::Info => ui.visuals().text_color(),
                Level::Warning => AMBER,
                Level::Error => RED,
            };
            ui.label(RichText::new(&n.text).color(c));
            if ui.small_button("Dismiss").clicked() {
                out.push(Action::DismissNotice);
            }
        });
    }
}
