//! `greenlight`: load with a verdict, the admin API client, and a test origin.
//!
//! Exit codes: 0 success (verdict Pass, or nothing to judge; a watched plan
//! promoted), 1 verdict Fail, a refused admin call, or a watched plan rolled
//! back or aborted, 2 bad input, 3 the run itself failed (or a file could
//! not be written), 4 verdict Inconclusive (0 with `--allow-inconclusive`),
//! 5 a watched plan stopped for an operator (paused or held).
//!
//! One module per command: [`load`], [`admin`] (status, weight, promote,
//! rollback, abort, history, undo), [`plan`] (rollout), [`credential`], [`report`] (merge), [`origin`].

mod admin;
mod credential;
mod load;
mod origin;
mod output;
mod plan;
mod report;
mod verdicts;

use clap::{Parser, Subcommand};
use output::usage_exit;
use std::process::ExitCode;

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
    Load(Box<load::LoadArgs>),
    /// Show the rollout state of an edge.
    Status(admin::AdminArgs),
    /// Set the candidate's share of users, in percent.
    Weight(admin::WeightArgs),
    /// Make the candidate active (blue/green switch).
    Promote(admin::ChangeArgs),
    /// Undo: canary back to 0 %, or return to the color active before the last promote.
    Rollback(admin::ChangeArgs),
    /// Cancel a canary in progress.
    Abort(admin::ChangeArgs),
    /// The edge's last committed changes: who, when, why, before and after.
    History(admin::HistoryArgs),
    /// A Workers edge's read replicas: the epoch each confirmed and how far behind it is.
    Replicas(admin::AdminArgs),
    /// Restore the state of an earlier epoch (from the history) as a new change.
    Undo(admin::UndoArgs),
    /// A rollout plan held at the edge: start, status [--watch], pause, resume, abort.
    #[command(subcommand)]
    Rollout(plan::RolloutCmd),
    /// Make a named admin token and its ADMIN_CREDENTIALS entry.
    Credential(credential::CredentialArgs),
    /// Run a test origin that answers with its color.
    Origin(origin::OriginArgs),
    /// Reports from saved runs (`merge`: several agents' --hlog files, one verdict).
    #[command(subcommand)]
    Report(report::ReportCmd),
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
            Cmd::Load(a) => load::run(*a).await,
            Cmd::Status(a) => admin::status(a).await,
            Cmd::Weight(w) => admin::weight(w).await,
            Cmd::Promote(a) => admin::promote(a).await,
            Cmd::Rollback(a) => admin::rollback(a).await,
            Cmd::Abort(a) => admin::abort(a).await,
            Cmd::History(h) => admin::history(h).await,
            Cmd::Replicas(a) => admin::replicas(a).await,
            Cmd::Undo(u) => admin::undo(u).await,
            Cmd::Rollout(r) => plan::run(r).await,
            Cmd::Credential(a) => credential::run(a),
            Cmd::Origin(a) => origin::run(a).await,
            Cmd::Report(r) => report::run(r),
        }
    })
}
