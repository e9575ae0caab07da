# Shared helpers for the greenlight loadtest benchmarks (sourced, not run).
# Everything runs on 127.0.0.1 and every run is bounded in time and count.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GL="$ROOT/target/release/greenlight"
BENCH_TMP="$(mktemp -d)"
ORIGIN_PID=""
cleanup() {
    if [[ -n "$ORIGIN_PID" ]]; then kill "$ORIGIN_PID" 2>/dev/null || true; wait "$ORIGIN_PID" 2>/dev/null || true; fi
    rm -rf "$BENCH_TMP"
}
trap cleanup EXIT

build_loadtest() {
    # Release build of the CLI (and, when asked with `--example NAME`, the
    # engine's bench examples).
    local examples=()
    if [[ $# -gt 0 ]]; then examples=(-p greenlight-engine "$@"); fi
    nice -n 10 cargo build --release -q -p greenlight-cli --bin greenlight "${examples[@]}" >&2
}

# start_origin COLOR [origin flags...]: starts `greenlight origin` on a free
# loopback port and sets ORIGIN_URL.
start_origin() {
    local color="$1"; shift
    "$GL" origin --color "$color" --port 0 "$@" >"$BENCH_TMP/origin.out" 2>"$BENCH_TMP/origin.err" &
    ORIGIN_PID=$!
    for _ in $(seq 1 200); do
        if grep -q "listening on" "$BENCH_TMP/origin.out" 2>/dev/null; then
            ORIGIN_URL="$(awk '/listening on/ {print $NF}' "$BENCH_TMP/origin.out")"
            return 0
        fi
        sleep 0.05
    done
    echo "origin did not start: $(cat "$BENCH_TMP/origin.err")" >&2
    return 1
}

json_field() { # json_field FILE PYTHON_EXPR(over d)
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}
