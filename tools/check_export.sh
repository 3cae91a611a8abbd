#!/usr/bin/env bash
# Checks `recur export` for every cell and task: ONNX Runtime's outputs on the exported ONNX
# models, and PyTorch's on the exported state dicts (when the environment has torch), against
# `recur predict` (tools/check_export.py says how and to what tolerance).
#
# Makes a virtual environment in .venv-export with onnx, onnxruntime, numpy and safetensors from PyPI
# (reused when present); RECUR_EXPORT_VENV names another one instead, and one with torch also
# runs the PyTorch round trip. Builds recur (debug) unless RECUR names a binary.
# Arguments go to check_export.py (--only NAME checks the configurations whose name has NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${RECUR_EXPORT_VENV:-.venv-export}"
if ! "$venv/bin/python" -c "import onnx, onnxruntime, numpy, safetensors" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check onnx onnxruntime numpy safetensors
fi
recur="${RECUR:-}"
if [ -z "$recur" ]; then
    swift build --product recur
    recur="$(swift build --show-bin-path)/recur"
fi
exec "$venv/bin/python" tools/check_export.py --recur "$recur" "$@"
