//! The driver: connects a [`Controller`] to the edge's admin API and to
//! the evidence, looks every [`LOOK_EVERY`], and reports what happens.

use super::controller::{Controller, Finish, RolloutStatus};
use super::evidence::Evidence;
use super::plan::format_steps;
use crate::audit::{AuditEntry, AuditFile};
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
    mut on_event: impl FnMut(DriveEvent),
) -> Finish {
    let start = Instant::now();
    let actor = ctrl.plan().actor.clone();
    let mut state_failures = 0u32;
    let mut user_open = true;
    let steps = format_steps(&ctrl.plan().steps);
    let start_entry = AuditEntry::info(
        &actor,
        "rollout start",
        None,
        format!("steps {steps}, dwell {:?}", ctrl.plan().dwell),
    );
    let _ = audit.append(&start_entry);
    on_event(DriveEvent::Audit(start_entry));
    let sampling = match evidence.sampling() {
        Sampling::Weighted { why } => {
            let p = ctrl.plan();
            fallback_notice(
                why,
                evidence.rate(),
                &p.steps,
                p.policy.min_samples,
                p.dwell,
            )
        }
        s => s.describe(),
    };
    ctrl.remark(Duration::ZERO, sampling);
    // The step whose evidence is being gathered.
    let mut step: Option<StepUnderWay> = None;
    // An operator command that woke the driver from its sleep.
    let mut woke_by: Option<UserCmd> = None;
    loop {
        let now = start.elapsed();
        // Operator commands first.
        let mut cmds: Vec<UserCmd> = woke_by.take().into_iter().collect();
        while let Ok(c) = user.try_recv() {
            cmds.push(c);
        }
        let mut pending = None;
        for c in cmds {
            let info = match c {
                UserCmd::Pause => {
                    ctrl.pause("paused by the operator");
                    "rollout pause"
                }
                UserCmd::Resume => {
                    ctrl.resume(now);
                    "rollout resume"
                }
                UserCmd::Abort => {
                    pending = ctrl.abort(now).or(pending);
                    "rollout abort"
                }
            };
            let e = AuditEntry::info(&actor, info, None, "");
            let _ = audit.append(&e);
            on_event(DriveEvent::Audit(e));
        }
        if now > limit && ctrl.finished().is_none() {
            let e = AuditEntry::info(
                &actor,
                "rollout time limit",
                None,
                format!("{limit:?} exceeded"),
            );
            let _ = audit.append(&e);
            on_event(DriveEvent::Audit(e));
            pending = ctrl.abort(now).or(pending);
            if pending.is_none() && ctrl.finished().is_none() {
                return Finish::Failed("time limit".into());
            }
        }
        if pending.is_none() {
            match client.state().await {
                Ok(v) => {
                    state_failures = 0;
                    ctrl.observe_state(&v);
                    on_event(DriveEvent::State(v));
                }
                Err(e) => {
                    state_failures += 1;
                    let fatal = matches!(e, AdminError::Unauthorized { .. }) || state_failures > 60;
                    on_event(DriveEvent::StateError(e.clone()));
                    if fatal && ctrl.finished().is_none() {
                        let f = Finish::Failed(format!("cannot read the state: {e}"));
                        on_event(DriveEvent::Status(ctrl.status(now)));
                        return f;
                    }
                }
            }
            if ctrl.finished().is_none() {
                let policy = ctrl.plan().policy.clone();
                let active = ctrl.active().unwrap_or(Color::Blue);
                pending = ctrl.poll(now, &mut |look| evidence.judge(look, &policy, active));
            }
        }
        if let Some(cmd) = pending {
            let before = Some(cmd.expected_epoch());
            let result = cmd.execute(client, &actor).await;
            let entry = AuditEntry::for_change(&actor, cmd.action(), before, &result, cmd.reason());
            let _ = audit.append(&entry);
            on_event(DriveEvent::Audit(entry));
            if let Ok(v) = &result {
                on_event(DriveEvent::Changed {
                    epoch: v.state.epoch,
                });
                on_event(DriveEvent::State(v.clone()));
            }
            ctrl.on_result(start.elapsed(), &result);
        }
        follow_steps(ctrl, evidence, &mut step, start.elapsed(), &mut on_event);
        on_event(DriveEvent::Status(ctrl.status(start.elapsed())));
        if let Some(f) = ctrl.finished() {
            let f = f.clone();
            let e = AuditEntry::info(&actor, "rollout end", None, f.describe());
            let _ = audit.append(&e);
            on_event(DriveEvent::Audit(e));
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
