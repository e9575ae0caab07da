//! The automated rollout, shared by the dashboard and the headless
//! `greenlight-rollout`, split by job with dependencies pointing one way:
//!
//! - [`plan`]: the validated rollout plan (steps, dwell, extensions, policy)
//! - [`command`]: the admin calls the controller asks for
//! - [`controller`]: the pure state machine (no I/O, no clock)
//! - [`synthetic`]: the synthetic load a rollout is judged on (comparison traffic or the fallback)
//! - [`evidence`]: what the analysis judges (recorder snapshots)
//! - [`audit`]: the JSON-lines audit log
//! - [`drive`]: the async loop joining them to the edge and the audit log
//!
//! No GUI here: the dashboard (`greenlight-harness-gui`) depends on this
//! crate, never the other way round.

pub mod audit;
pub mod command;
pub mod controller;
pub mod drive;
pub mod evidence;
pub mod plan;
pub mod synthetic;

pub use command::Command;
pub use controller::{Analysis, Controller, Finish, RolloutStatus};
pub use drive::{drive, DriveEvent, UserCmd, LOOK_EVERY};
pub use evidence::Evidence;
pub use plan::{format_steps, parse_steps, OnInconclusive, RolloutPlan};
