#!/usr/bin/env bash
# Command two: the whole test suite. Prepares a fresh machine first (same steps as setup, without
# starting a daemon), then runs every test in the release profile the binary was built with.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$SB_ROOT"
./scripts/setup.sh --no-start
# The reference for the detector parity tests: ONNX Runtime in a venv outside the clone.
./scripts/ort-venv.sh
# Schemathesis for the OpenAPI conformance test (tests/api_conformance.rs), also outside the clone.
./scripts/conformance-venv.sh
export SERVICEBAY_MODELS="$SB_ROOT/models"
# The sync tests create (and drop) private PostgreSQL databases. A machine set up for CI allows
# postgres over 127.0.0.1; a fresh Debian install does not, so use the local socket with a
# superuser role named after this account (peer authentication), created once.
if [ -z "${SERVICEBAY_TEST_PG:-}" ] && ! psql "host=127.0.0.1 user=postgres dbname=postgres" -Atc 'select 1' >/dev/null 2>&1; then
  me=$(id -un)
  if ! psql "host=/var/run/postgresql dbname=postgres" -Atc 'select 1' >/dev/null 2>&1; then
    echo "test: creating PostgreSQL superuser role '$me' for the sync tests (local socket, peer auth)"
    as_root su postgres -c "createuser --superuser '$me'" || true
  fi
  export SERVICEBAY_TEST_PG="host=/var/run/postgresql user=$me"
fi
cargo test --release --locked --no-fail-fast "$@"
