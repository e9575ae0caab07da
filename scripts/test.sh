#!/usr/bin/env bash
# The whole test suite: unit tests of every crate and the end-to-end
# conformance suite through real workerd (wrangler dev) and the wasmtime
# Spin host. Installs what is missing first (idempotent).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
started=$(date +%s)
"$ROOT/scripts/build-worker.sh"
if [ -x "$ROOT/scripts/build-spin.sh" ]; then
  "$ROOT/scripts/build-spin.sh"
fi
log "building the greenlight CLI (the end-to-end load test runs it)"
cargo build -q -p greenlight-loadtest --bin greenlight
log "cargo test (unit + end-to-end)"
# Two test threads: each end-to-end test runs its own edge runtime.
cargo test --workspace --exclude greenlight-edge-cloudflare -- --test-threads=2 "$@"
log "all tests passed in $(( $(date +%s) - started )) s"
