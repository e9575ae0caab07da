//! The shipped `wrangler.toml` produces a deployable bundle offline, and the
//! bundle stays inside the size budget.

use greenlight_e2e::cloudflare::{built_wasm, worker_dir};
use std::io::Write;
use std::process::Command;

#[test]
fn wrangler_deploy_dry_run_bundles_offline() {
    let dir = worker_dir();
    let out = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(dir.join("node_modules/.bin/wrangler"))
        .current_dir(&dir)
        .args(["deploy", "--dry-run", "--outdir"])
        .arg(out.path())
        .env("CI", "true")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("WRANGLER_SEND_ERROR_REPORTS", "false")
        .env("XDG_CONFIG_HOME", home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("wrangler is installed by scripts/build-worker.sh");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "wrangler deploy --dry-run failed:\n{log}"
    );
    assert!(log.contains("--dry-run: exiting now"), "{log}");
    let files: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with(".wasm")),
        "no wasm in {files:?}"
    );
    assert!(
        files.iter().any(|f| f == "index.js"),
        "no index.js in {files:?}"
    );
}

#[test]
fn worker_wasm_fits_the_size_budget() {
    let raw = std::fs::read(built_wasm().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw).unwrap();
    let gz = gz.finish().unwrap().len();
    // A Worker's cold start and upload limit depend on its size; going over
    // means a dependency pulled in crypto or formatting code the edge does
    // not need.
    assert!(
        gz <= 250_000,
        "worker wasm is {gz} bytes gzipped (budget 250 000)"
    );
}
