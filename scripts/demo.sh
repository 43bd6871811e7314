#!/usr/bin/env bash
# The main job: installs the guest toolchain if missing, builds hypergraph, then builds, deploys and
# runs the examples on the embedded SQLite database (default location, or $HYPERGRAPH_DB).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HYPERGRAPH_GUEST_TARGET_DIR="${HYPERGRAPH_GUEST_TARGET_DIR:-$PWD/target/guests}"
cargo build --release --quiet -p hypergraph
exec target/release/hypergraph demo "$@"
