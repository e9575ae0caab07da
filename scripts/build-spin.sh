#!/usr/bin/env bash
# Builds the Spin component and the wasmtime test host that serves it locally.
# Idempotent: installs the wasm32-wasip2 target if missing, always runs the
# (incremental) component build, rebuilds the host only when it is missing or
# older than its sources.
#
#   scripts/build-spin.sh                   # component + host
#   scripts/build-spin.sh --component-only  # what `spin build` runs
#
# Outputs:
#   target/wasm32-wasip2/release/greenlight_edge_spin.wasm   (under $CARGO_TARGET_DIR if set)
#   $GREENLIGHT_CACHE/spin-host-target/release/greenlight-spin-host
#     (default ~/.cache/greenlight; outside the clone so CI on the same machine
#     reuses it: a clean wasmtime build takes ~14 min on 2 cores)
source "$(dirname "$0")/lib.sh"

component_only=false
[ "${1:-}" = "--component-only" ] && component_only=true

ensure_target wasm32-wasip2

# Size-first settings for the component's dependencies too (the manifest's
# per-package profile only covers the component crate itself); the output
# stays in target/wasm32-wasip2/release, where spin.toml points.
log "building the Spin component (wasm32-wasip2, release)"
(cd "$ROOT" && nice -n 10 cargo build --target wasm32-wasip2 --release -p greenlight-edge-spin -p greenlight-passthrough-spin \
  --config 'profile.release.opt-level="z"' --config 'profile.release.lto=true' \
  --config 'profile.release.codegen-units=1' --config 'profile.release.panic="abort"')

$component_only && exit 0

host_dir="$ROOT/tests/spin-host"
host_target="$GL_CACHE/spin-host-target"
host_bin="$host_target/release/greenlight-spin-host"
if [ -n "${GREENLIGHT_SPIN_HOST:-}" ]; then
  log "using GREENLIGHT_SPIN_HOST=$GREENLIGHT_SPIN_HOST"
elif [ -x "$host_bin" ] && [ -z "$(find "$host_dir/src" "$host_dir/wit" "$host_dir/Cargo.toml" "$host_dir/Cargo.lock" -newer "$host_bin" -print -quit)" ]; then
  log "Spin test host is up to date ($host_bin)"
else
  log "building the Spin test host (wasmtime 48.0.8; ~14 min the first time on 2 cores)"
  (cd "$host_dir" && CARGO_TARGET_DIR="$host_target" nice -n 10 cargo build --release --locked)
  # cargo does not relink when nothing changed: refresh the stamp for `find -newer`.
  touch "$host_bin"
fi
