//! `greenlight-rollout`: the dashboard's automated rollout without a display
//! (for CI and machines without one). Drives load through the edge in-process,
//! steps the candidate's weight, analyses each step, promotes at the end and
//! rolls back automatically on `Fail`.
//!
//! Exit codes: 0 promoted, 1 rolled back / aborted / interrupted, 2 bad
//! input, 3 the edge refused or could not be reached.

use clap::Parser;
use greenlight_common::duration::parse_duration;
use greenlight_engine::admin_client::AdminClient;
use greenlight_engine::client::{self as engine, Control};
use greenlight_engine::recorder::Recorder;
use greenlight_engine::sampling::{
    PreviewCredential, DEFAULT_WEIGHTED_SHARE, PREVIEW_JWT_ENV, PREVIEW_KEY_ENV,
};
use greenlight_verdict::Policy;
use harness_gui::audit::AuditFile;
use harness_gui::rollout::{
    drive, Controller, DriveEvent, Evidence, Finish, OnInconclusive, RolloutPlan, UserCmd,
};
use harness_gui::settings::{parse_steps, DEFAULT_TOKEN_ENV};
use harness_gui::synthetic::{self, missing_credential, Sampling, SyntheticLoad};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Inconclusive {
    Pause,
    Advance,
    Rollback,
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
    /// Do not drive load (the analysis then has no evidence).
    #[arg(long)]
    no_load: bool,
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
    #[arg(long, default_value = DEFAULT_TOKEN_ENV)]
    token_env: String,
    /// Name for the audit trail.
    #[arg(long, default_value = "greenlight-rollout")]
    actor: String,
    /// Audit log (JSON lines).
    #[arg(long)]
    audit: Option<PathBuf>,
}

/// A line above the progress bar, or on stderr when there is no terminal
/// to draw it on (CI logs keep the rollout's story).
fn say(pb: &ProgressBar, line: impl AsRef<str>) {
    if pb.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        pb.println(line);
    }
}

fn usage(m: &str) -> ExitCode {
    eprintln!("greenlight-rollout: {m}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let policy = cli.policy.apply(Policy::default());
    let steps = match parse_steps(&cli.steps) {
        Ok(s) => s,
        Err(e) => return usage(&format!("--steps: {e}")),
    };
    let dwell = match parse_duration(&cli.dwell) {
        Ok(d) => d,
        Err(e) => return usage(&format!("--dwell: {}", e.0)),
    };
    let timeout = match parse_duration(&cli.timeout) {
        Ok(d) => d,
        Err(e) => return usage(&format!("--timeout: {}", e.0)),
    };
    let on = match cli.on_inconclusive {
        Inconclusive::Pause => OnInconclusive::Pause,
        Inconclusive::Advance => OnInconclusive::Advance,
        Inconclusive::Rollback => OnInconclusive::Rollback,
    };
    let plan = match RolloutPlan::new(
        steps,
        dwell,
        cli.max_extensions,
        on,
        policy,
        cli.actor.clone(),
    ) {
        Ok(p) => p,
        Err(e) => return usage(&e),
    };
    let token = std::env::var(&cli.token_env)
        .ok()
        .filter(|t| !t.trim().is_empty());
    if cli.transport.tls.insecure {
        eprintln!(
            "greenlight-rollout: {}",
            greenlight_engine::tls::INSECURE_WARNING
        );
    }
    let client = match AdminClient::with_options(&cli.edge, token, &cli.transport.options()) {
        Ok(c) => c,
        Err(e) => return usage(&e.to_string()),
    };
    let preview = match PreviewCredential::from_env(&cli.preview_key_env, &cli.preview_jwt_env) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(missing_credential(
            &cli.preview_key_env,
            &cli.preview_jwt_env,
        )),
        Err(e) => return usage(&e),
    };
    if !(0.0..=1.0).contains(&cli.routing_share) {
        return usage("--routing-share must be within 0..=1");
    }
    let load = (!cli.no_load).then(|| SyntheticLoad {
        url: cli.target.clone().unwrap_or_else(|| cli.edge.clone()),
        rate: cli.rate,
        users: cli.users,
        scenario: cli.scenario.clone(),
        duration: timeout + Duration::from_secs(60),
        preview,
        weighted_share: cli.routing_share,
        tls: cli.transport.tls.options(),
    });
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
    let audit = AuditFile::new(cli.audit.clone());
    rt.block_on(async move {
        let configured = match load {
            Some(l) => match synthetic::configure(l).await {
                Ok(c) => Some(c),
                Err(e) => return usage(&e),
            },
            None => None,
        };
        let recorder = configured.as_ref().map(|_| Recorder::new());
        let control = Control::default();
        let (load_task, sampling) = match (configured, &recorder) {
            (Some((cfg, sampling)), Some(rec)) => (
                Some(tokio::spawn(engine::run(cfg, rec.clone(), control.clone()))),
                sampling,
            ),
            _ => (None, Sampling::Weighted { why: "--no-load".into() }),
        };
        let mut evidence = Evidence::since_now(recorder.clone(), sampling, cli.rate);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("interrupted: aborting the rollout (Ctrl-C again to quit at once)");
                    let _ = tx.send(UserCmd::Abort);
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                }
            });
        }
        let n = plan.steps.len() as u64;
        let pb = ProgressBar::new(n);
        pb.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] step {pos}/{len} {bar:30.green/blue} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        let mut printed = 0usize;
        let mut paused_abort_sent = false;
        let mut ctrl = Controller::new(plan);
        let finish = drive(&mut ctrl, &client, &mut evidence, &mut rx, &audit, timeout, |e| match e {
            DriveEvent::Status(s) => {
                for l in &s.log[printed.min(s.log.len())..] {
                    say(&pb, l);
                }
                printed = s.log.len();
                if let Some(i) = s.step {
                    pb.set_position(i as u64 + 1);
                }
                let verdict = s.last_verdict.map(|v| format!(" · last analysis {v}")).unwrap_or_default();
                pb.set_message(format!("{}{verdict}", s.headline));
                if s.paused && !paused_abort_sent {
                    paused_abort_sent = true;
                    say(&pb, "the rollout paused for a decision, which a headless run cannot take: aborting");
                    let _ = tx.send(UserCmd::Abort);
                }
            }
            DriveEvent::Audit(a) if a.outcome != harness_gui::audit::Outcome::Info => {
                say(&pb, format!(
                    "admin: {} → {} (epoch {:?} → {:?}){}",
                    a.action,
                    a.outcome.as_str(),
                    a.epoch_before,
                    a.epoch_after,
                    a.committed
                        .as_deref()
                        .map(|c| format!("; committed {c}"))
                        .unwrap_or_default()
                ));
            }
            DriveEvent::StateError(e) => pb.set_message(format!("state read failed: {e}")),
            _ => {}
        })
        .await;
        pb.finish_and_clear();
        control.stop();
        if let Some(t) = load_task {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        if let Some(rec) = &recorder {
            let snap = rec.snapshot();
            use greenlight_engine::histogram::SeenColor;
            let c = |k: SeenColor| snap.color(k).requests();
            let cmp = |k: SeenColor| snap.comparison(k).requests();
            eprintln!(
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
            );
        }
        println!("rollout {}", finish.describe());
        match finish {
            Finish::Promoted { .. } => ExitCode::SUCCESS,
            Finish::RolledBack { .. } | Finish::Aborted | Finish::Interrupted(_) => ExitCode::from(1),
            Finish::Failed(_) => ExitCode::from(3),
        }
    })
}
