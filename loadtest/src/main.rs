//! `greenlight`: load with a verdict, the admin API client, and a test origin.
//!
//! Exit codes: 0 success (verdict Pass or Inconclusive), 1 verdict Fail or a
//! refused admin call, 2 bad input, 3 the run itself failed.

use clap::{Args, Parser, Subcommand, ValueEnum};
use greenlight_common::admin::StateView;
use greenlight_common::state::Population as CanaryPopulation;
use indicatif::{ProgressBar, ProgressStyle};
use loadtest::admin_client::{self, AdminClient, AdminError, ClientConfig};
use loadtest::client::{self, Control, LoadConfig, Mode};
use loadtest::histogram::ColorKey;
use loadtest::origin::{Behavior, LatencyDist, Origin, SseStream, Stall};
use loadtest::recorder::Recorder;
use loadtest::report::{hgrm, Report};
use loadtest::routing_check::RoutingCheck;
use loadtest::sampling::{Comparison, PreviewCredential, SamplingReport};
use loadtest::scenario::Scenario;
use loadtest::schedule::{parse_duration, RateProfile};
use loadtest::transport::HttpOptions;
use loadtest::users::{IdentityKind, JwtClaims, JwtKey, Population};
use loadtest::verdict::{judge, judge_sequential, ColorSummary, Judgement, Policy, Verdict};
use reqwest::Url;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "greenlight",
    version,
    about = "Blue/green + canary releases at the edge: load with a verdict, admin client, test origin"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run load against a URL and judge green against blue.
    Load(Box<LoadArgs>),
    /// Show the rollout state of an edge.
    Status(AdminArgs),
    /// Set the candidate's share of users, in percent.
    Weight(WeightArgs),
    /// Make the candidate active (blue/green switch).
    Promote(ChangeArgs),
    /// Undo: canary back to 0 %, or return to the color active before the last promote.
    Rollback(ChangeArgs),
    /// Cancel a canary in progress.
    Abort(ChangeArgs),
    /// Run a test origin that answers with its color.
    Origin(OriginArgs),
    /// Reports from saved runs (`merge`: several agents' --hlog files, one verdict).
    #[command(subcommand)]
    Report(ReportCmd),
}

#[derive(Subcommand)]
enum ReportCmd {
    /// Merge the --hlog interval logs of load agents that ran side by side
    /// into one summary, JSON report and verdict.
    Merge(MergeArgs),
}

#[derive(Args)]
struct MergeArgs {
    /// Interval logs written by `greenlight load --hlog`.
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    policy: loadtest::policy_args::PolicyArgs,
    /// The color treated as the baseline.
    #[arg(long, default_value = "blue")]
    baseline: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum IdentityArg {
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
struct LoadArgs {
    /// Target URL, e.g. http://127.0.0.1:8787/ or https://app.example.workers.dev/
    url: String,
    #[command(flatten)]
    tls: loadtest::tls::TlsArgs,
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
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HdrHistogram interval log here (per color: corrected and
    /// service latency, time to first byte, events per second of streams),
    /// for `greenlight report merge` and HdrHistogram's tools.
    #[arg(long)]
    hlog: Option<PathBuf>,
    /// Write <color>.hgrm, <color>-service.hgrm and <color>-ttfb.hgrm percentile distributions here.
    #[arg(long)]
    hgrm_dir: Option<PathBuf>,
    #[command(flatten)]
    policy: loadtest::policy_args::PolicyArgs,
    /// Stop as soon as the sequential (anytime-valid) test decides.
    #[arg(long)]
    stop_early: bool,
    /// The color treated as the baseline (the other is judged against it).
    #[arg(long, default_value = "blue")]
    baseline: String,
    /// Environment variable holding an API key with the edge's `preview`
    /// role: comparison traffic (half to each color through the preview
    /// override, whatever the weight), which the verdict then compares.
    #[arg(long, default_value = loadtest::sampling::PREVIEW_KEY_ENV)]
    preview_key_env: String,
    /// Environment variable holding a JWT with the `preview` role (instead of a key).
    #[arg(long, default_value = loadtest::sampling::PREVIEW_JWT_ENV)]
    preview_jwt_env: String,
    /// With comparison traffic: share of requests (0..=1) that follow the
    /// weight, for the routing check.
    #[arg(long, default_value_t = loadtest::sampling::DEFAULT_WEIGHTED_SHARE)]
    routing_share: f64,
    /// The candidate weight (percent) the edge is set to: reports the
    /// weighted requests' split against it with a binomial interval.
    #[arg(long)]
    expect_weight: Option<f64>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct AdminArgs {
    /// Edge base URL (or GREENLIGHT_EDGE, or `edge` in the config file).
    #[arg(long, env = "GREENLIGHT_EDGE")]
    edge: Option<String>,
    #[command(flatten)]
    transport: admin_client::AdminTransportArgs,
    /// Config file with admin_token / edge (default ~/.config/greenlight/config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the state as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ChangeArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Expected epoch (default: read from a fresh GET /__greenlight/state).
    #[arg(long)]
    epoch: Option<u64>,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(Args)]
struct WeightArgs {
    /// Candidate share in percent (0..=100, two decimals kept).
    percent: f64,
    /// Who the canary's users are from this change on: `fresh` (a new
    /// salt for every canary started from 0 %) or `fixed` (the same users
    /// first every time). Unset: unchanged.
    #[arg(long, value_parser = parse_population)]
    population: Option<CanaryPopulation>,
    #[command(flatten)]
    change: ChangeArgs,
}

fn parse_population(v: &str) -> Result<CanaryPopulation, String> {
    match v {
        "fresh" => Ok(CanaryPopulation::Fresh),
        "fixed" => Ok(CanaryPopulation::Fixed),
        other => Err(format!("{other:?} is not fresh or fixed")),
    }
}

#[derive(Args)]
struct OriginArgs {
    /// The color to answer with (any label; blue/green in the demo).
    #[arg(long)]
    color: String,
    #[arg(long, default_value_t = 8081)]
    port: u16,
    /// Loopback by default.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// fixed:5ms | uniform:1ms,9ms | normal:5ms,1ms | lognormal:5ms,0.5 | exp:5ms | none
    #[arg(long, default_value = "none")]
    latency: String,
    /// Fraction (0.05) or percentage (5%) of requests answered with 500.
    #[arg(long, default_value = "0")]
    error_rate: String,
    /// Periodic stall: every,duration (e.g. 5s,500ms).
    #[arg(long)]
    stall: Option<String>,
    /// Refuse (401) requests without a valid edge signature; the shared
    /// secret is read from this environment variable (never from argv).
    #[arg(long)]
    signing_secret_env: Option<String>,
    /// Answer `cf-ray: <id>-<CODE>` like a Cloudflare location (e.g. FRA), for
    /// trying per-location reports.
    #[arg(long)]
    location: Option<String>,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1 over ALPN) with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Answer like a streaming chat-completions model: `text/event-stream`
    /// events (OpenAI chunk format, the request's `model` echoed), then
    /// `data: [DONE]`. The latency, error and stall options still apply
    /// before the response head.
    #[arg(long)]
    sse: bool,
    /// With --sse: time from the response head to the first event.
    #[arg(long, default_value = "300ms", requires = "sse")]
    ttft: String,
    /// With --sse: events per answer (each one token).
    #[arg(long, default_value_t = 50, requires = "sse")]
    events: u32,
    /// With --sse: time between events.
    #[arg(long, default_value = "20ms", requires = "sse")]
    inter_event: String,
}

/// A user mistake: printed as one line, exit code 2.
struct Usage(String);

impl From<String> for Usage {
    fn from(s: String) -> Usage {
        Usage(s)
    }
}

/// Prints to stdout, ignoring a closed pipe (`greenlight load ... | head`).
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn usage_exit(msg: &str) -> ExitCode {
    eprintln!("greenlight: error: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.cmd {
        Cmd::Load(a) => a.threads,
        _ => None,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = threads {
        if t == 0 {
            return usage_exit("--threads must be at least 1");
        }
        rt.worker_threads(t);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("greenlight: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Load(a) => load(*a).await,
            Cmd::Status(a) => admin(&a, |c| Box::pin(async move { c.state().await })).await,
            Cmd::Weight(w) => {
                let (p, e, r) = (w.percent, w.change.epoch, w.change.reason.clone());
                let population = w.population;
                admin(&w.change.admin, move |c| {
                    Box::pin(async move {
                        match population {
                            Some(pop) => c.set_weight_with_population(p, pop, e, &r).await,
                            None => c.set_weight(p, e, &r).await,
                        }
                    })
                })
                .await
            }
            Cmd::Promote(a) => {
                let (e, r) = (a.epoch, a.reason.clone());
                admin(&a.admin, move |c| {
                    Box::pin(async move { c.promote(e, &r).await })
                })
                .await
            }
            Cmd::Rollback(a) => {
                let (e, r) = (a.epoch, a.reason.clone());
                admin(&a.admin, move |c| {
                    Box::pin(async move { c.rollback(e, &r).await })
                })
                .await
            }
            Cmd::Abort(a) => {
                let (e, r) = (a.epoch, a.reason.clone());
                admin(&a.admin, move |c| {
                    Box::pin(async move { c.abort(e, &r).await })
                })
                .await
            }
            Cmd::Origin(a) => origin(a).await,
            Cmd::Report(ReportCmd::Merge(a)) => merge_reports(a),
        }
    })
}

type AdminFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<StateView, AdminError>> + Send>>;

async fn admin(args: &AdminArgs, op: impl FnOnce(AdminClient) -> AdminFuture) -> ExitCode {
    let config = match &args.config {
        Some(p) => ClientConfig::load(p, false),
        None => match ClientConfig::default_path() {
            Some(p) => ClientConfig::load(&p, true),
            None => Ok(ClientConfig::default()),
        },
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => return usage_exit(&e.to_string()),
    };
    let Some(edge) = args.edge.clone().or_else(|| config.edge.clone()) else {
        return usage_exit("no edge URL: pass --edge http://host:port (or set GREENLIGHT_EDGE)");
    };
    let token = admin_client::resolve_token(std::env::var(admin_client::TOKEN_ENV).ok(), &config);
    if args.transport.tls.insecure && edge.starts_with("https") {
        eprintln!("greenlight: {}", loadtest::tls::INSECURE_WARNING);
    }
    let client = match AdminClient::with_options(&edge, token, &args.transport.options()) {
        Ok(c) => c,
        Err(e) => return usage_exit(&e.to_string()),
    };
    match op(client).await {
        Ok(view) => {
            if args.json {
                say(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&view).unwrap_or_default()
                ));
            } else {
                say(&admin_client::describe(&view));
            }
            ExitCode::SUCCESS
        }
        Err(AdminError::Usage(m)) => usage_exit(&m),
        Err(e) => {
            eprintln!("greenlight: {e}");
            ExitCode::from(1)
        }
    }
}

fn build_load(a: &LoadArgs) -> Result<(LoadConfig, Policy, Option<f64>, ColorKey), Usage> {
    let mut url = Url::parse(a.url.trim()).map_err(|e| format!("invalid URL {:?}: {e}", a.url))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Usage(format!(
            "invalid URL {:?}: must be http(s)://host[:port]/path",
            a.url
        )));
    }
    if a.connections == 0 || a.streams_per_connection == 0 {
        return Err(Usage(
            "--connections and --streams-per-connection must be at least 1".into(),
        ));
    }
    if let Some(path) = &a.tls.cacert {
        if !path.is_file() {
            return Err(Usage(format!("--cacert {}: no such file", path.display())));
        }
    }
    let duration = parse_duration(&a.duration).map_err(|e| format!("--duration: {e}"))?;
    if duration.is_zero() {
        return Err(Usage("--duration must be greater than 0".into()));
    }
    let timeout = parse_duration(&a.timeout).map_err(|e| format!("--timeout: {e}"))?;
    if timeout.is_zero() {
        return Err(Usage("--timeout must be greater than 0".into()));
    }
    let (mode, target_rps) = match (&a.rate, a.max) {
        (Some(_), true) => {
            return Err(Usage(
                "use either --rate (open loop) or --max (closed loop), not both".into(),
            ))
        }
        (None, false) => {
            return Err(Usage(
                "--rate is required (or --max for closed-loop maximum throughput)".into(),
            ))
        }
        (None, true) => {
            if a.concurrency == 0 {
                return Err(Usage("--concurrency must be at least 1".into()));
            }
            (
                Mode::Closed {
                    concurrency: a.concurrency,
                },
                None,
            )
        }
        (Some(r), false) => {
            let profile = RateProfile::parse(r, duration).map_err(|e| format!("--rate: {e}"))?;
            if a.max_in_flight == 0 {
                return Err(Usage("--max-in-flight must be at least 1".into()));
            }
            let first = profile.rate_at(Duration::ZERO);
            (
                Mode::Open {
                    profile,
                    max_in_flight: a.max_in_flight,
                },
                Some(first),
            )
        }
    };
    if a.requests == Some(0) {
        return Err(Usage("--requests must be at least 1".into()));
    }
    let scenario = match &a.scenario {
        Some(p) => Some(Arc::new(Scenario::load(p).map_err(|e| e.0)?)),
        None if a.body_file.is_some() || !a.headers.is_empty() || a.method != "GET" => {
            let body = match &a.body_file {
                Some(p) => Some(
                    std::fs::read(p)
                        .map_err(|e| format!("--body-file {}: {e}", p.display()))?
                        .into(),
                ),
                None => None,
            };
            let mut path = url.path().to_string();
            if let Some(q) = url.query() {
                path = format!("{path}?{q}");
            }
            let one = Scenario::one(&a.method, &path, &a.headers, body).map_err(|e| e.0)?;
            // The request carries the whole path: no scenario prefix.
            url.set_path("/");
            url.set_query(None);
            Some(Arc::new(one))
        }
        None => None,
    };
    let kind = match a.identity {
        IdentityArg::Anonymous => IdentityKind::Anonymous,
        IdentityArg::ApiKey => IdentityKind::ApiKeys {
            prefix: a.api_key_prefix.clone(),
        },
        IdentityArg::Hs256 | IdentityArg::Es256 => {
            let key = match a.identity {
                IdentityArg::Hs256 => JwtKey::Hs256(
                    a.jwt_secret
                        .clone()
                        .ok_or_else(|| {
                            "--identity hs256 needs --jwt-secret (or GREENLIGHT_JWT_SECRET)"
                                .to_string()
                        })?
                        .into_bytes(),
                ),
                _ => {
                    let path = a
                        .jwt_key
                        .as_ref()
                        .ok_or_else(|| "--identity es256 needs --jwt-key <pem file>".to_string())?;
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("--jwt-key {}: {e}", path.display()))?;
                    JwtKey::Es256 {
                        pem,
                        kid: a.jwt_kid.clone(),
                    }
                }
            };
            IdentityKind::Jwt {
                key,
                claims: JwtClaims {
                    issuer: a.jwt_iss.clone(),
                    audience: a.jwt_aud.clone(),
                    ttl_s: duration.as_secs() + 3600,
                    roles: Vec::new(),
                },
            }
        }
    };
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let users = Population::new(&kind, a.users, now_s).map_err(|e| e.0)?;
    let comparison = match PreviewCredential::from_env(&a.preview_key_env, &a.preview_jwt_env)? {
        Some(c) => Some(Comparison::new(c, a.routing_share)?),
        None => None,
    };
    if a.expect_weight.is_some_and(|w| !(0.0..=100.0).contains(&w)) {
        return Err(Usage("--expect-weight must be within 0..=100".into()));
    }
    let policy = a.policy.apply(
        scenario
            .as_ref()
            .and_then(|s| s.policy.clone())
            .unwrap_or_default(),
    );
    policy.validate().map_err(|e| format!("policy: {e}"))?;
    let baseline = match a.baseline.parse::<greenlight_common::Color>() {
        Ok(c) => ColorKey::from(c),
        Err(e) => return Err(Usage(format!("--baseline: {e}"))),
    };
    if let Some(dir) = &a.hgrm_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("--hgrm-dir {}: {e}", dir.display()))?;
    }
    Ok((
        LoadConfig {
            url,
            mode,
            duration,
            max_requests: a.requests,
            timeout,
            scenario,
            users: Arc::new(users),
            seed: a.seed,
            comparison,
            locations: Arc::new(loadtest::locations::LocationTracker::new(
                loadtest::locations::LocationSource::parse(&a.location_header)?,
            )),
            http: HttpOptions {
                require_http2: a.http2,
                connections: a.connections,
                streams_per_connection: a.streams_per_connection,
                tls: a.tls.options(),
            },
        },
        policy,
        target_rps,
        baseline,
    ))
}

fn summaries(
    snap: &loadtest::recorder::Snapshot,
    baseline: ColorKey,
    comparison: bool,
) -> Option<(ColorSummary, ColorSummary)> {
    let cand = if baseline == ColorKey::Blue {
        ColorKey::Green
    } else {
        ColorKey::Blue
    };
    let (b, c) = if comparison {
        (snap.comparison(baseline), snap.comparison(cand))
    } else {
        (snap.color(baseline), snap.color(cand))
    };
    if b.requests() == 0 || c.requests() == 0 {
        return None;
    }
    Some((
        ColorSummary::of_color(b, baseline),
        ColorSummary::of_color(c, cand),
    ))
}

fn live_message(snap: &loadtest::recorder::Snapshot) -> String {
    ColorKey::ALL
        .iter()
        .filter(|c| snap.color(**c).requests() > 0)
        .map(|c| {
            let s = snap.color(*c);
            format!(
                "{} {} req p99 {:.1} ms ttfb p50 {:.1} ms err {}",
                c.as_str(),
                s.requests(),
                s.latency_us(0.99) as f64 / 1000.0,
                s.ttfb_us(0.5) as f64 / 1000.0,
                s.outcomes.errors()
            )
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

async fn load(a: LoadArgs) -> ExitCode {
    let (mut cfg, policy, target_rps, baseline) = match build_load(&a) {
        Ok(x) => x,
        Err(Usage(m)) => return usage_exit(&m),
    };
    // Comparison traffic only where the edge honours the preview; else say
    // so once and fall back to weighted traffic (fresh anonymous callers).
    let fallback = match &cfg.comparison {
        None => Some(format!(
            "no preview credential: set ${} (an API key) or ${} (a JWT) with the preview role for comparison traffic",
            a.preview_key_env, a.preview_jwt_env
        )),
        Some(_) => client::probe_preview(&cfg).await.err(),
    };
    if let Some(why) = &fallback {
        cfg.comparison = None;
        if matches!(a.identity, IdentityArg::Anonymous) {
            cfg.users = Arc::new(Population::fresh_anonymous());
        }
        if !a.quiet {
            eprintln!("greenlight: weighted traffic only ({why})");
            if let Some(w) = a.expect_weight {
                let rate = target_rps.unwrap_or(0.0);
                let eta = loadtest::sampling::time_to_min_samples(
                    policy.min_samples,
                    0,
                    loadtest::sampling::candidate_rate(rate, w, None),
                )
                .map(loadtest::sampling::human_duration)
                .unwrap_or_else(|| "never".into());
                eprintln!(
                    "greenlight: at {w}% of {rate} req/s the candidate reaches the policy's {} samples in about {eta}",
                    policy.min_samples
                );
            }
        }
    }
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
        eprintln!("greenlight: {}", loadtest::tls::INSECURE_WARNING);
    }
    let recorder = Recorder::new();
    let control = Control::default();
    let locations = cfg.locations.clone();

    // Ctrl-C: stop cleanly and still report; a second Ctrl-C exits at once.
    {
        let control = control.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ngreenlight: stopping (Ctrl-C again to quit without a report)");
                control.stop();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }

    // Progress bar and the sequential watcher (one look per second).
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(cfg.duration.as_millis() as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {percent:>3}% {msg}")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b
    };
    let sequential: Arc<std::sync::Mutex<Option<Judgement>>> = Arc::default();
    // --hlog: the interval log is written as the run goes, one interval a
    // second, by a thread that takes the watcher's looks.
    let started = std::time::SystemTime::now();
    let (hlog_tx, hlog_writer) = match &a.hlog {
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => {
                let (tx, rx) = std::sync::mpsc::channel::<(loadtest::recorder::Snapshot, bool)>();
                let writer = std::thread::spawn(move || {
                    let mut out = std::io::BufWriter::new(file);
                    // Looks up to and including the last one (the run's end),
                    // without waiting for another after it.
                    let mut ended = false;
                    let looks = std::iter::from_fn(|| {
                        if ended {
                            return None;
                        }
                        let (snap, last) = rx.recv().ok()?;
                        ended = last;
                        Some(snap)
                    });
                    loadtest::hlog::write_intervals(&mut out, started, looks)
                        .and_then(|()| std::io::Write::flush(&mut out).map_err(|e| e.to_string()))
                });
                (Some(tx), Some(writer))
            }
            Err(e) => return usage_exit(&format!("cannot write {}: {e}", path.display())),
        },
        None => (None, None),
    };
    let watcher = {
        let (recorder, control, bar, sequential, policy) = (
            recorder.clone(),
            control.clone(),
            bar.clone(),
            sequential.clone(),
            policy.clone(),
        );
        let stop_early = a.stop_early;
        let hlog_tx = hlog_tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(1000));
            loop {
                every.tick().await;
                let snap = recorder.snapshot();
                bar.set_position(snap.elapsed.as_millis() as u64);
                bar.set_message(live_message(&snap));
                let decided = if stop_early {
                    summaries(&snap, baseline, comparing)
                        .map(|(b, c)| judge_sequential(&policy, &b, &c))
                        .filter(|j| j.verdict != Verdict::Inconclusive)
                } else {
                    None
                };
                if let Some(tx) = &hlog_tx {
                    let _ = tx.send((snap, false));
                }
                if let Some(j) = decided {
                    if let Ok(mut s) = sequential.lock() {
                        *s = Some(j);
                    }
                    control.stop();
                    break;
                }
            }
        })
    };

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
    let early = sequential.lock().ok().and_then(|mut s| s.take());
    let verdict = match early {
        Some(j) => Some(j),
        None => summaries(&snap, baseline, comparing).map(|(b, c)| judge(&policy, &b, &c)),
    };
    let candidate = if baseline == ColorKey::Blue {
        ColorKey::Green
    } else {
        ColorKey::Blue
    };
    let routing_check = a.expect_weight.and_then(|w| {
        let cand = snap.weighted_requests(candidate);
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
    say(&report.human());
    if report.verdict.is_none() {
        let seen: Vec<&str> = report.colors.keys().map(|c| c.as_str()).collect();
        say(&format!(
            "\nno verdict: it needs responses from both blue and green (x-greenlight-color); saw: {}\n",
            if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
        ));
    }
    let mut code = match report.verdict.as_ref().map(|j| j.verdict) {
        Some(Verdict::Fail) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    };
    if let Some(path) = &a.json {
        if let Err(e) = std::fs::write(path, report.to_json()) {
            eprintln!("greenlight: cannot write {}: {e}", path.display());
            code = ExitCode::from(3);
        }
    }
    if let (Some(path), Some(tx), Some(writer)) = (&a.hlog, hlog_tx, hlog_writer) {
        let _ = tx.send((snap.clone(), true));
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err("the writer stopped".into()));
        if let Err(e) = written {
            eprintln!("greenlight: cannot write {}: {e}", path.display());
            code = ExitCode::from(3);
        }
    }
    if let Some(dir) = &a.hgrm_dir {
        for c in ColorKey::ALL {
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

fn merge_reports(a: MergeArgs) -> ExitCode {
    let mut logs = Vec::new();
    for p in &a.logs {
        match std::fs::read(p) {
            Ok(b) => logs.push((p.display().to_string(), b)),
            Err(e) => return usage_exit(&format!("{}: {e}", p.display())),
        }
    }
    let snap = match loadtest::hlog::merge(&logs) {
        Ok(s) => s,
        Err(e) => return usage_exit(&e),
    };
    let policy = a.policy.apply(Policy::default());
    if let Err(e) = policy.validate() {
        return usage_exit(&format!("policy: {e}"));
    }
    let baseline = match a.baseline.parse::<greenlight_common::Color>() {
        Ok(c) => ColorKey::from(c),
        Err(e) => return usage_exit(&format!("--baseline: {e}")),
    };
    // Interval logs keep no purpose: all samples are judged.
    let verdict = summaries(&snap, baseline, false).map(|(b, c)| judge(&policy, &b, &c));
    let target = format!("{} merged interval logs", logs.len());
    let report = Report::build(
        &target,
        "merged",
        None,
        &snap,
        snap.elapsed.as_secs_f64(),
        false,
        verdict,
    );
    say(&report.human());
    let mut code = match report.verdict.as_ref().map(|j| j.verdict) {
        Some(Verdict::Fail) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    };
    if let Some(path) = &a.json {
        if let Err(e) = std::fs::write(path, report.to_json()) {
            eprintln!("greenlight: cannot write {}: {e}", path.display());
            code = ExitCode::from(3);
        }
    }
    code
}

fn parse_error_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (t, 1.0),
    };
    let v = num
        .trim()
        .parse::<f64>()
        .map(|v| v * scale)
        .map_err(|_| format!("--error-rate {s:?} is not a number like 0.05 or 5%"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!(
            "--error-rate {s:?} must be within 0..=1 (or 0%..=100%)"
        ));
    }
    Ok(v)
}

async fn origin(a: OriginArgs) -> ExitCode {
    let behavior = (|| -> Result<Behavior, String> {
        Ok(Behavior {
            latency: LatencyDist::parse(&a.latency).map_err(|e| format!("--latency: {e}"))?,
            error_rate: parse_error_rate(&a.error_rate)?,
            stall: a
                .stall
                .as_deref()
                .map(Stall::parse)
                .transpose()
                .map_err(|e| format!("--stall: {e}"))?,
            signing_secret: match &a.signing_secret_env {
                None => None,
                Some(var) => Some(
                    std::env::var(var)
                        .ok()
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| format!("--signing-secret-env: ${var} is not set"))?
                        .into_bytes(),
                ),
            },
            // The scripted routes are for the test suites only.
            scripts: false,
            sse: if a.sse {
                Some(SseStream {
                    ttft: parse_duration(&a.ttft).map_err(|e| format!("--ttft: {e}"))?,
                    events: a.events,
                    inter_event: parse_duration(&a.inter_event)
                        .map_err(|e| format!("--inter-event: {e}"))?,
                })
            } else {
                None
            },
        })
    })();
    let behavior = match behavior {
        Ok(b) => b,
        Err(m) => return usage_exit(&m),
    };
    if a.color.trim().is_empty() {
        return usage_exit("--color must not be empty");
    }
    let addr: SocketAddr = match format!("{}:{}", a.host, a.port).parse() {
        Ok(x) => x,
        Err(_) => return usage_exit(&format!("--host {:?} is not an IP address", a.host)),
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => match Origin::tls_config(c, k) {
            Ok(t) => Some(t),
            Err(e) => return usage_exit(&e),
        },
        _ => None,
    };
    let o = match Origin::start_with_tls(addr, &a.color, behavior, tls).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("greenlight: cannot listen on {addr}: {e}");
            return ExitCode::from(3);
        }
    };
    if let Some(code) = &a.location {
        o.set_location(code);
    }
    say(&format!(
        "greenlight origin {} listening on {}\n",
        o.color,
        o.url()
    ));
    let _ = tokio::signal::ctrl_c().await;
    eprintln!(
        "greenlight origin {}: {} requests served",
        o.color,
        o.hits()
    );
    ExitCode::SUCCESS
}
