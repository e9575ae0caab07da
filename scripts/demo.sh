#!/usr/bin/env bash
# The local demo: two origins, the edge, and a rollout you can watch: the
# release dashboard when a display is available, else its headless twin.
#   scripts/demo.sh                      # Cloudflare Worker under workerd
#   scripts/demo.sh --regression         # green 50 % slower: watch it roll back
#   scripts/demo.sh --ai                 # two streaming models, judged on time to first token
#   scripts/demo.sh --edge spin          # the Spin component under `spin up`
#   scripts/demo.sh --ui script --hold 300   # scripted steps, then curl around
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
# The dashboard runs when there is a display (and --ui is not headless/script).
if [ -n "${DISPLAY:-}" ] && ! [[ " $* " =~ " --ui "(headless|script)" " || " $* " =~ " --ui="(headless|script)" " ]]; then
  ensure_apt "${DASHBOARD_APT_PACKAGES[@]}"
fi
log "building the demo and the harness (release; several minutes the first time, cargo shows its progress)"
cargo build --release -p greenlight-e2e --bin demo -p greenlight-harness-gui --bin greenlight-dashboard -p greenlight-rollout --bin greenlight-rollout
exec "$ROOT/target/release/demo" "$@"
