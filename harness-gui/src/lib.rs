//! greenlight's release dashboard and its headless twin.
//!
//! - [`settings`]: what persists between runs (never the token itself)
//! - [`audit`]: the JSON-lines audit log
//! - [`rollout`]: the automated rollout (plan, controller, evidence, driver; shared with `greenlight-rollout`)
//! - [`synthetic`]: the synthetic load a rollout is judged on (comparison traffic or the fallback)
//! - [`metrics`]: plot lines and verdicts computed off the UI thread
//! - [`backend`]: the worker thread (admin client, load engine, rollout)
//! - [`app`]: the dashboard's state, actions and transitions (no egui)
//! - [`ui`]: drawing only

pub mod app;
pub mod audit;
pub mod backend;
pub mod metrics;
pub mod rollout;
pub mod settings;
pub mod synthetic;
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
