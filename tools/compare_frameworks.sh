#!/usr/bin/env bash
# Recur's CPU backend against PyTorch and Keras 3 (TensorFlow-CPU), side by side in one run.
# Installs the frameworks in a virtual environment (.venv-bench, or $VENV), builds a release
# `recur`, and runs tools/compare_frameworks.py. Extra arguments go to that script.
#
# usage: tools/compare_frameworks.sh [--repetitions N] [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv-bench}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q torch tensorflow-cpu keras numpy
tools/setup.sh
swift build -c release --product recur
"$venv/bin/python" tools/compare_frameworks.py --recur .build/release/recur "$@"
