"""Trajectory parity: Recur and Keras, started from the same weights and fed the same batches in the
same order, must report the same training loss at every step.

For each task it generates a small data set (seeded; nothing to download), runs
`recur train --no-shuffle --initial-weights W --step-log S --export-data D` on --device (default cpu),
loads W into the equivalent Keras 3 model (PyTorch layout converted to Keras's), replays the
exported training split in Recur's order through `Model.train_on_batch`, and compares the
per-step losses. Where the two frameworks' defaults make them take different steps, one side is
configured to do what the other does (listed by `--defaults`), so any difference left is one of
the engines, not of the recipe.

usage: keras_trajectory.py --recur PATH [--out DIR] [--device cpu] [--steps 100] [--bound 1e-4]
                           [--task NAME[:CELL] ...] [--embedding-second-moment summed|per-occurrence]
                           [--unmatch epsilon|embedding-gradient|bias ...]
       keras_trajectory.py --defaults
Prints a table (task, cell, steps, max relative difference, first-step loss) and exits with
status 1 when a task's largest relative difference exceeds --bound.

--embedding-second-moment chooses how Adam's v treats an id seen several times in a batch:
summed (default) makes Keras's embedding gradients dense, as Recur's default (and PyTorch) sum an
id's occurrences first; per-occurrence leaves Keras its sparse gradients (one slice per
occurrence, squared one by one) and runs Recur with --embedding-second-moment per-occurrence.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

# What Keras does by default and what Recur does, where the two differ in a way that changes
# learning; the parity runs set the Keras side to Recur's value.
DEFAULT_DIFFERENCES = [
    ("LSTM, simple RNN and reset-before GRU biases", "one bias per gate",
     "two, b_ih and b_hh (PyTorch's layout), both trained: under Adam their sum moves twice as far per step",
     "--freeze 1.bias_hh_l0 (Recur's Keras initialisation puts the whole bias in b_ih)"),
    ("Adam on an Embedding (TensorFlow)", "the gradient has one slice per occurrence of an id, and v adds their "
     "squares one by one", "an id's occurrences are summed first (PyTorch, dense Adam)",
     "the Keras gradients are made dense; or, with --embedding-second-moment per-occurrence, Keras keeps "
     "its sparse gradients and Recur adds the squares per occurrence too"),
    ("Adam epsilon", "1e-7, added to sqrt(v) before v's bias correction",
     "1e-8, added to sqrt(v_hat) (PyTorch)", "--epsilon 1e-30 and epsilon=1e-30: the placement no longer matters"),
    ("binary head", "Dense(1, sigmoid) + binary_crossentropy", "Dense(1) logits + sigmoid cross-entropy on logits",
     "Dense(1) + BinaryCrossentropy(from_logits=True)"),
    ("padding of classifiers", "read as input (no mask_zero)", "skipped (sequence lengths; --no-mask-padding reads it)",
     "mask_zero=True where Recur masks, none where it reads the padding"),
    ("initialisers", "Embedding U(+-0.05), Glorot-uniform kernels, orthogonal recurrent kernel, forget bias 1",
     "the same (--initialization keras, the default), but orthogonal per gate block",
     "Recur's initial weights are loaded into Keras"),
    ("loss reductions", "mean over the batch; masked steps left out of the mean", "the same", "as they are"),
    ("shuffling", "every epoch", "every epoch (--no-shuffle keeps the split's order)", "both unshuffled"),
    ("padding and truncating side, clipping", "pre, pre, none", "pre, pre, none", "as they are"),
]

WORDS = ["good", "bad", "fine", "awful", "great", "poor", "movie", "plot", "actor", "scene", "the", "a", "was",
         "very", "not", "really", "it", "and"]


def generate(out):
    """Writes the tasks' data files into `out`, all from seed 0."""
    rng = random.Random(0)
    os.makedirs(out, exist_ok=True)
    positive, negative = {"good", "great", "fine"}, {"bad", "awful", "poor"}
    with open(f"{out}/classify.tsv", "w") as f:
        for _ in range(320):
            tokens = [rng.choice(WORDS) for _ in range(rng.randint(3, 18))]
            # "not" flips the next word: the label needs order, not just counts.
            score = sum((1 if t in positive else -1 if t in negative else 0) * (-1 if p == "not" else 1)
                        for p, t in zip(["."] + tokens, tokens))
            f.write(f"{'pos' if score >= 0 else 'neg'}\t{' '.join(tokens)}\n")
    with open(f"{out}/classify3.tsv", "w") as f:
        for _ in range(320):
            tokens = [rng.choice(WORDS) for _ in range(rng.randint(3, 18))]
            score = sum(1 if t in positive else -1 if t in negative else 0 for t in tokens)
            f.write(f"{'pos' if score > 0 else 'neg' if score < 0 else 'mixed'}\t{' '.join(tokens)}\n")
    with open(f"{out}/tag.tsv", "w") as f:
        for _ in range(320):
            tokens = [rng.choice(WORDS) for _ in range(rng.randint(3, 18))]
            # A word's tag depends on the word before it.
            tags = ["NEG" if p == "not" else "POS" if t in positive else "NEGW" if t in negative else "O"
                    for p, t in zip(["."] + tokens, tokens)]
            f.write(f"{' '.join(tokens)}\t{' '.join(tags)}\n")
    sentences = []
    for _ in range(900):
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) + ".\n")
    with open(f"{out}/lm.txt", "w") as f:
        f.write("".join(sentences))
    with open(f"{out}/series.csv", "w") as f:
        f.write("t,value\n")
        for t in range(600):
            f.write(f"{t},{10 + 0.02 * t + 3 * math.sin(2 * math.pi * t / 12) + rng.gauss(0, 0.5):.4f}\n")


# name: (data file, recur options, Keras model options)
TASKS = {
    "classify-mask": ("classify.tsv", ["--format", "tsv", "--max-length", "16"], {"mask": True}),
    "classify-nomask": ("classify.tsv", ["--format", "tsv", "--max-length", "16", "--no-mask-padding"], {"mask": False}),
    "classify3-mask": ("classify3.tsv", ["--format", "tsv", "--max-length", "16"], {"mask": True}),
    "lm": ("lm.txt", ["--format", "text", "--max-length", "20"], {"mask": False}),
    "forecast": ("series.csv", ["--format", "series", "--max-length", "24"], {"mask": False}),
    "tag": ("tag.tsv", ["--format", "tagged", "--max-length", "16"], {"mask": True}),
}
# (task, cell): every task with an LSTM, and every cell on the masked classifier.
RUNS = [(task, "lstm") for task in TASKS] + [("classify-mask", cell) for cell in
                                              ("gru", "rnn", "gru-reset-before")] + [("lm", "gru"), ("tag", "gru")]


def to_keras(cell, tensors, prefix, hidden):
    """PyTorch-layout weights of one recurrent layer-direction as Keras's [kernel, recurrent, bias]."""
    w_ih, w_hh = tensors[prefix + "weight_ih_l0"], tensors[prefix + "weight_hh_l0"]
    b_ih, b_hh = tensors[prefix + "bias_ih_l0"], tensors[prefix + "bias_hh_l0"]
    if cell == "gru":
        # PyTorch's gate blocks are r, z, n; Keras's z, r, h. reset_after keeps both biases: (2, 3H).
        order = np.concatenate([np.arange(hidden, 2 * hidden), np.arange(hidden), np.arange(2 * hidden, 3 * hidden)])
        return [w_ih[order].T, w_hh[order].T, np.stack([b_ih[order], b_hh[order]])]
    if cell == "gru-reset-before":
        # reset_after=False: h~ = tanh(W x + U (r * h) + b), one bias, so b = b_ih + b_hh.
        order = np.concatenate([np.arange(hidden, 2 * hidden), np.arange(hidden), np.arange(2 * hidden, 3 * hidden)])
        return [w_ih[order].T, w_hh[order].T, (b_ih + b_hh)[order]]
    # LSTM (i, f, g, o in both) and the simple RNN: one bias, b_ih + b_hh.
    return [w_ih.T, w_hh.T, b_ih + b_hh]


def dense_gradient_adam():
    """Keras's Adam, given every gradient dense.

    On TensorFlow an Embedding's gradient is a `tf.IndexedSlices` with one slice per occurrence of
    an id, and Keras's Adam squares those slices one by one before adding them into v, so an id seen
    n times in a batch gets sum(g_i^2) instead of (sum g_i)^2 and a different step. Recur (like
    PyTorch) adds an id's occurrences first. The dense gradient holds the same sums.
    """
    import keras
    import tensorflow as tf

    class DenseGradientAdam(keras.optimizers.Adam):
        def apply(self, grads, trainable_variables=None):
            grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
            return super().apply(grads, trainable_variables)

    return DenseGradientAdam


def keras_model(task, cell, mask, weights, steps, vocabulary, outputs, learning_rate, unmatch=(),
                sparse_embedding=False):
    import keras
    from keras import layers
    prefix, head = ("0.", "1.") if task == "forecast" else ("1.", "2.")
    hidden = weights[prefix + "weight_hh_l0"].shape[1]
    recurrent_type = {"lstm": layers.LSTM, "gru": layers.GRU, "gru-reset-before": layers.GRU,
                      "rnn": layers.SimpleRNN, "rnn-relu": layers.SimpleRNN}[cell]
    options = {"return_sequences": task in ("lm", "tag")}
    if cell.startswith("gru"):
        options["reset_after"] = cell == "gru"
    if cell == "rnn-relu":
        options["activation"] = "relu"
    recurrent = recurrent_type(hidden, **options)
    if task == "forecast":
        embedding = None
        model = keras.Sequential([keras.Input((steps, 1)), recurrent])
    else:
        embedding = layers.Embedding(vocabulary, weights["0.weight"].shape[1], mask_zero=mask)
        model = keras.Sequential([keras.Input((steps,), dtype="int32"), embedding, recurrent])
    dense = layers.Dense(outputs)
    model.add(dense)
    if embedding is not None:
        embedding.set_weights([weights["0.weight"]])
    recurrent.set_weights(to_keras(cell, weights, prefix, hidden))
    dense.set_weights([weights[head + "weight"].T, weights[head + "bias"]])
    if task == "forecast":
        loss = keras.losses.MeanSquaredError()
    elif task == "classify" and outputs == 1:
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # Recur runs with the same epsilon (see `run`), and with per-occurrence squares when Keras keeps
    # its sparse embedding gradients.
    sparse = sparse_embedding or "embedding-gradient" in unmatch
    adam = keras.optimizers.Adam if sparse else dense_gradient_adam()
    model.compile(adam(learning_rate, epsilon=1e-7 if "epsilon" in unmatch else 1e-30), loss)
    return model


def keras_losses(model, inputs, targets, batch_size, steps):
    """The loss of each of the first `steps` batches, in order, as Recur visits them without shuffling
    (the last batch of an epoch partial)."""
    losses = []
    count = len(inputs)
    while len(losses) < steps:
        for start in range(0, count, batch_size):
            if len(losses) == steps:
                break
            model.reset_metrics()  # train_on_batch reports a running mean otherwise
            loss = model.train_on_batch(inputs[start:start + batch_size], targets[start:start + batch_size])
            losses.append(float(np.asarray(loss).reshape(-1)[0]))
    return losses


def run(args, name, cell):
    data_file, recur_options, keras_options = TASKS[name]
    task = name.split("-")[0].rstrip("3")
    folder = f"{args.out}/{name}-{cell}"
    os.makedirs(folder, exist_ok=True)
    # Enough epochs for the steps: every task's data gives at least 16 batches of 16 per epoch.
    epochs = math.ceil(args.steps / 16)
    command = [args.recur, "train", "--device", args.device, "--data", f"{args.out}/{data_file}", *recur_options,
               "--cell", cell, "--hidden", "16", "--embedding", "8", "--batch-size", str(args.batch_size),
               "--learning-rate", str(args.learning_rate), "--epochs", str(epochs), "--validation-split", "0",
               "--test-split", "0", "--seed", "1", "--no-shuffle", "--initial-weights", f"{folder}/initial.safetensors",
               "--step-log", f"{folder}/steps.jsonl", "--export-data", f"{folder}/data.safetensors"]
    # Adam's epsilon is added after v's bias correction in Recur (as PyTorch) and before it in
    # Keras; with an epsilon far below every nonzero sqrt(v) the two updates are the same.
    if "epsilon" not in args.unmatch:
        command += ["--epsilon", "1e-30"]
    if args.embedding_second_moment == "per-occurrence":
        command += ["--embedding-second-moment", "per-occurrence"]
    if cell != "gru" and "bias" not in args.unmatch:
        # Keras's LSTM, SimpleRNN and reset-before GRU have one bias where PyTorch's layout has two;
        # Adam moves each of two equal-gradient biases by the same step, so their sum would move
        # twice as far as Keras's bias. Recur's Keras initialisation puts the whole bias in b_ih.
        command += ["--freeze", ("0." if task == "forecast" else "1.") + "bias_hh_l0"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recur = [json.loads(line)["loss"] for line in open(f"{folder}/steps.jsonl")][:args.steps]
    if len(recur) < args.steps:
        sys.exit(f"{name}: recur took {len(recur)} steps, fewer than {args.steps}")
    weights = load_file(f"{folder}/initial.safetensors")
    tensors = load_file(f"{folder}/data.safetensors")
    with safe_open(f"{folder}/data.safetensors", framework="np") as handle:
        metadata = handle.metadata() or {}
    inputs, targets = tensors["train.inputs"], tensors["train.targets"]
    steps = inputs.shape[1]
    if task == "forecast":
        inputs = inputs.astype("float32")[..., None]
    head = "1." if task == "forecast" else "2."
    outputs = weights[head + "bias"].shape[0]
    vocabulary = int(metadata.get("vocabulary_size", "0"))
    model = keras_model(task, cell, keras_options["mask"], weights, steps, vocabulary, outputs, args.learning_rate,
                        args.unmatch, sparse_embedding=args.embedding_second_moment == "per-occurrence")
    keras = keras_losses(model, inputs, targets, args.batch_size, args.steps)
    differences = [abs(k - r) / abs(r) for k, r in zip(keras, recur)]
    worst = int(np.argmax(differences))
    return {"task": name, "cell": cell, "steps": len(differences), "max_relative_difference": differences[worst],
            "at_step": worst + 1, "first_loss": recur[0], "last_loss_recur": recur[-1], "last_loss_keras": keras[-1]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--recur", help="the recur binary")
    parser.add_argument("--out", default=".build/keras-trajectory")
    parser.add_argument("--device", default="cpu", help="where recur trains: cpu, opencl, ... (as recur --device)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--bound", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--task", action="append", help="NAME or NAME:CELL (default: every run of RUNS)")
    parser.add_argument("--defaults", action="store_true", help="list the defaults in which Keras and Recur differ")
    parser.add_argument("--embedding-second-moment", choices=["summed", "per-occurrence"], default="summed",
                        help="summed: Keras's embedding gradients made dense, Recur's default; per-occurrence: "
                             "Keras's own sparse gradients, Recur --embedding-second-moment per-occurrence")
    parser.add_argument("--unmatch", action="append", default=[], choices=["epsilon", "embedding-gradient", "bias"],
                        help="leave one difference as each framework has it (Adam's epsilon: Recur's 1e-8 and "
                             "Keras's 1e-7; Keras's per-occurrence embedding gradients; Recur's two trained biases), "
                             "to see how far it moves the trajectory")
    args = parser.parse_args()
    if args.defaults:
        print("| setting | Keras | Recur | parity runs |\n|---|---|---|---|")
        for row in DEFAULT_DIFFERENCES:
            print("| " + " | ".join(row) + " |")
        return
    if not args.recur:
        parser.error("--recur is required")
    import keras
    keras.utils.set_random_seed(0)
    generate(args.out)
    runs = [tuple((t + ":lstm").split(":")[:2]) for t in args.task] if args.task else RUNS
    results = []
    print(f"{'task':<18}{'cell':<18}{'steps':>6}{'max rel diff':>14}{'at step':>9}{'first loss':>12}"
          f"{'last (Recur)':>14}{'last (Keras)':>14}", flush=True)
    for name, cell in runs:
        result = run(args, name, cell)
        results.append(result)
        print(f"{name:<18}{cell:<18}{result['steps']:>6}{result['max_relative_difference']:>14.2e}"
              f"{result['at_step']:>9}{result['first_loss']:>12.5f}{result['last_loss_recur']:>14.5f}"
              f"{result['last_loss_keras']:>14.5f}", flush=True)
    with open(f"{args.out}/results.json", "w") as f:
        json.dump(results, f, indent=1)
    failed = [r for r in results if not r["max_relative_difference"] <= args.bound]
    if failed:
        print(f"{len(failed)} of {len(results)} runs exceed the bound {args.bound:g}: "
              + ", ".join(f"{r['task']}/{r['cell']}" for r in failed), file=sys.stderr)
        sys.exit(1)
    print(f"every run within {args.bound:g} relative over its first {args.steps} steps")


if __name__ == "__main__":
    main()
