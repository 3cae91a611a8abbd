#!/usr/bin/env bash
# Trains the README's real-data recipes with Recur's CPU backend and, on exactly the same
# prepared splits (recur train --export-data), with Keras 3 on TensorFlow-CPU; prints one table.
# Installs Keras in a virtual environment (.venv-bench, or $VENV) on first use.
#
# usage: tools/real_data.sh [recipe ...]   recipes: sms polarity shakespeare sunspots (default: all)
# Each recipe runs once per seed of SEEDS (default "0 1 2": the models' initial weights, shuffles
# and dropout; the split stays the same), and the table gives mean ± sd over the seeds, beside
# the trivial baselines Recur reports on the same test split.
# The models with an Embedding train it with Keras's rule for its second moment
# (--embedding-second-moment per-occurrence, what Keras's Adam does with TensorFlow's per-occurrence
# gradient slices), so both frameworks run the same optimizer; EMBEDDING_RULE=summed gives
# Recur's default (PyTorch's) instead.
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
seeds=${SEEDS:-0 1 2}
mkdir -p "$out"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install -q tensorflow-cpu keras numpy safetensors
tools/setup.sh
swift build -c release --product recur
recur=.build/release/recur
rule=(--embedding-second-moment "${EMBEDDING_RULE:-per-occurrence}")

recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=(sms polarity shakespeare sunspots)

# run NAME KERAS-ARGS -- RECUR-ARGS: both frameworks, the same model, data and budget.
run() {
    local name=$1; shift
    local keras_args=()
    while [ "$1" != "--" ]; do keras_args+=("$1"); shift; done
    shift
    for seed in $seeds; do
        echo "== $name, seed $seed" >&2
        "$recur" train --device cpu --json --seed "$seed" --export-data "$out/$name.safetensors" \
            --checkpoint-dir "$out/$name.$seed" "$@" > "$out/$name.$seed.recur.jsonl"
        "$venv/bin/python" tools/keras_reference.py --data "$out/$name.safetensors" --seed "$seed" \
            "${keras_args[@]}" > "$out/$name.$seed.keras.jsonl" 2> "$out/$name.$seed.keras.log"
    done
}

for recipe in "${recipes[@]}"; do
    case $recipe in
    sms)
        # Embedding(5000, 32) -> LSTM(32) -> Dense(1, sigmoid), Adam 1e-3, batch 32; the padding is read
        # as Keras reads it without mask_zero.
        run sms --task classify --epochs 5 -- \
            --data "$data/sms_spam/SMSSpamCollection" --format tsv --num-words 5000 --max-length 50 \
            --epochs 5 --validation-split 0.1 --test-split 0.2 --no-mask-padding "${rule[@]}" ;;
    polarity)
        run polarity --task classify --epochs 5 -- \
            --data "$data/rt_polarity/rt-polarity.neg" --data "$data/rt_polarity/rt-polarity.pos" --format lines \
            --classes neg,pos --num-words 10000 --max-length 50 --epochs 5 --validation-split 0.1 --test-split 0.2 \
            --no-mask-padding "${rule[@]}" ;;
    shakespeare)
        # Character model: Embedding(67, 32) -> LSTM(256, every step) -> Dense(67), windows of 100.
        run shakespeare --task lm --hidden 256 --batch-size 64 --learning-rate 0.005 --clip-norm 5 --epochs 4 -- \
            --data "$data/tinyshakespeare/input.txt" --format text --max-length 100 --hidden 256 --batch-size 64 \
            --learning-rate 0.005 --clip-norm 5 --epochs 4 --validation-split 0.05 --test-split 0.05 "${rule[@]}"
        "$recur" generate --device cpu --checkpoint "$out/shakespeare.${seeds%% *}/last.safetensors" --prime "ROMEO:" \
            --length 400 --temperature 0.7 --seed 1 > "$out/shakespeare.sample.txt" ;;
    sunspots)
        # Windows of 24 months -> the next month; LSTM(32) -> Dense(1), MSE; MAE in sunspots.
        # The default transform (difference); TRANSFORM=level for globally standardised values.
        run sunspots --task forecast --epochs 30 -- \
            --data "$data/timeseries/monthly-sunspots.csv" --format series --max-length 24 \
            --transform "${TRANSFORM:-difference}" --epochs 30 --validation-split 0.1 --test-split 0.2 ;;
    *) echo "unknown recipe $recipe" >&2; exit 2 ;;
    esac
done

"$venv/bin/python" - "$out" "$seeds" "${recipes[@]}" <<'PY'
import json, statistics, sys
out, seeds, recipes = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
def final(path):
    lines = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    epochs = [l for l in lines if "final" not in l]
    last = [l for l in lines if l.get("final")][-1]
    return last, sum(e["seconds"] for e in epochs) / max(len(epochs), 1)
def spread(values):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"
print(f"Mean ± sd over seeds {', '.join(seeds)}; baselines on the same test split (from recur train's JSON).")
print("| data set | metric | Recur | Keras | baselines | Recur s/epoch | Keras s/epoch |")
print("|---|---|---:|---:|---|---:|---:|")
for name in recipes:
    runs = {framework: [final(f"{out}/{name}.{seed}.{framework}.jsonl") for seed in seeds]
            for framework in ("recur", "keras")}
    seconds = {framework: statistics.mean(s for _, s in runs[framework]) for framework in runs}
    for metric in ("test_accuracy", "test_loss", "test_perplexity", "test_mae", "test_rmse"):
        recur = [r[metric] for r, _ in runs["recur"] if metric in r]
        keras = [k[metric] for k, _ in runs["keras"] if metric in k]
        if not recur:
            continue
        key = metric.removeprefix("test_")
        first = runs["recur"][0][0]
        # baseline_<metric> is the task's one trivial baseline (majority class, unigram);
        # baseline_<metric>_<which> a forecast's (last value, drift, seasonal naive).
        baselines = ", ".join(f"{'majority / unigram' if k == 'baseline_' + key else k.removeprefix('baseline_' + key + '_').replace('_', ' ')} {v:.4f}"
                              for k, v in sorted(first.items())
                              if k == "baseline_" + key or k.startswith("baseline_" + key + "_"))
        print(f"| {name} | {key} | {spread(recur)} | {spread(keras) if keras else ''} | {baselines} "
              f"| {seconds['recur']:.1f} | {seconds['keras']:.1f} |")
PY
