//! The evidence the analysis judges: what the load engine's recorder
//! gathered since the current step began. With comparison traffic the
//! verdict compares the comparison samples (equal per color, whatever the
//! weight); otherwise every request the recorder saw.

use super::controller::{no_evidence, Look};
use crate::synthetic::Sampling;
use greenlight_common::Color;
use loadtest::histogram::ColorKey;
use loadtest::recorder::{comparison_window, weighted_window, window, Recorder, Snapshot};
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
    /// `weight_percent` on `candidate`. Given the step's `epoch`, only the
    /// answers that carried it count (the state that had this weight);
    /// answers of other epochs in the window are left out and reported.
    pub fn routing_check(
        &self,
        weight_percent: f64,
        candidate: Color,
        epoch: Option<u64>,
        alpha: f64,
    ) -> Option<RoutingCheck> {
        let now = self.recorder.as_ref()?.snapshot();
        let counts = weighted_window(&now, self.base.as_ref());
        let (ci, ai) = (
            ColorKey::from(candidate).index(),
            ColorKey::from(candidate.other()).index(),
        );
        let Some(epoch) = epoch else {
            return RoutingCheck::of(weight_percent, counts[ci], counts[ci] + counts[ai], alpha);
        };
        let at = |snap: Option<&Snapshot>| {
            snap.and_then(|s| s.weighted_by_epoch.get(&epoch).copied())
                .unwrap_or_default()
        };
        let (now_at, base_at) = (at(Some(&now)), at(self.base.as_ref()));
        let of_epoch = |i: usize| now_at[i].saturating_sub(base_at[i]);
        let total = of_epoch(ci) + of_epoch(ai);
        let other = (counts[ci] + counts[ai]).saturating_sub(total);
        RoutingCheck::of_epoch(weight_percent, epoch, of_epoch(ci), total, other, alpha)
    }
}
