//! Runs the built Worker under real workerd, two ways:
//! - `wrangler dev --local` (the conformance suites): what developers run,
//!   with wrangler's proxy Worker in a second workerd in front and the
//!   devtools relay in its node process (~5 ms of CPU per request);
//! - served directly (the heavy suites: flips under load, load verdict,
//!   automated rollout, soak): `edge/cloudflare/serve-direct.mjs` runs the
//!   same Worker on the same workerd through Miniflare's API (the library
//!   `wrangler dev` runs on), with the bindings wrangler reads from the same
//!   `wrangler.toml` and `.dev.vars`, and the same local KV and Durable
//!   Object storage under the same `--persist-to` directory, without the
//!   proxy and the relay (~0.7 ms of CPU per request here). See "Serving
//!   the Worker directly" in the README for the measurements.

use crate::edge::{EdgeSetup, RunningEdge, Runtime, Server};
use crate::process::{free_port, ProcessGroup};
use anyhow::{bail, Context};
use greenlight_common::http::{LAST_GOOD_KEY, STATE_KEY};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The Worker's KV binding for the rollout state (edge/cloudflare/src/lib.rs).
pub const KV_BINDING: &str = "GREENLIGHT_STATE";
/// The rollout object's binding and class (edge/cloudflare/shell.js).
pub const OBJECT_BINDING: &str = "GREENLIGHT_ROLLOUT";
pub const OBJECT_CLASS: &str = "RolloutObject";
/// The read replicas' binding and class (edge/cloudflare/shell.js).
pub const REPLICA_BINDING: &str = "GREENLIGHT_REPLICA";
pub const REPLICA_CLASS: &str = "StateReplica";

/// `edge/cloudflare` in this checkout.
pub fn worker_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../edge/cloudflare")
}

/// The built greenlight Worker's entry module (`scripts/build-worker.sh`).
pub fn built_bundle() -> PathBuf {
    worker_dir().join("build/index.js")
}

/// Starts the greenlight Worker under `wrangler dev`.
pub async fn start(setup: &EdgeSetup) -> anyhow::Result<RunningEdge> {
    start_worker(&built_bundle(), setup).await
}

/// Starts the greenlight Worker served directly (see the module's doc).
pub async fn start_direct(setup: &EdgeSetup) -> anyhow::Result<RunningEdge> {
    start_worker_direct(&built_bundle(), setup).await
}

/// Starts the Worker whose entry module is `bundle` served directly (see
/// the module's doc).
pub async fn start_worker_direct(bundle: &Path, setup: &EdgeSetup) -> anyhow::Result<RunningEdge> {
    let scratch = prepare(bundle, setup).await?;
    serve_direct_over(scratch, setup.tls.as_ref()).await
}

/// Starts the Worker whose entry module is `bundle` under `wrangler dev` on
/// free ports, with its own config, KV directory, inspector port and
/// wrangler home, all in a scratch directory.
pub async fn start_worker(
    bundle: &std::path::Path,
    setup: &EdgeSetup,
) -> anyhow::Result<RunningEdge> {
    let scratch = prepare(bundle, setup).await?;
    serve_over(scratch, setup.tls.as_ref()).await
}

/// The scratch directory for the Worker whose entry module is `bundle`:
/// its config, secrets, and the documents `setup` plants in its KV.
async fn prepare(bundle: &Path, setup: &EdgeSetup) -> anyhow::Result<tempfile::TempDir> {
    let dir = worker_dir();
    let wrangler = dir.join("node_modules/.bin/wrangler");
    if !bundle.exists() || !wrangler.exists() {
        bail!(
            "the Worker is not built ({} / {} missing): run scripts/build-worker.sh first",
            bundle.display(),
            wrangler.display()
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix("greenlight-wrangler-")
        .tempdir()?;
    let config = scratch.path().join("wrangler.toml");
    std::fs::write(&config, wrangler_toml(&bundle.canonicalize()?, setup))?;
    std::fs::write(scratch.path().join(".dev.vars"), dev_vars(setup))?;
    if let Some(document) = &setup.state_document {
        put_state_document(scratch.path(), document).await?;
    }
    if let Some(document) = &setup.backup_document {
        put_document(scratch.path(), LAST_GOOD_KEY, document).await?;
    }
    Ok(scratch)
}

/// Runs `wrangler dev` on the configuration and persisted state in
/// `scratch` (made by [`start_worker`]) on new free ports.
pub async fn serve(scratch: tempfile::TempDir) -> anyhow::Result<RunningEdge> {
    serve_over(scratch, None).await
}

/// [`serve`], over HTTPS with `tls` when given (`--local-protocol https`).
pub async fn serve_over(
    scratch: tempfile::TempDir,
    tls: Option<&crate::EdgeTls>,
) -> anyhow::Result<RunningEdge> {
    let config = scratch.path().join("wrangler.toml");
    let port = free_port();
    let inspector = free_port();
    let mut cmd = wrangler_command(scratch.path());
    cmd.args(["dev", "--local", "--config"])
        .arg(&config)
        .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
        .args(["--inspector-port", &inspector.to_string()])
        .arg("--persist-to")
        .arg(scratch.path().join("state"))
        .arg("--show-interactive-dev-session=false");
    if let Some(tls) = tls {
        cmd.args(["--local-protocol", "https", "--https-key-path"])
            .arg(&tls.files.key)
            .arg("--https-cert-path")
            .arg(&tls.files.cert);
    }
    let process = ProcessGroup::spawn_logged(cmd, &scratch.path().join("wrangler.log"))?;
    RunningEdge::when_ready_over(
        Runtime::Cloudflare,
        port,
        process,
        scratch,
        Duration::from_secs(90),
        tls,
    )
    .await
}

/// Serves the Worker configured in `scratch` directly (see the module's
/// doc) on a new free port, over HTTPS with `tls` when given.
pub async fn serve_direct_over(
    scratch: tempfile::TempDir,
    tls: Option<&crate::EdgeTls>,
) -> anyhow::Result<RunningEdge> {
    let port = free_port();
    let inspector = free_port();
    let mut cmd = quiet_command(Path::new("node"), scratch.path());
    cmd.arg(worker_dir().join("serve-direct.mjs"))
        .args(["--inspector-port", &inspector.to_string()])
        .arg("--config")
        .arg(scratch.path().join("wrangler.toml"))
        .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
        .arg("--persist-to")
        .arg(scratch.path().join("state"));
    if let Some(tls) = tls {
        cmd.arg("--https-key-path")
            .arg(&tls.files.key)
            .arg("--https-cert-path")
            .arg(&tls.files.cert);
    }
    let process = ProcessGroup::spawn_logged(cmd, &scratch.path().join("serve-direct.log"))?;
    let mut edge = RunningEdge::when_ready_over(
        Runtime::Cloudflare,
        port,
        process,
        scratch,
        Duration::from_secs(90),
        tls,
    )
    .await?;
    edge.server = Server::Direct;
    edge.inspector = Some(inspector);
    Ok(edge)
}

/// The rollout object's storage as workerd persists it locally: the one
/// SQLite file of the `RolloutObject` namespace under `--persist-to`.
pub fn rollout_object_db(scratch: &Path) -> anyhow::Result<PathBuf> {
    let root = scratch.join("state/v3/do");
    let mut found = Vec::new();
    for ns in std::fs::read_dir(&root)? {
        let ns = ns?.path();
        if !ns.to_string_lossy().contains("RolloutObject") {
            continue;
        }
        for f in std::fs::read_dir(&ns)? {
            let f = f?.path();
            // Beside the object's own file, workerd keeps `metadata.sqlite`.
            if f.extension().is_some_and(|e| e == "sqlite")
                && f.file_stem().is_some_and(|n| n != "metadata")
            {
                found.push(f);
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        other => bail!(
            "expected one rollout object database under {}: {other:?}",
            root.display()
        ),
    }
}

/// Deletes `key` from the rollout object's storage (the object must be
/// stopped): what it does on its next start is what it does after losing
/// that key.
pub fn delete_object_key(scratch: &Path, key: &str) -> anyhow::Result<usize> {
    let db = rusqlite::Connection::open(rollout_object_db(scratch)?)?;
    Ok(db.execute("DELETE FROM _cf_KV WHERE key = ?1", [key])?)
}

/// The keys in the rollout object's storage.
pub fn object_keys(scratch: &Path) -> anyhow::Result<Vec<String>> {
    let db = rusqlite::Connection::open(rollout_object_db(scratch)?)?;
    let mut stmt = db.prepare("SELECT key FROM _cf_KV ORDER BY key")?;
    let keys = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keys)
}

/// `wrangler` run in `scratch` (the directory `start_worker` made), offline
/// and quiet, with its own wrangler home.
fn wrangler_command(scratch: &Path) -> Command {
    quiet_command(&worker_dir().join("node_modules/.bin/wrangler"), scratch)
}

/// `program` (wrangler, or node running wrangler's libraries) in
/// `scratch`: offline and quiet, with its own wrangler home.
fn quiet_command(program: &Path, scratch: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(scratch)
        .env("CI", "true")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("WRANGLER_SEND_ERROR_REPORTS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("NO_COLOR", "1")
        .env("XDG_CONFIG_HOME", scratch.join("xdg"));
    cmd
}

/// Writes `document` under `STATE_KEY` into the local KV namespace of the
/// edge whose scratch directory is `scratch` (its `wrangler.toml` and
/// `--persist-to` directory), with `wrangler kv key put --local`, as another
/// process. A running `wrangler dev` on the same directory sees it.
pub async fn put_state_document(scratch: &Path, document: &str) -> anyhow::Result<()> {
    put_document(scratch, STATE_KEY, document).await
}

/// [`put_state_document`] for any key.
pub async fn put_document(scratch: &Path, key: &str, document: &str) -> anyhow::Result<()> {
    let value = scratch.join("planted-document");
    std::fs::write(&value, document)?;
    let value = value.display().to_string();
    let out = wrangler_kv(scratch, &["put", key, "--path", &value]).await?;
    if !out.status.success() {
        bail!(
            "wrangler kv key put failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The value under `key` in the local KV namespace of the edge whose
/// scratch directory is `scratch` (`wrangler kv key get --local`, ~3 s);
/// `None` when the key is absent.
pub async fn get_document(scratch: &Path, key: &str) -> anyhow::Result<Option<String>> {
    let out = wrangler_kv(scratch, &["get", key, "--text"]).await?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.is_empty() || text == "Value not found" {
        return Ok(None);
    }
    Ok(Some(text))
}

/// `wrangler kv key <args>` against the local KV namespace the edge in
/// `scratch` persists to, bounded to 60 s.
async fn wrangler_kv(scratch: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let mut cmd = wrangler_command(scratch);
    cmd.args(["kv", "key"])
        .args(args)
        .args(["--local", "--binding", KV_BINDING])
        .arg("--config")
        .arg(scratch.join("wrangler.toml"))
        .arg("--persist-to")
        .arg(scratch.join("state"))
        .stdin(Stdio::null());
    let what = args.first().copied().unwrap_or("");
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::from(cmd).output(),
    )
    .await
    .with_context(|| format!("wrangler kv key {what} took over 60 s"))?
    .with_context(|| format!("running wrangler kv key {what}"))
}

/// A wrangler config for one test edge: the built bundle, a local KV
/// namespace, the rollout object (when the bundle exports it: bench
/// pass-through Workers do not) and the setup's variables.
fn wrangler_toml(bundle: &Path, setup: &EdgeSetup) -> String {
    // JSON string literals are valid TOML basic strings.
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    // worker-build's index.js re-exports worker/shim.mjs (the shell,
    // minified: `export{… as RolloutObject, …}`).
    let exports = |class: &str| {
        [
            bundle.to_path_buf(),
            bundle.with_file_name("worker/shim.mjs"),
        ]
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|js| js.contains(class)))
    };
    // Builds from before the replicas (a bench's earlier build) have the
    // object only.
    let mut classes = Vec::new();
    if exports(OBJECT_CLASS) {
        classes.push((OBJECT_BINDING, OBJECT_CLASS));
        if exports(REPLICA_CLASS) {
            classes.push((REPLICA_BINDING, REPLICA_CLASS));
        }
    }
    let mut object = String::new();
    for (binding, class) in &classes {
        object.push_str(&format!(
            "[[durable_objects.bindings]]\nname = {}\nclass_name = {}\n\n",
            quote(binding),
            quote(class)
        ));
    }
    if !classes.is_empty() {
        let names: Vec<String> = classes.iter().map(|(_, c)| quote(c)).collect();
        object.push_str(&format!(
            "[[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = [{}]\n\n",
            names.join(", ")
        ));
    }
    let mut out = format!(
        "name = \"greenlight-e2e\"\nmain = {}\ncompatibility_date = \"2025-09-01\"\n\n\
         [[kv_namespaces]]\nbinding = {}\nid = \"e2e\"\n\n{object}[vars]\n",
        quote(&bundle.to_string_lossy()),
        quote(KV_BINDING)
    );
    for (k, v) in &setup.vars {
        if !DEV_VARS_SECRETS.contains(&k.as_str()) {
            out.push_str(&format!("{k} = {}\n", quote(v)));
        }
    }
    out
}

/// Variables that go in as secrets (`.dev.vars`, which `wrangler dev`
/// never prints) rather than `[vars]` (which it prints at start-up): the
/// upstream credentials, whose absence from every log a test checks.
const DEV_VARS_SECRETS: &[&str] = &["BLUE_ORIGIN_HEADERS", "GREEN_ORIGIN_HEADERS"];

/// `.dev.vars` (dotenv) for the setup's [`DEV_VARS_SECRETS`]: double-quoted,
/// line feeds as `\n` (dotenv expands them).
fn dev_vars(setup: &EdgeSetup) -> String {
    let mut out = String::new();
    for (k, v) in &setup.vars {
        if DEV_VARS_SECRETS.contains(&k.as_str()) {
            out.push_str(&format!("{k}=\"{}\"\n", v.replace('\n', "\\n")));
        }
    }
    out
}

/// The built Worker wasm, for size measurements.
pub fn built_wasm() -> anyhow::Result<PathBuf> {
    let wasm = worker_dir().join("build/worker/index.wasm");
    std::fs::metadata(&wasm)
        .with_context(|| format!("{} missing: run scripts/build-worker.sh", wasm.display()))?;
    Ok(wasm)
}

/// A location of [`Locations`]: its code and coordinates (`request.cf`).
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub colo: &'static str,
    pub latitude: f64,
    pub longitude: f64,
}

impl Location {
    pub const fn at(colo: &'static str, latitude: f64, longitude: f64) -> Location {
        Location {
            colo,
            latitude,
            longitude,
        }
    }
}

/// The Worker served as several locations of one edge
/// (`edge/cloudflare/serve-locations.mjs`): an isolate per location, one
/// rollout object, one replica per region and one KV namespace between
/// them. Stopped when dropped.
pub struct Locations {
    /// Each location's code and base URL, in the order asked for.
    pub urls: Vec<(String, String)>,
    process: crate::process::ProcessGroup,
    _scratch: tempfile::TempDir,
}

impl Locations {
    /// The base URL of location `i`.
    pub fn url(&self, i: usize) -> &str {
        &self.urls[i].1
    }

    /// Breaks or delays `region`'s replica (see locations-entry.mjs):
    /// `fault` like `{"down": true}`, `{"fail_pushes": 2}`,
    /// `{"push_ms": 150, "read_ms": 20}`; `{}` mends it.
    pub async fn replica_fault(
        &self,
        client: &reqwest::Client,
        region: &str,
        fault: serde_json::Value,
    ) -> anyhow::Result<()> {
        let url = format!("{}/__test/replica/{region}/fault", self.url(0));
        let resp = client.post(&url).json(&fault).send().await?;
        if !resp.status().is_success() {
            bail!("setting the fault of {region}: {}", resp.status());
        }
        Ok(())
    }

    /// How many reads and pushes `region`'s replica was sent.
    pub async fn replica_stats(
        &self,
        client: &reqwest::Client,
        region: &str,
    ) -> anyhow::Result<(u64, u64)> {
        let url = format!("{}/__test/replica/{region}/stats", self.url(0));
        let v: serde_json::Value = client.get(&url).send().await?.json().await?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok((n("reads"), n("pushes")))
    }

    /// The tail of serve-locations' log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }
}

/// Serves the built Worker as `locations` (the first also hosts the
/// Durable Objects) with `setup`'s variables.
pub async fn start_locations(
    setup: &EdgeSetup,
    locations: &[Location],
) -> anyhow::Result<Locations> {
    let scratch = prepare(&built_bundle(), setup).await?;
    let spec: Vec<String> = locations
        .iter()
        .map(|l| format!("{}:{}:{}", l.colo, l.latitude, l.longitude))
        .collect();
    let mut cmd = quiet_command(Path::new("node"), scratch.path());
    cmd.arg(worker_dir().join("serve-locations.mjs"))
        .arg("--config")
        .arg(scratch.path().join("wrangler.toml"))
        .arg("--persist-to")
        .arg(scratch.path().join("state"))
        .args(["--locations", &spec.join(",")]);
    let log = scratch.path().join("serve-locations.log");
    let mut process = crate::process::ProcessGroup::spawn_logged(cmd, &log)?;
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|l| l == "ready") {
            let urls = text
                .lines()
                .filter_map(|l| {
                    let mut f = l.strip_prefix("location ")?.split(' ');
                    let _index = f.next()?;
                    Some((f.next()?.to_string(), f.next()?.to_string()))
                })
                .collect::<Vec<_>>();
            if urls.len() != locations.len() {
                bail!(
                    "serve-locations named {} locations of {}:\n{text}",
                    urls.len(),
                    locations.len()
                );
            }
            return Ok(Locations {
                urls,
                process,
                _scratch: scratch,
            });
        }
        if !process.is_running() || started.elapsed() > Duration::from_secs(120) {
            bail!("serve-locations did not start:\n{}", process.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One answer a location gave its poller: when it came, the epoch that
/// served it, and whether it was flagged degraded (`x-greenlight-degraded`).
pub type Answer = (std::time::Instant, u64, bool);

/// Every location's answers, in the order they came, as
/// [`Locations::poll`] records them.
pub type Answers = std::sync::Arc<std::sync::Mutex<Vec<Vec<Answer>>>>;

impl Locations {
    /// Asks every location `GET /public/where` every `every` until `stop`
    /// is set (and never past `limit`: bounded), recording each answer's
    /// epoch and degraded flag. Returns the record and the pollers.
    pub fn poll(
        &self,
        http: &reqwest::Client,
        every: Duration,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        limit: Duration,
    ) -> (Answers, Vec<tokio::task::JoinHandle<()>>) {
        let answers: Answers =
            std::sync::Arc::new(std::sync::Mutex::new(vec![Vec::new(); self.urls.len()]));
        let pollers = (0..self.urls.len())
            .map(|i| {
                let url = format!("{}/public/where", self.url(i));
                let (http, answers, stop) = (http.clone(), answers.clone(), stop.clone());
                tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && started.elapsed() < limit
                    {
                        tick.tick().await;
                        let Ok(resp) = http.get(&url).send().await else {
                            continue;
                        };
                        let epoch = resp
                            .headers()
                            .get("x-greenlight-epoch")
                            .and_then(|v| v.to_str().ok()?.parse().ok());
                        let degraded = resp.headers().contains_key("x-greenlight-degraded");
                        if let Some(epoch) = epoch {
                            answers.lock().unwrap_or_else(|e| e.into_inner())[i].push((
                                std::time::Instant::now(),
                                epoch,
                                degraded,
                            ));
                        }
                    }
                })
            })
            .collect();
        (answers, pollers)
    }
}
