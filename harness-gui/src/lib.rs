//! greenlight's release dashboard. The automated rollout it runs (and the
//! audit log and synthetic load) live in the `rollout` crate, shared with
//! the headless `greenlight-rollout`.
//!
//! - [`settings`]: what persists between runs (never the token itself)
//! - [`metrics`]: plot lines and verdicts computed off the UI thread
//! - [`backend`]: the worker thread (admin client, load engine, rollout)
//! - [`app`]: the dashboard's state, actions and transitions (no egui)
//! - [`ui`]: drawing only

pub mod app;
pub mod backend;
pub mod metrics;
pub mod settings;
pub mod ui;

use app::AppState;
use backend::Backend;
use std::time::Duration;

/// The dashboard: its state plus the worker it talks to.
pub struct Dashboard {
    pub state: AppState,
    backend: Backend,
}

impl Dashboard {
    pub fn new(state: AppState, backend: Backend) -> Dashboard {
        for r in state.initial_requests() {
            backend.send(r);
        }
        Dashboard { state, backend }
    }

    /// Performs an action as if the operator had taken it.
    pub fn act(&mut self, a: app::Action) {
        for r in self.state.handle(a) {
            self.backend.send(r);
        }
    }

    /// One frame: fold in what the worker reported, draw, act.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        for e in self.backend.drain() {
            self.state.apply(e);
        }
        for a in ui::dashboard(ui, &mut self.state) {
            self.act(a);
        }
        // The "refreshed … ago" line and charts move even when idle.
        ui.ctx().request_repaint_after(Duration::from_millis(250));
    }
}
