#!/usr/bin/env bash
# Installs what building guest components (`hypergraph build`, the examples, the test guests) needs,
# and nothing when it is already there (then it takes well under a second).
#
#   scripts/setup.sh                      the Rust toolchain (below)
#   scripts/setup.sh --lang python        one language: rust, python, js, c or go (repeatable)
#   scripts/setup.sh --lang all           every language (what scripts/test.sh installs)
#
# Python, JavaScript, C and Go toolchains are installed by scripts/toolchains.sh (pinned versions, into
# ~/.cache/hypergraph/toolchains); `hypergraph build` runs the same script on first use.
#
# Rust: two toolchains can build wasm32-wasip2 components; crates/build/src/rust.rs picks one the
# same way, and `hypergraph build` of a Rust crate runs `scripts/toolchains.sh rust` on first use
# when neither is there:
#   1. rustup with the wasm32-wasip2 target (`rustup target add wasm32-wasip2`): nothing to install.
#   2. Debian's rustc-web 1.96 rebuilding std for the target (see shared/TOOLCHAIN.md): apt packages
#      plus `wasm-component-ld` from crates.io, in $CARGO_HOME/bin (~/.cargo/bin).
#
# Idempotent; uses sudo only when not root. Exits non-zero with a message saying what failed.
set -euo pipefail

say() { echo "setup: $*" >&2; }

LANGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
  --lang)
    [[ $# -ge 2 ]] || { say "error: --lang needs rust, python, js, c, go or all"; exit 2; }
    if [[ $2 == all ]]; then LANGS+=(rust python js c go); else LANGS+=("$2"); fi
    shift 2
    ;;
  *)
    say "error: unknown argument $1 (usage: $0 [--lang rust|python|js|c|go|all]...)"
    exit 2
    ;;
  esac
done
[[ ${#LANGS[@]} -gt 0 ]] || LANGS=(rust)
for lang in "${LANGS[@]}"; do
  case "$lang" in
  rust | python | js | javascript | c | go) "$(dirname "$0")/toolchains.sh" "$lang" >/dev/null ;;
  *) say "error: unknown language $lang (rust, python, js, c, go)"; exit 2 ;;
  esac
done
