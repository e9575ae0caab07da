#!/usr/bin/env bash
# Builds the Spin component (and the pass-through baselines of the
# benchmarks) and makes sure a released Spin CLI is there to run it.
# Idempotent: installs the wasm32-wasip2 target if missing, always runs the
# (incremental) build.
#
#   scripts/build-spin.sh                   # both builds + baselines + Spin CLI
#   scripts/build-spin.sh --component-only  # what `spin build` runs: the chosen build
#
# Two builds of one adapter (README, "Spin builds"):
#   wasip3 (default)  edge/spin/wasip3, spin-sdk 6: Spin 4.0.x, instances reused
#   wasip2            edge/spin, spin-sdk 5.2: every Spin since 3.0
# GREENLIGHT_SPIN_BUILD=wasip2 chooses the other. The chosen one is copied
# to target/spin/greenlight_edge_spin.wasm, where edge/spin/spin.toml points.
#
# Outputs (under $CARGO_TARGET_DIR if set, else target/):
#   wasm32-wasip2/release/greenlight_edge_spin_wasip3.wasm, greenlight_edge_spin.wasm
#   target/spin/greenlight_edge_spin.wasm    (always in this checkout's target/)
#   $GREENLIGHT_CACHE/spin-path: the spin binary the tests and the demo use
#     (default ~/.cache/greenlight). Order: $GREENLIGHT_SPIN; `spin` on PATH
#     when its major version is >= 3; else the Spin 4.0.2 CLI kept in
#     ../shared/tools (no registry carries the Spin CLI).
source "$(dirname "$0")/lib.sh"

component_only=false
[ "${1:-}" = "--component-only" ] && component_only=true

ensure_target wasm32-wasip2

build="${GREENLIGHT_SPIN_BUILD:-wasip3}"
case "$build" in
  wasip3) crate=greenlight-edge-spin-wasip3; file=greenlight_edge_spin_wasip3.wasm ;;
  wasip2) crate=greenlight-edge-spin; file=greenlight_edge_spin.wasm ;;
  *) echo "GREENLIGHT_SPIN_BUILD must be wasip3 or wasip2, not '$build'" >&2; exit 2 ;;
esac
if $component_only; then
  packages=(-p "$crate")
else
  packages=(-p greenlight-edge-spin-wasip3 -p greenlight-edge-spin
            -p greenlight-passthrough-spin-wasip3 -p greenlight-passthrough-spin)
fi

# Size-first settings for the components' dependencies too (the manifest's
# per-package profile only covers the component crates themselves).
log "building the Spin components (wasm32-wasip2, release): ${packages[*]//-p /}"
(cd "$ROOT" && nice -n 10 cargo build --target wasm32-wasip2 --release "${packages[@]}" \
  --config 'profile.release.opt-level="z"' --config 'profile.release.lto=true' \
  --config 'profile.release.codegen-units=1' --config 'profile.release.panic="abort"')
out="${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip2/release/$file"
mkdir -p "$ROOT/target/spin"
cp "$out" "$ROOT/target/spin/greenlight_edge_spin.wasm"
log "edge/spin/spin.toml serves the $build build ($(wc -c < "$out") bytes)"

$component_only && exit 0
ensure_spin
