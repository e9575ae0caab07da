//! The edge runtimes the conformance suite runs against, behind one interface.

use crate::process::ProcessGroup;
use std::collections::BTreeMap;

/// Configuration handed to an edge: the same UPPER_CASE variable names that
/// `greenlight_common::edge::EdgeConfig::from_lookup` reads (BLUE_ORIGIN,
/// GREEN_ORIGIN, ADMIN_TOKEN, AUTH_ROUTES, API_KEYS, JWKS, JWT_HS256_SECRET,
/// JWT_ISSUER, JWT_AUDIENCE, STATE_CACHE_TTL_MS, ...). Each runtime maps them
/// to its platform (wrangler vars / `.dev.vars`, Spin variables).
#[derive(Debug, Clone, Default)]
pub struct EdgeSetup {
    pub vars: BTreeMap<String, String>,
}

/// A started edge. Dropping it stops the runtime's whole process group.
pub struct RunningEdge {
    pub base_url: String,
    pub runtime: Runtime,
    pub _process: ProcessGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// The Worker under workerd, started by `wrangler dev --local`.
    Cloudflare,
    /// The Spin component under the wasmtime test host (`tests/spin-host`).
    Spin,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Cloudflare => "cloudflare",
            Runtime::Spin => "spin",
        }
    }

    pub async fn start(self, setup: &EdgeSetup) -> anyhow::Result<RunningEdge> {
        match self {
            Runtime::Cloudflare => crate::cloudflare::start(setup).await,
            Runtime::Spin => crate::spin::start(setup).await,
        }
    }
}
