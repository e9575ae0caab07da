//! The driver: connects a [`Controller`] to the edge's admin API and to
//! the evidence, looks every [`LOOK_EVERY`], and reports what happens.

use crate::audit::{AuditEntry, AuditFile};
use crate::command::Command;
use crate::controller::{Controller, Finish, RolloutStatus};
use crate::evidence::Evidence;
use crate::plan::format_steps;
use crate::synthetic::Sampling;
use greenlight_common::admin::StateView;
use greenlight_common::Color;
use greenlight_engine::admin_client::{AdminClient, AdminError};
use greenlight_engine::recorder::Snapshot;
use greenlight_engine::sampling::fallback_notice;
use greenlight_verdict::routing_check::RoutingCheck;
use std::time::{Duration, Instant};

/// Operator commands for a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCmd {
    Pause,
    Resume,
    Abort,
}

/// What the driver reports while it runs.
// A few a second at most, moved straight to the receiver: boxing the
// state would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum DriveEvent {
    Status(RolloutStatus),
    Audit(AuditEntry),
    State(StateView),
    /// The state could not be read (the driver keeps trying).
    StateError(AdminError),
    /// A step began: the evidence now starts from this snapshot.
    StepEvidence(Option<Box<Snapshot>>),
    /// The split of weighted traffic during the step that just ended.
    RoutingCheck(RoutingCheck),
    /// A change of the rollout's was acknowledged: the edge now serves
    /// this epoch (per-location convergence is measured from here).
    Changed {
        epoch: u64,
    },
}

/// How often the driver looks (state read + analysis).
pub const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Runs `ctrl` against an edge until it finishes, the operator aborts, or
/// `limit` (wall time, pauses included) runs out — then it aborts.
pub async fn drive(
    ctrl: &mut Controller,
    client: &AdminClient,
    evidence: &mut Evidence,
    user: &mut tokio::sync::mpsc::UnboundedReceiver<UserCmd>,
    audit: &AuditFile,
    limit: Duration,
    on_event: impl FnMut(DriveEvent),
) -> Finish {
    let mut driver = Driver {
        start: Instant::now(),
        actor: ctrl.plan().actor.clone(),
        ctrl,
        client,
        evidence,
        audit,
        on_event,
        state_failures: 0,
        step: None,
    };
    driver.announce_start();
    let mut user_open = true;
    // An operator command that woke the driver from its sleep.
    let mut woke_by: Option<UserCmd> = None;
    loop {
        let now = driver.start.elapsed();
        // Operator commands first.
        let mut cmds: Vec<UserCmd> = woke_by.take().into_iter().collect();
        while let Ok(c) = user.try_recv() {
            cmds.push(c);
        }
        let mut pending = driver.obey(cmds, now);
        if now > limit && driver.ctrl.finished().is_none() {
            pending = driver.abort_at_limit(limit, now).or(pending);
            if pending.is_none() && driver.ctrl.finished().is_none() {
                return Finish::Failed("time limit".into());
            }
        }
        if pending.is_none() {
            pending = match driver.look(now).await {
                Ok(cmd) => cmd,
                Err(f) => return f,
            };
        }
        if let Some(cmd) = pending {
            driver.execute(cmd).await;
        }
        follow_steps(
            driver.ctrl,
            driver.evidence,
            &mut driver.step,
            driver.start.elapsed(),
            &mut driver.on_event,
        );
        (driver.on_event)(DriveEvent::Status(
            driver.ctrl.status(driver.start.elapsed()),
        ));
        if let Some(f) = driver.ctrl.finished() {
            let f = f.clone();
            driver.record(AuditEntry::info(
                &driver.actor,
                "rollout end",
                None,
                f.describe(),
            ));
            return f;
        }
        if user_open {
            tokio::select! {
                c = user.recv() => match c {
                    // Applied at the top of the next iteration, at once.
                    Some(c) => woke_by = Some(c),
                    None => user_open = false,
                },
                _ = tokio::time::sleep(LOOK_EVERY) => {}
            }
        } else {
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }
}

/// What [`drive`] works with between two looks.
struct Driver<'a, F: FnMut(DriveEvent)> {
    start: Instant,
    actor: String,
    ctrl: &'a mut Controller,
    client: &'a AdminClient,
    evidence: &'a mut Evidence,
    audit: &'a AuditFile,
    on_event: F,
    /// State reads failed in a row.
    state_failures: u32,
    /// The step whose evidence is being gathered.
    step: Option<StepUnderWay>,
}

impl<F: FnMut(DriveEvent)> Driver<'_, F> {
    /// Appends `e` to the audit log and reports it.
    fn record(&mut self, e: AuditEntry) {
        let _ = self.audit.append(&e);
        (self.on_event)(DriveEvent::Audit(e));
    }

    /// The start in the audit log, and how the evidence is sampled in the
    /// controller's log.
    fn announce_start(&mut self) {
        let plan = self.ctrl.plan();
        let steps = format_steps(&plan.steps);
        let detail = format!("steps {steps}, dwell {:?}", plan.dwell);
        self.record(AuditEntry::info(&self.actor, "rollout start", None, detail));
        let judge = self.evidence.judge_mode();
        let sampling = match self.evidence.sampling() {
            _ if !self.evidence.has_load() => format!(
                "no synthetic load: each step is judged on real users' answers as the edge counted them in its epoch (--judge {judge})"
            ),
            Sampling::Weighted { why } => {
                let p = self.ctrl.plan();
                fallback_notice(
                    why,
                    self.evidence.rate(),
                    &p.steps,
                    p.policy.min_samples,
                    p.dwell,
                )
            }
            s => s.describe(),
        };
        self.ctrl.remark(Duration::ZERO, sampling);
        if judge.wants_real() && self.evidence.has_load() {
            self.ctrl.remark(
                Duration::ZERO,
                format!(
                    "real users' answers in each step's epoch are judged too (--judge {judge})"
                ),
            );
        }
    }

    /// Applies the operator's commands; an abort may ask for an admin call.
    fn obey(&mut self, cmds: Vec<UserCmd>, now: Duration) -> Option<Command> {
        let mut pending = None;
        for c in cmds {
            let info = match c {
                UserCmd::Pause => {
                    self.ctrl.pause("paused by the operator");
                    "rollout pause"
                }
                UserCmd::Resume => {
                    self.ctrl.resume(now);
                    "rollout resume"
                }
                UserCmd::Abort => {
                    pending = self.ctrl.abort(now).or(pending);
                    "rollout abort"
                }
            };
            self.record(AuditEntry::info(&self.actor, info, None, ""));
        }
        pending
    }

    fn abort_at_limit(&mut self, limit: Duration, now: Duration) -> Option<Command> {
        let detail = format!("{limit:?} exceeded");
        self.record(AuditEntry::info(
            &self.actor,
            "rollout time limit",
            None,
            detail,
        ));
        self.ctrl.abort(now)
    }

    /// Reads the state and lets the controller judge the evidence; the
    /// rollout fails when the state cannot be read for good.
    async fn look(&mut self, now: Duration) -> Result<Option<Command>, Finish> {
        match self.client.state().await {
            Ok(v) => {
                self.state_failures = 0;
                if self.evidence.judge_mode().wants_real() {
                    // An edge without telemetry keeps the last counts read
                    // (or none): the real evidence is then missing.
                    if let Ok(m) = self.client.metrics().await {
                        self.evidence.observe_real_users(m, v.state.epoch);
                    }
                }
                self.ctrl.observe_state(&v);
                (self.on_event)(DriveEvent::State(v));
            }
            Err(e) => {
                self.state_failures += 1;
                let fatal =
                    matches!(e, AdminError::Unauthorized { .. }) || self.state_failures > 60;
                (self.on_event)(DriveEvent::StateError(e.clone()));
                if fatal && self.ctrl.finished().is_none() {
                    let f = Finish::Failed(format!("cannot read the state: {e}"));
                    (self.on_event)(DriveEvent::Status(self.ctrl.status(now)));
                    return Err(f);
                }
            }
        }
        if self.ctrl.finished().is_some() {
            return Ok(None);
        }
        let policy = self.ctrl.plan().policy.clone();
        let active = self.ctrl.active().unwrap_or(Color::Blue);
        let evidence = &*self.evidence;
        Ok(self
            .ctrl
            .poll(now, &mut |look| evidence.judge(look, &policy, active)))
    }

    /// Makes the admin call the controller asked for and tells it the result.
    async fn execute(&mut self, cmd: Command) {
        let before = Some(cmd.expected_epoch());
        let result = cmd.execute(self.client, &self.actor).await;
        let entry =
            AuditEntry::for_change(&self.actor, cmd.action(), before, &result, cmd.reason());
        self.record(entry);
        if let Ok(v) = &result {
            (self.on_event)(DriveEvent::Changed {
                epoch: v.state.epoch,
            });
            (self.on_event)(DriveEvent::State(v.clone()));
        }
        self.ctrl.on_result(self.start.elapsed(), &result);
    }
}

/// The step whose evidence is being gathered.
#[derive(Debug, Clone, Copy)]
struct StepUnderWay {
    /// [`Controller::steps_started`] when it began.
    begun: u64,
    weight: f64,
    candidate: Color,
    /// The epoch the edge acknowledged for it: the routing check counts
    /// the answers that carry it.
    epoch: Option<u64>,
}

/// Starts a new step's evidence when the controller began a step, and
/// reports the routing check of the step that ended (or of the last one
/// when the rollout finished).
fn follow_steps(
    ctrl: &mut Controller,
    evidence: &mut Evidence,
    step: &mut Option<StepUnderWay>,
    now: Duration,
    on_event: &mut impl FnMut(DriveEvent),
) {
    let begun = ctrl.steps_started();
    let changed = step.map_or(begun > 0, |s| s.begun != begun);
    let ended = changed || ctrl.finished().is_some();
    if let (true, Some(s)) = (ended, *step) {
        // One claim for the whole rollout, "the edge splits as set", made
        // at the policy's level: each step's check at alpha / steps
        // (Bonferroni), or a correct edge would be flagged somewhere in a
        // five-step rollout about once in twenty.
        let plan = ctrl.plan();
        let alpha = plan.policy.alpha / plan.steps.len().max(1) as f64;
        if let Some(check) = evidence.routing_check(s.weight, s.candidate, s.epoch, alpha) {
            ctrl.remark(now, check.describe());
            on_event(DriveEvent::RoutingCheck(check));
        }
        if !changed {
            *step = None;
        }
    }
    if changed {
        evidence.rebase();
        on_event(DriveEvent::StepEvidence(
            evidence.base().cloned().map(Box::new),
        ));
        let candidate = ctrl.active().unwrap_or(Color::Blue).other();
        *step = ctrl.status(now).step.map(|i| StepUnderWay {
            begun,
            weight: ctrl.plan().steps[i],
            candidate,
            epoch: ctrl.epoch(),
        });
    }
}
