//! Support for greenlight's end-to-end tests: starting edge runtimes and
//! origins on 127.0.0.1, and the fixtures they are configured with.

pub mod cloudflare;
pub mod fixtures;
pub mod flips;
pub mod process;
pub mod rig;
pub mod runtime;
pub mod spin;

pub use runtime::{EdgeSetup, RunningEdge, Runtime};
