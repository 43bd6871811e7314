#!/usr/bin/env bash
# Makes sure the PostgreSQL server the tests use is up, and prints its URL.
#
# With $HYPERGRAPH_TEST_POSTGRES set, only checks that server. Otherwise uses the local
# PostgreSQL at 127.0.0.1:5432 (database `test`, user `postgres`, trust authentication on the
# loopback, as on the project's machines): starts its cluster if it is down, and on a machine
# without PostgreSQL installs it from apt and configures exactly that.
set -euo pipefail
url="${HYPERGRAPH_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"

ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if [ -z "${HYPERGRAPH_TEST_POSTGRES:-}" ]; then
    if ! command -v pg_lsclusters >/dev/null 2>&1; then
        echo "postgres.sh: installing PostgreSQL from apt" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
        version=$(ls /etc/postgresql | sort -n | tail -1)
        hba=/etc/postgresql/$version/main/pg_hba.conf
        # Tests connect as `postgres` over the loopback without a password.
        sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    fi
    if ! ready; then
        echo "postgres.sh: starting the local PostgreSQL cluster" >&2
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -n | tail -1)" main start >&2 || true
        for _ in $(seq 1 30); do ready && break; sleep 1; done
    fi
    ready || { echo "postgres.sh: PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
    if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
        psql "postgres://postgres@127.0.0.1:5432/postgres" -qc "CREATE DATABASE test" >&2
    fi
fi
psql "$url" -Atqc "SELECT 1" >/dev/null || {
    echo "postgres.sh: cannot connect to $url" >&2
    exit 1
}
echo "$url"
