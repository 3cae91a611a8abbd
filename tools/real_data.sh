#!/usr/bin/env bash
# Trains the README's real-data recipes with Recur's CPU backend and, on exactly the same
# prepared splits (recur train --export-data), with Keras 3 on TensorFlow-CPU; prints one table.
# Installs Keras in a virtual environment (.venv-bench, or $VENV) on first use.
#
# usage: tools/real_data.sh [recipe ...]   recipes: sms polarity shakespeare sunspots (default: all)
# The data sets are read from $DATA (default ../shared/data), laid out as
#   sms_spam/SMSSpamCollection           UCI Machine Learning Repository, SMS Spam Collection (id 228)
#   rt_polarity/rt-polarity.{pos,neg}    Pang & Lee, sentence polarity data v1.0 (Cornell)
#   tinyshakespeare/input.txt            github.com/karpathy/char-rnn, data/tinyshakespeare
#   timeseries/monthly-sunspots.csv      Time Series Data Library (Hyndman), monthly sunspot numbers
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv-bench}
data=${DATA:-../shared/data}
[ -d "$data" ] || { echo "real_data.sh: no data folder at $data: set DATA to the folder described above" >&2; exit 1; }
out=${OUT:-.build/real-data}
mkdir -p "$out"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install -q tensorflow-cpu keras numpy safetensors
tools/setup.sh
swift build -c release --product recur
recur=.build/release/recur

recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=(sms polarity shakespeare sunspots)

# run NAME KERAS-ARGS -- RECUR-ARGS: both frameworks, the same model, data and budget.
run() {
    local name=$1; shift
    local keras_args=()
    while [ "$1" != "--" ]; do keras_args+=("$1"); shift; done
    shift
    echo "== $name" >&2
    "$recur" train --device cpu --json --export-data "$out/$name.safetensors" --checkpoint-dir "$out/$name" "$@" \
        > "$out/$name.recur.jsonl"
    "$venv/bin/python" tools/keras_reference.py --data "$out/$name.safetensors" "${keras_args[@]}" \
        > "$out/$name.keras.jsonl" 2> "$out/$name.keras.log"
}

for recipe in "${recipes[@]}"; do
    case $recipe in
    sms)
        # Embedding(5000, 32) -> LSTM(32) -> Dense(1, sigmoid), Adam 1e-3, batch 32; the padding is read
        # as Keras reads it without mask_zero.
        run sms --task classify --epochs 5 -- \
            --data "$data/sms_spam/SMSSpamCollection" --format tsv --num-words 5000 --max-length 50 \
            --epochs 5 --validation-split 0.1 --test-split 0.2 --no-mask-padding ;;
    polarity)
        run polarity --task classify --epochs 5 -- \
            --data "$data/rt_polarity/rt-polarity.neg" --data "$data/rt_polarity/rt-polarity.pos" --format lines \
            --classes neg,pos --num-words 10000 --max-length 50 --epochs 5 --validation-split 0.1 --test-split 0.2 \
            --no-mask-padding ;;
    shakespeare)
        # Character model: Embedding(67, 32) -> LSTM(256, every step) -> Dense(67), windows of 100.
        run shakespeare --task lm --hidden 256 --batch-size 64 --learning-rate 0.005 --clip-norm 5 --epochs 4 -- \
            --data "$data/tinyshakespeare/input.txt" --format text --max-length 100 --hidden 256 --batch-size 64 \
            --learning-rate 0.005 --clip-norm 5 --epochs 4 --validation-split 0.05 --test-split 0.05
        "$recur" generate --device cpu --checkpoint "$out/shakespeare/last.safetensors" --prime "ROMEO:" \
            --length 400 --temperature 0.7 --seed 1 > "$out/shakespeare.sample.txt" ;;
    sunspots)
        # Windows of 24 months -> the next month; LSTM(32) -> Dense(1), MSE; MAE in sunspots.
        # --transform level: globally standardised values, as the README's row was measured
        # (TRANSFORM=difference for the current default).
        run sunspots --task forecast --epochs 30 -- \
            --data "$data/timeseries/monthly-sunspots.csv" --format series --max-length 24 \
            --transform "${TRANSFORM:-level}" --epochs 30 --validation-split 0.1 --test-split 0.2 ;;
    *) echo "unknown recipe $recipe" >&2; exit 2 ;;
    esac
done

"$venv/bin/python" - "$out" "${recipes[@]}" <<'PY'
import json, sys
out, recipes = sys.argv[1], sys.argv[2:]
def final(path):
    lines = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    epochs = [l for l in lines if "final" not in l]
    last = [l for l in lines if l.get("final")][-1]
    return last, sum(e["seconds"] for e in epochs) / max(len(epochs), 1)
print("| data set | metric | Recur | Keras | Recur s/epoch | Keras s/epoch |")
print("|---|---|---:|---:|---:|---:|")
for name in recipes:
    recur, recur_epoch = final(f"{out}/{name}.recur.jsonl")
    keras, keras_epoch = final(f"{out}/{name}.keras.jsonl")
    for metric in ("test_accuracy", "test_loss", "test_perplexity", "test_mae"):
        if metric in recur and metric in keras:
            print(f"| {name} | {metric} | {recur[metric]:.4f} | {keras[metric]:.4f} | {recur_epoch:.1f} | {keras_epoch:.1f} |")
PY
