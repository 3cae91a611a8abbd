#!/usr/bin/env python3
"""Times one training step of the same models in Recur (CPU backend), PyTorch and Keras 3, side by
side in one run, plus OpenBLAS's SGEMM rate through numpy, and prints one table.

Models (identical in each framework):
  * Input(T, I) -> SimpleRNN | LSTM | GRU (H units, last state) -> Dense(1), MSE, Adam(1e-3),
    at (B, T, I, H) = (32, 400, 32, 32), (32, 100, 128, 128), (64, 50, 256, 256);
  * the IMDB recipe: Embedding(5000, 32) -> LSTM(32, dropout 0.2, recurrent dropout 0.2) ->
    Dense(1, sigmoid), B = 32, T = 400, binary cross-entropy, Adam (PyTorch has no recurrent
    dropout: it runs input dropout only).

A second table gives each framework's peak resident-memory growth over a model's warm-up and
timed steps (VmHWM after minus VmRSS before, the peak reset through /proc/self/clear_refs), each
framework in a process of its own, and the peak of Recur's backend-counted buffers.

Run through tools/compare_frameworks.sh, which installs the frameworks in a virtual environment.
usage: compare_frameworks.py --recur PATH_TO_RECUR [--repetitions N] [--json FILE]
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHAPES = [(32, 400, 32, 32), (32, 100, 128, 128), (64, 50, 256, 256)]
CELLS = ["rnn", "lstm", "gru"]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def status_bytes(field):
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes; None where unreadable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_resident():
    """Restarts VmHWM from the current VmRSS (writing 5 to clear_refs, Linux 4.0+); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def median_ms(step, warmup, repetitions):
    """The median time of `repetitions` steps after `warmup` untimed ones, and the growth of peak
    resident memory over all of them (VmHWM after minus VmRSS before; the model and its data exist
    before), or None where the peak cannot be reset."""
    measurable = reset_peak_resident()
    before = status_bytes("VmRSS")
    for _ in range(warmup):
        step()
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    peak = status_bytes("VmHWM")
    growth = peak - before if measurable and peak is not None and before is not None else None
    return samples[len(samples) // 2], growth


def step_flops(cell, b, t, i, h):
    """3 x the forward gate-GEMM flops 2 T B G H (I + H), G the gate count."""
    return 3 * 2 * t * b * GATES[cell] * h * (i + h)


# MARK: PyTorch

def torch_regression_step(cell, b, t, i, h):
    import torch
    torch.manual_seed(0)
    layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](i, h)
    head = torch.nn.Linear(h, 1)
    parameters = list(layer.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    x = torch.randn(t, b, i)
    y = torch.randn(b, 1)

    def step():
        optimizer.zero_grad(set_to_none=True)
        _, state = layer(x)
        last = (state[0] if cell == "lstm" else state)[-1]
        loss = torch.nn.functional.mse_loss(head(last), y)
        loss.backward()
        optimizer.step()
    return step


def torch_imdb_step(b=32, t=400):
    import torch
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(5000, 32)
    dropout = torch.nn.Dropout(0.2)
    lstm = torch.nn.LSTM(32, 32)
    head = torch.nn.Linear(32, 1)
    parameters = [*embedding.parameters(), *lstm.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    ids = torch.randint(1, 5000, (t, b))
    y = torch.randint(0, 2, (b, 1)).float()

    def step():
        optimizer.zero_grad(set_to_none=True)
        _, (h, _) = lstm(dropout(embedding(ids)))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(h[-1]), y)
        loss.backward()
        optimizer.step()
    return step


# MARK: Keras

def keras_regression_step(cell, b, t, i, h):
    import keras
    import numpy as np
    keras.utils.set_random_seed(0)
    layer = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell](h)
    model = keras.Sequential([keras.Input((t, i)), layer, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    x = np.random.default_rng(0).standard_normal((b, t, i)).astype("float32")
    y = np.random.default_rng(1).standard_normal((b, 1)).astype("float32")
    return lambda: model.train_on_batch(x, y)


def keras_imdb_step(b=32, t=400):
    import keras
    import numpy as np
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((t,), dtype="int32"),
        keras.layers.Embedding(5000, 32),
        keras.layers.LSTM(32, dropout=0.2, recurrent_dropout=0.2),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    ids = np.random.default_rng(0).integers(1, 5000, (b, t)).astype("int32")
    y = np.random.default_rng(1).integers(0, 2, (b, 1)).astype("float32")
    return lambda: model.train_on_batch(ids, y)


# MARK: Recur and the GEMM ceiling

def recur_step_ms(recur, arguments, repetitions):
    command = [recur, "bench", "--device", "cpu", "--json", "--pass", "train-step", "--gemm", "0",
               "--repetitions", str(repetitions)] + arguments
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    row = rows[0]
    return row["median_ms"], row.get("resident_growth_bytes"), row["peak_bytes"]


def sgemm_gflops(n=2048, repetitions=10):
    import numpy as np
    a = np.random.default_rng(0).standard_normal((n, n)).astype("float32")
    b = np.random.default_rng(1).standard_normal((n, n)).astype("float32")
    ms, _ = median_ms(lambda: a @ b, 2, repetitions)
    return 2 * n ** 3 / (ms * 1e6)


def worker(framework, model, warmup, repetitions):
    """Times one model in one framework and prints its median and resident growth as one JSON
    object. Each runs in a process of its own: PyTorch and TensorFlow each bundle LLVM, and loading
    both into one process aborts; and a process that has run another model first keeps that model's
    freed memory for reuse, so its resident growth would understate the next model's."""
    if framework == "torch":
        import torch
        torch.set_num_threads(os.cpu_count())
        regression, imdb, version = torch_regression_step, torch_imdb_step, f"PyTorch {torch.__version__}"
    else:
        import tensorflow as tf
        import keras
        regression, imdb = keras_regression_step, keras_imdb_step
        version = f"Keras {keras.__version__} on TensorFlow {tf.__version__}"
    step = imdb() if model == IMDB else regression(*MODELS[model])
    median, growth = median_ms(step, warmup, repetitions)
    print(json.dumps(dict(version=version, median=median, resident_growth_bytes=growth)))


def run_worker(framework, warmup, repetitions):
    """Every model of one framework, each in a fresh process, gathered as for one table column."""
    results = dict(medians={}, resident_growth_bytes={})
    for model in [*MODELS, IMDB]:
        command = [sys.executable, __file__, "--worker", framework, "--model", model, "--warmup", str(warmup),
                   "--repetitions", str(repetitions)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        results["version"] = row["version"]
        results["medians"][model] = row["median"]
        results["resident_growth_bytes"][model] = row["resident_growth_bytes"]
    return results


IMDB = "IMDB recipe (recurrent dropout)"


def mib(count):
    return "?" if count is None else f"{count / 2**20:.1f}"


def row_name(cell, b, t, i, h):
    return f"{cell} B={b} T={t} I={i} H={h}"


MODELS = {row_name(cell, *shape): (cell, *shape) for cell in CELLS for shape in SHAPES}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recur", help="path to the recur binary (release build)")
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--worker", choices=["torch", "keras"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.model, args.warmup, args.repetitions)
        return 0
    if not args.recur:
        parser.error("--recur is required")

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    gemm = sgemm_gflops()
    torch_results = run_worker("torch", args.warmup, args.repetitions)
    keras_results = run_worker("keras", args.warmup, args.repetitions)
    print(f"CPU: {cpu}, {os.cpu_count()} cores; {torch_results['version']}; {keras_results['version']}")
    print(f"numpy OpenBLAS SGEMM 2048^3: {gemm:.0f} GFLOP/s; median of {args.repetitions} steps after "
          f"{args.warmup} warm-up steps")

    rows = []
    for cell in CELLS:
        for (b, t, i, h) in SHAPES:
            name = row_name(cell, b, t, i, h)
            flops = step_flops(cell, b, t, i, h)
            keras_ms, torch_ms = keras_results["medians"][name], torch_results["medians"][name]
            recur_ms, recur_growth, recur_peak = recur_step_ms(args.recur, ["--cell", cell, "--batch", str(b), "--steps", str(t),
                                                  "--input", str(i), "--hidden", str(h)], args.repetitions)
            target = max(0.25 * min(keras_ms, torch_ms), flops / (0.85 * gemm * 1e6))
            rows.append(dict(name=name, keras_ms=keras_ms, torch_ms=torch_ms, recur_ms=recur_ms,
                             flops=flops, target_ms=target, recur_resident_growth=recur_growth,
                             recur_backend_peak=recur_peak))
    keras_ms, torch_ms = keras_results["medians"][IMDB], torch_results["medians"][IMDB]
    recur_ms, recur_growth, recur_peak = recur_step_ms(args.recur, ["--model", "imdb"], args.repetitions)
    flops = step_flops("lstm", 32, 400, 32, 32)
    rows.append(dict(name=IMDB, keras_ms=keras_ms, torch_ms=torch_ms, recur_ms=recur_ms, flops=flops,
                     target_ms=0.25 * keras_ms, recur_resident_growth=recur_growth,
                     recur_backend_peak=recur_peak))
    for row in rows:
        row["keras_resident_growth"] = keras_results["resident_growth_bytes"][row["name"]]
        row["torch_resident_growth"] = torch_results["resident_growth_bytes"][row["name"]]

    header = f"{'model':36} {'Keras ms':>9} {'PyTorch ms':>10} {'Recur ms':>9} {'Recur/faster':>12} " \
             f"{'of ceiling':>10} {'target ms':>9}  met"
    print(header)
    for row in rows:
        faster = min(row["keras_ms"], row["torch_ms"])
        ceiling = row["flops"] / (gemm * 1e6) / row["recur_ms"]
        met = "yes" if row["recur_ms"] <= row["target_ms"] else "no"
        print(f"{row['name']:36} {row['keras_ms']:9.2f} {row['torch_ms']:10.2f} {row['recur_ms']:9.2f} "
              f"{row['recur_ms'] / faster:12.2f} {ceiling:10.0%} {row['target_ms']:9.2f}  {met}")

    # Peak resident memory growth over the warm-up and timed steps of each model (VmHWM after minus
    # VmRSS before, the model and its data already built), each framework in its own process;
    # Recur's backend also counts the bytes of its live buffers, peak of a step beside it.
    print()
    print(f"{'model':36} {'Keras MiB':>9} {'PyTorch MiB':>11} {'Recur MiB':>9} {'Recur buffers MiB':>17}  "
          f"Recur <= PyTorch")
    for row in rows:
        keras, torch, recur = row["keras_resident_growth"], row["torch_resident_growth"], row["recur_resident_growth"]
        verdict = "yes" if None not in (torch, recur) and recur <= torch else "no" if None not in (torch, recur) else "?"
        print(f"{row['name']:36} {mib(keras):>9} {mib(torch):>11} {mib(recur):>9} "
              f"{mib(row['recur_backend_peak']):>17}  {verdict}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(dict(cpu=cpu, sgemm_gflops=gemm, rows=rows), file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
