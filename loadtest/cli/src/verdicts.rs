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

/// The exit code of a verdict that found no difference it could trust
/// either way (too few samples, too much noise): not a pass, so a CI gate
/// fails closed unless told otherwise.
pub const INCONCLUSIVE_EXIT: u8 = 4;

/// How a judged run ends the process: 1 for a failed verdict,
/// [`INCONCLUSIVE_EXIT`] for an inconclusive one (0 when
/// `allow_inconclusive`), 0 for a pass or when there was nothing to judge
/// (only one color answered; the report says so).
pub fn verdict_exit_code(report: &Report, allow_inconclusive: bool) -> ExitCode {
    match report.verdict.as_ref().map(|j| j.verdict) {
        Some(Verdict::Fail) => ExitCode::from(1),
        Some(Verdict::Inconclusive) if !allow_inconclusive => ExitCode::from(INCONCLUSIVE_EXIT),
        _ => ExitCode::SUCCESS,
    }
}

/// `--json FILE`, with `-` for standard output.
pub fn json_to_stdout(path: Option<&Path>) -> bool {
    path == Some(Path::new("-"))
}

/// Writes the JSON report to `path` (`-`: standard output); a failure is
/// said on stderr and is the run's failure (exit code 3).
pub fn write_json(path: &Path, report: &Report) -> Result<(), ExitCode> {
    if json_to_stdout(Some(path)) {
        crate::output::print_stdout(&report.to_json());
        return Ok(());
    }
    std::fs::write(path, report.to_json()).map_err(|e| {
        eprintln!("greenlight: cannot write {}: {e}", path.display());
        ExitCode::from(3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_engine::recorder::Recorder;
    use greenlight_verdict::Judgement;

    fn report(verdict: Option<Verdict>) -> Report {
        let judgement = verdict.map(|verdict| Judgement {
            verdict,
            mode: "fixed".into(),
            reasons: Vec::new(),
            ..Judgement::no_evidence("")
        });
        let snap = Recorder::new().snapshot();
        Report::build("t", "open", None, &snap, 1.0, false, judgement)
    }

    #[test]
    fn each_verdict_has_its_exit_code() {
        let code = |v, allow| format!("{:?}", verdict_exit_code(&report(v), allow));
        let exit = |n: u8| format!("{:?}", ExitCode::from(n));
        assert_eq!(code(Some(Verdict::Pass), false), exit(0));
        assert_eq!(code(None, false), exit(0));
        assert_eq!(code(Some(Verdict::Fail), false), exit(1));
        assert_eq!(code(Some(Verdict::Fail), true), exit(1));
        assert_eq!(
            code(Some(Verdict::Inconclusive), false),
            exit(INCONCLUSIVE_EXIT)
        );
        assert_eq!(code(Some(Verdict::Inconclusive), true), exit(0));
    }

    #[test]
    fn a_dash_is_standard_output() {
        assert!(json_to_stdout(Some(Path::new("-"))));
        assert!(!json_to_stdout(Some(Path::new("report.json"))));
        assert!(!json_to_stdout(Some(Path::new("./-"))));
        assert!(!json_to_stdout(None));
    }
}
