//! `greenlight origin`: a test origin that answers with its color, with
//! injectable latency, errors, stalls and streamed answers.

use crate::output::{print_stdout, usage_exit};
use clap::Args;
use greenlight_common::duration::parse_duration;
use greenlight_test_origin::{Behavior, LatencyDist, Origin, SseStream, Stall};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct OriginArgs {
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

pub async fn run(a: OriginArgs) -> ExitCode {
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
    print_stdout(&format!(
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
