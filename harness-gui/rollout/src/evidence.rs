//! The evidence the analysis judges: what the load engine's recorder
//! gathered since the current step began (with comparison traffic the
//! comparison samples, equal per color whatever the weight; otherwise
//! every request the recorder saw), and real users' answers as the edge
//! counted them in the epoch in force ([`Judge`] says which).

use crate::controller::Analysis;
use crate::synthetic::Sampling;
use greenlight_common::telemetry::MetricsView;
use greenlight_common::Color;
use greenlight_engine::histogram::{SeenColor, SummaryOf};
use greenlight_engine::real_users;
use greenlight_engine::recorder::{comparison_window, weighted_window, window, Recorder, Snapshot};
use greenlight_verdict::routing_check::RoutingCheck;
use greenlight_verdict::{judge, judge_sequential, judged, ColorSummary, Judge, Judgement, Policy};
use std::sync::Arc;

pub struct Evidence {
    recorder: Option<Arc<Recorder>>,
    base: Option<Snapshot>,
    sampling: Sampling,
    /// Synthetic load, requests/s (for estimates).
    rate: f64,
    judge: Judge,
    /// The edge's real-user counts, last read, and the epoch in force.
    real: Option<MetricsView>,
    epoch: Option<u64>,
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
            judge: Judge::Synthetic,
            real: None,
            epoch: None,
        }
    }

    /// Judged on `judge`'s evidence (synthetic by default).
    pub fn with_judge(self, judge: Judge) -> Evidence {
        Evidence { judge, ..self }
    }

    pub fn judge_mode(&self) -> Judge {
        self.judge
    }

    /// Whether synthetic load is measured.
    pub fn has_load(&self) -> bool {
        self.recorder.is_some()
    }

    /// The edge's real-user counts as just read, with the epoch in force:
    /// the real evidence is that epoch's counts.
    pub fn observe_real_users(&mut self, view: MetricsView, epoch: u64) {
        self.real = Some(view);
        self.epoch = Some(epoch);
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
    pub fn judge(&self, look: Analysis, policy: &Policy, active: Color) -> Judgement {
        let synthetic = self
            .judge
            .wants_synthetic()
            .then(|| self.synthetic(look, policy, active))
            .flatten();
        if self.judge == Judge::Synthetic && synthetic.is_none() {
            return Judgement::no_evidence("no load is being measured, so there is no evidence");
        }
        let real = match (&self.real, self.epoch) {
            (Some(view), Some(epoch)) if self.judge.wants_real() => {
                real_users::judge_epoch(view, epoch, active, policy, look == Analysis::Live)
            }
            _ => None,
        };
        judged(self.judge, synthetic, real)
    }

    /// The judgement on the recorder's samples, `None` without load.
    fn synthetic(&self, look: Analysis, policy: &Policy, active: Color) -> Option<Judgement> {
        let rec = self.recorder.as_ref()?;
        let now = rec.snapshot();
        let colors = if self.sampling.is_comparison() {
            comparison_window(&now, self.base.as_ref())
        } else {
            window(&now, self.base.as_ref())
        };
        let (bk, ck) = (SeenColor::from(active), SeenColor::from(active.other()));
        let base = ColorSummary::of_color(&colors[bk.index()], bk);
        let cand = ColorSummary::of_color(&colors[ck.index()], ck);
        Some(match look {
            Analysis::Live => judge_sequential(policy, &base, &cand),
            Analysis::EndOfStep => judge(policy, &base, &cand),
        })
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
            SeenColor::from(candidate).index(),
            SeenColor::from(candidate.other()).index(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_engine::histogram::{RequestOutcome, Sample};
    use greenlight_engine::sampling::Purpose;
    use std::time::Duration;

    fn answer(color: SeenColor, epoch: u64) -> Sample {
        Sample {
            color,
            latency: Duration::from_millis(4),
            service: Duration::from_millis(4),
            ttfb: Duration::from_millis(2),
            events_per_s: None,
            outcome: RequestOutcome::Status(200),
            epoch: Some(epoch),
        }
    }

    #[test]
    fn a_steps_routing_check_counts_the_answers_of_its_epoch() {
        let rec = Recorder::new();
        // Before the step: answers of epoch 2 are not in its window.
        for seq in 0..40 {
            rec.record_for(seq, &answer(SeenColor::Green, 2), Purpose::Weighted);
        }
        let sampling = Sampling::Comparison {
            weighted_share: 0.1,
        };
        let evidence = Evidence::since_now(Some(rec.clone()), sampling, 60.0);
        // The step at 25 % (epoch 3): 25 of 100 weighted answers on green,
        // and comparison answers, which are no sample of the split.
        for seq in 100..200 {
            let color = if seq % 4 == 0 {
                SeenColor::Green
            } else {
                SeenColor::Blue
            };
            rec.record_for(seq, &answer(color, 3), Purpose::Weighted);
            rec.record_for(
                seq + 1000,
                &answer(SeenColor::Green, 3),
                Purpose::Comparison,
            );
        }
        // A location already on the next state (50 %), before the
        // acknowledgement reached the harness.
        for seq in 200..240 {
            rec.record_for(seq, &answer(SeenColor::Green, 4), Purpose::Weighted);
        }
        let check = evidence
            .routing_check(25.0, Color::Green, Some(3), 0.01)
            .unwrap();
        assert_eq!(
            (check.candidate, check.total, check.other_epochs, check.off),
            (25, 100, 40, false),
            "{}",
            check.describe()
        );
        // Without the epoch every weighted answer in the window counts, and
        // the next state's skew the split.
        let blind = evidence
            .routing_check(25.0, Color::Green, None, 0.01)
            .unwrap();
        assert_eq!((blind.candidate, blind.total), (65, 140));
        assert!(blind.off, "{}", blind.describe());
    }
}
