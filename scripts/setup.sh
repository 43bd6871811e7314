#!/usr/bin/env bash
# Installs what building guest components (`hypergraph build`, the examples, the test guests) needs,
# and nothing when it is already there (then it takes well under a second).
#
#   scripts/setup.sh                      the Rust toolchain (below)
#   scripts/setup.sh --lang python        one language: rust, python, js or c (repeatable)
#   scripts/setup.sh --lang all           every language (what scripts/test.sh installs)
#
# Python, JavaScript and C toolchains are installed by scripts/toolchains.sh (pinned versions, into
# ~/.cache/hypergraph/toolchains); `hypergraph build` runs the same script on first use.
#
# Two toolchains can build wasm32-wasip2 components; crates/build/src/rust.rs picks one the same way:
#   1. rustup with the wasm32-wasip2 target (`rustup target add wasm32-wasip2`): nothing to install.
#   2. Debian's rustc-web 1.96 rebuilding std for the target (see shared/TOOLCHAIN.md): the apt
#      packages below plus `wasm-component-ld` from crates.io, in $CARGO_HOME/bin (~/.cargo/bin).
#
# Idempotent; uses sudo only when not root. Exits non-zero with a message saying what failed.
set -euo pipefail

APT_PACKAGES=(rustc-web cargo-web rust-web-src libstd-rust-web-dev lld-19 wasi-libc)
# These four must come from the same Rust release: -Zbuild-std compiles rust-web-src with rustc-web.
RUST_PACKAGES=(rustc-web cargo-web rust-web-src libstd-rust-web-dev)
COMPONENT_LD_VERSION=0.5.31
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

say() { echo "setup: $*" >&2; }

LANGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
  --lang)
    [[ $# -ge 2 ]] || { say "error: --lang needs rust, python, js, c or all"; exit 2; }
    if [[ $2 == all ]]; then LANGS+=(rust python js c); else LANGS+=("$2"); fi
    shift 2
    ;;
  *)
    say "error: unknown argument $1 (usage: $0 [--lang rust|python|js|c|all]...)"
    exit 2
    ;;
  esac
done
[[ ${#LANGS[@]} -gt 0 ]] || LANGS=(rust)
for lang in "${LANGS[@]}"; do
  case "$lang" in
  rust) ;;
  python | js | javascript | c) "$(dirname "$0")/toolchains.sh" "$lang" >/dev/null ;;
  go) say "error: Go is not supported yet (see the README's \"Tasks in any language\")"; exit 1 ;;
  *) say "error: unknown language $lang (rust, python, js, c)"; exit 2 ;;
  esac
done
[[ " ${LANGS[*]} " == *" rust "* ]] || exit 0
fail() {
  say "error: $*"
  exit 1
}

# 1. rustup's target, if present, is all the builder needs.
if command -v rustup >/dev/null 2>&1 &&
  rustup target list --installed 2>/dev/null | grep -qx 'wasm32-wasip2'; then
  exit 0
fi

# 2. The Debian path.
# Sets `missing` to the packages to install.
find_missing_packages() {
  local pkg line status version
  local -A rust_versions=()
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    line=$(dpkg-query -W -f='${db:Status-Abbrev}|${Version}' "$pkg" 2>/dev/null || true)
    status=${line%%|*}
    version=${line#*|}
    if [[ ${status// /} != ii ]]; then
      missing+=("$pkg")
    elif [[ " ${RUST_PACKAGES[*]} " == *" $pkg "* ]]; then
      rust_versions[$version]=1
    fi
  done
  # Rust packages installed at different versions: reinstall them together.
  if [[ ${#rust_versions[@]} -gt 1 ]]; then
    missing+=("${RUST_PACKAGES[@]}")
  fi
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    fail "need root to run '$*' and sudo is not installed; run this script as root"
  fi
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  fail "no wasm32-wasip2 toolchain: this is not a Debian system, so install rustup \
(https://rustup.rs) and run 'rustup target add wasm32-wasip2'"
fi

find_missing_packages
if [[ ${#missing[@]} -gt 0 ]]; then
  log=$(mktemp -t hypergraph-setup-apt.XXXXXX)
  say "installing ${missing[*]} with apt-get (log: $log)"
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get update -q >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    fail "apt-get update failed (full log: $log)"
  fi
  if ! as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    fail "apt-get install ${missing[*]} failed (full log: $log)"
  fi
  rm -f "$log"
fi
for tool in /usr/bin/rustc /usr/bin/cargo /usr/lib/llvm-19/bin/wasm-ld /usr/lib/wasm32-wasi/libc.a; do
  [[ -e $tool ]] || fail "$tool is missing after installing ${APT_PACKAGES[*]}"
done

if ! command -v wasm-component-ld >/dev/null 2>&1 && [[ ! -x $CARGO_BIN/wasm-component-ld ]]; then
  log=$(mktemp -t hypergraph-setup-cargo.XXXXXX)
  say "installing wasm-component-ld $COMPONENT_LD_VERSION into $CARGO_BIN (about 3 minutes; log: $log)"
  # Debian's cargo with Debian's rustc: rustup's rustc on PATH may be older or absent.
  if ! RUSTC=/usr/bin/rustc /usr/bin/cargo install wasm-component-ld \
    --version "$COMPONENT_LD_VERSION" --locked >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    fail "cargo install wasm-component-ld failed (full log: $log)"
  fi
  rm -f "$log"
  say "installed $CARGO_BIN/wasm-component-ld"
fi
