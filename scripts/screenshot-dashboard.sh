#!/usr/bin/env bash
# Takes docs/dashboard.png: the real dashboard under Xvfb, watching a local
# demo: two `greenlight origin`s (green a little slower), the real Worker
# under `wrangler dev --local` (built first by scripts/build-worker.sh), a
# rollout plan held at the edge at its first step (25 %), and load driven
# by the dashboard itself.
# Fails (exit 1) when the edge does not come up or does not take the plan,
# so a broken setup cannot pass for a picture; CI runs it for that reason.
# Installs what is missing (apt-get), bounded in time, loopback only.
# Usage: scripts/screenshot-dashboard.sh [out.png]  (env: SETTLE_S=30 seconds of load before the shot, RATE=40 req/s;
# local workerd under `wrangler dev` saturates well below 300 req/s on 2 shared cores)
source "$(dirname "$0")/lib.sh"
OUT="${1:-$ROOT/docs/dashboard.png}"
SETTLE_S="${SETTLE_S:-30}"

ensure_apt xvfb xauth x11-apps imagemagick xdotool "${DASHBOARD_APT_PACKAGES[@]}"

cd "$ROOT"
"$ROOT/scripts/build-worker.sh"
log "building greenlight and greenlight-dashboard"
nice -n 10 cargo build -q -p greenlight-cli --bin greenlight -p greenlight-harness-gui --bin greenlight-dashboard >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

SCRATCH="$(mktemp -d /tmp/greenlight-shot.XXXXXX)"
PGIDS=()
cleanup() {
  for g in "${PGIDS[@]}"; do kill -- "-$g" 2>/dev/null || true; done
  sleep 0.5
  for g in "${PGIDS[@]}"; do kill -9 -- "-$g" 2>/dev/null || true; done
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
# Starts a command in its own process group; records the group id.
spawn() {
  local logf="$1"; shift
  setsid "$@" >"$logf" 2>&1 </dev/null &
  PGIDS+=("$!")
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits until something answers HTTP at $1 (any status: the edge's health
# route wants the admin token).
wait_http() {
  for _ in $(seq 1 120); do
    code="$(curl -sS -o /dev/null -w '%{http_code}' "$1" 2>/dev/null || true)"
    [ -n "$code" ] && [ "$code" != "000" ] && return 0
    sleep 0.5
  done
  return 1
}

BLUE_PORT=$(free_port); GREEN_PORT=$(free_port)
spawn "$SCRATCH/blue.log" "$BIN/greenlight" origin --color blue --port "$BLUE_PORT" --latency lognormal:4ms,0.3
spawn "$SCRATCH/green.log" "$BIN/greenlight" origin --color green --port "$GREEN_PORT" --latency lognormal:6ms,0.35 --error-rate 0.1%
wait_http "http://127.0.0.1:$BLUE_PORT/" && wait_http "http://127.0.0.1:$GREEN_PORT/"

export GREENLIGHT_ADMIN_TOKEN="screenshot-admin-token-0123456789"
# A key with the preview role: the dashboard's comparison traffic (half to
# each color whatever the weight), as a release manager would run it.
export GREENLIGHT_PREVIEW_KEY="screenshot-preview-key-0123456789"
PREVIEW_SHA256="$(printf '%s' "$GREENLIGHT_PREVIEW_KEY" | sha256sum | cut -d' ' -f1)"
CF="$ROOT/edge/cloudflare"
EDGE_PORT=$(free_port); INSPECT_PORT=$(free_port)
# The bindings of edge/cloudflare/wrangler.toml (the KV namespace, the
# rollout object that decides changes, the read replicas the edges read
# through), local vars.
cat >"$SCRATCH/wrangler.toml" <<TOML
name = "greenlight-screenshot"
main = "$CF/build/index.js"
compatibility_date = "2025-09-01"

[[kv_namespaces]]
binding = "GREENLIGHT_STATE"
id = "screenshot"

[[durable_objects.bindings]]
name = "GREENLIGHT_ROLLOUT"
class_name = "RolloutObject"

[[durable_objects.bindings]]
name = "GREENLIGHT_REPLICA"
class_name = "StateReplica"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["RolloutObject", "StateReplica"]

[vars]
BLUE_ORIGIN = "http://127.0.0.1:$BLUE_PORT"
GREEN_ORIGIN = "http://127.0.0.1:$GREEN_PORT"
ADMIN_TOKEN = "$GREENLIGHT_ADMIN_TOKEN"
AUTH_ROUTES = "/:optional"
API_KEYS = '[{"id":"preview","sha256":"$PREVIEW_SHA256","roles":["preview"]}]'
ROLLOUT_SALT = "screenshot"
TOML
log "starting the Worker under wrangler dev on :$EDGE_PORT"
pushd "$SCRATCH" >/dev/null
spawn "$SCRATCH/wrangler.log" env CI=true WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false \
  CLOUDFLARE_CF_FETCH_ENABLED=false NO_COLOR=1 XDG_CONFIG_HOME="$SCRATCH/xdg" \
  "$CF/node_modules/.bin/wrangler" dev --local --config "$SCRATCH/wrangler.toml" \
    --ip 127.0.0.1 --port "$EDGE_PORT" --inspector-port "$INSPECT_PORT" \
    --persist-to "$SCRATCH/state" --show-interactive-dev-session=false
popd >/dev/null
EDGE="http://127.0.0.1:$EDGE_PORT"
TARGET="$EDGE/"
edge_failed() {
  log "$1; the Worker's log ends:"
  tail -20 "$SCRATCH/wrangler.log" >&2 || true
  exit 1
}
wait_http "$EDGE/__greenlight/state" || edge_failed "wrangler dev did not come up"
# Long steps: the picture shows the plan at its first step, not its end.
"$BIN/greenlight" rollout start --steps 25,50,75 --dwell 10m --edge "$EDGE" \
  --reason "plan for the screenshot" >/dev/null \
  || edge_failed "the edge did not take the plan"

log "dashboard under Xvfb (edge $EDGE, load at $TARGET), settling ${SETTLE_S}s"
mkdir -p "$(dirname "$OUT")"
cat >"$SCRATCH/run.sh" <<SH
#!/usr/bin/env bash
LIBGL_ALWAYS_SOFTWARE=1 "$BIN/greenlight-dashboard" --edge "$EDGE" --target "$TARGET" --rate "${RATE:-40}" \
  --settings "$SCRATCH/settings.json" --audit "$SCRATCH/audit.jsonl" --start-load --size 1600x1000 &
app=\$!
sleep $SETTLE_S
xdotool mousemove 1599 999 || true
sleep 1
import -window root "$OUT"
kill \$app
wait \$app 2>/dev/null || true
SH
chmod +x "$SCRATCH/run.sh"
spawn "$SCRATCH/xvfb.log" xvfb-run -a -s "-screen 0 1600x1000x24" "$SCRATCH/run.sh"
XVFB_PID="${PGIDS[-1]}"
for _ in $(seq 1 $((SETTLE_S + 60))); do
  kill -0 "$XVFB_PID" 2>/dev/null || break
  sleep 1
done
if [ ! -s "$OUT" ]; then
  log "no screenshot taken"; cat "$SCRATCH/xvfb.log" >&2; exit 1
fi
# The edge still answers after the dashboard drove it.
"$BIN/greenlight" status --edge "$EDGE" >"$SCRATCH/status.txt" || edge_failed "the edge stopped answering"
grep -q "^plan       running" "$SCRATCH/status.txt" \
  || { cat "$SCRATCH/status.txt" >&2; edge_failed "the plan is no longer running"; }
log "saved $OUT ($(identify -format '%wx%h' "$OUT" 2>/dev/null || echo '?'))"
