//! greenlight's local demo: two origins on 127.0.0.1, a real edge runtime in
//! front of them, and a rollout you can watch. `scripts/demo.sh` builds what
//! it needs and runs this.

use anyhow::Context;
use clap::{Parser, ValueEnum};
use greenlight_common::Color;
use greenlight_e2e::{fixtures, Runtime};
use greenlight_engine::admin_client::{describe, AdminClient};
use greenlight_test_origin::{Behavior, LatencyDist, Origin};
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EdgeKind {
    /// The Worker under workerd (`wrangler dev --local`).
    Cloudflare,
    /// The Spin component under `spin up`.
    Spin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Ui {
    /// The release dashboard (needs a display).
    Dashboard,
    /// The dashboard's headless twin, `greenlight-rollout`.
    Headless,
    /// A scripted canary → promote → rollback, printed as a table.
    Script,
}

#[derive(Debug, Parser)]
#[command(about = "Run greenlight locally: two origins, the edge, and a rollout you can watch")]
struct Args {
    #[arg(long, value_enum, default_value = "cloudflare")]
    edge: EdgeKind,
    /// How to drive the rollout (default: the dashboard when $DISPLAY is set,
    /// else the headless twin).
    #[arg(long, value_enum)]
    ui: Option<Ui>,
    /// Make green ~10 ms slower per request, so the automated rollout rolls itself back.
    #[arg(long)]
    regression: bool,
    /// AI backends: two emulated streaming models behind a chat-completions
    /// route (a model per color); green's first token comes 160 ms later
    /// (its tokens come faster, so the whole answer takes as long: ~305 ms). The
    /// rollout POSTs streamed chat completions, judges the time to first
    /// token (`--metric ttfb`) and rolls green back.
    #[arg(long, conflicts_with = "regression")]
    ai: bool,
    /// Synthetic load, requests/s (local workerd is one thread: keep it
    /// modest). Default 60; 16 with --ai, whose every answer is a stream of
    /// events that `wrangler dev` relays one by one.
    #[arg(long)]
    rate: Option<f64>,
    /// Blue's latency distribution (see `greenlight origin --help`).
    #[arg(long, default_value = "normal:4ms,1ms")]
    blue_latency: String,
    /// Green's latency distribution; make it slower to watch a regression.
    #[arg(long, default_value = "normal:4ms,1ms")]
    green_latency: String,
    /// Users sampled at each rollout step.
    #[arg(long, default_value_t = 300)]
    users: u32,
    /// Keep the edge and origins up this many seconds after the rollout, to
    /// try it with curl (Ctrl-C stops earlier).
    #[arg(long, default_value_t = 0)]
    hold: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Whatever the demo is doing, a stop request drops it: the origins and
    // the edge's process group go with it.
    tokio::select! {
        r = run(args) => r,
        _ = stop_requested() => {
            println!("stopping the demo");
            Ok(())
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let behavior = |spec: &str| -> anyhow::Result<Behavior> {
        Ok(Behavior {
            latency: LatencyDist::parse(spec).map_err(anyhow::Error::msg)?,
            ..Behavior::default()
        })
    };
    let any = "127.0.0.1:0".parse()?;
    let green_latency = if args.regression {
        "normal:14ms,2ms"
    } else {
        args.green_latency.as_str()
    };
    let (blue_behavior, green_behavior) = if args.ai {
        (ai_model(80, 10, 25), ai_model(240, 10, 7))
    } else {
        (behavior(&args.blue_latency)?, behavior(green_latency)?)
    };
    let blue = Origin::start(any, "blue", blue_behavior).await?;
    let green = Origin::start(any, "green", green_behavior).await?;
    println!("origins: blue {}  green {}", blue.url(), green.url());
    if args.ai {
        println!(
            "models: blue first token after 80 ms, then 10 tokens 25 ms apart (305 ms in all);\n        green first token after 240 ms, then 10 tokens 7 ms apart (303 ms in all)"
        );
    }

    let runtime = match args.edge {
        EdgeKind::Cloudflare => Runtime::Cloudflare,
        EdgeKind::Spin => Runtime::Spin,
    };
    println!("starting the {} edge ...", runtime.name());
    let mut setup = fixtures::edge_setup(&blue.url(), &green.url());
    if args.ai {
        for (k, v) in AI_VARS {
            setup.vars.insert(k.into(), v.into());
        }
    }
    let edge = runtime
        .start(&setup)
        .await
        .with_context(|| format!("starting the {} edge", runtime.name()))?;
    println!("edge: {}\n", edge.base_url);
    if args.ai {
        println!(
            "try:  curl -sN {}/v1/chat/completions -H 'content-type: application/json' -d '{CHAT_BODY}'",
            edge.base_url
        );
    } else {
        println!(
            "try:  curl -si -H 'x-api-key: {}' {}/api/hello",
            fixtures::APP_KEY,
            edge.base_url
        );
    }
    println!(
        "      curl -s -H 'authorization: Bearer {}' {}/__greenlight/state\n",
        fixtures::ADMIN_TOKEN,
        edge.base_url
    );

    let ui = args.ui.unwrap_or(if std::env::var_os("DISPLAY").is_some() {
        Ui::Dashboard
    } else {
        Ui::Headless
    });
    if ui != Ui::Script {
        return run_harness(ui, &args, &edge.base_url).await;
    }

    let admin = AdminClient::new(&edge.base_url, Some(fixtures::ADMIN_TOKEN.to_string()))?;
    let http = reqwest::Client::new();
    let sample = |label: String| {
        let http = http.clone();
        let base = edge.base_url.clone();
        let users = args.users;
        async move {
            let (mut b, mut g, mut epochs) = (0u32, 0u32, std::collections::BTreeSet::new());
            for u in 0..users {
                let resp = http
                    .get(format!("{base}/public/page"))
                    .header(
                        "cookie",
                        format!(
                            "greenlight-id={:016x}",
                            u64::from(u).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        ),
                    )
                    .send()
                    .await?;
                let header = |n: &str| {
                    resp.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                match header("x-greenlight-color").parse::<Color>() {
                    Ok(Color::Blue) => b += 1,
                    Ok(Color::Green) => g += 1,
                    Err(_) => {}
                }
                epochs.insert(header("x-greenlight-epoch"));
            }
            println!(
                "  {label:<28} blue {b:>4}  green {g:>4}  ({:>5.1} % green)  epochs seen {:?}",
                f64::from(g) * 100.0 / f64::from(users.max(1)),
                epochs
            );
            Ok::<(), anyhow::Error>(())
        }
    };

    println!("{}", describe(&admin.state().await?));
    sample("before".into()).await?;
    for pct in [5.0, 25.0, 50.0] {
        let view = admin.set_weight(pct, None, "demo canary step").await?;
        sample(format!("weight {pct} % (epoch {})", view.state.epoch)).await?;
    }
    let view = admin.promote(None, "demo: green looks good").await?;
    sample(format!("promoted (epoch {})", view.state.epoch)).await?;
    let view = admin.rollback(None, "demo: instant rollback").await?;
    sample(format!("rolled back (epoch {})", view.state.epoch)).await?;
    println!("\n{}", describe(&admin.state().await?));
    println!("origin hits: blue {}  green {}", blue.hits(), green.hits());

    if args.hold > 0 {
        println!("\nholding for {} s (Ctrl-C to stop) ...", args.hold);
        // A stop request ends it early (main's select).
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    Ok(())
}

/// The demo's emulated streaming model: first token after `ttft_ms`, then
/// `events` tokens `gap_ms` apart (OpenAI chunk format, `[DONE]` at the end).
fn ai_model(ttft_ms: u64, events: u32, gap_ms: u64) -> Behavior {
    Behavior {
        sse: Some(greenlight_test_origin::SseStream {
            ttft: Duration::from_millis(ttft_ms),
            events,
            inter_event: Duration::from_millis(gap_ms),
        }),
        ..Behavior::default()
    }
}

/// The AI demo's edge settings on top of the suite's: a model per color on
/// the chat-completions route, which is anonymous in the demo (the load's
/// weighted share are fresh anonymous callers; its comparison traffic
/// carries the preview key, checked on public routes too).
const AI_VARS: [(&str, &str); 4] = [
    ("MODEL_ROUTES", "/v1/chat/completions"),
    ("BLUE_MODEL", "model-a"),
    ("GREEN_MODEL", "model-b"),
    (
        "AUTH_ROUTES",
        "/public:off,/v1/chat/completions:off,/:required",
    ),
];

/// What the AI demo's load sends.
const CHAT_BODY: &str =
    r#"{"model":"demo","messages":[{"role":"user","content":"Say hi"}],"stream":true}"#;

/// The AI demo's load as a scenario file: streamed chat completions.
fn chat_scenario() -> String {
    format!(
        "[[requests]]\nname = \"chat\"\nmethod = \"POST\"\npath = \"/v1/chat/completions\"\nheaders = {{ \"content-type\" = \"application/json\" }}\nbody = '{CHAT_BODY}'\n"
    )
}

/// Runs the dashboard or its headless twin (built next to this binary by
/// scripts/demo.sh) against the demo edge: comparison traffic with the
/// demo's preview key (equal samples of blue and green at every step; the
/// edge checks a preview's credential on public routes too), and a share of
/// anonymous visitors following the weight.
async fn run_harness(ui: Ui, args: &Args, edge: &str) -> anyhow::Result<()> {
    let dir = std::env::current_exe()?
        .parent()
        .map(std::path::Path::to_path_buf)
        .context("locating the demo binary's directory")?;
    // The AI demo's load is a scenario (its path is appended to the target).
    let scenario_dir = tempfile::tempdir()?;
    let scenario = scenario_dir.path().join("chat.toml");
    std::fs::write(&scenario, chat_scenario())?;
    let (target, ai_args) = if args.ai {
        let scenario = scenario.display().to_string();
        (
            edge.to_string(),
            vec![
                "--scenario".to_string(),
                scenario,
                "--metric".into(),
                "ttfb".into(),
                // At 16 requests/s, 100 samples per color take ~14 s: one step.
                "--min-samples".into(),
                "100".into(),
            ],
        )
    } else {
        (format!("{edge}/public/demo"), Vec::new())
    };
    let rate = args
        .rate
        .unwrap_or(if args.ai { 16.0 } else { 60.0 })
        .to_string();
    let mut cmd = match ui {
        Ui::Dashboard => {
            let mut c = tokio::process::Command::new(dir.join("greenlight-dashboard"));
            c.args([
                "--edge",
                edge,
                "--target",
                &target,
                "--rate",
                &rate,
                "--start-load",
            ])
            .args(&ai_args);
            println!("dashboard: try Start rollout; with --regression green is slower and gets rolled back");
            if args.ai {
                println!("dashboard: the policy judges the time to first byte (TTFB rows beside the latency); green's first token is slower and gets rolled back");
            }
            c
        }
        _ => {
            let mut c = tokio::process::Command::new(dir.join("greenlight-rollout"));
            c.args(["--edge", edge, "--target", &target, "--rate", &rate])
                .args(["--dwell", "15s"])
                // A demo should reach its end when nothing is wrong; a Fail
                // still rolls back at once.
                .args(["--on-inconclusive", "advance"])
                .args(&ai_args);
            println!(
                "headless rollout: 1 → 5 → 25 → 50 → 100 %, 15 s per step{}",
                if args.regression {
                    " (green regressed: expect a rollback)"
                } else if args.ai {
                    ", judged on the time to first token (--metric ttfb): expect a rollback"
                } else {
                    ""
                }
            );
            c
        }
    };
    cmd.env(
        greenlight_engine::admin_client::TOKEN_ENV,
        fixtures::ADMIN_TOKEN,
    )
    .env(
        greenlight_engine::sampling::PREVIEW_KEY_ENV,
        fixtures::QA_KEY,
    )
    .kill_on_drop(true);
    // On a stop request main drops this future, and the harness with it.
    let status = cmd
        .status()
        .await
        .with_context(|| format!("running the {ui:?} harness (scripts/demo.sh builds it)"))?;
    println!("harness finished: {status}");
    Ok(())
}

/// Ctrl-C, or a SIGTERM/SIGHUP (`kill`, `timeout`, a closed terminal): the
/// demo then returns normally, so the edge's process group (not in the
/// terminal's foreground group, so no signal reaches it) is stopped by its
/// `Drop` instead of being left running.
async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
}
