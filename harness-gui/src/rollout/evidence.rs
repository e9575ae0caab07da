//! The evidence the analysis judges: what the load engine's recorder
//! gathered since a baseline snapshot.

use super::controller::{no_evidence, Look};
use greenlight_common::Color;
use loadtest::histogram::ColorKey;
use loadtest::recorder::{window, Recorder, Snapshot};
use loadtest::verdict::{judge, judge_sequential, ColorSummary, Judgement, Policy};
use std::sync::Arc;

/// Evidence for the analysis: what the recorder gathered since `base`.
pub struct Evidence {
    recorder: Option<Arc<Recorder>>,
    base: Option<Snapshot>,
}

impl Evidence {
    /// Evidence from now on (a snapshot taken now is the baseline).
    pub fn since_now(recorder: Option<Arc<Recorder>>) -> Evidence {
        let base = recorder.as_ref().map(|r| r.snapshot());
        Evidence { recorder, base }
    }

    /// The snapshot the evidence starts from.
    pub fn base(&self) -> Option<&Snapshot> {
        self.base.as_ref()
    }

    /// The judgement of the candidate against `active`.
    pub fn judge(&self, look: Look, policy: &Policy, active: Color) -> Judgement {
        let Some(rec) = &self.recorder else {
            return no_evidence("no load is being measured, so there is no evidence");
        };
        let now = rec.snapshot();
        let colors = window(&now, self.base.as_ref());
        let base = ColorSummary::of(&colors[ColorKey::from(active).index()]);
        let cand = ColorSummary::of(&colors[ColorKey::from(active.other()).index()]);
        match look {
            Look::Live => judge_sequential(policy, &base, &cand),
            Look::EndOfStep => judge(policy, &base, &cand),
        }
    }
}
