//! The edge admin commands: `greenlight status`, `weight`, `promote`,
//! `rollback`, `abort`, `history` and `undo`.

use crate::output::{print_stdout, usage_exit};
use clap::Args;
use greenlight_common::admin::StateView;
use greenlight_common::state::Population;
use greenlight_engine::admin_client::{self, AdminClient, AdminError, ClientConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct AdminArgs {
    /// Edge base URL (or GREENLIGHT_EDGE, or `edge` in the config file).
    #[arg(long, env = "GREENLIGHT_EDGE")]
    edge: Option<String>,
    #[command(flatten)]
    transport: admin_client::AdminTransportArgs,
    /// Config file with admin_token / edge (default ~/.config/greenlight/config.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the state as JSON to FILE (`-` or no FILE: standard output).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    json: Option<PathBuf>,
}

#[derive(Args)]
pub struct ChangeArgs {
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
    /// Expected epoch (default: read from a fresh GET /__greenlight/state).
    #[arg(long)]
    pub(crate) epoch: Option<u64>,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    pub(crate) reason: String,
}

#[derive(Args)]
pub struct WeightArgs {
    /// Candidate share in percent (0..=100, two decimals kept).
    percent: f64,
    /// Who the canary's users are from this change on: `fresh` (a new
    /// salt for every canary started from 0 %) or `fixed` (the same users
    /// first every time). Unset: unchanged.
    #[arg(long, value_parser = parse_population)]
    population: Option<Population>,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Show at most this many changes, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(Args)]
pub struct UndoArgs {
    /// The epoch whose state to restore (see `greenlight history`).
    #[arg(long)]
    to_epoch: u64,
    #[command(flatten)]
    change: ChangeArgs,
}

fn parse_population(v: &str) -> Result<Population, String> {
    match v {
        "fresh" => Ok(Population::Fresh),
        "fixed" => Ok(Population::Fixed),
        other => Err(format!("{other:?} is not fresh or fixed")),
    }
}

/// `greenlight status`: the rollout state.
pub async fn status(a: AdminArgs) -> ExitCode {
    admin(&a, |c| Box::pin(async move { c.state().await })).await
}

/// `greenlight weight`: the candidate's share of users.
pub async fn weight(w: WeightArgs) -> ExitCode {
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

/// `greenlight promote`: the candidate becomes active.
pub async fn promote(a: ChangeArgs) -> ExitCode {
    let (e, r) = (a.epoch, a.reason.clone());
    admin(&a.admin, move |c| {
        Box::pin(async move { c.promote(e, &r).await })
    })
    .await
}

/// `greenlight rollback`: the canary back to 0 %, or the color active before the last promote.
pub async fn rollback(a: ChangeArgs) -> ExitCode {
    let (e, r) = (a.epoch, a.reason.clone());
    admin(&a.admin, move |c| {
        Box::pin(async move { c.rollback(e, &r).await })
    })
    .await
}

/// `greenlight abort`: cancels a canary in progress.
pub async fn abort(a: ChangeArgs) -> ExitCode {
    let (e, r) = (a.epoch, a.reason.clone());
    admin(&a.admin, move |c| {
        Box::pin(async move { c.abort(e, &r).await })
    })
    .await
}

/// `greenlight undo --to-epoch N`: the state of epoch N as a new change.
pub async fn undo(u: UndoArgs) -> ExitCode {
    let (to, e, r) = (u.to_epoch, u.change.epoch, u.change.reason.clone());
    admin(&u.change.admin, move |c| {
        Box::pin(async move { c.undo(to, e, &r).await })
    })
    .await
}

/// `greenlight history`: the edge's last committed changes.
pub async fn history(h: HistoryArgs) -> ExitCode {
    let client = match client(&h.admin) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.history().await {
        Ok(mut view) => {
            view.changes.truncate(h.limit);
            let json = format!(
                "{}\n",
                serde_json::to_string_pretty(&view).unwrap_or_default()
            );
            output(
                &h.admin,
                &json,
                &admin_client::describe_history(&view, h.limit),
            )
        }
        Err(e) => failed(e),
    }
}

/// `greenlight replicas`: a Workers edge's read replicas (exit 1 while
/// one is behind, so a script can wait on it).
pub async fn replicas(a: AdminArgs) -> ExitCode {
    let client = match client(&a) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.replicas().await {
        Ok(view) => {
            let json = format!(
                "{}\n",
                serde_json::to_string_pretty(&view).unwrap_or_default()
            );
            let code = output(&a, &json, &admin_client::describe_replicas(&view));
            if view.behind > 0 && code == ExitCode::SUCCESS {
                ExitCode::from(1)
            } else {
                code
            }
        }
        Err(e) => failed(e),
    }
}

pub(crate) type AdminFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<StateView, AdminError>> + Send>>;

pub(crate) async fn admin(
    args: &AdminArgs,
    op: impl FnOnce(AdminClient) -> AdminFuture,
) -> ExitCode {
    let client = match client(args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match op(client).await {
        Ok(view) => {
            let json = format!(
                "{}\n",
                serde_json::to_string_pretty(&view).unwrap_or_default()
            );
            output(args, &json, &admin_client::describe(&view))
        }
        Err(e) => failed(e),
    }
}

/// The admin client from the flags, the environment and the config file;
/// a usage error is the exit code.
pub(crate) fn client(args: &AdminArgs) -> Result<AdminClient, ExitCode> {
    let config = match &args.config {
        Some(p) => ClientConfig::load(p, false),
        None => match ClientConfig::default_path() {
            Some(p) => ClientConfig::load(&p, true),
            None => Ok(ClientConfig::default()),
        },
    };
    let config = config.map_err(|e| usage_exit(&e.to_string()))?;
    let Some(edge) = args.edge.clone().or_else(|| config.edge.clone()) else {
        return Err(usage_exit(
            "no edge URL: pass --edge http://host:port (or set GREENLIGHT_EDGE)",
        ));
    };
    let token = admin_client::resolve_token(std::env::var(admin_client::TOKEN_ENV).ok(), &config);
    if args.transport.tls.insecure && edge.starts_with("https") {
        eprintln!("greenlight: {}", greenlight_engine::tls::INSECURE_WARNING);
    }
    AdminClient::with_options(&edge, token, &args.transport.options())
        .map_err(|e| usage_exit(&e.to_string()))
}

/// Prints the text, or writes the JSON where `--json` says (`-`: standard
/// output, the text then not printed).
pub(crate) fn output(args: &AdminArgs, json: &str, text: &str) -> ExitCode {
    match &args.json {
        None => print_stdout(text),
        Some(path) if path.as_os_str() == "-" => print_stdout(json),
        Some(path) => {
            if let Err(e) = std::fs::write(path, json) {
                eprintln!("greenlight: cannot write {}: {e}", path.display());
                return ExitCode::from(3);
            }
            print_stdout(text);
        }
    }
    ExitCode::SUCCESS
}

/// A refused or failed admin call: a usage mistake exits 2, the rest 1.
pub(crate) fn failed(e: AdminError) -> ExitCode {
    match e {
        AdminError::Usage(m) => usage_exit(&m),
        e => {
            eprintln!("greenlight: {e}");
            ExitCode::from(1)
        }
    }
}
