#!/usr/bin/env bash
# The local demo: two origins, the edge, and a rollout you can watch.
#   scripts/demo.sh                      # Cloudflare Worker under workerd
#   scripts/demo.sh --edge spin          # the Spin component under the wasmtime host
#   scripts/demo.sh --green-latency normal:8ms,1ms --hold 300
# Installs what is missing first (idempotent).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
edge=cloudflare
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--edge" ]; then j=$((i + 1)); edge="${!j:-cloudflare}"; fi
  case "${!i}" in --edge=*) edge="${!i#--edge=}" ;; esac
done
case "$edge" in
  cloudflare) "$ROOT/scripts/build-worker.sh" ;;
  spin) "$ROOT/scripts/build-spin.sh" ;;
  *) echo "unknown --edge $edge (cloudflare or spin)" >&2; exit 2 ;;
esac
log "building the demo"
cargo build --release -q -p greenlight-e2e --bin demo
exec "$ROOT/target/release/demo" "$@"
