#!/usr/bin/env bash
# Make sure the test suite has a real PostgreSQL (called by `make test` before pytest).
#   QG_TEST_DATABASE_URL set      → use that server, nothing to do here.
#   server binaries installed     → tests/conftest.py starts a throwaway cluster per test process.
#   otherwise                     → apt-get install postgresql (non-interactive), or explain and fail.
set -euo pipefail

HOW_TO="no PostgreSQL for the tests: run QG_TEST_DATABASE_URL=postgresql+psycopg2://user@host:port/db make test, or install the Debian package postgresql"

if [ -n "${QG_TEST_DATABASE_URL:-}" ]; then
    exit 0
fi

have_server() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; }

if have_server; then
    exit 0
fi

if ! command -v apt-get >/dev/null; then
    echo "ensure_postgres: $HOW_TO (apt-get not available)" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure_postgres: $HOW_TO (installing needs root)" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure_postgres: installing the Debian package postgresql" >&2
# Try without refreshing the package lists first; update only if the install fails without it.
if ! $SUDO apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1; then
    $SUDO apt-get update -q >/dev/null 2>&1 || true
    if ! $SUDO apt-get install -y -q --no-install-recommends postgresql >/dev/null; then
        echo "ensure_postgres: $HOW_TO (apt-get install postgresql failed)" >&2
        exit 1
    fi
fi

if ! have_server; then
    echo "ensure_postgres: $HOW_TO (postgresql installed but no initdb found)" >&2
    exit 1
fi
