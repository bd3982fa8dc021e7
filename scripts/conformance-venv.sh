#!/usr/bin/env bash
# Create (once) the Python venv with Schemathesis that tests/api_conformance.rs runs against the
# live daemon: $SERVICEBAY_CONFORMANCE_VENV, default $SERVICEBAY_CACHE/venv-conformance (outside the
# clone). The version is pinned: its CLI flags and checks are what the test relies on. Idempotent;
# packages come from PyPI through pip. The daemon never uses Python.
set -euo pipefail
. "$(dirname "$0")/env.sh"
version=4.32.5
venv=${SERVICEBAY_CONFORMANCE_VENV:-$SERVICEBAY_CACHE/venv-conformance}
py=${PYTHON:-python3}
if [ -x "$venv/bin/st" ] && [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" = "$version" ]; then
  echo "conformance-venv: $venv ok (schemathesis $version)"
  exit 0
fi
echo "conformance-venv: creating $venv (schemathesis $version from PyPI)" >&2
"$py" -m venv "$venv"
if ! "$venv/bin/pip" install -q "schemathesis==$version"; then
  echo "conformance-venv: ERROR: cannot install schemathesis==$version from PyPI; check the network or PIP_INDEX_URL" >&2
  exit 1
fi
echo "conformance-venv: $venv ready (schemathesis $version)"
