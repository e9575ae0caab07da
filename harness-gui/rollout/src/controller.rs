//! The rollout state machine: steps → dwell → analysis → next step,
//! promotion at the end, automatic rollback on `Fail`; Pause, Resume, Abort.
//!
//! It never does I/O and never reads the clock: the driver feeds it the
//! time, the state it read and the results of the commands it asked for, so
//! every transition is unit-tested.

use crate::command::Command;
use crate::plan::{OnInconclusive, RolloutPlan};
use greenlight_common::admin::StateView;
use greenlight_common::Color;
use greenlight_engine::admin_client::AdminError;
use greenlight_verdict::{Judgement, Verdict};
use std::time::Duration;

/// Which analysis the controller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analysis {
    /// A look during the dwell: anytime-valid (sequential) analysis, which
    /// may stop the rollout early on clear evidence of a regression.
    Live,
    /// The end of a step's dwell: fixed-horizon analysis of the evidence.
    EndOfStep,
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// The candidate became active.
    Promoted { epoch: u64 },
    /// The analysis failed (or an inconclusive result was treated as one) and
    /// the candidate was pulled back.
    RolledBack { why: String },
    /// Stopped by the operator (a canary in progress was aborted).
    Aborted,
    /// Someone else changed the rollout, so the automation stopped.
    Interrupted(String),
    /// The edge refused or could not be reached.
    Failed(String),
}

impl Finish {
    pub fn describe(&self) -> String {
        match self {
            Finish::Promoted { epoch } => format!("promoted (epoch {epoch})"),
            Finish::RolledBack { why } => format!("rolled back: {why}"),
            Finish::Aborted => "aborted by the operator".into(),
            Finish::Interrupted(m) => format!("stopped: {m}"),
            Finish::Failed(m) => format!("failed: {m}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum After {
    Dwell(usize),
    Finish(Finish),
}

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    /// Waiting for the first state read.
    Start,
    /// A command is (about to be) in flight.
    Waiting {
        cmd: Command,
        then: After,
        issued: bool,
        retries: u32,
    },
    Dwelling {
        step: usize,
        since: Duration,
        extensions: u32,
    },
    Paused {
        resume: Box<Stage>,
        why: String,
    },
    Done(Finish),
}

/// A summary of the controller for displays.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutStatus {
    /// `starting`, `applying`, `dwelling`, `paused`, `done`.
    pub stage: &'static str,
    /// One line for a status bar.
    pub headline: String,
    pub steps: Vec<f64>,
    /// Index of the current step.
    pub step: Option<usize>,
    /// Index of the last step begun, also once the rollout has ended.
    pub reached: Option<usize>,
    /// Candidate weight last confirmed by the edge.
    pub weight: Option<f64>,
    pub dwell_left: Option<Duration>,
    pub dwell: Duration,
    pub extensions: u32,
    pub last_verdict: Option<Verdict>,
    pub last_reasons: Vec<String>,
    pub finished: Option<Finish>,
    pub paused: bool,
    /// Everything the controller did, oldest first.
    pub log: Vec<String>,
}

/// Transport failures tolerated in a row for one command before giving up.
const MAX_RETRIES: u32 = 5;

/// The rollout state machine.
#[derive(Debug, Clone)]
pub struct Controller {
    plan: RolloutPlan,
    stage: Stage,
    /// The epoch the controller last saw or created.
    epoch: Option<u64>,
    weight: Option<f64>,
    active: Option<Color>,
    last: Option<Judgement>,
    pause_requested: Option<String>,
    abort_requested: bool,
    /// The edge reported the candidate unhealthy (origin failures it
    /// counted itself); the next poll rolls back.
    edge_unhealthy: Option<String>,
    log: Vec<String>,
    now: Duration,
    /// Steps begun so far (the driver starts a step's evidence on a change).
    steps_started: u64,
    /// The last step begun (kept after the end: where a rollback happened).
    reached: Option<usize>,
    /// When the current step began (its evidence's age).
    step_since: Duration,
}

fn pct(p: f64) -> String {
    format!("{p}%")
}

impl Controller {
    pub fn new(plan: RolloutPlan) -> Controller {
        Controller {
            plan,
            stage: Stage::Start,
            epoch: None,
            weight: None,
            active: None,
            last: None,
            pause_requested: None,
            abort_requested: false,
            edge_unhealthy: None,
            log: Vec::new(),
            now: Duration::ZERO,
            steps_started: 0,
            reached: None,
            step_since: Duration::ZERO,
        }
    }

    pub fn plan(&self) -> &RolloutPlan {
        &self.plan
    }

    /// The epoch the controller last saw or created.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// The color the candidate is judged against.
    pub fn active(&self) -> Option<Color> {
        self.active
    }

    pub fn finished(&self) -> Option<&Finish> {
        match &self.stage {
            Stage::Done(f) => Some(f),
            _ => None,
        }
    }

    pub fn is_paused(&self) -> bool {
        matches!(self.stage, Stage::Paused { .. })
    }

    /// How many steps have begun: a new one starts its own evidence.
    pub fn steps_started(&self) -> u64 {
        self.steps_started
    }

    /// Adds a line from outside the state machine (sampling, routing check).
    pub fn remark(&mut self, now: Duration, msg: String) {
        self.now = now;
        self.note(msg);
    }

    fn begin_step(&mut self, step: usize, now: Duration) {
        self.steps_started += 1;
        self.reached = Some(step);
        self.step_since = now;
        self.stage = Stage::Dwelling {
            step,
            since: now,
            extensions: 0,
        };
    }

    fn note(&mut self, msg: String) {
        self.log
            .push(format!("[{:>6.1}s] {msg}", self.now.as_secs_f64()));
    }

    fn finish(&mut self, f: Finish) {
        self.note(f.describe());
        self.stage = Stage::Done(f);
    }

    fn issue(&mut self, cmd: Command, then: After) -> Option<Command> {
        self.note(format!(
            "{} (expecting epoch {})",
            cmd.action(),
            cmd.expected_epoch()
        ));
        self.stage = Stage::Waiting {
            cmd: cmd.clone(),
            then,
            issued: true,
            retries: 0,
        };
        Some(cmd)
    }

    /// Feeds a state read from the edge. A change nobody asked this
    /// controller for stops the automation (someone else is in charge now).
    pub fn observe_state(&mut self, view: &StateView) {
        let s = &view.state;
        match &self.stage {
            Stage::Done(_) | Stage::Waiting { .. } => {}
            Stage::Start => {
                self.epoch = Some(s.epoch);
                self.weight = Some(s.candidate_percent());
                self.active = Some(s.active);
            }
            _ => {
                // The edge's own failure count of the candidate: a rollback
                // reason even when too few requests reached the harness's
                // analysis (the edge sees every caller, the harness only its load).
                if let Some(h) = view.health.as_ref().filter(|h| {
                    h.unhealthy && Some(h.under_test) != self.active && self.epoch == Some(s.epoch)
                }) {
                    self.edge_unhealthy = Some(format!(
                        "the edge reports {} unhealthy: {} failures within its window (last: {})",
                        h.under_test,
                        h.recent_failures,
                        h.last_failure.as_deref().unwrap_or("?")
                    ));
                }
                if let Some(e) = self.epoch {
                    if s.epoch != e {
                        let lc = &s.last_change;
                        self.finish(Finish::Interrupted(format!(
                            "the rollout was changed elsewhere ({} by {}: {:?}; epoch {e} -> {}); the automation stopped",
                            lc.op, lc.actor, lc.reason, s.epoch
                        )));
                    }
                }
            }
        }
    }

    /// Advances the state machine; returns the admin call to make, if any.
    /// `judge` gives the evidence so far for the current candidate.
    pub fn poll(
        &mut self,
        now: Duration,
        judge: &mut dyn FnMut(Analysis) -> Judgement,
    ) -> Option<Command> {
        self.now = now;
        if !matches!(self.stage, Stage::Waiting { .. } | Stage::Done(_)) {
            if self.abort_requested {
                self.abort_requested = false;
                return self.abort_now();
            }
            if let Some(why) = self.pause_requested.take() {
                self.pause(&why);
            }
        }
        match self.stage.clone() {
            Stage::Start => {
                let epoch = self.epoch?;
                let current = self.weight.unwrap_or(0.0);
                // Resume from the current weight: the first step above it, or
                // dwell at a step it already equals.
                if let Some(i) = self
                    .plan
                    .steps
                    .iter()
                    .position(|s| (*s - current).abs() < 1e-9)
                {
                    self.note(format!(
                        "already at {}: dwelling at step {}",
                        pct(current),
                        i + 1
                    ));
                    self.begin_step(i, now);
                    return None;
                }
                let i = self
                    .plan
                    .steps
                    .iter()
                    .position(|s| *s > current)
                    .unwrap_or(0);
                let percent = self.plan.steps[i];
                self.issue(
                    Command::SetWeight {
                        percent,
                        expected_epoch: epoch,
                        reason: format!(
                            "automated rollout step {}/{}",
                            i + 1,
                            self.plan.steps.len()
                        ),
                    },
                    After::Dwell(i),
                )
            }
            Stage::Waiting {
                cmd,
                then,
                issued,
                retries,
            } => {
                if issued {
                    None
                } else {
                    self.stage = Stage::Waiting {
                        cmd: cmd.clone(),
                        then,
                        issued: true,
                        retries,
                    };
                    Some(cmd)
                }
            }
            Stage::Dwelling {
                step,
                since,
                extensions,
            } => self.dwell(now, step, since, extensions, judge),
            Stage::Paused { .. } | Stage::Done(_) => None,
        }
    }

    fn dwell(
        &mut self,
        now: Duration,
        step: usize,
        since: Duration,
        extensions: u32,
        judge: &mut dyn FnMut(Analysis) -> Judgement,
    ) -> Option<Command> {
        let epoch = self.epoch?;
        let n = self.plan.steps.len();
        let at = format!("step {}/{n} ({})", step + 1, pct(self.plan.steps[step]));
        if let Some(why) = self.edge_unhealthy.take() {
            return self.rollback(epoch, format!("{at}: {why}"));
        }
        let live = judge(Analysis::Live);
        let live_fail = live.verdict == Verdict::Fail;
        let live_reasons = live.reasons.clone();
        self.last = Some(live);
        if live_fail {
            let why = format!("{at}: live analysis failed: {}", failing(&live_reasons));
            return self.rollback(epoch, why);
        }
        if now.saturating_sub(since) < self.plan.dwell {
            return None;
        }
        let end = judge(Analysis::EndOfStep);
        let verdict = end.verdict;
        let reasons = end.reasons.clone();
        self.last = Some(end);
        // An undecided analysis says which checks are undecided and why.
        let undecided = if verdict == Verdict::Inconclusive {
            format!(": {}", undecided(&reasons))
        } else {
            String::new()
        };
        self.note(format!("{at}: analysis {verdict}{undecided}"));
        let advance = |c: &mut Controller| -> Option<Command> {
            if step + 1 < n {
                let percent = c.plan.steps[step + 1];
                c.issue(
                    Command::SetWeight {
                        percent,
                        expected_epoch: epoch,
                        reason: format!(
                            "automated rollout step {}/{n}: step {} passed",
                            step + 2,
                            step + 1
                        ),
                    },
                    After::Dwell(step + 1),
                )
            } else {
                c.issue(
                    Command::Promote {
                        expected_epoch: epoch,
                        reason: format!("automated rollout: all {n} steps passed"),
                    },
                    After::Finish(Finish::Promoted { epoch: epoch + 1 }),
                )
            }
        };
        match verdict {
            Verdict::Fail => self.rollback(epoch, format!("{at}: analysis failed: {}", failing(&reasons))),
            Verdict::Pass => advance(self),
            Verdict::Inconclusive if extensions < self.plan.max_extensions => {
                self.note(format!(
                    "{at}: inconclusive, extending the dwell ({}/{})",
                    extensions + 1,
                    self.plan.max_extensions
                ));
                self.stage = Stage::Dwelling {
                    step,
                    since: now,
                    extensions: extensions + 1,
                };
                None
            }
            Verdict::Inconclusive => match self.plan.on_inconclusive {
                OnInconclusive::Advance => {
                    self.note(format!("{at}: still inconclusive; the policy says advance"));
                    advance(self)
                }
                OnInconclusive::Rollback => self.rollback(
                    epoch,
                    format!("{at}: still inconclusive after {extensions} extensions; the policy says roll back"),
                ),
                OnInconclusive::Pause => {
                    self.stage = Stage::Dwelling {
                        step,
                        since: now,
                        extensions: 0,
                    };
                    self.pause(&format!(
                        "{at}: still inconclusive after {extensions} extensions; waiting for a decision (Resume, Promote or Rollback)"
                    ));
                    None
                }
            },
        }
    }

    fn rollback(&mut self, epoch: u64, why: String) -> Option<Command> {
        self.issue(
            Command::Rollback {
                expected_epoch: epoch,
                reason: format!("automatic rollback: {why}"),
            },
            After::Finish(Finish::RolledBack { why }),
        )
    }

    /// Feeds the result of the last command.
    pub fn on_result(&mut self, now: Duration, result: &Result<StateView, AdminError>) {
        self.now = now;
        let Stage::Waiting {
            cmd, then, retries, ..
        } = self.stage.clone()
        else {
            return;
        };
        match result {
            Ok(v) => {
                self.epoch = Some(v.state.epoch);
                self.weight = Some(v.state.candidate_percent());
                self.active = Some(v.state.active);
                match then {
                    After::Dwell(step) => {
                        self.note(format!(
                            "step {}/{}: {} on the candidate (epoch {}); dwelling {:?}",
                            step + 1,
                            self.plan.steps.len(),
                            pct(v.state.candidate_percent()),
                            v.state.epoch,
                            self.plan.dwell
                        ));
                        self.begin_step(step, now);
                        if let Some(why) = self.pause_requested.take() {
                            self.pause(&why);
                        }
                    }
                    After::Finish(Finish::Promoted { .. }) => self.finish(Finish::Promoted {
                        epoch: v.state.epoch,
                    }),
                    After::Finish(f) => self.finish(f),
                }
            }
            Err(AdminError::Transport(m)) if retries < MAX_RETRIES => {
                self.note(format!(
                    "{}: edge unreachable ({m}); retrying",
                    cmd.action()
                ));
                self.stage = Stage::Waiting {
                    cmd,
                    then,
                    issued: false,
                    retries: retries + 1,
                };
            }
            Err(AdminError::Conflict(p)) => {
                let now_at = p
                    .current_epoch
                    .map(|e| format!(" (the state is now at epoch {e})"))
                    .unwrap_or_default();
                let msg = format!(
                    "{} was refused with 409: {}{now_at}; someone else changed the rollout, so the automation stopped",
                    cmd.action(),
                    p.detail
                );
                self.finish(Finish::Interrupted(msg));
            }
            Err(e) => {
                let msg = format!("{}: {e}", cmd.action());
                self.finish(Finish::Failed(msg));
            }
        }
    }

    /// Holds the current weight; no further automatic step until [`Controller::resume`].
    pub fn pause(&mut self, why: &str) {
        match &self.stage {
            Stage::Waiting { .. } => self.pause_requested = Some(why.to_string()),
            Stage::Done(_) | Stage::Paused { .. } => {}
            other => {
                let resume = Box::new(other.clone());
                self.note(format!("paused: {why}"));
                self.stage = Stage::Paused {
                    resume,
                    why: why.to_string(),
                };
            }
        }
    }

    /// Continues after a pause; the current step's dwell starts again.
    pub fn resume(&mut self, now: Duration) {
        self.now = now;
        self.pause_requested = None;
        if let Stage::Paused { resume, .. } = self.stage.clone() {
            self.note("resumed".into());
            self.stage = match *resume {
                Stage::Dwelling {
                    step, extensions, ..
                } => Stage::Dwelling {
                    step,
                    since: now,
                    extensions,
                },
                other => other,
            };
        }
    }

    /// Stops the rollout; returns the abort call when a canary is in progress.
    pub fn abort(&mut self, now: Duration) -> Option<Command> {
        self.now = now;
        if matches!(self.stage, Stage::Waiting { .. }) {
            self.abort_requested = true;
            return None;
        }
        self.abort_now()
    }

    fn abort_now(&mut self) -> Option<Command> {
        if matches!(self.stage, Stage::Done(_)) {
            return None;
        }
        match (self.epoch, self.weight) {
            (Some(epoch), Some(w)) if w > 0.0 && w < 100.0 + 1e-9 => self.issue(
                Command::Abort {
                    expected_epoch: epoch,
                    reason: "automated rollout aborted by the operator".into(),
                },
                After::Finish(Finish::Aborted),
            ),
            _ => {
                self.finish(Finish::Aborted);
                None
            }
        }
    }

    pub fn status(&self, now: Duration) -> RolloutStatus {
        let n = self.plan.steps.len();
        let (stage, step, dwell_left, extensions, headline) = match &self.stage {
            Stage::Start => (
                "starting",
                None,
                None,
                0,
                "reading the rollout state".to_string(),
            ),
            Stage::Waiting { cmd, then, .. } => (
                "applying",
                match then {
                    After::Dwell(s) => Some(*s),
                    After::Finish(_) => None,
                },
                None,
                0,
                format!("applying: {}", cmd.action()),
            ),
            Stage::Dwelling {
                step,
                since,
                extensions,
            } => {
                let left = self.plan.dwell.saturating_sub(now.saturating_sub(*since));
                (
                    "dwelling",
                    Some(*step),
                    Some(left),
                    *extensions,
                    format!(
                        "step {}/{n} at {}: analysing, {:.0} s left{}",
                        step + 1,
                        pct(self.plan.steps[*step]),
                        left.as_secs_f64().ceil(),
                        self.samples_outlook(now)
                    ),
                )
            }
            Stage::Paused { resume, why } => (
                "paused",
                match resume.as_ref() {
                    Stage::Dwelling { step, .. } => Some(*step),
                    _ => None,
                },
                None,
                0,
                format!("paused: {why}"),
            ),
            Stage::Done(f) => ("done", None, None, 0, f.describe()),
        };
        RolloutStatus {
            stage,
            headline,
            steps: self.plan.steps.clone(),
            step,
            reached: self.reached,
            weight: self.weight,
            dwell_left,
            dwell: self.plan.dwell,
            extensions,
            last_verdict: self.last.as_ref().map(|j| j.verdict),
            last_reasons: self
                .last
                .as_ref()
                .map(|j| j.reasons.clone())
                .unwrap_or_default(),
            finished: self.finished().cloned(),
            paused: self.is_paused(),
            log: self.log.clone(),
        }
    }
}

impl Controller {
    /// While a color is short of the policy's minimum: how many samples it
    /// has and, at the rate they have come so far, when the minimum is
    /// reached (never a silent stall).
    fn samples_outlook(&self, now: Duration) -> String {
        let Some(j) = &self.last else {
            return String::new();
        };
        let min = self.plan.policy.min_samples;
        let have = j.candidate_requests.min(j.baseline_requests);
        if have >= min {
            return String::new();
        }
        let who = if j.candidate_requests <= j.baseline_requests {
            "the candidate"
        } else {
            "the baseline"
        };
        let age = now.saturating_sub(self.step_since).as_secs_f64();
        let eta = (age >= 1.0)
            .then(|| greenlight_engine::sampling::time_to_min_samples(min, have, have as f64 / age))
            .flatten();
        match eta {
            Some(d) => format!(
                "; {who} has {have} of {min} samples, the minimum in ~{} at this rate",
                greenlight_engine::sampling::human_duration(d)
            ),
            None => format!("; {who} has {have} of {min} samples, none arriving yet"),
        }
    }
}

fn undecided(reasons: &[String]) -> String {
    let open: Vec<&str> = reasons
        .iter()
        .filter(|r| {
            r.contains("cannot tell")
                || r.contains("not significantly")
                || r.contains("undecided")
                || r.contains("not enough samples")
                || r.contains("no latency data")
                || r.contains("no load")
        })
        .map(String::as_str)
        .collect();
    if open.is_empty() {
        reasons.join("; ")
    } else {
        open.join("; ")
    }
}

fn failing(reasons: &[String]) -> String {
    let bad: Vec<&str> = reasons
        .iter()
        .filter(|r| r.contains("slower") || r.contains("higher") || r.contains("over the limit"))
        .map(String::as_str)
        .collect();
    if bad.is_empty() {
        reasons.join("; ")
    } else {
        bad.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_common::admin::Problem;
    use greenlight_common::RolloutState;
    use greenlight_verdict::Policy;

    fn plan(steps: &[f64], ext: u32, on: OnInconclusive) -> RolloutPlan {
        RolloutPlan::new(
            steps.to_vec(),
            Duration::from_secs(10),
            ext,
            on,
            Policy::default(),
            "test".into(),
        )
        .unwrap()
    }

    fn verdict(v: Verdict) -> Judgement {
        Judgement {
            verdict: v,
            reasons: vec![match v {
                Verdict::Fail => "latency: green is slower than blue beyond the tolerance".into(),
                _ => format!("{v}"),
            }],
            ..Judgement::no_evidence("")
        }
    }

    /// A fake edge: the real state machine.
    struct Edge {
        state: RolloutState,
    }

    impl Edge {
        fn new() -> Edge {
            Edge {
                state: RolloutState::initial("s"),
            }
        }
        fn view(&self) -> StateView {
            StateView::of(self.state.clone(), false)
        }
        fn exec(&mut self, c: &Command) -> Result<StateView, AdminError> {
            use greenlight_common::rollout::{ChangeMeta, RolloutOp};
            let op = match c {
                Command::SetWeight { percent, .. } => RolloutOp::SetWeight {
                    weight_bp: (percent * 100.0).round() as u16,
                },
                Command::Promote { .. } => RolloutOp::Promote,
                Command::Rollback { .. } => RolloutOp::Rollback,
                Command::Abort { .. } => RolloutOp::Abort,
            };
            let meta = ChangeMeta {
                actor: "test".into(),
                at_ms: 1,
                reason: c.reason().into(),
            };
            match self.state.apply(op, c.expected_epoch(), meta) {
                Ok(s) => {
                    self.state = s;
                    Ok(self.view())
                }
                Err(e) => Err(AdminError::Conflict(Problem::new(
                    409,
                    "x",
                    "x",
                    e.to_string(),
                ))),
            }
        }
    }

    /// Runs the controller against `edge` with verdicts from `verdicts(step_weight, look)`
    /// until it is done; returns the commands made.
    fn run(
        c: &mut Controller,
        edge: &mut Edge,
        mut verdicts: impl FnMut(f64, Analysis) -> Verdict,
        max_ticks: u32,
    ) -> Vec<String> {
        let mut made = Vec::new();
        for tick in 0..max_ticks {
            let now = Duration::from_secs(u64::from(tick));
            c.observe_state(&edge.view());
            let w = edge.state.candidate_percent();
            if let Some(cmd) = c.poll(now, &mut |look| verdict(verdicts(w, look))) {
                made.push(cmd.action());
                let r = edge.exec(&cmd);
                c.on_result(now, &r);
            }
            if c.finished().is_some() {
                break;
            }
        }
        made
    }

    #[test]
    fn plans_are_validated() {
        let p = |s: &[f64]| {
            RolloutPlan::new(
                s.to_vec(),
                Duration::from_secs(1),
                0,
                OnInconclusive::Pause,
                Policy::default(),
                "a".into(),
            )
        };
        assert!(p(&[1.0, 5.0, 100.0]).is_ok());
        assert!(p(&[]).is_err());
        assert!(p(&[5.0, 1.0]).unwrap_err().contains("increasing"));
        assert!(p(&[0.0, 1.0]).is_err());
        assert!(p(&[101.0]).is_err());
        assert!(p(&[0.001]).unwrap_err().contains("decimals"));
        assert!(RolloutPlan::new(
            vec![1.0],
            Duration::ZERO,
            0,
            OnInconclusive::Pause,
            Policy::default(),
            "a".into()
        )
        .is_err());
    }

    #[test]
    fn passing_steps_end_in_promotion() {
        let mut c = Controller::new(plan(
            &[1.0, 5.0, 25.0, 50.0, 100.0],
            0,
            OnInconclusive::Pause,
        ));
        let mut edge = Edge::new();
        let made = run(&mut c, &mut edge, |_, _| Verdict::Pass, 200);
        assert_eq!(
            made,
            [
                "weight 1%",
                "weight 5%",
                "weight 25%",
                "weight 50%",
                "weight 100%",
                "promote"
            ]
        );
        assert_eq!(c.finished(), Some(&Finish::Promoted { epoch: 6 }));
        assert_eq!(edge.state.active, Color::Green);
        let st = c.status(Duration::from_secs(100));
        assert_eq!(st.stage, "done");
        assert!(
            st.log
                .iter()
                .any(|l| l.contains("step 3/5 (25%): analysis PASS")),
            "{:#?}",
            st.log
        );
    }

    #[test]
    fn each_step_dwells_before_advancing() {
        let mut c = Controller::new(plan(&[10.0, 100.0], 0, OnInconclusive::Pause));
        let mut edge = Edge::new();
        // 5 ticks of 1 s: weight set at t=0, dwell of 10 s not over yet.
        let made = run(&mut c, &mut edge, |_, _| Verdict::Pass, 6);
        assert_eq!(made, ["weight 10%"]);
        let st = c.status(Duration::from_secs(5));
        assert_eq!(
            (st.stage, st.step, st.dwell_left),
            ("dwelling", Some(0), Some(Duration::from_secs(5)))
        );
    }

    #[test]
    fn live_failure_rolls_back_early() {
        let mut c = Controller::new(plan(&[1.0, 5.0, 25.0, 100.0], 0, OnInconclusive::Pause));
        let mut edge = Edge::new();
        let made = run(
            &mut c,
            &mut edge,
            |w, look| {
                if w >= 25.0 && look == Analysis::Live {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                }
            },
            200,
        );
        assert_eq!(made, ["weight 1%", "weight 5%", "weight 25%", "rollback"]);
        match c.finished() {
            Some(Finish::RolledBack { why }) => {
                assert!(
                    why.contains("step 3/4 (25%)") && why.contains("slower"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (edge.state.candidate_weight_bp, edge.state.active),
            (0, Color::Blue)
        );
    }

    #[test]
    fn end_of_step_failure_rolls_back() {
        let mut c = Controller::new(plan(&[1.0, 100.0], 0, OnInconclusive::Pause));
        let mut edge = Edge::new();
        let made = run(
            &mut c,
            &mut edge,
            |_, look| {
                if look == Analysis::EndOfStep {
                    Verdict::Fail
                } else {
                    Verdict::Inconclusive
                }
            },
            200,
        );
        assert_eq!(made, ["weight 1%", "rollback"]);
        assert!(matches!(c.finished(), Some(Finish::RolledBack { .. })));
    }

    #[test]
    fn inconclusive_extends_then_follows_the_policy() {
        // Pause: holds after the extensions, resumes on request.
        let mut c = Controller::new(plan(&[5.0, 100.0], 2, OnInconclusive::Pause));
        let mut edge = Edge::new();
        let made = run(&mut c, &mut edge, |_, _| Verdict::Inconclusive, 60);
        assert_eq!(made, ["weight 5%"]);
        assert!(c.is_paused());
        let st = c.status(Duration::from_secs(60));
        assert!(
            st.headline
                .contains("still inconclusive after 2 extensions"),
            "{}",
            st.headline
        );
        assert_eq!(st.log.iter().filter(|l| l.contains("extending")).count(), 2);
        c.resume(Duration::from_secs(60));
        assert!(!c.is_paused());

        // Advance: goes on to promotion.
        let mut c = Controller::new(plan(&[5.0, 100.0], 1, OnInconclusive::Advance));
        let mut edge = Edge::new();
        let made = run(&mut c, &mut edge, |_, _| Verdict::Inconclusive, 200);
        assert_eq!(made, ["weight 5%", "weight 100%", "promote"]);

        // Rollback.
        let mut c = Controller::new(plan(&[5.0, 100.0], 0, OnInconclusive::Rollback));
        let mut edge = Edge::new();
        let made = run(&mut c, &mut edge, |_, _| Verdict::Inconclusive, 200);
        assert_eq!(made, ["weight 5%", "rollback"]);
    }

    #[test]
    fn pause_holds_and_resume_restarts_the_dwell() {
        let mut c = Controller::new(plan(&[5.0, 100.0], 0, OnInconclusive::Pause));
        let mut edge = Edge::new();
        run(&mut c, &mut edge, |_, _| Verdict::Pass, 3);
        c.pause("operator");
        let judged = |_: Analysis| -> Judgement { panic!("no analysis while paused") };
        let mut judged = judged;
        for t in 3..40 {
            assert_eq!(c.poll(Duration::from_secs(t), &mut judged), None);
        }
        c.resume(Duration::from_secs(40));
        // The dwell restarts at 40 s: nothing before 50 s.
        let mut pass = |_: Analysis| verdict(Verdict::Pass);
        assert_eq!(c.poll(Duration::from_secs(45), &mut pass), None);
        let cmd = c.poll(Duration::from_secs(50), &mut pass).unwrap();
        assert_eq!(cmd.action(), "weight 100%");
    }

    /// The state after one 5 % step, with the edge's health report.
    fn edge_view_with(under_test: Color, unhealthy: bool, failures: u32) -> StateView {
        use greenlight_common::health::HealthView;
        let mut edge = Edge::new();
        let mut c = Controller::new(plan(&[5.0, 100.0], 0, OnInconclusive::Pause));
        run(&mut c, &mut edge, |_, _| Verdict::Pass, 3);
        let mut view = edge.view();
        view.health = Some(HealthView {
            under_test,
            unhealthy,
            blue_failures: 0,
            green_failures: u64::from(failures),
            recent_failures: failures,
            last_failure: None,
            writes: 0,
        });
        view
    }

    #[test]
    fn an_unhealthy_report_from_the_edge_rolls_back_despite_passing_analysis() {
        let mut c = Controller::new(plan(&[5.0, 100.0], 0, OnInconclusive::Pause));
        let mut edge = Edge::new();
        run(&mut c, &mut edge, |_, _| Verdict::Pass, 3);
        let reported = |unhealthy: bool, failures: u32| {
            let mut view = edge_view_with(Color::Green, unhealthy, failures);
            view.health.as_mut().unwrap().last_failure = Some("green origin answered 503".into());
            view
        };
        c.observe_state(&reported(true, 7));
        let mut pass = |_: Analysis| verdict(Verdict::Pass);
        let cmd = c.poll(Duration::from_secs(4), &mut pass).unwrap();
        assert_eq!(cmd.action(), "rollback");
        assert!(
            cmd.reason()
                .contains("the edge reports green unhealthy: 7 failures")
                && cmd.reason().contains("answered 503"),
            "{}",
            cmd.reason()
        );
        // A healthy report changes nothing.
        let mut c = Controller::new(plan(&[5.0, 100.0], 0, OnInconclusive::Pause));
        let mut edge = Edge::new();
        run(&mut c, &mut edge, |_, _| Verdict::Pass, 3);
        c.observe_state(&reported(false, 1));
        assert_eq!(c.poll(Duration::from_secs(4), &mut pass), None);
    }

    #[test]
    fn abort_pulls_a_canary_back() {
        let mut c = Controller::new(plan(&[5.0, 100.0], 0, OnInconclusive::Pause));
        let mut edge = Edge::new();
        run(&mut c, &mut edge, |_, _| Verdict::Pass, 3);
        let cmd = c.abort(Duration::from_secs(3)).unwrap();
        assert!(matches!(
            cmd,
            Command::Abort {
                expected_epoch: 1,
                ..
            }
        ));
        let r = edge.exec(&cmd);
        c.on_result(Duration::from_secs(3), &r);
        assert_eq!(c.finished(), Some(&Finish::Aborted));
        assert_eq!(edge.state.candidate_weight_bp, 0);
        // Abort before anything happened: nothing to call.
        let mut c = Controller::new(plan(&[5.0], 0, OnInconclusive::Pause));
        assert_eq!(c.abort(Duration::ZERO), None);
        assert_eq!(c.finished(), Some(&Finish::Aborted));
    }

    #[test]
    fn outside_changes_and_conflicts_stop_the_automation() {
        let mut c = Controller::new(plan(&[5.0, 100.0], 0, OnInconclusive::Pause));
        let mut edge = Edge::new();
        run(&mut c, &mut edge, |_, _| Verdict::Pass, 3);
        // Another release manager promotes by hand.
        edge.exec(&Command::Promote {
            expected_epoch: 1,
            reason: "by hand".into(),
        })
        .unwrap();
        c.observe_state(&edge.view());
        match c.finished() {
            Some(Finish::Interrupted(m)) => assert!(
                m.contains("changed elsewhere") && m.contains("promote"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }

        // A 409 on our own call.
        let mut c = Controller::new(plan(&[5.0, 100.0], 0, OnInconclusive::Pause));
        c.observe_state(&Edge::new().view());
        let cmd = c
            .poll(Duration::ZERO, &mut |_| verdict(Verdict::Pass))
            .unwrap();
        c.on_result(
            Duration::ZERO,
            &Err(AdminError::Conflict(Problem {
                current_epoch: Some(4),
                ..Problem::new(409, "stale-epoch", "stale epoch", "stale epoch")
            })),
        );
        assert_eq!(cmd.action(), "weight 5%");
        match c.finished() {
            Some(Finish::Interrupted(m)) => {
                assert!(m.contains("409") && m.contains("epoch 4"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transport_errors_are_retried_then_fail() {
        let mut c = Controller::new(plan(&[5.0], 0, OnInconclusive::Pause));
        c.observe_state(&Edge::new().view());
        let mut pass = |_: Analysis| verdict(Verdict::Pass);
        let first = c.poll(Duration::ZERO, &mut pass).unwrap();
        let down = Err(AdminError::Transport("connection refused".into()));
        c.on_result(Duration::ZERO, &down);
        for _ in 0..MAX_RETRIES {
            let again = c.poll(Duration::ZERO, &mut pass).unwrap();
            assert_eq!(again, first);
            c.on_result(Duration::ZERO, &down);
        }
        assert!(matches!(c.finished(), Some(Finish::Failed(m)) if m.contains("cannot reach")));
    }

    #[test]
    fn a_step_short_of_samples_says_when_the_minimum_comes() {
        let mut c = Controller::new(plan(&[1.0, 100.0], 0, OnInconclusive::Pause));
        let mut edge = Edge::new();
        run(&mut c, &mut edge, |_, _| Verdict::Inconclusive, 1);
        assert_eq!(c.steps_started(), 1);
        // 4 s into the step: 20 candidate samples, 5 a second; 180 to go.
        let mut short = |_: Analysis| Judgement {
            baseline_requests: 2000,
            candidate_requests: 20,
            ..verdict(Verdict::Inconclusive)
        };
        assert_eq!(c.poll(Duration::from_secs(4), &mut short), None);
        let h = c.status(Duration::from_secs(4)).headline;
        assert!(
            h.contains("the candidate has 20 of 200 samples, the minimum in ~36 s"),
            "{h}"
        );
        let mut none = |_: Analysis| verdict(Verdict::Inconclusive);
        c.poll(Duration::from_secs(5), &mut none);
        let h = c.status(Duration::from_secs(5)).headline;
        assert!(h.contains("has 0 of 200 samples, none arriving yet"), "{h}");
    }

    #[test]
    fn starts_from_the_current_weight() {
        let mut c = Controller::new(plan(&[1.0, 5.0, 25.0, 100.0], 0, OnInconclusive::Pause));
        let mut edge = Edge::new();
        edge.exec(&Command::SetWeight {
            percent: 5.0,
            expected_epoch: 0,
            reason: String::new(),
        })
        .unwrap();
        c.observe_state(&edge.view());
        assert_eq!(
            c.poll(Duration::ZERO, &mut |_| verdict(Verdict::Pass)),
            None
        );
        assert_eq!(c.status(Duration::ZERO).step, Some(1));
    }
}
