#!/usr/bin/env bash
# Recur and PyTorch side by side on one grapheme-to-phoneme task: `recur train --format pairs` on
# the CPU, then tools/g2p_pytorch.py (the same model, split, batches and optimizer in PyTorch),
# one after the other, and one markdown table of parameters, seconds per epoch and test WER/PER.
# The parameter counts must be equal (the check that both built the same model); the run fails
# when they differ.
#
# usage: tools/g2p_side_by_side.sh TRAIN_FILE TEST_FILE [--json FILE] [shared options]
#   e.g. tools/g2p_side_by_side.sh ../shared/data/cmudict/g014b2b.train ../shared/data/cmudict/g014b2b.test \
#            --validation-split 0.05 --bidirectional --hidden 128 --decoder-hidden 256 --embedding 64 \
#            --attention general --dropout 0.2 --batch-size 64 --epochs 5 --json side-by-side.json
# Shared options go to both unchanged, under `recur train`'s names: --hidden, --decoder-hidden,
# --layers, --decoder-layers, --embedding, --bidirectional, --cell, --attention, --input-feeding, --dropout,
# --learning-rate, --clip-norm, --batch-size, --epochs, --beam, --validation-split, --split-seed,
# --seed, --teacher-forcing, --label-smoothing, --source-tokenizer, --target-tokenizer (word for
# targets unless a tokenizer option is given), --schedule constant|cosine (the plateau schedule
# is not for pairs).
# RECUR=PATH runs that binary (default .build/release/recur, built when absent); VENV=DIR the
# Python environment (default .venv-bench, created with torch); THREADS=N PyTorch's threads
# (default: every core).
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
train_file=$(realpath "$1")
test_file=$(realpath "$2")
shift 2
json_file=""
shared=()
while [ $# -gt 0 ]; do
    case "$1" in
        --json) json_file=$(realpath -m "$2"); shift 2 ;;
        --json=*) json_file=$(realpath -m "${1#--json=}"); shift ;;
        *) shared+=("$1"); shift ;;
    esac
done
case " ${shared[*]-} " in
    *" --tokenizer"* | *" --target-tokenizer"*) ;;
    *) shared+=(--target-tokenizer word) ;;
esac

cd "$(dirname "$0")/.."
recur=${RECUR:-.build/release/recur}
if [ ! -x "$recur" ]; then
    swift build -c release --product recur
fi
venv=${VENV:-.venv-bench}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch numpy
fi
threads=${THREADS:-$(nproc)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== Recur: $recur train --device cpu --format pairs ${shared[*]}" >&2
if ! "$recur" train --device cpu --format pairs --data "$train_file" --test-file "$test_file" --json "${shared[@]}" \
    > "$work/recur.jsonl" 2> "$work/recur.log"; then
    cat "$work/recur.log" "$work/recur.jsonl" >&2
    exit 1
fi
cat "$work/recur.log" "$work/recur.jsonl" >&2
echo "== PyTorch: tools/g2p_pytorch.py --threads $threads ${shared[*]}" >&2
"$venv/bin/python" tools/g2p_pytorch.py "$train_file" "$test_file" --threads "$threads" --json "$work/pytorch.json" \
    "${shared[@]}" >&2
"$venv/bin/python" tools/g2p_side_by_side.py --recur-output "$work/recur.jsonl" --recur-log "$work/recur.log" \
    --pytorch "$work/pytorch.json" ${json_file:+--json "$json_file"}
