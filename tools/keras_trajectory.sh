#!/usr/bin/env bash
# Trajectory parity with Keras: Recur and Keras 3 (TensorFlow-CPU) start from the same weights,
# train on the same generated batches in the same order, and must report the same training loss
# at every one of the first 100 steps (within 1e-4 relative), for every task and cell
# (tools/keras_trajectory.py). Exits non-zero when a run does not.
#
# usage: tools/keras_trajectory.sh [keras_trajectory.py options]   e.g. --task lm:gru --steps 200
#        tools/keras_trajectory.sh --embedding-second-moment per-occurrence   (Keras's sparse gradients)
# CONFIGURATION=release builds an optimised recur (default debug); VENV=DIR uses that virtual
# environment (default .venv-bench, created with tensorflow-cpu, keras, numpy and safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv-bench}
configuration=${CONFIGURATION:-debug}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q tensorflow-cpu keras numpy safetensors
fi
swift build -c "$configuration" --product recur
"$venv/bin/python" tools/keras_trajectory.py --recur ".build/$configuration/recur" "$@"
