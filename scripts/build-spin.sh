#!/usr/bin/env bash
# Builds the Spin component (and the pass-through baseline of the benchmarks)
# and makes sure a released Spin CLI is there to run it. Idempotent: installs
# the wasm32-wasip2 target if missing, always runs the (incremental) build.
#
#   scripts/build-spin.sh                   # component + Spin CLI
#   scripts/build-spin.sh --component-only  # what `spin build` runs
#
# Outputs:
#   target/wasm32-wasip2/release/greenlight_edge_spin.wasm   (under $CARGO_TARGET_DIR if set)
#   $GREENLIGHT_CACHE/spin-path: the spin binary the tests and the demo use
#     (default ~/.cache/greenlight). Order: $GREENLIGHT_SPIN; `spin` on PATH
#     when its major version is >= 3 (spin-sdk 5, WASIp2); else the Spin
#     4.0.2 CLI kept in ../shared/tools (no registry carries the Spin CLI).
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
ensure_spin
