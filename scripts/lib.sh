# Shared helpers for greenlight's scripts: idempotent installs, nothing else.
# Sourced, not executed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$CARGO_HOME/bin:$PATH"
# Tools built once per machine live outside the clone, so a fresh clone (CI)
# reuses them.
GL_CACHE="${GREENLIGHT_CACHE:-$HOME/.cache/greenlight}"
mkdir -p "$GL_CACHE"

# Pinned tool versions (worker 0.8.7 locks wasm-bindgen 0.2.130).
WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=0.2.130

log() { printf '\033[1;32m==>\033[0m %s\n' "$*" >&2; }

# Installing a build tool: opt-level 1 and no LTO cut the compile time by
# ~4x; these tools run for a second per build, so speed of the tool itself
# does not matter.
cargo_install_fast() {
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
  CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_DEBUG=0 \
  CARGO_TARGET_DIR="$GL_CACHE/install-target" \
    cargo install "$@"
}

# Installs the Debian packages among "$@" that are not installed yet.
ensure_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What the dashboard (eframe: glow on X11) needs at run time.
DASHBOARD_APT_PACKAGES=(libgl1-mesa-dri libegl1 libegl-mesa0 libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6)

ensure_target() {
  local target="$1"
  if ! rustup target list --installed | grep -qx "$target"; then
    log "rustup target add $target"
    rustup target add "$target"
  fi
}

ensure_worker_tools() {
  ensure_target wasm32-unknown-unknown
  if ! worker-build --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
    log "installing worker-build $WORKER_BUILD_VERSION (one-off, a few minutes)"
    cargo_install_fast worker-build --version "$WORKER_BUILD_VERSION" --locked
  fi
  if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
    log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (one-off, a few minutes)"
    # Not --locked: its lockfile pins a yanked crate.
    cargo_install_fast wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
  fi
  local cf="$ROOT/edge/cloudflare"
  if [ ! -x "$cf/node_modules/.bin/wrangler" ] || [ ! -x "$cf/node_modules/.bin/wasm-opt" ] \
     || [ "$cf/package-lock.json" -nt "$cf/node_modules/.package-lock.json" ]; then
    log "npm ci (wrangler, binaryen) in edge/cloudflare"
    (cd "$cf" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# The Spin CLI the tests and the demo run (`spin up`), recorded in
# $GL_CACHE/spin-path: $GREENLIGHT_SPIN if set; else `spin` on PATH if its
# major version is at least 3 (the component is spin-sdk 5, WASIp2); else
# the Spin 4.0.2 CLI in ../shared/tools (built from the official v4.0.2
# source; no package registry carries the Spin CLI).
ensure_spin() {
  local spin="" version major
  if [ -n "${GREENLIGHT_SPIN:-}" ]; then
    spin="$GREENLIGHT_SPIN"
  elif command -v spin >/dev/null 2>&1; then
    version=$(spin --version 2>/dev/null | awk '{print $2}')
    major=${version%%.*}
    if [ -n "$major" ] && [ "$major" -ge 3 ] 2>/dev/null; then
      spin=$(command -v spin)
    else
      log "ignoring spin $version on PATH (greenlight needs Spin 3 or newer)"
    fi
  fi
  if [ -z "$spin" ]; then
    local shared="$ROOT/../shared/tools/spin-4.0.2/install.sh"
    if [ -x "$shared" ] || [ -f "$shared" ]; then
      spin=$(bash "$shared" "$GL_CACHE/bin" | tail -1)
    else
      echo "error: no Spin CLI: install Spin 3 or newer (https://spinframework.dev/install) so that \`spin\` is on PATH, or set GREENLIGHT_SPIN" >&2
      return 1
    fi
  fi
  if ! "$spin" --version >/dev/null 2>&1; then
    echo "error: $spin does not run (spin --version failed)" >&2
    return 1
  fi
  printf '%s\n' "$spin" > "$GL_CACHE/spin-path"
  log "Spin CLI: $("$spin" --version | head -1) ($spin)"
}
