#!/usr/bin/env bash
# The whole test suite: unit tests of every crate and the end-to-end
# conformance suite through real workerd (wrangler dev) and the real Spin
# CLI (spin up). Installs what is missing first (idempotent).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
started=$(date +%s)
"$ROOT/scripts/build-worker.sh"
if [ -x "$ROOT/scripts/build-spin.sh" ]; then
  "$ROOT/scripts/build-spin.sh"
fi
log "building the CLIs the end-to-end tests run (greenlight, greenlight-rollout)"
cargo build -p greenlight-cli --bin greenlight -p greenlight-rollout --bin greenlight-rollout
log "cargo test (unit + end-to-end)"
# Two test threads: each end-to-end test runs its own edge runtime.
# The default members: the wasm-only crates (edge/*, bench/passthrough-spin)
# are built for their own targets by the scripts above.
if [ $# -gt 0 ]; then
  cargo test -- --test-threads=2 "$@"
else
  cargo test -- --test-threads=2 --skip dashboard_rollout::
  # The dashboard's rollouts judge p99 against p99: on a 2-core machine
  # they run with nothing else beside them, or an equal green is
  # inconclusive.
  log "the dashboard's rollouts, alone on the machine"
  cargo test -p greenlight-e2e --test e2e -- --test-threads=1 dashboard_rollout::
  # Every Spin suite above ran the WASIp3 build; the WASIp2 build (every
  # other Spin) runs the suites of its contract.
  log "the WASIp2 Spin build: conformance, linearizable, path confusion, hostile input"
  GREENLIGHT_SPIN_BUILD=wasip2 cargo test -p greenlight-e2e --test e2e -- --test-threads=2 \
    conformance::spin:: linearizable::spin:: path_confusion::spin:: hostile_input::spin::
fi
log "all tests passed in $(( $(date +%s) - started )) s"
