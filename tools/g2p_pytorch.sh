#!/usr/bin/env bash
# Grapheme-to-phoneme in PyTorch on the CPU: Recur's encoder-decoder (`recur train --format pairs`)
# part for part, with Recur's split, batches and metrics (tools/g2p_pytorch.py says what it trains
# and how it splits and scores; tools/g2p_side_by_side.sh runs it beside Recur).
#
# usage: tools/g2p_pytorch.sh TRAIN_FILE TEST_FILE [g2p_pytorch.py options]
#   e.g. tools/g2p_pytorch.sh ../shared/data/cmudict/g014b2b.train ../shared/data/cmudict/g014b2b.test \
#            --target-tokenizer word --validation-split 0.05 --epochs 1 --threads 1 --json g2p-torch.json
# File paths are relative to the repository root. VENV=DIR uses that virtual environment (default
# .venv-bench, created with torch and numpy).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv-bench}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch numpy
fi
exec "$venv/bin/python" tools/g2p_pytorch.py "$@"
