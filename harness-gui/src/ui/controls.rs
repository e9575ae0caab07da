//! The left-hand column: the edge's state, manual changes, the automated
//! rollout and the load.

use super::style::{color_text, verdict_color, AMBER, GREEN, RED};
use crate::app::{Action, AppState, Reach};
use crate::backend::{EdgePlanOp, ManualOp};
use egui::{RichText, Ui};
use greenlight_common::plan::PlanStatus;
use greenlight_common::state::Population;
use greenlight_engine::admin_client::describe_plan;
use rollout::audit::format_time;
use rollout::{format_steps, Finish, OnInconclusive, RolloutStatus};

/// The column's sections, top to bottom.
pub(super) fn ui(ui: &mut Ui, s: &mut AppState, out: &mut Vec<Action>) {
    state_section(ui, s);
    ui.separator();
    actions_section(ui, s, out);
    ui.separator();
    rollout_section(ui, s, out);
    ui.separator();
    load_section(ui, s, out);
}

/// What the edge serves now, and how fresh that is.
fn state_section(ui: &mut Ui, s: &AppState) {
    ui.heading("Rollout state");
    let reach = match &s.reach {
        Reach::Ok => RichText::new("reachable").color(GREEN),
        Reach::Unknown => RichText::new("connecting...").weak(),
        Reach::Unreachable(_) => RichText::new("UNREACHABLE").color(RED).strong(),
        Reach::Unauthorized(_) => RichText::new("UNAUTHORIZED").color(RED).strong(),
        Reach::Error(_) => RichText::new("ERROR").color(RED).strong(),
    };
    egui::Grid::new("state-grid")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            ui.label("Edge");
            ui.label(reach);
            ui.end_row();
            if let Some(v) = &s.view {
                let st = &v.state;
                ui.label("Active");
                ui.label(color_text(st.active));
                ui.end_row();
                ui.label("Candidate");
                ui.label(color_text(st.candidate));
                ui.end_row();
                ui.label("Weight");
                ui.label(format!("{}% on {}", st.candidate_percent(), st.candidate));
                ui.end_row();
                ui.label("Phase");
                ui.label(v.phase.to_string());
                ui.end_row();
                ui.label("Epoch");
                ui.label(format!("epoch {}", st.epoch));
                ui.end_row();
                ui.label("Users");
                let salt: String = st.stickiness.salt.chars().take(8).collect();
                ui.label(match v.population {
                    Population::Fresh => format!("new population per canary (salt {salt}…)"),
                    Population::Fixed => format!("fixed population (salt {salt}…)"),
                });
                ui.end_row();
                ui.label("Last change");
                let change = format!(
                    "{} by {} at {}: {}",
                    st.last_change.op,
                    st.last_change.actor,
                    format_time(st.last_change.at_ms),
                    st.last_change.reason
                );
                // One line (a grid cell does not wrap); the whole reason on hover.
                ui.add(egui::Label::new(&change).truncate())
                    .on_hover_text(&change);
                ui.end_row();
                if v.degraded {
                    ui.label("Degraded");
                    ui.label(RichText::new("edge serving a fallback state").color(RED));
                    ui.end_row();
                }
                if let Some(h) = &v.health {
                    ui.label("Origin health");
                    let text = format!(
                        "{} under test: {} failures in the window (blue {}, green {} this epoch)",
                        h.under_test, h.recent_failures, h.blue_failures, h.green_failures
                    );
                    if h.unhealthy {
                        ui.label(RichText::new(format!("UNHEALTHY: {text}")).color(RED));
                    } else {
                        ui.label(text);
                    }
                    ui.end_row();
                }
            }
            ui.label("Refreshed");
            ui.label(match s.refreshed {
                Some(t) => format!("{:.1} s ago", t.elapsed().as_secs_f64()),
                None => "never".into(),
            });
            ui.end_row();
        });
}

/// Manual changes (each asks for confirmation first).
fn actions_section(ui: &mut Ui, s: &mut AppState, out: &mut Vec<Action>) {
    ui.heading("Actions");
    ui.horizontal(|ui| {
        let l = ui.label("Reason");
        ui.text_edit_singleline(&mut s.reason).labelled_by(l.id);
    });
    ui.horizontal(|ui| {
        let ops = [
            (ManualOp::Promote, "Promote"),
            (ManualOp::Rollback, "Rollback"),
            (ManualOp::Abort, "Abort canary"),
        ];
        for (op, label) in ops {
            action_button(ui, s.can(op), label, Action::Ask(op), out);
        }
    });
    ui.horizontal(|ui| {
        ui.add(
            egui::Slider::new(&mut s.weight_input, 0.0..=100.0)
                .text("Weight %")
                .max_decimals(2),
        );
        let w = s.weight_input;
        action_button(
            ui,
            s.can(ManualOp::Weight(w)),
            "Set weight",
            Action::Ask(ManualOp::Weight((w * 100.0).round() / 100.0)),
            out,
        );
    });
    if let Some(op) = s.in_flight {
        ui.label(RichText::new(format!("{} in flight...", op.name())).weak());
    }
}

/// The plan held at the edge: where it is, and its controls. It goes on
/// or rolls back whether or not this dashboard runs.
fn edge_plan_section(ui: &mut Ui, s: &mut AppState, out: &mut Vec<Action>) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("At the edge").strong());
        let ops = [
            (EdgePlanOp::Start, "Run at the edge"),
            (EdgePlanOp::Pause, "Pause edge plan"),
            (EdgePlanOp::Resume, "Resume edge plan"),
            (EdgePlanOp::Abort, "Abort edge plan"),
        ];
        for (op, label) in ops {
            let op = ManualOp::EdgePlan(op);
            action_button(ui, s.can(op), label, Action::Ask(op), out);
        }
    });
    let Some(state) = s.view.as_ref().map(|v| &v.state) else {
        return;
    };
    let Some(run) = &state.plan else {
        ui.label(RichText::new("no plan started at the edge").weak());
        return;
    };
    let n = run.spec.steps_bp.len().max(1);
    let done = match run.status {
        PlanStatus::Promoted => n,
        _ => run.step + 1,
    };
    let color = match run.status {
        PlanStatus::Promoted => GREEN,
        PlanStatus::RolledBack { .. } | PlanStatus::Aborted => RED,
        PlanStatus::Paused | PlanStatus::Held { .. } => AMBER,
        PlanStatus::Running => ui.visuals().text_color(),
    };
    ui.add(
        egui::ProgressBar::new(done as f32 / n as f32)
            .text(format!("edge plan {} · step {done}/{n}", run.status.name())),
    );
    if let Some(text) = describe_plan(state) {
        ui.add(egui::Label::new(RichText::new(text).color(color)).wrap());
    }
}

/// The automated rollout: its plan, its buttons and how far it got.
fn rollout_section(ui: &mut Ui, s: &mut AppState, out: &mut Vec<Action>) {
    ui.heading("Automated rollout");
    egui::Grid::new("rollout-grid")
        .num_columns(2)
        .show(ui, |ui| {
            let l = ui.label("Steps %");
            ui.text_edit_singleline(&mut s.steps_text).labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Dwell (s)");
            ui.add(egui::DragValue::new(&mut s.settings.dwell_s).range(1..=3600))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Extensions");
            ui.add(egui::DragValue::new(&mut s.settings.max_extensions).range(0..=10))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Judge on");
            egui::ComboBox::from_id_salt("judge")
                .selected_text(s.settings.judge.as_str())
                .show_ui(ui, |ui| {
                    for j in greenlight_verdict::Judge::ALL {
                        ui.selectable_value(&mut s.settings.judge, j, j.as_str());
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text("synthetic: the load's samples; real: real users counted by the edge; both: the load's verdict, which real users can veto");
            ui.end_row();
            let l = ui.label("If inconclusive");
            egui::ComboBox::from_id_salt("on-inconclusive")
                .selected_text(s.settings.on_inconclusive.as_str())
                .show_ui(ui, |ui| {
                    for o in OnInconclusive::ALL {
                        ui.selectable_value(&mut s.settings.on_inconclusive, o, o.as_str());
                    }
                })
                .response
                .labelled_by(l.id);
            ui.end_row();
        });
    let running = s.rollout_running();
    let paused = s.rollout.as_ref().is_some_and(|r| r.paused);
    ui.horizontal(|ui| {
        let can_start = s.can_start_rollout();
        action_button(ui, can_start, "Start rollout", Action::StartRollout, out);
        action_button(ui, running && !paused, "Pause", Action::PauseRollout, out);
        action_button(ui, running && paused, "Resume", Action::ResumeRollout, out);
        action_button(ui, running, "Abort rollout", Action::AbortRollout, out);
    });
    edge_plan_section(ui, s, out);
    if let Some(r) = &s.rollout {
        let (frac, text) = rollout_progress(r);
        ui.add(egui::ProgressBar::new(frac).text(text));
        let c = match (&r.finished, r.paused) {
            (Some(Finish::Promoted { .. }), _) => GREEN,
            (Some(_), _) => RED,
            (None, true) => AMBER,
            _ => ui.visuals().text_color(),
        };
        // Wrapped: a long reason must not widen the side panel.
        ui.add(egui::Label::new(RichText::new(format!("Rollout: {}", r.headline)).color(c)).wrap());
        if let Some(v) = r.last_verdict {
            ui.label(RichText::new(format!("last analysis: {v}")).color(verdict_color(v)));
        }
        egui::CollapsingHeader::new("Rollout log")
            .default_open(false)
            .show(ui, |ui| {
                for l in r.log.iter().rev().take(50) {
                    ui.label(RichText::new(l).monospace().small());
                }
            });
    }
}

/// The rollout's progress bar: the share of steps done and its text. Once
/// the rollout has ended it says how, at the step it reached (a rollback at
/// step 1 is not a full bar).
pub fn rollout_progress(r: &RolloutStatus) -> (f32, String) {
    let n = r.steps.len().max(1);
    let steps = format_steps(&r.steps);
    let at = r.reached.map(|i| i + 1).unwrap_or(0);
    let (done, what) = match &r.finished {
        None => (r.step.map(|i| i + 1).unwrap_or(0), String::new()),
        Some(Finish::Promoted { .. }) => (n, "promoted · ".to_string()),
        Some(Finish::RolledBack { .. }) => (at, format!("rolled back at step {at}/{n} · ")),
        Some(Finish::Aborted) => (at, format!("aborted at step {at}/{n} · ")),
        Some(Finish::Interrupted(_)) | Some(Finish::Failed(_)) => {
            (at, format!("stopped at step {at}/{n} · "))
        }
    };
    let text = if r.finished.is_none() {
        format!("step {done}/{n} · steps {steps}")
    } else {
        format!("{what}steps {steps}")
    };
    (done as f32 / n as f32, text)
}

/// The synthetic load the verdict is computed on.
fn load_section(ui: &mut Ui, s: &mut AppState, out: &mut Vec<Action>) {
    ui.heading("Load");
    let running = s.load.running;
    egui::Grid::new("load-grid").num_columns(2).show(ui, |ui| {
        let l = ui.label("Target URL");
        ui.add_enabled(
            !running,
            egui::TextEdit::singleline(&mut s.settings.load.target_url),
        )
        .labelled_by(l.id);
        ui.end_row();
        let l = ui.label("Rate (req/s)");
        ui.add(
            egui::DragValue::new(&mut s.settings.load.rate)
                .range(1.0..=20_000.0)
                .speed(5.0),
        )
        .labelled_by(l.id);
        ui.end_row();
        let l = ui.label("Users (0: fresh)");
        ui.add_enabled(
            !running,
            egui::DragValue::new(&mut s.settings.load.users).range(0..=100_000),
        )
        .labelled_by(l.id);
        ui.end_row();
        let l = ui.label("Scenario file");
        ui.add_enabled(
            !running,
            egui::TextEdit::singleline(&mut s.settings.load.scenario).hint_text("optional .toml"),
        )
        .labelled_by(l.id);
        ui.end_row();
    });
    ui.horizontal(|ui| {
        action_button(ui, !running, "Start load", Action::StartLoad, out);
        action_button(ui, running, "Stop load", Action::StopLoad, out);
        action_button(ui, running, "Apply rate", Action::ApplyRate, out);
    });
    let status = if running {
        format!("running: {} at {} req/s", s.load.target, s.load.rate)
    } else {
        "stopped".to_string()
    };
    ui.label(status);
    if let (true, Some(sampling)) = (running, &s.load.sampling) {
        ui.label(RichText::new(sampling.describe()).weak());
    }
    if let Some(m) = &s.metrics {
        ui.label(format!(
            "{:.0} s · blue {} · green {} · unknown {} · late {}",
            m.elapsed_s, m.blue.requests, m.green.requests, m.unknown_requests, m.counters.late
        ));
    }
}

/// A button that is enabled only when `enabled`, and asks for `action` when clicked.
fn action_button(ui: &mut Ui, enabled: bool, label: &str, action: Action, out: &mut Vec<Action>) {
    if ui.add_enabled(enabled, egui::Button::new(label)).clicked() {
        out.push(action);
    }
}

#[cfg(test)]
mod tests {
    use super::rollout_progress;
    use rollout::{Finish, RolloutStatus};
    use std::time::Duration;

    fn status(
        step: Option<usize>,
        reached: Option<usize>,
        finished: Option<Finish>,
    ) -> RolloutStatus {
        RolloutStatus {
            stage: if finished.is_some() {
                "done"
            } else {
                "dwelling"
            },
            headline: String::new(),
            steps: vec![1.0, 5.0, 25.0, 50.0, 100.0],
            step,
            reached,
            weight: None,
            dwell_left: None,
            dwell: Duration::from_secs(30),
            extensions: 0,
            last_verdict: None,
            last_reasons: Vec::new(),
            finished,
            paused: false,
            log: Vec::new(),
        }
    }

    #[test]
    fn the_progress_bar_says_where_a_rollout_ended() {
        let steps = "1, 5, 25, 50, 100";
        let cases = [
            (
                status(Some(1), Some(1), None),
                0.4,
                format!("step 2/5 · steps {steps}"),
            ),
            (
                status(
                    None,
                    Some(0),
                    Some(Finish::RolledBack {
                        why: "slower".into(),
                    }),
                ),
                0.2,
                format!("rolled back at step 1/5 · steps {steps}"),
            ),
            (
                status(None, Some(4), Some(Finish::Promoted { epoch: 6 })),
                1.0,
                format!("promoted · steps {steps}"),
            ),
            (
                status(None, Some(2), Some(Finish::Aborted)),
                0.6,
                format!("aborted at step 3/5 · steps {steps}"),
            ),
            (
                status(None, None, Some(Finish::Failed("refused".into()))),
                0.0,
                format!("stopped at step 0/5 · steps {steps}"),
            ),
        ];
        for (s, frac, text) in cases {
            let (f, t) = rollout_progress(&s);
            assert!((f - frac).abs() < 1e-6, "{t}: {f}");
            assert_eq!(t, text);
        }
    }
}
