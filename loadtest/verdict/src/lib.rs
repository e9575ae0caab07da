//! The judgement: is the candidate (green) worse than the baseline (blue)
//! on the same run, with what confidence? Pure functions of per-color
//! summaries and a [`Policy`]: no I/O, no clock, no randomness.
//!
//! Two modes:
//! - **fixed horizon** ([`judge`]): Mann-Whitney U with the Hodges-Lehmann
//!   shift and its interval against an effect-size tolerance (Kayenta's
//!   approach), percentile deltas with intervals, a two-proportion test on
//!   error rates. Valid for one look at the end of a run.
//! - **sequential** ([`judge_sequential`]): anytime-valid confidence sequences
//!   (normal mixture, as in mSPRT) on the mean log-latency difference and the
//!   error-rate difference, so a live run may look every second and stop as
//!   soon as the evidence is clear without inflating false alarms.
//!
//! Modules:
//! - [`stats`]: the statistics both modes are made of
//! - `policy`: what the candidate must meet ([`Policy`], [`Metric`], [`ErrorCheck`])
//! - `judgement`: what a verdict says ([`Judgement`]) and reads ([`ColorSummary`])
//! - `fixed`, `sequential`: the two modes
//! - [`routing_check`]: the observed split of weighted traffic against the weight
//! - `policy_args` (feature `clap`): the policy's command-line flags

mod fixed;
mod judge;
mod judgement;
mod policy;
#[cfg(feature = "clap")]
pub mod policy_args;
pub mod routing_check;
mod sequential;
pub mod stats;

pub use fixed::judge;
pub use judge::{judged, Judge};
pub use judgement::{ColorSummary, Judgement, LatencyCheck, SequentialCheck, Verdict};
pub use policy::{ErrorCheck, Metric, Policy};
pub use sequential::judge_sequential;

#[cfg(test)]
mod tests;
