#!/usr/bin/env bash
# Command two: the whole test suite. Prepares a fresh machine first (same steps as setup, without
# starting a daemon), then runs every test in the release profile the binary was built with.
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$SB_ROOT"
./scripts/setup.sh --no-start
# The reference for the detector parity tests: ONNX Runtime in a venv outside the clone.
./scripts/ort-venv.sh
export SERVICEBAY_MODELS="$SB_ROOT/models"
cargo test --release --locked --no-fail-fast "$@"
