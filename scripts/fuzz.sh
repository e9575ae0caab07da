#!/usr/bin/env bash
# Fuzzes greenlight-common with cargo-fuzz (libFuzzer, nightly): the targets
# in common/fuzz/fuzz_targets, one after the other, one job each.
#
#   scripts/fuzz.sh                       # 20 s per target
#   scripts/fuzz.sh --time 600            # 10 min per target
#   scripts/fuzz.sh --runs 3000000        # 3 M executions per target
#   scripts/fuzz.sh --runs 100000 token   # only the named targets
#
# .ci/run calls it with a short --time (GREENLIGHT_FUZZ_SECONDS, default 30).
# The corpus lives outside the clone, in ~/.cache/greenlight/fuzz/corpus/<target>
# (GREENLIGHT_FUZZ_DIR to move it), so it grows run after run on one machine;
# the committed seeds (common/fuzz/seeds/<target>) are read too. A crash
# stops the script with a non-zero status after printing the input (hex and
# base64) and the command that replays it; the input stays under
# ~/.cache/greenlight/fuzz/artifacts/<target>. The last line gives the
# executions per target and the total. On a shared machine, run it under
# `nice -n 15`.
source "$(dirname "$0")/lib.sh"

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

limit="-max_total_time=20"
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) [ $# -ge 2 ] || usage; limit="-max_total_time=$2"; shift 2 ;;
    --runs) [ $# -ge 2 ] || usage; limit="-runs=$2"; shift 2 ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) targets+=("$1"); shift ;;
  esac
done

if ! rustup toolchain list | grep -q '^nightly'; then
  log "rustup toolchain install nightly"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (one-off)"
  cargo_install_fast cargo-fuzz --locked
fi

cd "$ROOT/common"
[ "${#targets[@]}" -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
fuzz="$ROOT/common/fuzz"
work="${GREENLIGHT_FUZZ_DIR:-$GL_CACHE/fuzz}"
logs="$work/logs"
mkdir -p "$logs"
# Build every target first, so the budget is spent fuzzing.
log "building ${#targets[@]} fuzz targets"
for t in "${targets[@]}"; do
  cargo +nightly fuzz build "$t" >&2
done

summary=()
total=0
figures=()
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  corpora=("$corpus")
  [ -d "$fuzz/seeds/$t" ] && corpora+=("$fuzz/seeds/$t")
  log "fuzzing $t ($limit)"
  before=$(date +%s)
  status=0
  # -print_final_stats: the "Done N runs" line is followed by exec totals.
  cargo +nightly fuzz run "$t" "${corpora[@]}" -- \
    "$limit" -dict="$fuzz/dict/json.dict" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$logs/$t.log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$logs/$t.log" >&2
    # The panic message sits above the long stack trace the tail shows.
    echo "--- what failed:" >&2
    grep -a -A4 -m3 "panicked at" "$logs/$t.log" >&2 || true
    input=$(grep -a -oE "Test unit written to [^ ]+" "$logs/$t.log" | tail -n1 | sed 's/^Test unit written to //')
    log "FUZZ FAILURE in $t (exit $status)"
    if [ -n "$input" ] && [ -f "$input" ]; then
      echo "input ($(wc -c <"$input") bytes), hex:" >&2
      od -A x -t x1z -v "$input" | head -n 64 >&2
      echo "base64: $(base64 -w0 "$input")" >&2
      echo "replay: (cd common && cargo +nightly fuzz run $t $input)" >&2
    fi
    exit 1
  fi
  runs=$(grep -a -oE '^Done [0-9]+ runs' "$logs/$t.log" | tail -n1 | grep -oE '[0-9]+' || echo 0)
  total=$((total + runs))
  summary+=("$t: $runs runs in $(( $(date +%s) - before )) s, corpus $(find "$corpus" -type f | wc -l) inputs")
  figures+=("$t=$runs")
done
log "summary (corpus in $work/corpus)"
printf '  %s\n' "${summary[@]}" >&2
echo "fuzz_runs ${figures[*]} total=$total"
