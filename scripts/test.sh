#!/usr/bin/env bash
# Runs every test: installs the guest toolchain if missing, then the host's unit, integration and
# end-to-end tests (which build real guest components and drive the real `hypergraph` binary).
# PostgreSQL-backed tests use $HYPERGRAPH_TEST_POSTGRES when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HYPERGRAPH_GUEST_TARGET_DIR="${HYPERGRAPH_GUEST_TARGET_DIR:-$PWD/target/guests}"
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
cargo test --release --workspace "$@"
