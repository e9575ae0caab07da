//! Which evidence a verdict judges: the harness's own synthetic requests,
//! the real users the edge counted ([`greenlight_common::telemetry`] via the
//! harness), or both. The statistics are the same for each; only the
//! samples differ.
//!
//! Real traffic is not randomised by the harness: each color serves the
//! users its sticky bucket (a hash of the user and the rollout's salt)
//! gives it. The hash spreads users independently of who they are, so
//! within one epoch the two groups are comparable samples of the same
//! population; across epochs they are not (weights and salts move), so
//! real evidence is always one epoch's counts.

use crate::judgement::{Judgement, Verdict};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Judge {
    /// The harness's own requests only.
    Synthetic,
    /// Real users only, as the edge counted them.
    Real,
    /// The synthetic verdict, which real users can veto: a real-user
    /// `Fail` fails the step; real evidence that is missing or too thin
    /// does not hold it up.
    #[default]
    Both,
}

impl Judge {
    pub const ALL: [Judge; 3] = [Judge::Synthetic, Judge::Real, Judge::Both];

    pub fn as_str(self) -> &'static str {
        match self {
            Judge::Synthetic => "synthetic",
            Judge::Real => "real",
            Judge::Both => "both",
        }
    }

    pub fn wants_real(self) -> bool {
        self != Judge::Synthetic
    }

    pub fn wants_synthetic(self) -> bool {
        self != Judge::Real
    }
}

impl fmt::Display for Judge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Judge {
    type Err = String;
    fn from_str(s: &str) -> Result<Judge, String> {
        match s {
            "synthetic" => Ok(Judge::Synthetic),
            "real" => Ok(Judge::Real),
            "both" => Ok(Judge::Both),
            other => Err(format!("{other:?} is not synthetic, real or both")),
        }
    }
}

/// The verdict of `judge` from the two judgements (either may be missing:
/// no load, or no telemetry from the edge). Reasons say which evidence
/// spoke.
pub fn judged(judge: Judge, synthetic: Option<Judgement>, real: Option<Judgement>) -> Judgement {
    let labelled = |mut j: Judgement, what: &str| {
        j.mode = format!("{} ({what})", j.mode);
        for r in &mut j.reasons {
            *r = format!("{what}: {r}");
        }
        j
    };
    match judge {
        Judge::Synthetic => {
            synthetic.unwrap_or_else(|| Judgement::no_evidence("no synthetic load was measured"))
        }
        Judge::Real => real.map(|j| labelled(j, "real users")).unwrap_or_else(|| {
            Judgement::no_evidence("the edge reported no real-user counts for this epoch")
        }),
        Judge::Both => match (synthetic, real) {
            (_, Some(r)) if r.verdict == Verdict::Fail => labelled(r, "real users"),
            (Some(mut s), r) => {
                s.reasons.push(match r {
                    Some(r) => format!(
                        "real users: {} ({} vs {} answers)",
                        r.verdict, r.baseline_requests, r.candidate_requests
                    ),
                    None => "real users: no counts from the edge".into(),
                });
                s
            }
            (None, Some(r)) => labelled(r, "real users"),
            (None, None) => Judgement::no_evidence("neither synthetic load nor real-user counts"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(verdict: Verdict, n: u64) -> Judgement {
        Judgement {
            verdict,
            mode: "fixed".into(),
            baseline_requests: n,
            candidate_requests: n,
            reasons: vec![format!("{verdict}")],
            ..Judgement::no_evidence("")
        }
    }

    #[test]
    fn real_users_veto_a_synthetic_pass_and_nothing_else_holds_it_up() {
        use Verdict::*;
        let both = |s: Option<Verdict>, r: Option<Verdict>| {
            judged(Judge::Both, s.map(|v| j(v, 10)), r.map(|v| j(v, 20))).verdict
        };
        assert_eq!(both(Some(Pass), Some(Fail)), Fail);
        assert_eq!(both(Some(Pass), Some(Inconclusive)), Pass);
        assert_eq!(both(Some(Pass), None), Pass);
        assert_eq!(both(Some(Fail), Some(Pass)), Fail);
        assert_eq!(both(None, Some(Pass)), Pass);
        assert_eq!(both(None, None), Inconclusive);
        let vetoed = judged(Judge::Both, Some(j(Pass, 10)), Some(j(Fail, 20)));
        assert!(vetoed.mode.contains("real users"), "{}", vetoed.mode);
        assert_eq!(vetoed.baseline_requests, 20);
        let passed = judged(Judge::Both, Some(j(Pass, 10)), Some(j(Inconclusive, 20)));
        assert!(passed
            .reasons
            .last()
            .unwrap()
            .contains("real users: INCONCLUSIVE"));
        // One source alone judges alone.
        assert_eq!(
            judged(Judge::Real, Some(j(Fail, 1)), Some(j(Pass, 1))).verdict,
            Pass
        );
        assert_eq!(
            judged(Judge::Synthetic, Some(j(Pass, 1)), Some(j(Fail, 1))).verdict,
            Pass
        );
        assert_eq!(
            judged(Judge::Real, Some(j(Pass, 1)), None).verdict,
            Inconclusive
        );
        assert_eq!("real".parse::<Judge>(), Ok(Judge::Real));
        assert!("all".parse::<Judge>().is_err());
    }
}
