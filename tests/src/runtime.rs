//! The edge runtimes the conformance suite runs against, behind one interface.

pub use crate::edge::{EdgeSetup, EdgeTls, RunningEdge, Runtime, Server};
use anyhow::bail;

impl Runtime {
    pub async fn start(self, setup: &EdgeSetup) -> anyhow::Result<RunningEdge> {
        match self {
            Runtime::Cloudflare => crate::cloudflare::start(setup).await,
            Runtime::Spin => crate::spin::start(setup).await,
        }
    }

    /// Starts the edge the way the heavy suites (load, flips, soak) do,
    /// with nothing but the runtime between the client and the edge's code:
    /// the Worker served directly on workerd (not `wrangler dev`, whose
    /// proxy and devtools relay cost ~5 ms of CPU per request), Spin under
    /// `spin up` as always.
    pub async fn start_direct(self, setup: &EdgeSetup) -> anyhow::Result<RunningEdge> {
        match self {
            Runtime::Cloudflare => crate::cloudflare::start_direct(setup).await,
            Runtime::Spin => crate::spin::start(setup).await,
        }
    }
}

/// JS heap in use, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsHeap {
    /// The Worker's own isolate.
    pub worker: u64,
    /// Every isolate of the process (Miniflare's workers too).
    pub all: u64,
}

impl RunningEdge {
    /// Stops the edge and serves it again from the same scratch directory,
    /// so what its stores hold (key-value, the rollout object) carries over,
    /// as across a redeploy.
    pub async fn restart(self) -> anyhow::Result<RunningEdge> {
        let runtime = self.runtime;
        let scratch = self.stop()?;
        match runtime {
            Runtime::Cloudflare => crate::cloudflare::serve(scratch).await,
            Runtime::Spin => crate::spin::serve(scratch).await,
        }
    }

    /// Replaces the state document in the running edge's key-value store
    /// from outside the edge, the way another writer (or a corruption)
    /// would: no route of the edge is involved. Cloudflare: `wrangler kv key
    /// put --local` into the `--persist-to` directory the running `wrangler
    /// dev` uses (~3 s). Spin: straight into the SQLite file of Spin's
    /// default store. Returns once the store holds the document.
    pub async fn put_state_document(&self, document: &str) -> anyhow::Result<()> {
        let Some(scratch) = self._process.scratch.as_ref() else {
            bail!("the {} edge has no scratch directory", self.runtime.name());
        };
        match self.runtime {
            Runtime::Cloudflare => {
                crate::cloudflare::put_state_document(scratch.path(), document).await
            }
            Runtime::Spin => crate::spin::put_state_document(scratch.path(), document),
        }
    }

    /// The JS heap the Worker's isolates still hold after a full garbage
    /// collection (served directly only: `None` otherwise or when the
    /// inspector does not answer).
    pub async fn js_heap_after_gc(&self) -> Option<JsHeap> {
        let port = self.inspector?;
        let script = crate::cloudflare::worker_dir().join("heap-usage.mjs");
        let out = tokio::time::timeout(
            std::time::Duration::from_secs(15),
            tokio::process::Command::new("node")
                .arg(script)
                .args(["--port", &port.to_string(), "--gc"])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .ok()?
        .ok()?;
        let isolates: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
        // Miniflare's own workers (its entry, cache, ...) run beside ours,
        // which is `core:user:<name>`.
        let used = |all: bool| -> u64 {
            isolates
                .iter()
                .filter(|i| {
                    all || i["title"]
                        .as_str()
                        .is_some_and(|t| t.contains("core:user:"))
                })
                .filter_map(|i| i["used"].as_u64())
                .sum()
        };
        Some(JsHeap {
            worker: used(false),
            all: used(true),
        })
    }
}
