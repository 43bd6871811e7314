#!/usr/bin/env bash
# Runs every test: installs the guest toolchains if missing (Rust, Python, JavaScript, C), starts
# the local PostgreSQL if it is down, then the host's unit, integration and end-to-end tests
# (which build real guest components in every language and drive the real `hypergraph` binary),
# and the end-to-end suites a second time on PostgreSQL.
# $HYPERGRAPH_TEST_POSTGRES names another PostgreSQL server to test against.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every guest language: the polyglot tests build Python, JavaScript and C components.
scripts/setup.sh --lang all
# A server named by the caller is not ours to restart (see the last step).
given_server="${HYPERGRAPH_TEST_POSTGRES:-}"
HYPERGRAPH_TEST_POSTGRES="$(scripts/postgres.sh)"
export HYPERGRAPH_TEST_POSTGRES
export HYPERGRAPH_GUEST_TARGET_DIR="${HYPERGRAPH_GUEST_TARGET_DIR:-$PWD/target/guests}"
# The schemas the PostgreSQL end-to-end tests create are dropped however the run ends.
drop_test_schemas() {
    psql "$HYPERGRAPH_TEST_POSTGRES" -Atqc "SELECT string_agg(format('DROP SCHEMA %I CASCADE;', nspname), ' ') FROM pg_namespace WHERE nspname LIKE 'hg\_e2e\_%' OR nspname LIKE 'hg\_test\_%'" |
        psql "$HYPERGRAPH_TEST_POSTGRES" -q >/dev/null 2>&1 || true
}
trap drop_test_schemas EXIT
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
# Everything, on SQLite (the store conformance suite also runs on PostgreSQL here).
cargo test --release --workspace "$@"
# The end-to-end suites again, each test in a fresh PostgreSQL schema.
HYPERGRAPH_TEST_STORE=postgres cargo test --release \
    -p hypergraph-runtime --test workflows --test kv --test replay --test runtime --test guests \
    -p hypergraph --test cli --test cli_workflows --test http "$@"
# PostgreSQL restarted under load: alone and last, since it interrupts every test using the
# server, and only on the local server scripts/postgres.sh looks after.
if [ -z "$given_server" ]; then
    cargo test --release --workspace --test faults "$@" -- --ignored
fi
