//! Runs the built Spin component under the wasmtime test host
//! (`tests/spin-host`, `greenlight-spin-host`): local runs and CI only,
//! production uses Spin.

use crate::process::{free_port, ProcessGroup};
use crate::runtime::{EdgeSetup, RunningEdge, Runtime};
use anyhow::{bail, Context};
use greenlight_common::http::{LAST_GOOD_KEY, STATE_KEY};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BUILD: &str = "run scripts/build-spin.sh";

/// The workspace root of this checkout.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `edge/spin` in this checkout (its `spin.toml` lives there).
pub fn component_dir() -> PathBuf {
    root().join("edge/spin")
}

/// The built component: `target/wasm32-wasip2/release/greenlight_edge_spin.wasm`
/// under `$CARGO_TARGET_DIR` (if set) or the workspace's `target/`.
pub fn built_wasm() -> anyhow::Result<PathBuf> {
    let rel = "wasm32-wasip2/release/greenlight_edge_spin.wasm";
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join(rel));
    }
    candidates.push(root().join("target").join(rel));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "the Spin component is not built ({} missing): {BUILD}",
                candidates[candidates.len() - 1].display()
            )
        })
}

/// The test host binary: `$GREENLIGHT_SPIN_HOST`, else
/// `~/.cache/greenlight/spin-host-target/release/greenlight-spin-host`.
pub fn host_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("GREENLIGHT_SPIN_HOST") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = match std::env::var_os("GREENLIGHT_CACHE") {
                Some(c) => PathBuf::from(c),
                None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                    .join(".cache/greenlight"),
            };
            cache.join("spin-host-target/release/greenlight-spin-host")
        }
    };
    if !path.is_file() {
        bail!(
            "the Spin test host is not built ({} missing): {BUILD} \
             (~14 min the first time), or point GREENLIGHT_SPIN_HOST at a built binary",
            path.display()
        );
    }
    Ok(path)
}

/// The label of the key-value store the component opens (edge/spin/spin.toml).
pub const KV_STORE: &str = "default";

/// The test host's `--kv-file` in the edge's scratch directory.
fn kv_file(scratch: &Path) -> PathBuf {
    scratch.join("kv.json")
}

/// Writes `document` under `STATE_KEY` into the `--kv-file` of the edge whose
/// scratch directory is `scratch`, keeping the other entries: a new file
/// renamed into place, so the host never reads half of it. The host loads
/// the file at start and reloads it when it changes (a host built before
/// that change only reads it at start).
pub fn put_state_document(scratch: &Path, document: &str) -> anyhow::Result<()> {
    put_document(scratch, STATE_KEY, document)
}

/// [`put_state_document`] for any key.
pub fn put_document(scratch: &Path, key: &str, document: &str) -> anyhow::Result<()> {
    type Stores = BTreeMap<String, BTreeMap<String, serde_json::Value>>;
    let path = kv_file(scratch);
    let mut stores: Stores = match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stores::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    stores
        .entry(KV_STORE.to_string())
        .or_default()
        .insert(key.to_string(), document.into());
    let tmp = scratch.join("kv.json.planted");
    std::fs::write(&tmp, serde_json::to_string_pretty(&stores)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// Starts the greenlight component under the test host.
pub async fn start(setup: &EdgeSetup) -> anyhow::Result<RunningEdge> {
    start_component(&built_wasm()?, setup).await
}

/// Starts `component` under the test host on a free port, with the setup's
/// variables (lower-cased, as Spin variables), a fresh key-value store (with
/// the setup's state document, if any), and outbound HTTP allowed to
/// BLUE_ORIGIN and GREEN_ORIGIN only.
///
/// The host reuses instances as Spin does (up to 128 requests, 16 at once);
/// `GREENLIGHT_SPIN_MAX_INSTANCE_REUSE=1` runs every request in a fresh
/// instance instead (`--max-instance-reuse-count`), to check the paths a new
/// instance takes.
pub async fn start_component(
    component: &std::path::Path,
    setup: &EdgeSetup,
) -> anyhow::Result<RunningEdge> {
    let host = host_binary()?;
    let scratch = tempfile::Builder::new()
        .prefix("greenlight-spin-")
        .tempdir()?;
    // Variables go through a file: values (API_KEYS, JWKS) can be long.
    let mut vars = String::new();
    for (k, v) in &setup.vars {
        if v.contains('\n') {
            bail!("variable {k} contains a newline, which the vars file cannot carry");
        }
        vars.push_str(&format!("{}={v}\n", k.to_lowercase()));
    }
    let vars_file = scratch.path().join("vars");
    std::fs::write(&vars_file, vars)?;
    if let Some(document) = &setup.state_document {
        put_state_document(scratch.path(), document)?;
    }
    if let Some(document) = &setup.backup_document {
        put_document(scratch.path(), LAST_GOOD_KEY, document)?;
    }
    let port = free_port();
    let mut cmd = Command::new(&host);
    cmd.arg(component)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--vars-file")
        .arg(&vars_file)
        .arg("--kv-file")
        .arg(kv_file(scratch.path()));
    if let Some(n) = std::env::var_os("GREENLIGHT_SPIN_MAX_INSTANCE_REUSE") {
        cmd.arg("--max-instance-reuse-count").arg(n);
    }
    for name in ["BLUE_ORIGIN", "GREEN_ORIGIN"] {
        if let Some(origin) = setup.vars.get(name) {
            cmd.args(["--allow-outbound", origin.trim().trim_end_matches('/')]);
        }
    }
    let process = ProcessGroup::spawn_logged(cmd, &scratch.path().join("spin-host.log"))?;
    RunningEdge::when_ready(
        Runtime::Spin,
        port,
        process,
        scratch,
        Duration::from_secs(60),
    )
    .await
}
