#!/usr/bin/env bash
# Builds the Cloudflare Worker into edge/cloudflare/build/ (index.js + wasm).
# Installs what is missing first; rebuilds only when sources changed.
source "$(dirname "$0")/lib.sh"
ensure_worker_tools
cf="$ROOT/edge/cloudflare"
tools="$cf/node_modules/.bin"
if [ "${1:-}" = "--passthrough-rs" ]; then
  # bench/edge-overhead's worker-rs reference Worker (same tools, own build/).
  rs="$ROOT/bench/passthrough-worker-rs"
  if [ -f "$rs/build/index_bg.wasm" ] && [ -z "$(find "$rs/src" "$rs/Cargo.toml" "$ROOT/Cargo.lock" -newer "$rs/build/index_bg.wasm" -print -quit)" ]; then
    log "worker-rs pass-through is up to date"
    exit 0
  fi
  log "building the worker-rs pass-through (bench reference)"
  cd "$rs"
  WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" WASM_OPT_BIN="$tools/wasm-opt" \
    ESBUILD_BIN="$tools/esbuild" worker-build --profile edge
  exit 0
fi
stamp="$cf/build/worker/index.wasm"
if [ -f "$stamp" ] && [ -z "$(find "$ROOT/common/src" "$ROOT/common/Cargo.toml" "$cf/src" "$cf/shell.js" "$cf/Cargo.toml" "$ROOT/Cargo.lock" -newer "$stamp" -print -quit)" ]; then
  log "Worker is up to date"
  exit 0
fi
log "building the Worker (worker-build --profile edge)"
cd "$cf"
# Left by builds before the shell (a default-shim layout); nothing reads it.
rm -f "$cf/build/index_bg.wasm"
# shell.js is the Worker's entry module (the request's I/O in JavaScript,
# every decision in Rust: see common/src/shell.rs); worker-build fills in
# its wasm-bindgen imports and bundles it into build/worker/shim.mjs, with
# the wasm beside it as build/worker/index.wasm.
CUSTOM_SHIM="$cf/shell.js" \
WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" \
WASM_OPT_BIN="$cf/node_modules/.bin/wasm-opt" \
ESBUILD_BIN="$cf/node_modules/.bin/esbuild" \
  worker-build --profile edge
# worker-build keeps the wasm names section (for symbolised panics); the edge
# is built with panic=abort and no unwraps on request paths, so the ~40 KB of
# gzipped names are dropped to stay well inside the size budget.
"$cf/node_modules/.bin/wasm-opt" "$stamp" -o "$stamp" \
  --strip-debug --strip-producers --enable-mutable-globals --enable-sign-ext \
  --enable-nontrapping-float-to-int --enable-bulk-memory --enable-multivalue \
  --enable-reference-types --enable-exception-handling
