//! Placeholder until the wasmtime Spin host lands (issue 3): replaced by the
//! real launcher.
use crate::runtime::{EdgeSetup, RunningEdge};

pub async fn start(_setup: &EdgeSetup) -> anyhow::Result<RunningEdge> {
    anyhow::bail!("the Spin runtime launcher is not written yet")
}
