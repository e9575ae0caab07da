//! `greenlight report merge`: one summary, JSON report and verdict from the
//! `--hlog` interval logs of load agents that ran side by side.

use crate::output::{print_human, usage_exit};
use crate::verdicts::{json_to_stdout, parse_baseline, summaries, verdict_exit_code, write_json};
use clap::{Args, Subcommand};
use greenlight_engine::report::Report;
use greenlight_verdict::policy_args::PolicyArgs;
use greenlight_verdict::{judge, Policy};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ReportCmd {
    /// Merge the --hlog interval logs of load agents that ran side by side
    /// into one summary, JSON report and verdict.
    Merge(MergeArgs),
}

#[derive(Args)]
pub struct MergeArgs {
    /// Interval logs written by `greenlight load --hlog`.
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// Write the JSON report to FILE (`-`: standard output, the summary
    /// then goes to standard error).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Exit 0 on an inconclusive verdict (default: exit 4).
    #[arg(long)]
    allow_inconclusive: bool,
    #[command(flatten)]
    policy: PolicyArgs,
    /// The color treated as the baseline.
    #[arg(long, default_value = "blue")]
    baseline: String,
}

pub fn run(cmd: ReportCmd) -> ExitCode {
    match cmd {
        ReportCmd::Merge(a) => merge(a),
    }
}

fn merge(a: MergeArgs) -> ExitCode {
    let mut logs = Vec::new();
    for p in &a.logs {
        match std::fs::read(p) {
            Ok(b) => logs.push((p.display().to_string(), b)),
            Err(e) => return usage_exit(&format!("{}: {e}", p.display())),
        }
    }
    let snap = match greenlight_engine::hlog::merge(&logs) {
        Ok(s) => s,
        Err(e) => return usage_exit(&e),
    };
    let policy = a.policy.apply(Policy::default());
    if let Err(e) = policy.validate() {
        return usage_exit(&format!("policy: {e}"));
    }
    let baseline = match parse_baseline(&a.baseline) {
        Ok(c) => c,
        Err(e) => return usage_exit(&e),
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
    print_human(&report.human(), json_to_stdout(a.json.as_deref()));
    let mut code = verdict_exit_code(&report, a.allow_inconclusive);
    if let Some(path) = &a.json {
        if let Err(failed) = write_json(path, &report) {
            code = failed;
        }
    }
    code
}
