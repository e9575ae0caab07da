#!/usr/bin/env bash
# Builds the Cloudflare Worker into edge/cloudflare/build/ (index.js + wasm).
# Installs what is missing first; rebuilds only when sources changed.
source "$(dirname "$0")/lib.sh"
ensure_worker_tools
cf="$ROOT/edge/cloudflare"
stamp="$cf/build/index_bg.wasm"
if [ -f "$stamp" ] && [ -z "$(find "$ROOT/common/src" "$ROOT/common/Cargo.toml" "$cf/src" "$cf/Cargo.toml" "$ROOT/Cargo.lock" -newer "$stamp" -print -quit)" ]; then
  log "Worker is up to date"
  exit 0
fi
log "building the Worker (worker-build --profile edge)"
cd "$cf"
WASM_BINDGEN_BIN="$(command -v wasm-bindgen)" \
WASM_OPT_BIN="$cf/node_modules/.bin/wasm-opt" \
ESBUILD_BIN="$cf/node_modules/.bin/esbuild" \
  worker-build --profile edge
