#!/usr/bin/env bash
# Runs every test: installs the guest toolchains if missing (Rust, Python, JavaScript, C), then the
# host's unit, integration and end-to-end tests (which build real guest components in every
# language and drive the real `hypergraph` binary).
# PostgreSQL-backed tests use $HYPERGRAPH_TEST_POSTGRES when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every guest language: the polyglot tests build Python, JavaScript and C components.
scripts/setup.sh --lang all
export HYPERGRAPH_GUEST_TARGET_DIR="${HYPERGRAPH_GUEST_TARGET_DIR:-$PWD/target/guests}"
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
cargo test --release --workspace "$@"
