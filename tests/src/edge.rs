//! A started edge and what starts it: the types every runtime's starter
//! ([`crate::cloudflare`], [`crate::spin`]) fills in, and the wait until it
//! answers. [`crate::runtime`] chooses the starter.

use crate::process::{wait_until_with, ProcessGroup};
use anyhow::bail;
use std::collections::BTreeMap;
use std::time::Duration;

/// Configuration handed to an edge: the same UPPER_CASE variable names that
/// `greenlight_common::edge::EdgeConfig::from_lookup` reads (BLUE_ORIGIN,
/// GREEN_ORIGIN, ADMIN_TOKEN, AUTH_ROUTES, API_KEYS, JWKS, JWT_HS256_SECRET,
/// JWT_ISSUER, JWT_AUDIENCE, STATE_CACHE_TTL_MS, ...). Each runtime maps them
/// to its platform (wrangler vars / `.dev.vars`, Spin variables).
#[derive(Debug, Clone, Default)]
pub struct EdgeSetup {
    pub vars: BTreeMap<String, String>,
    /// A state document (any text, valid or not) put under
    /// `greenlight_common::http::STATE_KEY` in the edge's key-value store
    /// before the edge starts, so its first read already sees it.
    pub state_document: Option<String>,
    /// Likewise under `LAST_GOOD_KEY`, the backup copy admin writes keep.
    pub backup_document: Option<String>,
    /// Serve HTTPS with this certificate (`wrangler dev --local-protocol
    /// https --https-cert-path/--https-key-path`, `spin up --tls-cert/--tls-key`).
    pub tls: Option<EdgeTls>,
    /// More arguments for `spin up` (instance reuse settings); the Worker
    /// ignores them.
    pub spin_up_args: Vec<String>,
}

/// The certificate an HTTPS edge serves, and the CA that signed it.
#[derive(Debug, Clone)]
pub struct EdgeTls {
    pub files: crate::pki::CertFiles,
    pub ca: std::path::PathBuf,
}

/// A started edge. Dropping it stops the runtime's whole process group.
pub struct RunningEdge {
    pub base_url: String,
    pub runtime: Runtime,
    /// What serves it.
    pub server: Server,
    pub _process: ProcessGroup,
    /// The V8 inspector's port of a Worker served directly (read with
    /// `edge/cloudflare/heap-usage.mjs`: the isolate's JS heap).
    pub inspector: Option<u16>,
}

/// The program that serves a running edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// `wrangler dev --local`: wrangler's proxy Worker and devtools relay in
    /// front of the Worker's workerd.
    WranglerDev,
    /// The Worker's workerd served directly through Miniflare's API
    /// (`edge/cloudflare/serve-direct.mjs`).
    Direct,
    /// `spin up`.
    SpinUp,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::WranglerDev => "wrangler-dev",
            Server::Direct => "workerd-direct",
            Server::SpinUp => "spin-up",
        }
    }

    /// The name of the process that runs the edge's code (the one whose
    /// memory is the edge's): workerd, or spin.
    pub fn runtime_process(self) -> &'static str {
        match self {
            Server::WranglerDev | Server::Direct => "workerd",
            Server::SpinUp => "spin",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// The Worker under workerd, started by `wrangler dev --local`.
    Cloudflare,
    /// The Spin component under the real Spin CLI (`spin up`).
    Spin,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Cloudflare => "cloudflare",
            Runtime::Spin => "spin",
        }
    }
}

impl RunningEdge {
    /// Stops the edge and hands back its scratch directory (configuration,
    /// store, a Worker's rollout object storage), to change what it
    /// persisted the way an operator could between two deployments, then
    /// serve it again (`cloudflare::serve`, `spin::serve`).
    pub fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        let Some(scratch) = self._process.scratch.take() else {
            anyhow::bail!("the edge has no scratch directory");
        };
        // Dropping the process group kills the runtime and waits.
        drop(self);
        Ok(scratch)
    }

    /// Waits until the edge in `process` answers on `port` (any HTTP answer:
    /// the admin health path needs credentials), then hands it out; on
    /// failure the error carries the tail of the runtime's log.
    pub async fn when_ready(
        runtime: Runtime,
        port: u16,
        process: ProcessGroup,
        scratch: tempfile::TempDir,
        timeout: Duration,
    ) -> anyhow::Result<RunningEdge> {
        RunningEdge::when_ready_over(runtime, port, process, scratch, timeout, None).await
    }

    /// [`RunningEdge::when_ready`] for an edge serving HTTPS when `tls` is set.
    pub async fn when_ready_over(
        runtime: Runtime,
        port: u16,
        mut process: ProcessGroup,
        scratch: tempfile::TempDir,
        timeout: Duration,
        tls: Option<&EdgeTls>,
    ) -> anyhow::Result<RunningEdge> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://127.0.0.1:{port}");
        let name = runtime.name();
        // Ready once the edge itself answers: greenlight's 401 with
        // `WWW-Authenticate` for an admin path without credentials (or its
        // problem document, when a test configures it wrongly on purpose),
        // or (a benchmark's pass-through edge) the origin's answer relayed;
        // a dev server that is still loading the edge answers otherwise.
        let greenlight_answered = |resp: &reqwest::Response| {
            let headers = resp.headers();
            let problem = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/problem+json"));
            (resp.status() == 401 && headers.contains_key("www-authenticate"))
                // A deliberately misconfigured edge answers with its problem.
                || problem
                || headers.contains_key("x-origin-color")
        };
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(2));
        if let Some(tls) = tls {
            let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca)?)?;
            client = client
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca);
        }
        if let Err(e) = wait_until_with(
            &client.build()?,
            &format!("{base_url}/__greenlight/health"),
            timeout,
            greenlight_answered,
        )
        .await
        {
            bail!(
                "the {name} edge did not come up: {e}\n--- log ---\n{}",
                process.log_tail()
            );
        }
        if !process.is_running() {
            bail!("the {name} edge exited:\n{}", process.log_tail());
        }
        process.scratch = Some(scratch);
        Ok(RunningEdge {
            base_url,
            runtime,
            server: match runtime {
                Runtime::Cloudflare => Server::WranglerDev,
                Runtime::Spin => Server::SpinUp,
            },
            _process: process,
            inspector: None,
        })
    }
}
