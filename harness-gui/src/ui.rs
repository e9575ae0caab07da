//! Drawing only: every function here reads [`AppState`], binds form fields
//! and returns the [`Action`]s the operator took. Blue is blue and green is
//! green everywhere.

use crate::app::{Action, AppState, Level, Reach};
use crate::audit::format_time;
use crate::backend::ManualOp;
use crate::metrics::{nines_label, MetricsView, MAX_NINES};
use crate::rollout::OnInconclusive;
use egui::{Color32, RichText, Ui};
use egui_plot::{AxisHints, Corner, GridMark, Legend, Line, LineStyle, Plot, PlotPoint};
use greenlight_common::state::Population;
use greenlight_common::Color;
use greenlight_verdict::{ErrorCheck, Verdict};

pub const BLUE: Color32 = Color32::from_rgb(52, 120, 246);
pub const GREEN: Color32 = Color32::from_rgb(38, 166, 91);
const RED: Color32 = Color32::from_rgb(220, 60, 50);
const AMBER: Color32 = Color32::from_rgb(230, 160, 30);

pub fn color32(c: Color) -> Color32 {
    match c {
        Color::Blue => BLUE,
        Color::Green => GREEN,
    }
}

fn color_text(c: Color) -> RichText {
    RichText::new(c.to_string()).color(color32(c)).strong()
}

fn verdict_color(v: Verdict) -> Color32 {
    match v {
        Verdict::Pass => GREEN,
        Verdict::Fail => RED,
        Verdict::Inconclusive => AMBER,
    }
}

/// The whole dashboard.
pub fn dashboard(ui: &mut Ui, s: &mut AppState) -> Vec<Action> {
    let mut out = Vec::new();
    egui::Panel::top("top").show(ui, |ui| top_bar(ui, s, &mut out));
    egui::Panel::left("controls")
        .default_size(340.0)
        .max_size(560.0)
        .resizable(true)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("controls-scroll")
                .show(ui, |ui| {
                    state_panel(ui, s, &mut out);
                    ui.separator();
                    actions_panel(ui, s, &mut out);
                    ui.separator();
                    rollout_panel(ui, s, &mut out);
                    ui.separator();
                    load_panel(ui, s, &mut out);
                });
        });
    egui::Panel::right("verdict")
        .default_size(380.0)
        .resizable(true)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("verdict-scroll")
                .show(ui, |ui| {
                    verdict_panel(ui, s, &mut out);
                    if let Some(l) = s.metrics.as_deref().and_then(|m| m.locations.as_ref()) {
                        ui.separator();
                        locations_panel(ui, l);
                    }
                    ui.separator();
                    audit_panel(ui, s);
                });
        });
    egui::CentralPanel::default_margins().show(ui, |ui| charts(ui, s.metrics.as_deref()));
    confirm_dialog(ui, s, &mut out);
    out
}

fn top_bar(ui: &mut Ui, s: &AppState, out: &mut Vec<Action>) {
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

fn state_panel(ui: &mut Ui, s: &AppState, _out: &mut [Action]) {
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

fn actions_panel(ui: &mut Ui, s: &mut AppState, out: &mut Vec<Action>) {
    ui.heading("Actions");
    ui.horizontal(|ui| {
        let l = ui.label("Reason");
        ui.text_edit_singleline(&mut s.reason).labelled_by(l.id);
    });
    ui.horizontal(|ui| {
        if ui
            .add_enabled(s.can(ManualOp::Promote), egui::Button::new("Promote"))
            .clicked()
        {
            out.push(Action::Ask(ManualOp::Promote));
        }
        if ui
            .add_enabled(s.can(ManualOp::Rollback), egui::Button::new("Rollback"))
            .clicked()
        {
            out.push(Action::Ask(ManualOp::Rollback));
        }
        if ui
            .add_enabled(s.can(ManualOp::Abort), egui::Button::new("Abort canary"))
            .clicked()
        {
            out.push(Action::Ask(ManualOp::Abort));
        }
    });
    ui.horizontal(|ui| {
        ui.add(
            egui::Slider::new(&mut s.weight_input, 0.0..=100.0)
                .text("Weight %")
                .max_decimals(2),
        );
        let w = s.weight_input;
        if ui
            .add_enabled(s.can(ManualOp::Weight(w)), egui::Button::new("Set weight"))
            .clicked()
        {
            out.push(Action::Ask(ManualOp::Weight((w * 100.0).round() / 100.0)));
        }
    });
    if let Some(op) = s.in_flight {
        ui.label(RichText::new(format!("{} in flight...", op.name())).weak());
    }
}

fn rollout_panel(ui: &mut Ui, s: &mut AppState, out: &mut Vec<Action>) {
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
        if ui
            .add_enabled(s.can_start_rollout(), egui::Button::new("Start rollout"))
            .clicked()
        {
            out.push(Action::StartRollout);
        }
        if ui
            .add_enabled(running && !paused, egui::Button::new("Pause"))
            .clicked()
        {
            out.push(Action::PauseRollout);
        }
        if ui
            .add_enabled(running && paused, egui::Button::new("Resume"))
            .clicked()
        {
            out.push(Action::ResumeRollout);
        }
        if ui
            .add_enabled(running, egui::Button::new("Abort rollout"))
            .clicked()
        {
            out.push(Action::AbortRollout);
        }
    });
    if let Some(r) = &s.rollout {
        let (frac, text) = rollout_progress(r);
        ui.add(egui::ProgressBar::new(frac).text(text));
        let c = match (&r.finished, r.paused) {
            (Some(crate::rollout::Finish::Promoted { .. }), _) => GREEN,
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
pub fn rollout_progress(r: &crate::rollout::RolloutStatus) -> (f32, String) {
    use crate::rollout::Finish;
    let n = r.steps.len().max(1);
    let steps = crate::settings::format_steps(&r.steps);
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

fn load_panel(ui: &mut Ui, s: &mut AppState, out: &mut Vec<Action>) {
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
        if ui
            .add_enabled(!running, egui::Button::new("Start load"))
            .clicked()
        {
            out.push(Action::StartLoad);
        }
        if ui
            .add_enabled(running, egui::Button::new("Stop load"))
            .clicked()
        {
            out.push(Action::StopLoad);
        }
        if ui
            .add_enabled(running, egui::Button::new("Apply rate"))
            .clicked()
        {
            out.push(Action::ApplyRate);
        }
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

fn verdict_panel(ui: &mut Ui, s: &mut AppState, out: &mut Vec<Action>) {
    ui.heading("Verdict");
    match s
        .metrics
        .as_deref()
        .and_then(|m| m.judgement.as_ref().map(|j| (m, j)))
    {
        None => {
            ui.label(RichText::new("no evidence yet: start load").weak());
        }
        Some((m, j)) => {
            ui.label(
                RichText::new(format!("{}", j.verdict))
                    .size(28.0)
                    .strong()
                    .color(verdict_color(j.verdict)),
            );
            let base = m.baseline.unwrap_or(Color::Blue);
            ui.label(format!(
                "candidate {} vs baseline {} · {} · judged on {}",
                base.other(),
                base,
                m.window,
                m.policy.metric.describe()
            ));
            if let Some(seq) = &m.sequential {
                ui.label(
                    RichText::new(format!("live (anytime-valid): {}", seq.verdict))
                        .color(verdict_color(seq.verdict)),
                );
            }
            egui::Grid::new("verdict-stats")
                .num_columns(3)
                .striped(true)
                .show(ui, |ui| {
                    ui.label("");
                    ui.label(color_text(Color::Blue));
                    ui.label(color_text(Color::Green));
                    ui.end_row();
                    ui.label("requests");
                    ui.label(m.blue.requests.to_string());
                    ui.label(m.green.requests.to_string());
                    ui.end_row();
                    ui.label("error rate");
                    ui.label(format!("{:.3}%", m.blue.error_rate() * 100.0));
                    ui.label(format!("{:.3}%", m.green.error_rate() * 100.0));
                    ui.end_row();
                    for (i, name) in ["p50", "p90", "p99", "p99.9", "max"].iter().enumerate() {
                        ui.label(*name);
                        ui.label(format!("{:.2} ms", m.blue.quantiles_ms[i]));
                        ui.label(format!("{:.2} ms", m.green.quantiles_ms[i]));
                        ui.end_row();
                    }
                    // Time to first byte (a stream's first event) beside the latency.
                    for (i, name) in ["TTFB p50", "TTFB p90", "TTFB p99"].iter().enumerate() {
                        ui.label(*name);
                        ui.label(format!("{:.2} ms", m.blue.ttfb_quantiles_ms[i]));
                        ui.label(format!("{:.2} ms", m.green.ttfb_quantiles_ms[i]));
                        ui.end_row();
                    }
                    if m.blue.events_per_s.is_some() || m.green.events_per_s.is_some() {
                        let rate = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.1}"));
                        ui.label("events/s p50");
                        ui.label(rate(m.blue.events_per_s));
                        ui.label(rate(m.green.events_per_s));
                        ui.end_row();
                    }
                });
            if let Some(l) = &j.latency {
                ui.label(format!(
                    "shift {:+.3} ms ({:+.1}%), CI {:+.3}..{:+.3} ms",
                    l.shift_ms.estimate,
                    l.relative_shift * 100.0,
                    l.shift_ms.ci_low,
                    l.shift_ms.ci_high
                ));
            }
            for d in &j.percentiles {
                ui.label(format!(
                    "p{} delta {:+.3} ms (CI {:+.3}..{:+.3})",
                    d.q * 100.0,
                    d.delta,
                    d.ci_low,
                    d.ci_high
                ));
            }
            egui::CollapsingHeader::new("Reasons")
                .default_open(true)
                .show(ui, |ui| {
                    for r in &j.reasons {
                        ui.label(RichText::new(r).small());
                    }
                });
        }
    }
    egui::CollapsingHeader::new("Policy")
        .default_open(false)
        .show(ui, |ui| {
            let p = &mut s.settings.policy;
            egui::Grid::new("policy-grid")
                .num_columns(2)
                .show(ui, |ui| {
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
                            for m in greenlight_verdict::Metric::ALL {
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
                });
            if ui.button("Save settings").clicked() {
                out.push(Action::SaveSettings);
            }
        });
}

/// Requests per color and convergence after the last change, per location.
fn locations_panel(ui: &mut Ui, l: &greenlight_engine::locations::LocationSummary) {
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
            let n = |c: greenlight_engine::histogram::SeenColor| {
                loc.requests.get(&c).copied().unwrap_or(0).to_string()
            };
            ui.label(name);
            ui.label(n(greenlight_engine::histogram::SeenColor::Blue));
            ui.label(n(greenlight_engine::histogram::SeenColor::Green));
            let epochs: Vec<String> = loc.epochs.iter().map(u64::to_string).collect();
            ui.label(epochs.join(","));
            let c = loc.convergence.last();
            ui.label(secs(c.and_then(|c| c.new_first_seen_s)));
            ui.label(secs(c.and_then(|c| c.old_last_seen_s)));
            ui.end_row();
        }
    });
}

fn audit_panel(ui: &mut Ui, s: &AppState) {
    ui.heading("Audit log");
    if let Some(p) = &s.audit_path {
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
                    for e in s.audit.iter().rev().take(200) {
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
                            crate::audit::Outcome::Ok => GREEN,
                            crate::audit::Outcome::Info => ui.visuals().weak_text_color(),
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

fn series_line<'a>(name: &str, pts: &'a [PlotPoint], color: Color32, style: LineStyle) -> Line<'a> {
    Line::new(name.to_string(), pts)
        .color(color)
        .style(style)
        .width(1.5)
}

fn charts(ui: &mut Ui, m: Option<&MetricsView>) {
    let empty = MetricsView::default();
    let m = m.unwrap_or(&empty);
    // Leave room for the titles and the x-axis labels of both rows.
    let h = ((ui.available_height() - 80.0) / 2.0).max(120.0);
    let w = ((ui.available_width() - 12.0) / 2.0).max(200.0);
    egui::Grid::new("charts")
        .num_columns(2)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            ui.vertical(|ui| {
                ui.label("Requests/s per color");
                Plot::new("rps")
                    .width(w)
                    .height(h)
                    .legend(Legend::default().position(Corner::LeftTop))
                    .x_axis_label("s")
                    .include_y(0.0)
                    .show(ui, |p| {
                        p.line(series_line("blue rps", &m.blue.rps, BLUE, LineStyle::Solid));
                        p.line(series_line(
                            "green rps",
                            &m.green.rps,
                            GREEN,
                            LineStyle::Solid,
                        ));
                    });
            });
            ui.vertical(|ui| {
                ui.label("Latency p50 / p99 and TTFB p50 over time (ms)");
                Plot::new("latency")
                    .width(w)
                    .height(h)
                    .legend(Legend::default().position(Corner::LeftTop))
                    .x_axis_label("s")
                    .include_y(0.0)
                    .show(ui, |p| {
                        p.line(series_line(
                            "blue p50",
                            &m.blue.p50_ms,
                            BLUE,
                            LineStyle::Solid,
                        ));
                        p.line(series_line(
                            "blue p99",
                            &m.blue.p99_ms,
                            BLUE,
                            LineStyle::dashed_loose(),
                        ));
                        p.line(series_line(
                            "green p50",
                            &m.green.p50_ms,
                            GREEN,
                            LineStyle::Solid,
                        ));
                        p.line(series_line(
                            "green p99",
                            &m.green.p99_ms,
                            GREEN,
                            LineStyle::dashed_loose(),
                        ));
                        p.line(series_line(
                            "blue TTFB p50",
                            &m.blue.ttfb_p50_ms,
                            BLUE,
                            LineStyle::dotted_dense(),
                        ));
                        p.line(series_line(
                            "green TTFB p50",
                            &m.green.ttfb_p50_ms,
                            GREEN,
                            LineStyle::dotted_dense(),
                        ));
                    });
            });
            ui.end_row();
            ui.vertical(|ui| {
                ui.label("Latency by percentile (ms)");
                Plot::new("distribution")
                    .width(w)
                    .height(h)
                    .legend(Legend::default().position(Corner::LeftTop))
                    .include_x(0.0)
                    .include_x(MAX_NINES)
                    .include_y(0.0)
                    .x_grid_spacer(|_| {
                        (0..=MAX_NINES as i32)
                            .map(|i| GridMark {
                                value: f64::from(i),
                                step_size: 1.0,
                            })
                            .collect()
                    })
                    // One label per nine (0 %, 90 %, 99 %, ...). egui_plot hides
                    // x labels closer than 60 points by default: once data
                    // arrives the y labels widen, the plot narrows and the
                    // six labels fell under that; they only need to fit.
                    .custom_x_axes(vec![AxisHints::new_x()
                        .formatter(|mark, _| nines_label(mark.value))
                        .label_spacing(12.0..=20.0)])
                    .label_formatter(|hp| {
                        let (name, p) = match hp {
                            egui_plot::HoverPosition::NearDataPoint {
                                plot_name,
                                position,
                                ..
                            } => (*plot_name, *position),
                            egui_plot::HoverPosition::Elsewhere { position } => ("", *position),
                        };
                        Some(format!("{name}\n{}: {:.2} ms", nines_label(p.x), p.y))
                    })
                    .show(ui, |p| {
                        p.line(series_line(
                            "blue",
                            &m.blue.distribution,
                            BLUE,
                            LineStyle::Solid,
                        ));
                        p.line(series_line(
                            "green",
                            &m.green.distribution,
                            GREEN,
                            LineStyle::Solid,
                        ));
                    });
            });
            ui.vertical(|ui| {
                ui.label("Error rate per color (%)");
                Plot::new("errors")
                    .width(w)
                    .height(h)
                    .legend(Legend::default().position(Corner::LeftTop))
                    .x_axis_label("s")
                    .include_y(0.0)
                    .include_y(1.0)
                    .show(ui, |p| {
                        p.line(series_line(
                            "blue errors %",
                            &m.blue.error_pct,
                            BLUE,
                            LineStyle::Solid,
                        ));
                        p.line(series_line(
                            "green errors %",
                            &m.green.error_pct,
                            GREEN,
                            LineStyle::Solid,
                        ));
                    });
            });
            ui.end_row();
        });
}

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

/// One labelled row of a two-column grid: the label names the field for
/// screen readers and kittest (`labelled_by`).
fn grid_drag(ui: &mut egui::Ui, label: &str, value: egui::DragValue<'_>) {
    let l = ui.label(label);
    ui.add(value).labelled_by(l.id);
    ui.end_row();
}

#[cfg(test)]
mod tests {
    use super::rollout_progress;
    use crate::rollout::{Finish, RolloutStatus};
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
