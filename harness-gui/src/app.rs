//! The dashboard's state and its transitions, without egui: [`AppState::apply`]
//! folds worker [`Event`]s in, [`AppState::handle`] turns the operator's
//! [`Action`]s into worker [`Request`]s. The `ui` module only draws this
//! state and emits actions, so all behaviour here is unit-tested.

use crate::backend::{EdgePlanOp, Event, LoadRequest, LoadStatus, ManualOp, Request};
use crate::metrics::MetricsView;
use crate::settings::Settings;
use greenlight_common::admin::StateView;
use greenlight_common::history::HistoryView;
use greenlight_common::plan::{OnFailure, PlanSpec, PlanStatus};
use greenlight_common::rollout::Phase;
use greenlight_engine::admin_client::{plan_from_flags, AdminError, AdminOptions};
use greenlight_engine::sampling::PreviewCredential;
use rollout::audit::AuditEntry;
use rollout::synthetic::Sampling;
use rollout::{format_steps, parse_steps, Finish, RolloutStatus, UserCmd};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Audit entries kept for the panel (the file keeps everything).
pub const AUDIT_KEEP: usize = 2000;
/// Longest load run the dashboard starts (Stop ends it earlier).
pub const MAX_LOAD: Duration = Duration::from_secs(4 * 3600);

/// Can the dashboard talk to the edge?
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    Unknown,
    Ok,
    Unreachable(String),
    Unauthorized(String),
    /// Reachable but answering something unexpected.
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// A one-line message under the title bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
}

/// A change waiting for the operator's confirmation.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub op: ManualOp,
    pub expected_epoch: u64,
    /// The plan a start at the edge would start.
    pub plan: Option<PlanSpec>,
    /// What will happen, in words.
    pub text: String,
}

/// Everything the operator can do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Refresh,
    /// Opens the confirmation for a change.
    Ask(ManualOp),
    Confirm,
    Cancel,
    StartLoad,
    StopLoad,
    ApplyRate,
    StartRollout,
    PauseRollout,
    ResumeRollout,
    AbortRollout,
    /// Edge URL / token variable / actor changed: reconnect and save.
    ApplyConnection,
    /// Policy, steps, dwell changed: validate and save.
    SaveSettings,
    DismissNotice,
}

pub struct AppState {
    pub settings: Settings,
    /// Where settings are saved (`None`: not persisted, e.g. in tests).
    pub settings_path: Option<PathBuf>,
    /// Resolved admin token (from the environment; never written anywhere).
    pub token: Option<String>,
    /// A preview credential given at start-up (never written anywhere);
    /// `None`: read from the environment variables the settings name when
    /// the load starts.
    pub preview: Option<PreviewCredential>,
    pub audit_path: Option<PathBuf>,
    pub view: Option<StateView>,
    pub reach: Reach,
    pub refreshed: Option<Instant>,
    pub notice: Option<Notice>,
    pub metrics: Option<Arc<MetricsView>>,
    pub load: LoadStatus,
    pub rollout: Option<RolloutStatus>,
    pub audit: VecDeque<AuditEntry>,
    /// The edge's own history of committed changes (newest first).
    pub history: Option<HistoryView>,
    /// Real users' answers as the edge counted them.
    pub real_users: Option<greenlight_common::telemetry::MetricsView>,
    /// A Workers edge's read replicas (`None`: the edge has none).
    pub replicas: Option<greenlight_common::propagation::ReplicasView>,
    pub confirm: Option<Confirm>,
    /// A manual change is in flight (buttons disabled until it answers).
    pub in_flight: Option<ManualOp>,
    // Form fields bound to widgets.
    pub weight_input: f64,
    pub reason: String,
    pub steps_text: String,
    /// TLS trust for the admin API and the load (from the command line).
    pub admin_options: AdminOptions,
}

impl AppState {
    pub fn new(
        settings: Settings,
        settings_path: Option<PathBuf>,
        token: Option<String>,
    ) -> AppState {
        let steps_text = format_steps(&settings.steps);
        AppState {
            settings,
            settings_path,
            token,
            preview: None,
            audit_path: None,
            view: None,
            reach: Reach::Unknown,
            refreshed: None,
            notice: None,
            metrics: None,
            load: LoadStatus::default(),
            rollout: None,
            audit: VecDeque::new(),
            history: None,
            real_users: None,
            replicas: None,
            confirm: None,
            in_flight: None,
            weight_input: 5.0,
            reason: String::new(),
            steps_text,
            admin_options: AdminOptions::default(),
        }
    }

    /// The requests that configure a fresh worker.
    pub fn initial_requests(&self) -> Vec<Request> {
        vec![
            Request::Connect {
                edge: self.settings.edge_url.clone(),
                token: self.token.clone(),
                actor: self.settings.actor.clone(),
                options: self.admin_options.clone(),
            },
            Request::SetPolicy(self.settings.policy.clone()),
        ]
    }

    fn notice(&mut self, level: Level, text: impl Into<String>) {
        self.notice = Some(Notice {
            level,
            text: text.into(),
        });
    }

    pub fn rollout_running(&self) -> bool {
        self.rollout.as_ref().is_some_and(|r| r.finished.is_none())
    }

    fn rollout_paused(&self) -> bool {
        self.rollout.as_ref().is_some_and(|r| r.paused)
    }

    /// Whether a manual change may be offered now (edge up, state known,
    /// allowed by the state machine, nothing in flight; Promote and weight
    /// changes wait while an automated rollout is in charge, Rollback never does).
    pub fn can(&self, op: ManualOp) -> bool {
        let Some(v) = &self.view else { return false };
        if self.reach != Reach::Ok || self.in_flight.is_some() {
            return false;
        }
        let auto = self.rollout_running() && !self.rollout_paused();
        match op {
            ManualOp::Promote => v.allowed.promote && !auto,
            ManualOp::Rollback => v.allowed.rollback,
            ManualOp::Abort => v.allowed.abort && !auto,
            ManualOp::Weight(p) => {
                v.allowed.set_weight
                    && !auto
                    && (0.0..=100.0).contains(&p)
                    && (p * 100.0).round() as u16 != v.state.candidate_weight_bp
            }
            ManualOp::EdgePlan(plan_op) => {
                let status = v.state.plan_in_progress().map(|run| &run.status);
                match plan_op {
                    EdgePlanOp::Start => status.is_none() && !self.rollout_running(),
                    EdgePlanOp::Pause => status == Some(&PlanStatus::Running),
                    EdgePlanOp::Resume => {
                        matches!(status, Some(PlanStatus::Paused | PlanStatus::Held { .. }))
                    }
                    EdgePlanOp::Abort => status.is_some(),
                }
            }
        }
    }

    /// The plan the rollout panel describes, run at the edge: its steps
    /// and dwell, rolled back when the candidate turns unhealthy.
    fn edge_plan(&mut self) -> Option<PlanSpec> {
        if !self.store_steps_text() {
            return None;
        }
        let dwell = Duration::from_secs(self.settings.dwell_s);
        match plan_from_flags(&self.settings.steps, dwell, OnFailure::Rollback, None) {
            Ok(spec) => Some(spec),
            Err(e) => {
                self.notice(Level::Error, format!("the plan: {e}"));
                None
            }
        }
    }

    pub fn can_start_rollout(&self) -> bool {
        self.reach == Reach::Ok
            && self.view.is_some()
            && !self.rollout_running()
            && self.in_flight.is_none()
    }

    fn reason_or(&self, default: &str) -> String {
        let r = self.reason.trim();
        if r.is_empty() {
            default.to_string()
        } else {
            r.to_string()
        }
    }

    /// Turns an action into requests for the worker.
    pub fn handle(&mut self, a: Action) -> Vec<Request> {
        match a {
            Action::Refresh => vec![Request::Refresh],
            Action::Ask(op) => {
                self.ask(op);
                vec![]
            }
            Action::Cancel => {
                self.confirm = None;
                vec![]
            }
            Action::Confirm => self.confirmed().into_iter().collect(),
            Action::StartLoad => vec![Request::StartLoad(self.load_request())],
            Action::StopLoad => vec![Request::StopLoad],
            Action::ApplyRate => vec![Request::SetRate(self.settings.load.rate)],
            Action::StartRollout => self.start_rollout().into_iter().collect(),
            Action::PauseRollout => vec![Request::Rollout(UserCmd::Pause)],
            Action::ResumeRollout => vec![Request::Rollout(UserCmd::Resume)],
            Action::AbortRollout => vec![Request::Rollout(UserCmd::Abort)],
            Action::ApplyConnection => self.apply_connection(),
            Action::SaveSettings => self.save_settings().into_iter().collect(),
            Action::DismissNotice => {
                self.notice = None;
                vec![]
            }
        }
    }

    /// Opens the confirmation for `op`, or says why it is not possible.
    fn ask(&mut self, op: ManualOp) {
        if !self.can(op) {
            self.notice(
                Level::Warning,
                format!("{} is not possible right now", op.name()),
            );
            return;
        }
        let plan = match op {
            ManualOp::EdgePlan(EdgePlanOp::Start) => match self.edge_plan() {
                Some(plan) => Some(plan),
                None => return,
            },
            _ => None,
        };
        if let Some(v) = &self.view {
            let mut text = describe_change(op, v);
            if let Some(plan) = &plan {
                text.push_str(&format!(
                    " Steps {}, {} s each; the edge rolls back by itself if {} turns unhealthy, whoever is watching.",
                    format_steps(&self.settings.steps),
                    plan.dwell_ms / 1_000,
                    v.state.candidate
                ));
            }
            self.confirm = Some(Confirm {
                op,
                expected_epoch: v.state.epoch,
                plan,
                text,
            });
        }
    }

    /// The change the operator just confirmed, if one was waiting.
    fn confirmed(&mut self) -> Option<Request> {
        let c = self.confirm.take()?;
        self.in_flight = Some(c.op);
        let reason = self.reason_or(&format!("{} from the dashboard", c.op.name()));
        Some(Request::Change {
            op: c.op,
            expected_epoch: c.expected_epoch,
            reason,
            plan: c.plan,
        })
    }

    /// The load the settings describe.
    fn load_request(&self) -> LoadRequest {
        let l = &self.settings.load;
        let scenario = l.scenario.trim();
        LoadRequest {
            url: l.target_url.trim().to_string(),
            rate: l.rate,
            users: l.users,
            scenario: (!scenario.is_empty()).then(|| PathBuf::from(scenario)),
            duration: MAX_LOAD,
            preview: match &self.preview {
                Some(c) => Ok(c.clone()),
                None => self.settings.resolve_preview(),
            },
            weighted_share: l.weighted_share,
            tls: self.admin_options.tls.clone(),
        }
    }

    /// Validates and saves the rollout plan, then starts it.
    fn start_rollout(&mut self) -> Option<Request> {
        if !self.can_start_rollout() {
            self.notice(
                Level::Warning,
                "a rollout cannot start now (edge unreachable or one is running)",
            );
            return None;
        }
        if !self.store_steps_text() {
            return None;
        }
        match self.settings.rollout_plan() {
            Ok(plan) => {
                self.save();
                if !self.load.running {
                    self.notice(
                        Level::Warning,
                        "no load is running: the analysis has no evidence (start load first)",
                    );
                }
                Some(Request::StartRollout(plan))
            }
            Err(e) => {
                self.notice(Level::Error, format!("rollout plan: {e}"));
                None
            }
        }
    }

    /// Puts the steps typed in into the settings (true), or says what is
    /// wrong with them (false).
    fn store_steps_text(&mut self) -> bool {
        match parse_steps(&self.steps_text) {
            Ok(s) => {
                self.settings.steps = s;
                true
            }
            Err(e) => {
                self.notice(Level::Error, format!("steps: {e}"));
                false
            }
        }
    }

    /// Reconnects with the edge URL, token variable and actor the operator set.
    fn apply_connection(&mut self) -> Vec<Request> {
        self.token = self.settings.resolve_token();
        self.view = None;
        self.reach = Reach::Unknown;
        self.save();
        if self.token.is_none() {
            self.notice(
                Level::Warning,
                format!(
                    "${} is not set: admin calls will be refused",
                    self.settings.token_env
                ),
            );
        }
        self.initial_requests()
    }

    /// Validates and saves policy, steps and dwell; the worker gets the policy.
    fn save_settings(&mut self) -> Option<Request> {
        if !self.store_steps_text() {
            return None;
        }
        if let Err(e) = self.settings.validate() {
            self.notice(Level::Error, e);
            return None;
        }
        self.save();
        Some(Request::SetPolicy(self.settings.policy.clone()))
    }

    fn save(&mut self) {
        if let Some(p) = &self.settings_path {
            if let Err(e) = self.settings.save(p) {
                self.notice(
                    Level::Error,
                    format!("cannot save settings to {}: {e}", p.display()),
                );
            }
        }
    }

    fn error_reach(e: &AdminError) -> Reach {
        match e {
            AdminError::Transport(m) => Reach::Unreachable(m.clone()),
            AdminError::Unauthorized { status, detail } => {
                Reach::Unauthorized(format!("{status}: {detail}"))
            }
            other => Reach::Error(other.to_string()),
        }
    }

    /// Folds a worker event into the state.
    pub fn apply(&mut self, e: Event) {
        match e {
            Event::State(Ok(v)) => self.apply_state(v),
            Event::State(Err(e)) => {
                self.reach = Self::error_reach(&e);
            }
            Event::Changed { op, result } => self.apply_changed(op, result),
            Event::Audit(a) => {
                self.audit.push_back(a);
                while self.audit.len() > AUDIT_KEEP {
                    self.audit.pop_front();
                }
            }
            Event::History(h) => self.history = Some(h),
            Event::RealUsers(m) => self.real_users = Some(m),
            Event::Replicas(r) => self.replicas = Some(r),
            Event::Metrics(m) => self.metrics = Some(m),
            Event::Load(l) => {
                if let Some(m) = &l.message {
                    let level = if m.starts_with("load failed") || !m.starts_with("stopped") {
                        Level::Error
                    } else {
                        Level::Info
                    };
                    self.notice(level, format!("load: {m}"));
                }
                // Said once, when the load starts without comparison traffic.
                if let (true, Some(sampling @ Sampling::Weighted { .. })) =
                    (l.running && !self.load.running, &l.sampling)
                {
                    self.notice(Level::Warning, format!("load: {}", sampling.describe()));
                }
                self.load = l;
            }
            Event::Rollout(r) => {
                if let Some(f) = &r.finished {
                    if self
                        .rollout
                        .as_ref()
                        .is_none_or(|old| old.finished.is_none())
                    {
                        let level = match f {
                            Finish::Promoted { .. } => Level::Info,
                            _ => Level::Warning,
                        };
                        self.notice(level, format!("automated rollout {}", f.describe()));
                    }
                }
                self.rollout = Some(r);
            }
            Event::Error(m) => self.notice(Level::Error, m),
        }
    }

    /// A state read: announces changes made elsewhere and withdraws a
    /// confirmation the change made stale.
    fn apply_state(&mut self, v: StateView) {
        if let Some(old) = &self.view {
            if v.state.epoch != old.state.epoch
                && v.state.last_change.actor != self.settings.actor
                && self.in_flight.is_none()
                && !self.rollout_running()
                && self.notice.as_ref().is_none_or(|n| n.level == Level::Info)
            {
                let lc = &v.state.last_change;
                self.notice(
                    Level::Info,
                    format!(
                        "changed elsewhere: {} by {} ({:?}), epoch {} -> {}",
                        lc.op, lc.actor, lc.reason, old.state.epoch, v.state.epoch
                    ),
                );
            }
        }
        if self
            .confirm
            .as_ref()
            .is_some_and(|c| c.expected_epoch != v.state.epoch)
        {
            self.confirm = None;
            self.notice(
                Level::Warning,
                "the state changed while you were confirming; review it and try again",
            );
        }
        self.view = Some(v);
        self.reach = Reach::Ok;
        self.refreshed = Some(Instant::now());
    }

    /// The answer to a manual change.
    fn apply_changed(&mut self, op: ManualOp, result: Result<StateView, AdminError>) {
        self.in_flight = None;
        match result {
            Ok(v) => {
                self.notice(
                    Level::Info,
                    format!("{} done: epoch {}", op.name(), v.state.epoch),
                );
                self.view = Some(v);
                self.reach = Reach::Ok;
            }
            Err(AdminError::Conflict(p)) => {
                let at = p
                    .current_epoch
                    .map(|e| format!(" (now at epoch {e})"))
                    .unwrap_or_default();
                self.notice(
                    Level::Warning,
                    format!(
                        "409 conflict: {} was refused because the rollout changed elsewhere{at}; the state was refreshed: review it and retry. ({})",
                        op.name(),
                        p.detail
                    ),
                );
            }
            Err(e) => {
                self.reach = Self::error_reach(&e);
                self.notice(Level::Error, format!("{} failed: {e}", op.name()));
            }
        }
    }
}

/// What a change will do, in words, for the confirmation dialog.
pub fn describe_change(op: ManualOp, v: &StateView) -> String {
    let s = &v.state;
    let (active, cand) = (s.active, s.candidate);
    let w = s.candidate_percent();
    let epoch = format!(
        "The rollout moves from epoch {} to {}.",
        s.epoch,
        s.epoch + 1
    );
    match op {
        ManualOp::Promote => format!(
            "Promote {cand}: {cand} becomes the active color and receives 100% of users at once (it has {w}% now). \
             {active} stops receiving traffic and is kept as the instant rollback target. {epoch}"
        ),
        ManualOp::Rollback => match v.phase {
            Phase::Canary => format!(
                "Roll back the canary: {cand}'s share drops from {w}% to 0% and every user returns to {active}. {epoch}"
            ),
            _ => {
                let target = s.rollback_target.unwrap_or(cand);
                format!(
                    "Roll back the promotion: {target} becomes the active color again for 100% of users and {active} stops receiving traffic. {epoch}"
                )
            }
        },
        ManualOp::Abort => format!(
            "Abort the canary: {cand}'s share drops from {w}% to 0%; {active} serves everyone. {epoch}"
        ),
        ManualOp::Weight(p) => {
            let direction = if p > w { "more" } else { "fewer" };
            format!(
                "Set {cand}'s share from {w}% to {p}%: {direction} users (sticky per identity) go to {cand}, the rest stay on {active}. {epoch}"
            )
        }
        ManualOp::EdgePlan(EdgePlanOp::Start) => format!(
            "Start a rollout plan held at the edge: {cand} goes through its steps and is promoted at the end. {epoch}"
        ),
        ManualOp::EdgePlan(EdgePlanOp::Pause) => format!(
            "Pause the edge's plan: {cand} stays at {w}% and no step is judged until it is resumed. {epoch}"
        ),
        ManualOp::EdgePlan(EdgePlanOp::Resume) => format!(
            "Resume the edge's plan: the step in force ({w}% on {cand}) dwells again in full, then goes on. {epoch}"
        ),
        ManualOp::EdgePlan(EdgePlanOp::Abort) => format!(
            "Abort the edge's plan: it ends, and {cand}'s share drops from {w}% to 0%. {epoch}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_common::admin::Problem;
    use greenlight_common::rollout::{ChangeMeta, RolloutOp};
    use greenlight_common::RolloutState;

    fn view(ops: &[RolloutOp]) -> StateView {
        let mut s = RolloutState::initial("x");
        for op in ops {
            let meta = ChangeMeta {
                actor: "someone".into(),
                at_ms: 1,
                reason: "r".into(),
            };
            s = s.apply(*op, s.epoch, meta).unwrap();
        }
        StateView::of(s, false)
    }

    fn app() -> AppState {
        let mut a = AppState::new(Settings::default(), None, Some("t".into()));
        a.apply(Event::State(Ok(view(&[]))));
        a
    }

    #[test]
    fn buttons_follow_allowed_ops_and_reachability() {
        let mut a = app();
        assert!(a.can(ManualOp::Promote) && !a.can(ManualOp::Rollback) && !a.can(ManualOp::Abort));
        assert!(a.can(ManualOp::Weight(5.0)) && !a.can(ManualOp::Weight(0.0)));
        a.apply(Event::State(Ok(view(&[RolloutOp::SetWeight {
            weight_bp: 500,
        }]))));
        assert!(
            a.can(ManualOp::Rollback) && a.can(ManualOp::Abort) && !a.can(ManualOp::Weight(5.0))
        );
        a.apply(Event::State(Ok(view(&[RolloutOp::Promote]))));
        assert!(!a.can(ManualOp::Promote) && a.can(ManualOp::Rollback));
        a.apply(Event::State(Err(AdminError::Transport(
            "connection refused".into(),
        ))));
        assert_eq!(a.reach, Reach::Unreachable("connection refused".into()));
        assert!(!a.can(ManualOp::Rollback));
        assert!(a.handle(Action::Ask(ManualOp::Rollback)).is_empty());
        assert!(a.confirm.is_none());
    }

    #[test]
    fn confirmation_then_change_then_conflict() {
        let mut a = app();
        assert!(a.handle(Action::Ask(ManualOp::Promote)).is_empty());
        let c = a.confirm.clone().unwrap();
        assert!(
            c.text.contains("green becomes the active color") && c.text.contains("epoch 0 to 1"),
            "{}",
            c.text
        );
        let reqs = a.handle(Action::Confirm);
        assert!(matches!(
            &reqs[..],
            [Request::Change {
                op: ManualOp::Promote,
                expected_epoch: 0,
                ..
            }]
        ));
        assert!(!a.can(ManualOp::Rollback), "disabled while in flight");
        a.apply(Event::Changed {
            op: ManualOp::Promote,
            result: Err(AdminError::Conflict(Problem {
                current_epoch: Some(3),
                ..Problem::new(409, "stale-epoch", "stale epoch", "stale epoch: you sent 0")
            })),
        });
        let n = a.notice.clone().unwrap();
        assert_eq!(n.level, Level::Warning);
        assert!(
            n.text.contains("409")
                && n.text.contains("now at epoch 3")
                && n.text.contains("refreshed")
        );
        assert!(a.in_flight.is_none());
        // Cancel drops the confirmation without a request.
        a.handle(Action::Ask(ManualOp::Promote));
        assert!(a.handle(Action::Cancel).is_empty() && a.confirm.is_none());
    }

    #[test]
    fn a_plan_at_the_edge_is_started_and_controlled_from_the_panel() {
        let mut a = app();
        let start = ManualOp::EdgePlan(EdgePlanOp::Start);
        let pause = ManualOp::EdgePlan(EdgePlanOp::Pause);
        assert!(a.can(start) && !a.can(pause));
        a.steps_text = "10, 50".into();
        a.settings.dwell_s = 30;
        a.handle(Action::Ask(start));
        let c = a.confirm.clone().unwrap();
        assert!(c.text.contains("Steps 10, 50"), "{}", c.text);
        let reqs = a.handle(Action::Confirm);
        let [Request::Change {
            op,
            plan: Some(plan),
            ..
        }] = &reqs[..]
        else {
            panic!("{reqs:?}");
        };
        assert_eq!(*op, start);
        assert_eq!(
            (plan.steps_bp.clone(), plan.dwell_ms),
            (vec![1_000, 5_000], 30_000)
        );
        // The edge shows it running: it may be paused or aborted, not started again.
        let started = RolloutState::initial("x")
            .start_plan(
                plan.clone(),
                0,
                ChangeMeta {
                    actor: "me".into(),
                    at_ms: 1,
                    reason: String::new(),
                },
            )
            .unwrap();
        a.in_flight = None;
        a.apply(Event::State(Ok(StateView::of(started, false))));
        assert!(!a.can(start) && a.can(pause));
        assert!(a.can(ManualOp::EdgePlan(EdgePlanOp::Abort)));
        assert!(!a.can(ManualOp::EdgePlan(EdgePlanOp::Resume)));
        // Steps that cannot make a plan are refused with the reason.
        a.apply(Event::State(Ok(view(&[]))));
        a.steps_text = "50, 10".into();
        a.handle(Action::Ask(start));
        assert!(a.confirm.is_none());
        assert!(
            a.notice.as_ref().is_some_and(|n| n.text.contains("step")),
            "{:?}",
            a.notice
        );
    }

    #[test]
    fn unauthorized_is_a_banner_not_a_crash() {
        let mut a = app();
        a.handle(Action::Ask(ManualOp::Weight(10.0)));
        a.handle(Action::Confirm);
        a.apply(Event::Changed {
            op: ManualOp::Weight(10.0),
            result: Err(AdminError::Unauthorized {
                status: 401,
                detail: "bad token".into(),
            }),
        });
        assert!(matches!(&a.reach, Reach::Unauthorized(m) if m.contains("401")));
        assert_eq!(a.notice.as_ref().unwrap().level, Level::Error);
    }

    #[test]
    fn changes_made_elsewhere_are_announced() {
        let mut a = app();
        a.apply(Event::State(Ok(view(&[RolloutOp::SetWeight {
            weight_bp: 1000,
        }]))));
        let n = a.notice.clone().unwrap();
        assert!(
            n.text.contains("changed elsewhere: set_weight by someone"),
            "{}",
            n.text
        );
    }

    #[test]
    fn a_stale_confirmation_is_withdrawn() {
        let mut a = app();
        a.handle(Action::Ask(ManualOp::Promote));
        a.apply(Event::State(Ok(view(&[RolloutOp::SetWeight {
            weight_bp: 1000,
        }]))));
        assert!(a.confirm.is_none());
        assert!(a
            .notice
            .unwrap()
            .text
            .contains("changed while you were confirming"));
    }

    #[test]
    fn rollout_start_validates_steps() {
        let mut a = app();
        a.steps_text = "5, 1".into();
        assert!(a.handle(Action::StartRollout).is_empty());
        assert!(a.notice.clone().unwrap().text.contains("increasing"));
        a.steps_text = "1 → 10 → 100".into();
        let r = a.handle(Action::StartRollout);
        assert!(matches!(&r[..], [Request::StartRollout(p)] if p.steps == vec![1.0, 10.0, 100.0]));
        assert!(a
            .notice
            .clone()
            .unwrap()
            .text
            .contains("no load is running"));
    }

    #[test]
    fn describes_every_change() {
        let stable = view(&[]);
        assert!(
            describe_change(ManualOp::Weight(5.0), &stable).contains("green's share from 0% to 5%")
        );
        let canary = view(&[RolloutOp::SetWeight { weight_bp: 2500 }]);
        assert!(describe_change(ManualOp::Rollback, &canary).contains("drops from 25% to 0%"));
        assert!(describe_change(ManualOp::Abort, &canary).contains("Abort the canary"));
        let promoted = view(&[RolloutOp::Promote]);
        let t = describe_change(ManualOp::Rollback, &promoted);
        assert!(
            t.contains("blue becomes the active color again") && t.contains("green stops"),
            "{t}"
        );
    }

    #[test]
    fn settings_are_saved_on_connection_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut a = AppState::new(Settings::default(), Some(path.clone()), None);
        a.settings.edge_url = "http://127.0.0.1:1".into();
        a.settings.token_env = "GREENLIGHT_TEST_SURELY_UNSET_VAR".into();
        let reqs = a.handle(Action::ApplyConnection);
        assert!(
            matches!(&reqs[0], Request::Connect { edge, token: None, .. } if edge == "http://127.0.0.1:1")
        );
        assert!(a.notice.clone().unwrap().text.contains("is not set"));
        assert_eq!(Settings::load(&path).0.edge_url, "http://127.0.0.1:1");
    }
}
