#!/usr/bin/env bash
# Fuzzes greenlight-common with cargo-fuzz (libFuzzer, nightly): the targets
# in common/fuzz/fuzz_targets, one after the other, one job each.
#
#   scripts/fuzz.sh                       # smoke: 20 s per target
#   scripts/fuzz.sh --time 600            # 10 min per target
#   scripts/fuzz.sh --runs 3000000        # 3 M executions per target
#   scripts/fuzz.sh --runs 100000 token   # only the named targets
#
# Inputs found go to common/fuzz/corpus/<target> (not committed; the
# committed seeds are in common/fuzz/seeds/<target>); crashes to
# common/fuzz/artifacts/<target>. Not part of CI or scripts/test.sh.
# On a shared machine, run it under `nice -n 15`.
source "$(dirname "$0")/lib.sh"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

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
logs="$fuzz/artifacts/logs"
mkdir -p "$logs"
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$fuzz/corpus/$t"
  corpora=("$fuzz/corpus/$t")
  [ -d "$fuzz/seeds/$t" ] && corpora+=("$fuzz/seeds/$t")
  log "fuzzing $t ($limit)"
  # -print_final_stats: the "Done N runs" line is followed by exec totals.
  cargo +nightly fuzz run "$t" "${corpora[@]}" -- \
    "$limit" -dict="$fuzz/dict/json.dict" -print_final_stats=1 2>&1 | tee "$logs/$t.log"
  summary+=("$t: $(grep -E '^Done [0-9]+ runs' "$logs/$t.log" | tail -n1)")
done
log "summary"
printf '  %s\n' "${summary[@]}" >&2
