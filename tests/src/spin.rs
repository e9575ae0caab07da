//! Runs the built Spin component under the real Spin CLI (`spin up`), as
//! users run it: the manifest is `edge/spin/spin.toml` (only its `source` is
//! pointed at the build output of this checkout), variables go in through
//! `--variable @vars.json`, and the key-value store is Spin's default SQLite
//! store in a state directory of the test's own (`--state-dir`).

use crate::edge::{EdgeSetup, RunningEdge, Runtime};
use crate::process::{free_port, ProcessGroup};
use anyhow::{bail, Context};
use greenlight_common::http::{LAST_GOOD_KEY, STATE_KEY};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BUILD: &str = "run scripts/build-spin.sh";

/// The oldest Spin major version the component is run under: spin-sdk 5
/// (WASIp2 HTTP, `wasi:keyvalue` atomics) is the SDK of Spin 3.x and runs on
/// 4.0.2 (tested).
pub const MIN_SPIN_MAJOR: u32 = 3;

/// The workspace root of this checkout.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `edge/spin` in this checkout (its `spin.toml` lives there).
pub fn component_dir() -> PathBuf {
    root().join("edge/spin")
}

/// The two builds of the Spin adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpinBuild {
    /// spin-sdk 6, `wasi:http@0.3.0-rc-2026-03-15`: Spin 4.0.x, instances
    /// reused.
    Wasip3,
    /// spin-sdk 5.2, `wasi:http@0.2`: every Spin since 3, a fresh instance
    /// per request.
    Wasip2,
}

impl SpinBuild {
    /// The build the Spin edges of this run use: `GREENLIGHT_SPIN_BUILD`
    /// (`wasip3`, the default, or `wasip2`).
    pub fn of_run() -> SpinBuild {
        match std::env::var("GREENLIGHT_SPIN_BUILD").as_deref() {
            Ok("wasip2") => SpinBuild::Wasip2,
            _ => SpinBuild::Wasip3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SpinBuild::Wasip3 => "wasip3",
            SpinBuild::Wasip2 => "wasip2",
        }
    }

    fn file(self) -> &'static str {
        match self {
            SpinBuild::Wasip3 => "greenlight_edge_spin_wasip3.wasm",
            SpinBuild::Wasip2 => "greenlight_edge_spin.wasm",
        }
    }
}

/// The built component of this run's build ([`SpinBuild::of_run`]).
pub fn built_wasm() -> anyhow::Result<PathBuf> {
    built(SpinBuild::of_run().file())
}

/// A built file of `target/wasm32-wasip2/release/` under `$CARGO_TARGET_DIR`
/// (if set) or the workspace's `target/`.
pub fn built(file: &str) -> anyhow::Result<PathBuf> {
    let rel = format!("wasm32-wasip2/release/{file}");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join(&rel));
    }
    candidates.push(root().join("target").join(&rel));
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

/// The built component of `build`.
pub fn built_build(build: SpinBuild) -> anyhow::Result<PathBuf> {
    built(build.file())
}

/// The `spin` CLI: `$GREENLIGHT_SPIN`, else the one scripts/build-spin.sh
/// found or installed (`$GREENLIGHT_CACHE/spin-path`, default
/// `~/.cache/greenlight`), else `spin` on `PATH`.
pub fn spin_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("GREENLIGHT_SPIN") {
        return Ok(PathBuf::from(p));
    }
    let cache = match std::env::var_os("GREENLIGHT_CACHE") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cache/greenlight"),
    };
    if let Ok(recorded) = std::fs::read_to_string(cache.join("spin-path")) {
        let path = PathBuf::from(recorded.trim());
        if path.is_file() {
            return Ok(path);
        }
    }
    let on_path = Command::new("spin").arg("--version").output();
    match on_path {
        Ok(out) if out.status.success() => Ok(PathBuf::from("spin")),
        _ => bail!(
            "no Spin CLI found: {BUILD} (it uses `spin` >= {MIN_SPIN_MAJOR} on PATH or installs \
             the Spin 4.0.2 in ../shared/tools), or point GREENLIGHT_SPIN at a spin binary"
        ),
    }
}

/// The label of the key-value store the component opens (edge/spin/spin.toml).
pub const KV_STORE: &str = "default";

/// Spin's default key-value store in the edge's state directory.
fn kv_file(scratch: &Path) -> PathBuf {
    scratch.join("state/sqlite_key_value.db")
}

/// Writes `document` under `STATE_KEY` into the running (or about to start)
/// edge's key-value store from outside the edge, the way another writer (or
/// a corruption) would: straight into Spin's SQLite file, in Spin's own
/// table. Every request runs in a fresh instance, so the next one reads it.
pub fn put_state_document(scratch: &Path, document: &str) -> anyhow::Result<()> {
    put_document(scratch, STATE_KEY, document)
}

/// [`put_state_document`] for any key.
pub fn put_document(scratch: &Path, key: &str, document: &str) -> anyhow::Result<()> {
    let path = kv_file(scratch);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let db =
        rusqlite::Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    db.busy_timeout(Duration::from_secs(10))?;
    // The table Spin's SQLite key-value store creates (and uses) itself.
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS spin_key_value (
           store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
           PRIMARY KEY (store, key))",
    )?;
    db.execute(
        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT(store, key) DO UPDATE SET value = ?3",
        rusqlite::params![KV_STORE, key, document.as_bytes()],
    )
    .with_context(|| format!("writing {key} into {}", path.display()))?;
    Ok(())
}

/// Reads a key of the edge's store (tests count what the edge wrote).
pub fn get_document(scratch: &Path, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let path = kv_file(scratch);
    let db =
        rusqlite::Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    db.busy_timeout(Duration::from_secs(10))?;
    let mut stmt = db.prepare("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?;
    let mut rows = stmt.query(rusqlite::params![KV_STORE, key])?;
    Ok(match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    })
}

/// The keys of the edge's store.
pub fn keys(scratch: &Path) -> anyhow::Result<Vec<String>> {
    let path = kv_file(scratch);
    let db =
        rusqlite::Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    db.busy_timeout(Duration::from_secs(10))?;
    let mut stmt = db.prepare("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
    let keys = stmt
        .query_map(rusqlite::params![KV_STORE], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keys)
}

/// Starts the greenlight component under `spin up`.
pub async fn start(setup: &EdgeSetup) -> anyhow::Result<RunningEdge> {
    start_component(&built_wasm()?, setup).await
}

/// The manifest a component is run with: the pass-through baselines of the
/// benchmarks have their own (`bench/passthrough-spin*/spin.toml`);
/// greenlight's builds and their variants use `edge/spin/spin.toml`.
fn manifest_for(component: &Path) -> PathBuf {
    let name = component.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match name {
        "greenlight_passthrough_spin.wasm" => root().join("bench/passthrough-spin/spin.toml"),
        "greenlight_passthrough_spin_wasip3.wasm" => {
            root().join("bench/passthrough-spin-wasip3/spin.toml")
        }
        _ => component_dir().join("spin.toml"),
    }
}

/// The manifest with its component `source` pointed at `component`
/// (absolute), everything else as written.
fn manifest_text(manifest: &Path, component: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let component = component
        .canonicalize()
        .with_context(|| format!("{} missing: {BUILD}", component.display()))?;
    let mut replaced = 0;
    let out: Vec<String> = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("source = ") {
                replaced += 1;
                format!("source = {:?}", component.display().to_string())
            } else {
                line.to_string()
            }
        })
        .collect();
    if replaced != 1 {
        bail!(
            "{} has {replaced} `source` lines, expected 1",
            manifest.display()
        );
    }
    Ok(out.join("\n") + "\n")
}

/// Starts `component` under `spin up` on a free port, with the setup's
/// variables (lower-cased, as Spin variables, from a JSON file), a fresh
/// key-value store in the edge's own state directory (holding the setup's
/// state documents, if any), and outbound HTTP as the manifest allows.
/// `GREENLIGHT_SPIN_RUNTIME_CONFIG` names a runtime config file for every
/// edge (another store, such as a shared Redis).
pub async fn start_component(component: &Path, setup: &EdgeSetup) -> anyhow::Result<RunningEdge> {
    let spin = spin_binary()?;
    let scratch = tempfile::Builder::new()
        .prefix("greenlight-spin-")
        .tempdir()?;
    let manifest = scratch.path().join("spin.toml");
    std::fs::write(
        &manifest,
        manifest_text(&manifest_for(component), component)?,
    )?;
    let vars: BTreeMap<String, String> = setup
        .vars
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect();
    let vars_file = scratch.path().join("vars.json");
    std::fs::write(&vars_file, serde_json::to_string(&vars)?)?;
    if let Some(document) = &setup.state_document {
        put_state_document(scratch.path(), document)?;
    }
    if let Some(document) = &setup.backup_document {
        put_document(scratch.path(), LAST_GOOD_KEY, document)?;
    }
    launch(&spin, scratch, setup.tls.as_ref(), &setup.spin_up_args).await
}

/// Starts `spin up` again on an edge's scratch directory (its manifest,
/// variables and key-value store), as [`RunningEdge::stop`] left it:
/// a new process, so new instances, over what the last one persisted.
pub async fn serve(scratch: tempfile::TempDir) -> anyhow::Result<RunningEdge> {
    launch(&spin_binary()?, scratch, None, &[]).await
}

async fn launch(
    spin: &Path,
    scratch: tempfile::TempDir,
    tls: Option<&crate::edge::EdgeTls>,
    args: &[String],
) -> anyhow::Result<RunningEdge> {
    let port = free_port();
    let mut cmd = Command::new(spin);
    cmd.arg("up")
        .arg("-f")
        .arg(scratch.path().join("spin.toml"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(scratch.path().join("state"))
        .arg("--variable")
        .arg(format!("@{}", scratch.path().join("vars.json").display()))
        // The component's stdio goes to the state directory's logs/.
        .arg("--quiet")
        .args(args)
        .env("SPIN_TELEMETRY_DISABLED", "1")
        .env_remove("SPIN_LOG_DIR");
    // Another key-value store (e.g. Redis) for every Spin edge of a run:
    // GREENLIGHT_SPIN_RUNTIME_CONFIG=runtime-config.toml. Documents planted
    // by the tests go to the default SQLite file, so the suites that plant
    // documents (last_known_good) need the default store.
    if let Some(config) = std::env::var_os("GREENLIGHT_SPIN_RUNTIME_CONFIG") {
        cmd.arg("--runtime-config-file").arg(config);
    }
    if let Some(tls) = tls {
        cmd.arg("--tls-cert")
            .arg(&tls.files.cert)
            .arg("--tls-key")
            .arg(&tls.files.key);
    }
    let process = ProcessGroup::spawn_logged(cmd, &scratch.path().join("spin.log"))?;
    RunningEdge::when_ready_over(
        Runtime::Spin,
        port,
        process,
        scratch,
        Duration::from_secs(90),
        tls,
    )
    .await
}

/// The benchmarks' Spin line-up: each build of the adapter beside the
/// pass-through of its own WASI version, each under its own `spin up`
/// (Spin's default reuse settings). In this order, with their names:
/// greenlight and pass-through (wasip3), greenlight and pass-through
/// (wasip2); greenlight runs with `setup`, the pass-throughs with
/// `pass_setup`.
pub async fn start_builds_beside_passthroughs(
    setup: &EdgeSetup,
    pass_setup: &EdgeSetup,
) -> anyhow::Result<Vec<(&'static str, RunningEdge)>> {
    let mut edges = Vec::with_capacity(4);
    for (build, pass, names) in [
        (
            SpinBuild::Wasip3,
            "greenlight_passthrough_spin_wasip3.wasm",
            ["spin greenlight (wasip3)", "spin pass-through (wasip3)"],
        ),
        (
            SpinBuild::Wasip2,
            "greenlight_passthrough_spin.wasm",
            ["spin greenlight (wasip2)", "spin pass-through (wasip2)"],
        ),
    ] {
        let wasm = built_build(build)?;
        edges.push((names[0], start_component(&wasm, setup).await?));
        let pass = start_component(&wasm.with_file_name(pass), pass_setup).await?;
        edges.push((names[1], pass));
    }
    Ok(edges)
}
