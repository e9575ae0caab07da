//! What `greenlight load` and `greenlight report merge` share: which color
//! is the baseline, the summaries the verdict compares, and how a judged
//! report ends the process.

use greenlight_engine::histogram::{SeenColor, SummaryOf};
use greenlight_engine::recorder::Snapshot;
use greenlight_engine::report::Report;
use greenlight_verdict::{ColorSummary, Verdict};
use std::path::Path;
use std::process::ExitCode;

/// The `--baseline` color.
pub fn parse_baseline(text: &str) -> Result<SeenColor, String> {
    match text.parse::<greenlight_common::Color>() {
        Ok(c) => Ok(SeenColor::from(c)),
        Err(e) => Err(format!("--baseline: {e}")),
    }
}

/// The color judged against `baseline`.
pub fn candidate_of(baseline: SeenColor) -> SeenColor {
    if baseline == SeenColor::Blue {
        SeenColor::Green
    } else {
        SeenColor::Blue
    }
}

/// The baseline's and the candidate's summaries (of the comparison
/// requests only when `comparison`), once both colors answered.
pub fn summaries(
    snap: &Snapshot,
    baseline: SeenColor,
    comparison: bool,
) -> Option<(ColorSummary, ColorSummary)> {
    let cand = candidate_of(baseline);
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

/// Exit code 1 for a failed verdict, else success.
pub fn verdict_exit_code(report: &Report) -> ExitCode {
    match report.verdict.as_ref().map(|j| j.verdict) {
        Some(Verdict::Fail) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

/// Writes the JSON report to `path`; a failure is said on stderr and is
/// the run's failure (exit code 3).
pub fn write_json(path: &Path, report: &Report) -> Result<(), ExitCode> {
    std::fs::write(path, report.to_json()).map_err(|e| {
        eprintln!("greenlight: cannot write {}: {e}", path.display());
        ExitCode::from(3)
    })
}
