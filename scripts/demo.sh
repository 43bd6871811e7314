#!/usr/bin/env bash
# The main job: installs the guest toolchain if missing, builds hypergraph, then builds, deploys and
# runs the examples on the embedded SQLite database (default location, or $HYPERGRAPH_DB); then
# the polyglot example (examples/polyglot: one Python workflow run calling a Rust, a JavaScript and
# a C task), installing the Python, JavaScript and C toolchains first if they are missing
# (HYPERGRAPH_DEMO_POLYGLOT=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HYPERGRAPH_GUEST_TARGET_DIR="${HYPERGRAPH_GUEST_TARGET_DIR:-$PWD/target/guests}"
cargo build --release --quiet -p hypergraph
hg=target/release/hypergraph
"$hg" demo "$@"

[[ ${HYPERGRAPH_DEMO_POLYGLOT:-1} != 0 ]] || exit 0
echo
echo "== polyglot: a Python workflow calling Rust, JavaScript and C tasks (examples/polyglot)"
if ! scripts/setup.sh --lang python --lang js --lang c; then
  echo "demo: skipping the polyglot example: the Python, JavaScript and C toolchains could not be" \
    "installed (see the messages above)" >&2
  exit 0
fi
deploy() { # <example dir> <deployment name>
  local wasm
  wasm=$("$hg" build "examples/$1")
  "$hg" deploy "$wasm" --name "$2" >/dev/null
  echo "deployed examples/$1 as $2"
}
deploy greet greet
deploy js-quotes quotes
deploy c-checksum checksum
deploy polyglot polyglot
out=$("$hg" run polyglot/card --input '{"name": "Ada", "text": "hello polyglot world"}' --wait --json)
echo "$out"
run_id=$(printf '%s' "$out" | sed -n 's/.*"run_id": *"\([^"]*\)".*/\1/p' | head -n 1)
[[ -n $run_id ]] || { echo "demo: the polyglot run printed no run id" >&2; exit 1; }
"$hg" runs show "$run_id"
