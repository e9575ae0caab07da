//! The evidence the analysis judges: what the load engine's recorder
//! gathered since the current step began. With comparison traffic the
//! verdict compares the comparison samples (equal per color, whatever the
//! weight); otherwise every request the recorder saw.

use super::controller::{no_evidence, Look};
use crate::synthetic::Sampling;
use greenlight_common::Color;
use loadtest::histogram::ColorKey;
use loadtest::recorder::{comparison_window, window, Recorder, Snapshot};
use loadtest::routing_check::RoutingCheck;
use loadtest::verdict::{judge, judge_sequential, ColorSummary, Judgement, Policy};
use std::sync::Arc;

pub struct Evidence {
    recorder: Option<Arc<Recorder>>,
    base: Option<Snapshot>,
    sampling: Sampling,
    /// Synthetic load, requests/s (for estimates).
    rate: f64,
}

impl Evidence {
    /// Evidence from now on (a snapshot taken now is the baseline).
    pub fn since_now(recorder: Option<Arc<Recorder>>, sampling: Sampling, rate: f64) -> Evidence {
        let base = recorder.as_ref().map(|r| r.snapshot());
        Evidence {
            recorder,
            base,
            sampling,
            rate,
        }
    }

    /// Starts over from now (a new step: its evidence is its own).
    pub fn rebase(&mut self) {
        self.base = self.recorder.as_ref().map(|r| r.snapshot());
    }

    /// The snapshot the evidence starts from.
    pub fn base(&self) -> Option<&Snapshot> {
        self.base.as_ref()
    }

    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The judgement of the candidate against `active`.
    pub fn judge(&self, look: Look, policy: &Policy, active: Color) -> Judgement {
        let Some(rec) = &self.recorder else {
            return no_evidence("no load is being measured, so there is no evidence");
        };
        let now = rec.snapshot();
        let colors = if self.sampling.is_comparison() {
            comparison_window(&now, self.base.as_ref())
        } else {
            window(&now, self.base.as_ref())
        };
        let (bk, ck) = (ColorKey::from(active), ColorKey::from(active.other()));
        let base = ColorSummary::of_color(&colors[bk.index()], bk);
        let cand = ColorSummary::of_color(&colors[ck.index()], ck);
        match look {
            Look::Live => judge_sequential(policy, &base, &cand),
            Look::EndOfStep => judge(policy, &base, &cand),
        }
    }

    /// The split of weighted traffic since the step began against
    /// `weight_percent` on `candidate`.
    pub fn routing_check(
        &self,
        weight_percent: f64,
        candidate: Color,
        alpha: f64,
    ) -> Option<RoutingCheck> {
        let now = self.recorder.as_ref()?.snapshot();
        let all = window(&now, self.base.as_ref());
        let cmp = comparison_window(&now, self.base.as_ref());
        let weighted = |c: Color| {
            let k = ColorKey::from(c).index();
            all[k].requests().saturating_sub(cmp[k].requests())
        };
        let cand = weighted(candidate);
        RoutingCheck::of(
            weight_percent,
            cand,
            cand + weighted(candidate.other()),
            alpha,
        )
    }
}
