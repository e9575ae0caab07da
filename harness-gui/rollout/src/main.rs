//! `greenlight-rollout`: the dashboard's automated rollout without a display
//! (for CI and machines without one). Drives load through the edge in-process,
//! steps the candidate's weight, analyses each step, promotes at the end and
//! rolls back automatically on `Fail`.
//!
//! Exit codes: 0 promoted, 1 rolled back / aborted / interrupted, 2 bad
//! input, 3 the edge refused or could not be reached.

use clap::Parser;
use greenlight_common::duration::parse_duration;
use greenlight_engine::admin_client::{AdminClient, TOKEN_ENV};
use greenlight_engine::client::{self as engine, Control, LoadError, RunEnd};
use greenlight_engine::histogram::SeenColor;
use greenlight_engine::recorder::{Recorder, Snapshot};
use greenlight_engine::sampling::{
    PreviewCredential, DEFAULT_WEIGHTED_SHARE, PREVIEW_JWT_ENV, PREVIEW_KEY_ENV,
};
use greenlight_verdict::Policy;
use indicatif::{ProgressBar, ProgressStyle};
use rollout::audit::{AuditEntry, AuditFile, AuditOutcome};
use rollout::synthetic::{self, missing_credential, Sampling, SyntheticLoad};
use rollout::{
    drive, parse_steps, Controller, DriveEvent, Evidence, Finish, OnInconclusive, RolloutPlan,
    RolloutStatus, UserCmd,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Inconclusive {
    Pause,
    Advance,
    Rollback,
}

impl From<Inconclusive> for OnInconclusive {
    fn from(i: Inconclusive) -> OnInconclusive {
        match i {
            Inconclusive::Pause => OnInconclusive::Pause,
            Inconclusive::Advance => OnInconclusive::Advance,
            Inconclusive::Rollback => OnInconclusive::Rollback,
        }
    }
}

#[derive(Parser)]
#[command(
    name = "greenlight-rollout",
    version,
    about = "Automated canary rollout with analysis, promotion and automatic rollback (headless twin of the dashboard)"
)]
struct Cli {
    /// Edge base URL.
    #[arg(long, env = "GREENLIGHT_EDGE", default_value = "http://127.0.0.1:8787")]
    edge: String,
    #[command(flatten)]
    transport: greenlight_engine::admin_client::AdminTransportArgs,
    /// Where the synthetic load goes (default: the edge).
    #[arg(long)]
    target: Option<String>,
    /// TOML request mix for the load (e.g. a POST of a streamed
    /// chat-completions body; see `greenlight load --scenario`).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Do not drive load (only real users' answers are then evidence:
    /// `--judge real` or `both`).
    #[arg(long)]
    no_load: bool,
    /// Which evidence each step is judged on: `synthetic` (this run's own
    /// load), `real` (real users' answers as the edge counted them in the
    /// step's epoch: `GET /__greenlight/metrics`), or `both` (the synthetic
    /// verdict, which real users can veto; thin real evidence holds
    /// nothing up).
    #[arg(long, value_enum, default_value = "both")]
    judge: greenlight_verdict::Judge,
    /// Load rate, requests/s.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Sticky users for the weighted share; 0: every weighted request is a
    /// fresh anonymous caller (its weight's share of requests reaches the candidate).
    #[arg(long, default_value_t = 0)]
    users: usize,
    /// Environment variable holding an API key with the `preview` role:
    /// comparison traffic, equal samples of blue and green at every step.
    #[arg(long, default_value = PREVIEW_KEY_ENV)]
    preview_key_env: String,
    /// Environment variable holding a JWT with the `preview` role (instead of a key).
    #[arg(long, default_value = PREVIEW_JWT_ENV)]
    preview_jwt_env: String,
    /// Share of requests (0..=1) that follow the weight while comparison
    /// traffic runs: the routing check.
    #[arg(long, default_value_t = DEFAULT_WEIGHTED_SHARE)]
    routing_share: f64,
    /// Candidate weights in percent.
    #[arg(long, default_value = "1,5,25,50,100")]
    steps: String,
    /// Dwell at each step (e.g. 30s, 2m).
    #[arg(long, default_value = "30s")]
    dwell: String,
    /// Extra dwells when a step is inconclusive.
    #[arg(long, default_value_t = 2)]
    max_extensions: u32,
    /// What to do when a step stays inconclusive. `pause` waits for a human,
    /// which a headless run cannot offer: it aborts instead.
    #[arg(long, value_enum, default_value = "rollback")]
    on_inconclusive: Inconclusive,
    /// Give up (and abort the canary) after this long.
    #[arg(long, default_value = "2h")]
    timeout: String,
    #[command(flatten)]
    policy: greenlight_verdict::policy_args::PolicyArgs,
    /// Environment variable holding the admin token.
    #[arg(long, default_value = TOKEN_ENV)]
    token_env: String,
    /// Name for the audit trail.
    #[arg(long, default_value = "greenlight-rollout")]
    actor: String,
    /// Audit log (JSON lines).
    #[arg(long)]
    audit: Option<PathBuf>,
}

/// Everything one headless rollout needs, checked before anything starts.
struct HeadlessRollout {
    plan: RolloutPlan,
    /// Wall-time limit of the whole rollout.
    timeout: Duration,
    client: AdminClient,
    /// `None` with `--no-load`.
    load: Option<SyntheticLoad>,
    /// Load rate, requests/s (for the evidence's estimates).
    rate: f64,
    audit: AuditFile,
}

fn usage(m: &str) -> ExitCode {
    eprintln!("greenlight-rollout: {m}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let headless = match configure(&cli) {
        Ok(h) => h,
        Err(m) => return usage(&m),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("greenlight-rollout: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    rt.block_on(run(headless))
}

/// Checks the command line (the error is a usage message, exit code 2).
fn configure(cli: &Cli) -> Result<HeadlessRollout, String> {
    let policy = cli.policy.apply(Policy::default());
    let steps = parse_steps(&cli.steps).map_err(|e| format!("--steps: {e}"))?;
    let dwell = parse_duration(&cli.dwell).map_err(|e| format!("--dwell: {}", e.0))?;
    let timeout = parse_duration(&cli.timeout).map_err(|e| format!("--timeout: {}", e.0))?;
    let mut plan = RolloutPlan::new(
        steps,
        dwell,
        cli.max_extensions,
        cli.on_inconclusive.into(),
        policy,
        cli.actor.clone(),
    )?;
    plan.judge = cli.judge;
    let client = admin_client(cli)?;
    let load = synthetic_load(cli, timeout)?;
    if cli.no_load && cli.judge == greenlight_verdict::Judge::Synthetic {
        return Err("--no-load with --judge synthetic leaves no evidence: judge real users (--judge real or both)".into());
    }
    Ok(HeadlessRollout {
        plan,
        timeout,
        client,
        load,
        rate: cli.rate,
        audit: AuditFile::new(cli.audit.clone()),
    })
}

/// The admin client for `--edge`, with the token from `--token-env`'s variable.
fn admin_client(cli: &Cli) -> Result<AdminClient, String> {
    let token = std::env::var(&cli.token_env)
        .ok()
        .filter(|t| !t.trim().is_empty());
    if cli.transport.tls.insecure {
        eprintln!(
            "greenlight-rollout: {}",
            greenlight_engine::tls::INSECURE_WARNING
        );
    }
    AdminClient::with_options(&cli.edge, token, &cli.transport.options()).map_err(|e| e.to_string())
}

/// The load to drive (`None` with `--no-load`); a missing preview
/// credential is no error: the load then falls back to weighted traffic.
fn synthetic_load(cli: &Cli, timeout: Duration) -> Result<Option<SyntheticLoad>, String> {
    let preview = match PreviewCredential::from_env(&cli.preview_key_env, &cli.preview_jwt_env)? {
        Some(c) => Ok(c),
        None => Err(missing_credential(
            &cli.preview_key_env,
            &cli.preview_jwt_env,
        )),
    };
    if !(0.0..=1.0).contains(&cli.routing_share) {
        return Err("--routing-share must be within 0..=1".into());
    }
    Ok((!cli.no_load).then(|| SyntheticLoad {
        url: cli.target.clone().unwrap_or_else(|| cli.edge.clone()),
        rate: cli.rate,
        users: cli.users,
        scenario: cli.scenario.clone(),
        duration: timeout + Duration::from_secs(60),
        preview,
        weighted_share: cli.routing_share,
        tls: cli.transport.tls.options(),
    }))
}

/// Starts the load, drives the rollout to its end, stops the load and
/// reports; the exit code says how the rollout ended.
async fn run(r: HeadlessRollout) -> ExitCode {
    let (load, sampling) = match RunningLoad::start(r.load).await {
        Ok(l) => l,
        Err(e) => return usage(&e),
    };
    let mut evidence =
        Evidence::since_now(load.recorder.clone(), sampling, r.rate).with_judge(r.plan.judge);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    abort_on_ctrl_c(tx.clone());
    let mut progress = Progress::new(r.plan.steps.len(), tx);
    let mut ctrl = Controller::new(r.plan);
    let finish = drive(
        &mut ctrl,
        &r.client,
        &mut evidence,
        &mut rx,
        &r.audit,
        r.timeout,
        |e| progress.show(e),
    )
    .await;
    progress.bar.finish_and_clear();
    load.stop().await;
    println!("rollout {}", finish.describe());
    exit_code(&finish)
}

fn exit_code(finish: &Finish) -> ExitCode {
    match finish {
        Finish::Promoted { .. } => ExitCode::SUCCESS,
        Finish::RolledBack { .. } | Finish::Aborted | Finish::Interrupted(_) => ExitCode::from(1),
        Finish::Failed(_) => ExitCode::from(3),
    }
}

/// The first Ctrl-C asks the rollout to abort (a canary in progress is
/// aborted through the edge, not left at its weight); a second one quits at once.
fn abort_on_ctrl_c(abort: UnboundedSender<UserCmd>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: aborting the rollout (Ctrl-C again to quit at once)");
            let _ = abort.send(UserCmd::Abort);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
}

/// The synthetic load while the rollout runs (none with `--no-load`).
struct RunningLoad {
    recorder: Option<Arc<Recorder>>,
    control: Control,
    task: Option<JoinHandle<Result<RunEnd, LoadError>>>,
}

impl RunningLoad {
    async fn start(load: Option<SyntheticLoad>) -> Result<(RunningLoad, Sampling), String> {
        let control = Control::default();
        let Some(load) = load else {
            let idle = RunningLoad {
                recorder: None,
                control,
                task: None,
            };
            return Ok((
                idle,
                Sampling::Weighted {
                    why: "--no-load".into(),
                },
            ));
        };
        let (cfg, sampling) = synthetic::configure(load).await?;
        let recorder = Recorder::new();
        let task = tokio::spawn(engine::run(cfg, recorder.clone(), control.clone()));
        let running = RunningLoad {
            recorder: Some(recorder),
            control,
            task: Some(task),
        };
        Ok((running, sampling))
    }

    /// Stops the load (waiting a little for its last requests) and says
    /// what it sent.
    async fn stop(self) {
        self.control.stop();
        if let Some(t) = self.task {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        if let Some(rec) = &self.recorder {
            eprintln!("{}", load_summary(&rec.snapshot()));
        }
    }
}

fn load_summary(snap: &Snapshot) -> String {
    let c = |k: SeenColor| snap.color(k).requests();
    let cmp = |k: SeenColor| snap.comparison(k).requests();
    format!(
        "load: {} requests (blue {}, green {}, unknown {}); comparison samples: blue {}, green {}; weighted: blue {}, green {}; preview mismatches {}",
        snap.requests(),
        c(SeenColor::Blue),
        c(SeenColor::Green),
        c(SeenColor::Unknown),
        cmp(SeenColor::Blue),
        cmp(SeenColor::Green),
        snap.weighted_requests(SeenColor::Blue),
        snap.weighted_requests(SeenColor::Green),
        snap.counters.preview_mismatch
    )
}

/// The terminal's view of the rollout: a progress bar with the log above it.
struct Progress {
    bar: ProgressBar,
    /// Lines of the controller's log already shown.
    printed: usize,
    /// A pause was answered with an abort (once is enough).
    paused_abort_sent: bool,
    abort: UnboundedSender<UserCmd>,
}

impl Progress {
    fn new(steps: usize, abort: UnboundedSender<UserCmd>) -> Progress {
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] step {pos}/{len} {bar:30.green/blue} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar,
            printed: 0,
            paused_abort_sent: false,
            abort,
        }
    }

    /// A line above the progress bar, or on stderr when there is no terminal
    /// to draw it on (CI logs keep the rollout's story).
    fn print_line(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line);
        }
    }

    fn show(&mut self, e: DriveEvent) {
        match e {
            DriveEvent::Status(s) => self.show_status(&s),
            DriveEvent::Audit(a) if a.outcome != AuditOutcome::Info => {
                self.print_line(admin_line(&a))
            }
            DriveEvent::StateError(e) => self.bar.set_message(format!("state read failed: {e}")),
            _ => {}
        }
    }

    fn show_status(&mut self, s: &RolloutStatus) {
        for l in &s.log[self.printed.min(s.log.len())..] {
            self.print_line(l);
        }
        self.printed = s.log.len();
        if let Some(i) = s.step {
            self.bar.set_position(i as u64 + 1);
        }
        let verdict = s
            .last_verdict
            .map(|v| format!(" · last analysis {v}"))
            .unwrap_or_default();
        self.bar.set_message(format!("{}{verdict}", s.headline));
        // A headless run has nobody to take the decision a pause waits for.
        if s.paused && !self.paused_abort_sent {
            self.paused_abort_sent = true;
            self.print_line(
                "the rollout paused for a decision, which a headless run cannot take: aborting",
            );
            let _ = self.abort.send(UserCmd::Abort);
        }
    }
}

/// One line for an admin call the rollout made.
fn admin_line(a: &AuditEntry) -> String {
    format!(
        "admin: {} → {} (epoch {:?} → {:?}){}",
        a.action,
        a.outcome.as_str(),
        a.epoch_before,
        a.epoch_after,
        a.committed
            .as_deref()
            .map(|c| format!("; committed {c}"))
            .unwrap_or_default()
    )
}
