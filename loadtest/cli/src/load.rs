//! `greenlight load`: load against a URL, green judged against blue.

mod config;
mod live;

use crate::output::{print_human, usage_exit, Usage};
use crate::verdicts::{candidate_of, json_to_stdout, summaries, verdict_exit_code, write_json};
use clap::{Args, ValueEnum};
use config::LoadPlan;
use greenlight_engine::client::{self, Control, LoadConfig, Mode};
use greenlight_engine::histogram::SeenColor;
use greenlight_engine::recorder::{Recorder, Snapshot};
use greenlight_engine::report::{hgrm, Report, SamplingReport};
use greenlight_engine::sampling;
use greenlight_engine::tls::TlsArgs;
use greenlight_engine::users::SimulatedUsers;
use greenlight_engine::{admin_client, real_users};
use greenlight_verdict::policy_args::PolicyArgs;
use greenlight_verdict::routing_check::RoutingCheck;
use greenlight_verdict::{judge, judged, Judge, Judgement, Policy};
use live::{HlogWriter, Watch};
use reqwest::Url;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, ValueEnum)]
pub enum IdentityArg {
    /// No credentials; the edge's greenlight-id cookie is kept per user.
    Anonymous,
    /// x-api-key: <prefix><n>.
    ApiKey,
    /// Bearer JWTs signed with --jwt-secret.
    Hs256,
    /// Bearer JWTs signed with the P-256 key in --jwt-key.
    Es256,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Target URL, e.g. http://127.0.0.1:8787/ or https://app.example.workers.dev/
    url: String,
    #[command(flatten)]
    tls: TlsArgs,
    /// Require HTTP/2 (ALPN h2 over https; prior knowledge, h2c, over http).
    /// Over https, h2 is used whenever the server offers it.
    #[arg(long)]
    http2: bool,
    /// HTTP/2: connections to open (requests are multiplexed on them).
    /// HTTP/1.1 keeps one connection per request in flight, so there the
    /// cap is --max-in-flight (open loop) or --concurrency (--max).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Read each answer's location (point of presence) from this header:
    /// `cf-ray` (default) takes the suffix of Cloudflare's `…-FRA`, any other
    /// header its whole value.
    #[arg(long, default_value = "cf-ray")]
    location_header: String,
    /// HTTP/2: requests in flight at once per connection.
    #[arg(long, default_value_t = 100)]
    streams_per_connection: usize,
    /// Requests/s: 500 (constant), 100..1000 (ramp over the run), 100,500@10s (steps).
    #[arg(long)]
    rate: Option<String>,
    /// Run length, e.g. 30s, 2m.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Closed-loop maximum-throughput mode (no --rate; see --concurrency).
    #[arg(long)]
    max: bool,
    /// Workers in --max mode.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop: most requests outstanding at once; later ones count as late.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s")]
    timeout: String,
    /// Simulated users.
    #[arg(long, default_value_t = 100)]
    users: usize,
    #[arg(long, value_enum, default_value = "anonymous")]
    identity: IdentityArg,
    #[arg(long, default_value = "glk-user-")]
    api_key_prefix: String,
    #[arg(long, env = "GREENLIGHT_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// PEM file of the ES256 signing key (e.g. tests/fixtures/ec-private.pem).
    #[arg(long)]
    jwt_key: Option<PathBuf>,
    #[arg(long)]
    jwt_kid: Option<String>,
    #[arg(long)]
    jwt_iss: Option<String>,
    #[arg(long)]
    jwt_aud: Option<String>,
    /// TOML request mix (and optional [verdict] policy).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Method of every request (without --scenario), e.g. POST for a
    /// chat-completions endpoint.
    #[arg(long, default_value = "GET", conflicts_with = "scenario")]
    method: String,
    /// Request body read from this file (without --scenario), e.g. a
    /// chat-completions body with "stream": true; sent as application/json
    /// unless a --header names another content-type.
    #[arg(long, conflicts_with = "scenario")]
    body_file: Option<PathBuf>,
    /// Extra request header `name: value` (repeatable; without --scenario).
    #[arg(long = "header", short = 'H', conflicts_with = "scenario")]
    headers: Vec<String>,
    /// Write the JSON report to FILE (`-`: standard output, the summary
    /// then goes to standard error).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Exit 0 on an inconclusive verdict (default: exit 4, so a gate fails
    /// closed when the run could not tell).
    #[arg(long)]
    allow_inconclusive: bool,
    /// Write an HdrHistogram interval log here (per color: corrected and
    /// service latency, time to first byte, events per second of streams),
    /// for `greenlight report merge` and HdrHistogram's tools.
    #[arg(long)]
    hlog: Option<PathBuf>,
    /// Write <color>.hgrm, <color>-service.hgrm and <color>-ttfb.hgrm percentile distributions here.
    #[arg(long)]
    hgrm_dir: Option<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Stop as soon as the sequential (anytime-valid) test decides.
    #[arg(long)]
    stop_early: bool,
    /// The color treated as the baseline (the other is judged against it).
    #[arg(long, default_value = "blue")]
    baseline: String,
    /// Environment variable holding an API key with the edge's `preview`
    /// role: comparison traffic (half to each color through the preview
    /// override, whatever the weight), which the verdict then compares.
    #[arg(long, default_value = sampling::PREVIEW_KEY_ENV)]
    preview_key_env: String,
    /// Environment variable holding a JWT with the `preview` role (instead of a key).
    #[arg(long, default_value = sampling::PREVIEW_JWT_ENV)]
    preview_jwt_env: String,
    /// With comparison traffic: share of requests (0..=1) that follow the
    /// weight, for the routing check.
    #[arg(long, default_value_t = sampling::DEFAULT_WEIGHTED_SHARE)]
    routing_share: f64,
    /// The candidate weight (percent) the edge is set to: reports the
    /// weighted requests' split against it with a binomial interval.
    #[arg(long)]
    expect_weight: Option<f64>,
    /// Which evidence the verdict judges: `synthetic` (this run's own
    /// requests; the default, as a load run needs no admin access), `real`
    /// (real users as the edge counted them in the epoch in force when the
    /// run ends: `GET /__greenlight/metrics` with `$GREENLIGHT_ADMIN_TOKEN`,
    /// viewer role), or `both` (this run's verdict, which real users can
    /// veto).
    #[arg(long, value_enum, default_value = "synthetic")]
    judge: Judge,
    /// The edge whose counts `--judge real|both` reads (default: the
    /// target URL's scheme, host and port).
    #[arg(long, env = "GREENLIGHT_EDGE")]
    edge: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs the load and reports; the exit code says the verdict (see `main`).
pub async fn run(a: LoadArgs) -> ExitCode {
    let LoadPlan {
        mut cfg,
        policy,
        target_rps,
        baseline,
    } = match config::build(&a) {
        Ok(x) => x,
        Err(Usage(m)) => return usage_exit(&m),
    };
    let fallback = comparison_or_fallback(&a, &mut cfg, &policy, target_rps).await;
    let comparing = cfg.comparison.is_some();
    let weighted_share = cfg.comparison.as_ref().map(|c| c.weighted_share);
    let mode = if matches!(cfg.mode, Mode::Open { .. }) {
        "open"
    } else {
        "closed"
    };
    let target = Url::parse(a.url.trim())
        .map(|u| u.to_string())
        .unwrap_or_else(|_| cfg.url.to_string());
    if cfg.http.tls.insecure {
        eprintln!("greenlight: {}", greenlight_engine::tls::INSECURE_WARNING);
    }
    let recorder = Recorder::new();
    let control = Control::default();
    let locations = cfg.locations.clone();
    live::stop_on_ctrl_c(control.clone());
    let bar = live::progress_bar(a.quiet, cfg.duration);
    let decided: Arc<Mutex<Option<Judgement>>> = Arc::default();
    let hlog = match &a.hlog {
        Some(path) => match HlogWriter::start(path, std::time::SystemTime::now()) {
            Ok(w) => Some(w),
            Err(e) => return usage_exit(&e),
        },
        None => None,
    };
    let watcher = live::spawn_watcher(Watch {
        recorder: recorder.clone(),
        control: control.clone(),
        bar: bar.clone(),
        policy: policy.clone(),
        baseline,
        comparing,
        stop_early: a.stop_early,
        hlog: hlog.as_ref().map(|w| w.looks.clone()),
        decided: decided.clone(),
    });

    let end = client::run(cfg, recorder.clone(), control).await;
    // Stopped for good before the final snapshot: no look of the watcher
    // (nor its --hlog interval) can come after it.
    watcher.abort();
    let _ = watcher.await;
    bar.finish_and_clear();
    let end = match end {
        Ok(e) => e,
        Err(e) => {
            eprintln!("greenlight: error: {e}");
            return ExitCode::from(3);
        }
    };
    let snap = recorder.snapshot();
    let early = decided.lock().ok().and_then(|mut s| s.take());
    let verdict = match early {
        Some(j) => Some(j),
        None => summaries(&snap, baseline, comparing).map(|(b, c)| judge(&policy, &b, &c)),
    };
    let verdict = if a.judge.wants_real() {
        let real = real_users(&a, &target, &policy, baseline).await;
        Some(judged(a.judge, verdict, real))
    } else {
        verdict
    };
    let routing_check = a.expect_weight.and_then(|w| {
        let cand = snap.weighted_requests(candidate_of(baseline));
        RoutingCheck::of(
            w,
            cand,
            cand + snap.weighted_requests(baseline),
            policy.alpha,
        )
    });
    let mut report = Report::build(
        &target,
        mode,
        target_rps,
        &snap,
        end.elapsed.as_secs_f64(),
        end.stopped_early,
        verdict,
    );
    report.sampling = Some(SamplingReport::of(
        &snap,
        weighted_share,
        fallback,
        routing_check,
    ));
    report.connections = Some(end.connections.clone());
    let seen = locations.summary();
    if !seen.locations.is_empty() {
        report.locations = Some(seen);
    }
    print_summary(&report, json_to_stdout(a.json.as_deref()));
    write_files(&a, &report, &snap, hlog)
}

/// The verdict on the real users the edge counted in the epoch in force
/// now; `None` (said on standard error) when the counts cannot be read.
async fn real_users(
    a: &LoadArgs,
    target: &str,
    policy: &Policy,
    baseline: greenlight_engine::histogram::SeenColor,
) -> Option<Judgement> {
    let edge = match &a.edge {
        Some(e) => e.clone(),
        None => {
            let u = Url::parse(target).ok()?;
            u.origin().ascii_serialization()
        }
    };
    let token = std::env::var(admin_client::TOKEN_ENV).ok();
    let client = match admin_client::AdminClient::new(&edge, token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("greenlight: real users: {e}");
            return None;
        }
    };
    let (state, metrics) = match (client.state().await, client.metrics().await) {
        (Ok(s), Ok(m)) => (s, m),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("greenlight: real users: reading {edge}: {e}");
            return None;
        }
    };
    let active = match baseline.as_str() {
        "green" => greenlight_common::Color::Green,
        _ => greenlight_common::Color::Blue,
    };
    real_users::judge_epoch(&metrics, state.state.epoch, active, policy, false)
}

/// Comparison traffic only where the edge honours the preview; else says
/// so once and falls back to weighted traffic (fresh anonymous callers).
/// Returns why there is no comparison traffic.
async fn comparison_or_fallback(
    a: &LoadArgs,
    cfg: &mut LoadConfig,
    policy: &Policy,
    target_rps: Option<f64>,
) -> Option<String> {
    let fallback = match &cfg.comparison {
        None => Some(format!(
            "no preview credential: set ${} (an API key) or ${} (a JWT) with the preview role for comparison traffic",
            a.preview_key_env, a.preview_jwt_env
        )),
        Some(_) => client::probe_preview(cfg).await.err(),
    };
    let why = fallback.as_ref()?;
    cfg.comparison = None;
    if matches!(a.identity, IdentityArg::Anonymous) {
        cfg.users = Arc::new(SimulatedUsers::fresh_anonymous());
    }
    if !a.quiet {
        eprintln!("greenlight: weighted traffic only ({why})");
        if let Some(w) = a.expect_weight {
            let rate = target_rps.unwrap_or(0.0);
            let eta = sampling::time_to_min_samples(
                policy.min_samples,
                0,
                sampling::candidate_rate(rate, w, None),
            )
            .map(sampling::human_duration)
            .unwrap_or_else(|| "never".into());
            eprintln!(
                "greenlight: at {w}% of {rate} req/s the candidate reaches the policy's {} samples in about {eta}",
                policy.min_samples
            );
        }
    }
    fallback
}

/// The side-by-side summary, and why there is no verdict when there is none.
fn print_summary(report: &Report, json_on_stdout: bool) {
    let mut text = report.human();
    if report.verdict.is_none() {
        let seen: Vec<&str> = report.colors.keys().map(|c| c.as_str()).collect();
        text.push_str(&format!(
            "\nno verdict: it needs responses from both blue and green (x-greenlight-color); saw: {}\n",
            if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
        ));
    }
    print_human(&text, json_on_stdout);
}

/// `--json`, `--hlog` and `--hgrm-dir`; a file that cannot be written
/// makes the exit code 3, else it is the verdict's.
fn write_files(
    a: &LoadArgs,
    report: &Report,
    snap: &Snapshot,
    hlog: Option<HlogWriter>,
) -> ExitCode {
    let mut code = verdict_exit_code(report, a.allow_inconclusive);
    if let Some(path) = &a.json {
        if let Err(failed) = write_json(path, report) {
            code = failed;
        }
    }
    if let (Some(path), Some(writer)) = (&a.hlog, hlog) {
        if let Err(e) = writer.finish(snap.clone()) {
            eprintln!("greenlight: cannot write {}: {e}", path.display());
            code = ExitCode::from(3);
        }
    }
    if let Some(dir) = &a.hgrm_dir {
        for c in SeenColor::ALL {
            let s = snap.color(c);
            if s.requests() == 0 {
                continue;
            }
            for (suffix, h) in [
                ("", &s.corrected),
                ("-service", &s.uncorrected),
                ("-ttfb", &s.ttfb),
            ] {
                let path = dir.join(format!("{}{suffix}.hgrm", c.as_str()));
                if let Err(e) = std::fs::write(&path, hgrm(h)) {
                    eprintln!("greenlight: cannot write {}: {e}", path.display());
                    code = ExitCode::from(3);
                }
            }
        }
    }
    code
}
