#!/usr/bin/env bash
# Create (once) the Python venv with ONNX Runtime that the vision parity tests and the vision bench
# use as their reference: $SERVICEBAY_ORT_VENV, default ~/.cache/servicebay/venv-ort. Idempotent;
# packages come from PyPI through pip. The daemon never uses Python.
set -euo pipefail
venv=${SERVICEBAY_ORT_VENV:-$HOME/.cache/servicebay/venv-ort}
py=${PYTHON:-python3}
if "$venv/bin/python" -c 'import onnxruntime, numpy, PIL' 2>/dev/null; then
  echo "ort-venv: $venv ok"
  exit 0
fi
echo "ort-venv: creating $venv (onnxruntime, numpy, pillow from PyPI)" >&2
"$py" -m venv "$venv"
if ! "$venv/bin/pip" install -q onnxruntime numpy pillow; then
  echo "ort-venv: ERROR: cannot install onnxruntime/numpy/pillow from PyPI; check the network or PIP_INDEX_URL" >&2
  exit 1
fi
echo "ort-venv: $venv ready"
