//! `greenlight rollout`: a rollout plan the edge carries out by itself
//! (`start`, `status`, `pause`, `resume`, `abort`), and the evidence a
//! harness posts for it (`evidence`). Once started, the plan goes on or
//! rolls back whether or not this command still runs.

use crate::admin::{self, AdminArgs, ChangeArgs};
use crate::output::{print_stdout, usage_exit};
use clap::{Args, Subcommand, ValueEnum};
use greenlight_common::admin::StateView;
use greenlight_common::plan::{OnFailure, PlanSpec, PlanStatus, Verdict};
use greenlight_common::rollout::PlanControl;
use greenlight_engine::admin_client::{self, AdminClient, AdminError};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code of `--watch` when the plan stops for an operator (paused or
/// held): it neither finished nor rolled back.
pub const EXIT_WAITING: u8 = 5;

#[derive(Subcommand)]
pub enum RolloutCmd {
    /// Start a plan at the edge: steps of candidate share, a dwell per step,
    /// and what a failed gate does.
    Start(StartArgs),
    /// Show the plan (`--watch`: follow it until it ends or stops).
    Status(StatusArgs),
    /// Stop the plan's clock; nothing moves until `resume`.
    Pause(ChangeArgs),
    /// Go on after a pause or a hold; the step in force dwells again.
    Resume(ChangeArgs),
    /// End the plan; a canary goes back to 0 %.
    Abort(ChangeArgs),
    /// Post a verdict for the step in force, or hold the plan's lease
    /// (`--hold`), for a plan started with `--lease`.
    Evidence(EvidenceArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum VerdictArg {
    Pass,
    Fail,
    Inconclusive,
}

#[derive(Args)]
pub struct EvidenceArgs {
    /// The verdict for the step in force (none: only renew the lease).
    #[arg(long, value_enum)]
    verdict: Option<VerdictArg>,
    /// Keep renewing the lease every `--every` until the plan is no longer
    /// in progress (or this process is stopped: the lease then runs out
    /// and the plan's rule for missing evidence applies).
    #[arg(long, conflicts_with = "verdict")]
    hold: bool,
    /// How often `--hold` renews the lease (well within the plan's lease).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    every: Duration,
    /// The epoch of the step the verdict is for (default: the current one).
    #[arg(long)]
    epoch: Option<u64>,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailureRule {
    /// Candidate back to 0 % and the plan ends.
    Rollback,
    /// Stay at the step's share until an operator resumes or aborts.
    Hold,
}

#[derive(Args)]
pub struct StartArgs {
    /// Candidate shares in percent, increasing; after the last the
    /// candidate is promoted (e.g. `5,25,50`).
    #[arg(long, value_delimiter = ',', required_unless_present = "plan")]
    steps: Vec<f64>,
    /// How long each step runs before it is judged (e.g. `30s`, `5m`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    dwell: Duration,
    /// What a failed gate (the candidate's origin health, a failing
    /// verdict) does.
    #[arg(long, value_enum, default_value = "rollback")]
    on_failure: FailureRule,
    /// Each step also needs a passing verdict from a harness holding a
    /// lease of this length (`greenlight rollout evidence`).
    #[arg(long, value_parser = humantime::parse_duration)]
    lease: Option<Duration>,
    /// What the plan does when a step's dwell is over, no passing verdict
    /// came and no lease is held.
    #[arg(long, value_enum, default_value = "hold", requires = "lease")]
    on_missing_evidence: FailureRule,
    /// The plan as JSON instead of the flags
    /// (`{"steps_bp": [500, 2500], "dwell_ms": 60000, "on_failure": "rollback"}`).
    #[arg(long, value_name = "FILE", conflicts_with = "steps")]
    plan: Option<PathBuf>,
    /// After starting, follow the plan as `status --watch` does.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Follow the plan, a line per change, until it ends (exit 0 promoted,
    /// 1 rolled back or aborted) or stops for an operator (exit 5).
    #[arg(long)]
    watch: bool,
    /// How often `--watch` reads the state.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    interval: Duration,
    /// With `--watch`: never stop, across plans. On Spin, which has no
    /// alarms, each read is the admin call that makes a plan's change
    /// due while no traffic arrives: run it as a service beside an idle
    /// edge.
    #[arg(long, requires = "watch")]
    forever: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

pub async fn run(cmd: RolloutCmd) -> ExitCode {
    match cmd {
        RolloutCmd::Start(a) => start(a).await,
        RolloutCmd::Status(a) => status(a).await,
        RolloutCmd::Pause(a) => control(PlanControl::Pause, a).await,
        RolloutCmd::Resume(a) => control(PlanControl::Resume, a).await,
        RolloutCmd::Abort(a) => control(PlanControl::Abort, a).await,
        RolloutCmd::Evidence(a) => evidence(a).await,
    }
}

fn spec_of(a: &StartArgs) -> Result<PlanSpec, String> {
    if let Some(path) = &a.plan {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let spec: PlanSpec = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a plan: {e}", path.display()))?;
        spec.validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(spec);
    }
    let rule = |r: FailureRule| match r {
        FailureRule::Rollback => OnFailure::Rollback,
        FailureRule::Hold => OnFailure::Hold,
    };
    let lease = a.lease.map(|d| (d, rule(a.on_missing_evidence)));
    admin_client::plan_from_flags(&a.steps, a.dwell, rule(a.on_failure), lease)
}

async fn start(a: StartArgs) -> ExitCode {
    let spec = match spec_of(&a) {
        Ok(spec) => spec,
        Err(e) => return usage_exit(&e),
    };
    let (epoch, reason) = (a.change.epoch, a.change.reason.clone());
    if !a.watch {
        return admin::admin(&a.change.admin, move |c| {
            Box::pin(async move { c.start_plan(spec, epoch, &reason).await })
        })
        .await;
    }
    let client = match admin::client(&a.change.admin) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.start_plan(spec, epoch, &reason).await {
        Ok(view) => {
            print_stdout(&line(&view));
            watch(&client, Duration::from_secs(1), view).await
        }
        Err(e) => admin::failed(e),
    }
}

async fn status(a: StatusArgs) -> ExitCode {
    if !a.watch {
        return admin::admin(&a.admin, |c| Box::pin(async move { c.state().await })).await;
    }
    if a.interval.is_zero() {
        return usage_exit("--interval must be more than 0");
    }
    let client = match admin::client(&a.admin) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if a.forever {
        return drive(&client, a.interval).await;
    }
    match client.state().await {
        Ok(view) => {
            print_stdout(&line(&view));
            watch(&client, a.interval, view).await
        }
        Err(e) => admin::failed(e),
    }
}

/// `status --watch --forever`: a line per change, until stopped.
async fn drive(client: &AdminClient, interval: Duration) -> ExitCode {
    let mut seen = None;
    loop {
        match client.state().await {
            Ok(view) => {
                if seen != Some(view.state.epoch) {
                    print_stdout(&line(&view));
                    seen = Some(view.state.epoch);
                }
            }
            Err(e) => eprintln!("greenlight: reading the state: {e}"),
        }
        tokio::time::sleep(interval).await;
    }
}

async fn control(control: PlanControl, a: ChangeArgs) -> ExitCode {
    let (epoch, reason) = (a.epoch, a.reason.clone());
    admin::admin(&a.admin, move |c| {
        Box::pin(async move { c.control_plan(control, epoch, &reason).await })
    })
    .await
}

async fn evidence(a: EvidenceArgs) -> ExitCode {
    let verdict = a.verdict.map(|v| match v {
        VerdictArg::Pass => Verdict::Pass,
        VerdictArg::Fail => Verdict::Fail,
        VerdictArg::Inconclusive => Verdict::Inconclusive,
    });
    if !a.hold {
        return admin::admin(&a.admin, move |c| {
            Box::pin(async move { c.post_evidence(verdict, a.epoch).await })
        })
        .await;
    }
    if a.every.is_zero() {
        return usage_exit("--every must be more than 0");
    }
    let client = match admin::client(&a.admin) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Renews at each step's epoch; a step that moved on in between (a
    // 409) is read again at the next renewal.
    loop {
        match client.post_evidence(None, None).await {
            Ok(view) => {
                if let Some(held) = &view.evidence {
                    print_stdout(&format!(
                        "{}  lease held by {} until {} (epoch {})\n",
                        admin_client::format_utc(held.at_ms),
                        held.holder,
                        admin_client::format_utc(held.lease_until_ms),
                        held.epoch
                    ));
                }
            }
            Err(AdminError::Conflict(p)) => {
                let view = match client.state().await {
                    Ok(v) => v,
                    Err(e) => {
                        eprintln!("greenlight: reading the state: {e}");
                        tokio::time::sleep(a.every).await;
                        continue;
                    }
                };
                match view.state.plan_in_progress() {
                    None => {
                        print_stdout(&line(&view));
                        return ExitCode::SUCCESS;
                    }
                    Some(run) if run.spec.lease_ms.is_none() => {
                        eprintln!("greenlight: {}", p.detail);
                        return ExitCode::from(1);
                    }
                    // The step moved on between the read and the post.
                    Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
                continue;
            }
            Err(e) => eprintln!("greenlight: renewing the lease: {e}"),
        }
        tokio::time::sleep(a.every).await;
    }
}

/// One line for a state: its epoch, change and plan.
fn line(view: &StateView) -> String {
    let s = &view.state;
    let c = &s.last_change;
    format!(
        "{}  epoch {}  {} at {:.2}%  {} by {}{}\n  plan: {}\n",
        admin_client::format_utc(c.at_ms),
        s.epoch,
        s.candidate,
        s.candidate_percent(),
        c.op,
        c.by(),
        if c.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", c.reason)
        },
        admin_client::describe_plan(s).unwrap_or_else(|| "none".into())
    )
}

/// Follows the plan from `view` until it is no longer running, a line per
/// change. A failed read is reported and retried: the plan goes on at
/// the edge whatever happens here.
async fn watch(client: &AdminClient, interval: Duration, mut view: StateView) -> ExitCode {
    loop {
        match view.state.plan.as_ref().map(|p| &p.status) {
            None => {
                eprintln!("greenlight: no plan was started at this edge");
                return ExitCode::from(1);
            }
            Some(PlanStatus::Promoted) => return ExitCode::SUCCESS,
            Some(PlanStatus::RolledBack { .. } | PlanStatus::Aborted) => return ExitCode::from(1),
            Some(PlanStatus::Paused | PlanStatus::Held { .. }) => {
                eprintln!("greenlight: the plan waits for an operator (rollout resume or abort)");
                return ExitCode::from(EXIT_WAITING);
            }
            Some(PlanStatus::Running) => {}
        }
        tokio::time::sleep(interval).await;
        match client.state().await {
            Ok(next) => {
                if next.state.epoch != view.state.epoch {
                    print_stdout(&line(&next));
                }
                view = next;
            }
            Err(e) => {
                eprintln!("greenlight: reading the state: {e} (the plan goes on at the edge)")
            }
        }
    }
}
