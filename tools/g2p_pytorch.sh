#!/usr/bin/env bash
# Grapheme-to-phoneme in PyTorch on the CPU, the reference for Recur's sequence-to-sequence
# models (tools/g2p_pytorch.py says what it trains and how it splits and scores).
#
# usage: tools/g2p_pytorch.sh TRAIN_FILE TEST_FILE [g2p_pytorch.py options]
#   e.g. tools/g2p_pytorch.sh ../shared/data/cmudict/g014b2b.train ../shared/data/cmudict/g014b2b.test \
#            --epochs 1 --threads 1 --json g2p-torch.json
# VENV=DIR uses that virtual environment (default .venv-bench, created with torch and numpy).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv-bench}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch numpy
fi
exec "$venv/bin/python" tools/g2p_pytorch.py "$@"
