"""Checks `recur export` against `recur predict`: for every cell and task `recur train` offers,
trains a tiny model for one epoch on generated data, exports it, and compares

- ONNX Runtime's outputs on the exported ONNX graph (which the ONNX checker must pass), and
- PyTorch's outputs on the exported state dict, loaded by the README's snippet (when torch is
  importable; otherwise it says so and skips),

with `recur predict`'s on the same inputs (an LSTM with a projection, `--projection P`, has no ONNX
operator: its ONNX export must be refused saying why, and its PyTorch export is checked alone): padded batches of different lengths (pre- and
post-padded, one classifier that reads its padding), every step of taggers and language models,
forecasts in the series' units under each transform. Inputs are encoded here from the vocabulary
the ONNX model carries in its metadata, as a user of the exported model would.

A value passes when |a - b| <= 1e-5 + 1e-4 |b| (float32 arithmetic in different orders: the
recurrent scans' rounding, softmax in float32 against Recur's in double). Any mismatch, or any
failing step, stops with a non-zero exit status.

Run through tools/check_export.sh, which makes the virtual environment and builds recur.
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime

ABSOLUTE_TOLERANCE = 1e-5
RELATIVE_TOLERANCE = 1e-4
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Failure(Exception):
    pass


def run(command, stdin=None, expect_failure=False):
    result = subprocess.run(command, input=stdin, capture_output=True, text=True)
    if expect_failure:
        if result.returncode == 0:
            raise Failure(f"expected a refusal from {' '.join(command)}")
        return result.stderr
    if result.returncode != 0:
        raise Failure(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def compare(name, actual, expected):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise Failure(f"{name}: shape {actual.shape}, expected {expected.shape}")
    error = np.abs(actual - expected)
    bound = ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * np.abs(expected)
    if not np.all(error <= bound):
        worst = np.unravel_index(np.argmax(error - bound), error.shape)
        raise Failure(f"{name}: at {tuple(int(i) for i in worst)} got {actual[worst]:.8g}, "
                      f"expected {expected[worst]:.8g} (error {error[worst]:.3g} > {bound[worst]:.3g})")
    return float(error.max())


# MARK: Data


def write_data(folder, rng):
    def sentence(low, high):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    with open(os.path.join(folder, "two.tsv"), "w") as f:
        for i in range(64):
            f.write(f"{['neg', 'pos'][i % 2]}\t{sentence(1, 12)}\n")
    with open(os.path.join(folder, "three.tsv"), "w") as f:
        for i in range(64):
            f.write(f"{['red', 'green', 'blue'][i % 3]}\t{sentence(1, 12)}\n")
    with open(os.path.join(folder, "tags.tsv"), "w") as f:
        for _ in range(64):
            tokens = sentence(1, 8).split()
            f.write(" ".join(tokens) + "\t" + " ".join("V" if t[0] in "aeiou" else "C" for t in tokens) + "\n")
    with open(os.path.join(folder, "text.txt"), "w") as f:
        f.write(" ".join(sentence(5, 10) for _ in range(40)) + "\n")
    with open(os.path.join(folder, "series.csv"), "w") as f:
        f.write("t,value\n")
        for t in range(160):
            f.write(f"{t},{50 + 0.3 * t + 5 * np.sin(t / 3) + rng.gauss(0, 1):.4f}\n")


def prediction_inputs(rng, task):
    """Lines for recur predict: lengths from 1 to past the sequence length (8)."""
    if task == "forecast":
        return None
    lengths = [1, 2, 3, 5, 8, 11] if task != "tag" else [1, 2, 3, 5, 7, 8]
    return [" ".join(rng.choice(WORDS) for _ in range(n)) for n in lengths]


# MARK: The models


def configurations():
    """Every cell with every task, the stack's shape varying so that each cell is also checked
    bidirectional and stacked, and each task with output dropout (the head one index later)."""
    tasks = ["classify2", "classify3", "tag", "lm", "forecast"]
    transforms = ["level", "difference", "revin"]
    for c, cell in enumerate(CELLS):
        for t, task in enumerate(tasks):
            options = ["--cell", cell, "--hidden", "5", "--epochs", "1", "--seed", str(1 + c + t), "--device", "cpu",
                       "--validation-split", "0.2", "--batch-size", "8"]
            if (c + t) % 2 == 0:
                options += ["--layers", "2", "--bidirectional"]
            else:
                options += ["--output-dropout", "0.2"]
            if task == "forecast":
                options += ["--data", "series.csv", "--format", "series", "--value-column", "1", "--max-length", "12",
                            "--horizon", "3", "--transform", transforms[c % 3]]
            else:
                options += ["--embedding", "4", "--max-length", "8"]
                options += {
                    "classify2": ["--data", "two.tsv", "--format", "tsv"],
                    "classify3": ["--data", "three.tsv", "--format", "tsv"],
                    "tag": ["--data", "tags.tsv", "--format", "tagged"],
                    "lm": ["--data", "text.txt", "--format", "text", "--tokenizer", "word"],
                }[task]
                # Post-padding for one cell in two, and one classifier that reads its padding.
                if c % 2 == 1:
                    options += ["--padding", "post"]
                if task == "classify3" and cell == "gru":
                    options += ["--no-mask-padding"]
            if task == "lm" and cell in ("rnn_tanh", "gru_reset_before"):
                options[options.index("word")] = "character"
            yield f"{cell}-{task}", task.rstrip("23"), options
    # The LSTM with a projection of h (nn.LSTM's proj_size): stacked bidirectional, and one layer.
    for t, task in enumerate(["tag", "classify2"]):
        options = ["--cell", "lstm", "--projection", "3", "--hidden", "5", "--epochs", "1", "--seed", str(40 + t),
                   "--device", "cpu", "--validation-split", "0.2", "--batch-size", "8", "--embedding", "4",
                   "--max-length", "8"]
        options += ["--layers", "2", "--bidirectional"] if task == "tag" else ["--padding", "post"]
        options += {"tag": ["--data", "tags.tsv", "--format", "tagged"],
                    "classify2": ["--data", "two.tsv", "--format", "tsv"]}[task]
        yield f"lstm_projection-{task}", task.rstrip("23"), options


# MARK: Encoding as a user of the exported model would


def metadata_of(session):
    return session.get_modelmeta().custom_metadata_map


def encode(lines, metadata, tokenizer):
    """ids [B, T] and lengths [B] as the graph takes them (see its recur.inputs)."""
    source = json.loads(metadata["data.source"])
    vocabulary = {token: i for i, token in enumerate(json.loads(metadata["data.vocabulary"]))}
    steps = source["sequenceLength"]
    rows = []
    for line in lines:
        tokens = list(line) if tokenizer == "character" else line.split()
        ids = [vocabulary.get(token, 1) for token in tokens] or [1]
        ids = ids[-steps:] if source["truncating"] == "pre" else ids[:steps]
        rows.append(ids)
    padded = np.zeros((len(rows), steps), dtype=np.int64)
    for b, ids in enumerate(rows):
        if source["padding"] == "pre":
            padded[b, steps - len(ids):] = ids
        else:
            padded[b, :len(ids)] = ids
    return padded, np.array([len(ids) for ids in rows], dtype=np.int32), source


def valid_steps(length, steps, padding):
    return range(steps - length, steps) if padding == "pre" else range(length)


# MARK: What recur predict says


def recur_predictions(recur, checkpoint, task, lines, series):
    if task == "forecast":
        return [[float(row.split(",")[1]) for row in run([recur, "predict", "--device", "cpu", "--checkpoint",
                                                           checkpoint], stdin="\n".join(map(str, window)) + "\n")
                 .strip().split("\n")[1:]] for window in series]
    output = run([recur, "predict", "--device", "cpu", "--checkpoint", checkpoint, "--probabilities"],
                 stdin="\n".join(lines) + "\n")
    return [json.loads(line) for line in output.strip().split("\n")]


def expected_outputs(task, predictions, classes):
    """recur predict's numbers, in the layout the comparisons use."""
    if task == "classify":
        names = classes if len(classes) > 2 else classes[1:]
        return np.array([[p["probabilities"][name] for name in names] for p in predictions])
    if task == "tag":
        return [np.array(p["probabilities"]) for p in predictions]
    if task == "lm":
        return np.array([p["probabilities"] for p in predictions])
    return np.array(predictions)


def forecast_windows(folder, steps):
    with open(os.path.join(folder, "series.csv")) as f:
        values = [float(line.split(",")[1]) for line in f.read().strip().split("\n")[1:]]
    return np.array([values[start:start + steps] for start in (0, 37, 90, 140)], dtype=np.float32)


# MARK: ONNX Runtime


def check_onnx(name, task, path, lines, expected, tokenizer, windows):
    # The ONNX checker first: the graph must be valid for its opset, not only runnable.
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    metadata = metadata_of(session)
    feeds = {}
    if task == "forecast":
        outputs = session.run(None, {"values": windows})[0]
        return compare(name + " onnx", outputs, expected), None
    ids, lengths, source = encode(lines, metadata, tokenizer)
    feeds["ids"] = ids
    if "lengths" in [i.name for i in session.get_inputs()]:
        feeds["lengths"] = lengths
    else:
        # A classifier that reads its padding: every row is read whole.
        lengths = np.full_like(lengths, source["sequenceLength"])
    outputs = session.run(None, feeds)[0]
    return compare_sequences(name + " onnx", task, outputs, expected, lengths, source), (ids, lengths, source)


def compare_sequences(name, task, outputs, expected, lengths, source):
    """Classifier rows whole; tagger steps at each token; the language model's last token."""
    steps = source["sequenceLength"]
    if task == "classify":
        return compare(name, outputs, expected)
    worst = 0.0
    for b, length in enumerate(lengths):
        valid = list(valid_steps(int(length), steps, source["padding"]))
        if task == "tag":
            worst = max(worst, compare(f"{name} row {b}", outputs[b, valid], expected[b]))
        else:
            worst = max(worst, compare(f"{name} row {b}", outputs[b, valid[-1]], expected[b]))
    return worst


# MARK: PyTorch, through the README's snippet


def readme_snippet():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    match = re.search(r"<!-- pytorch-snippet -->\s*```python\n(.*?)```", text, re.S)
    if not match:
        raise Failure("README.md has no ```python block after <!-- pytorch-snippet -->")
    return match.group(1)


def check_pytorch(name, task, path, expected, encoded, windows, metadata, snippet):
    import torch

    namespace = {}
    code = snippet.replace('path = "model.safetensors"', f"path = {path!r}")
    exec(compile(code, "README.md (PyTorch snippet)", "exec"), namespace)
    model = namespace["model"]
    with torch.no_grad():
        if task == "forecast":
            return compare(name + " pytorch", torch_forecast(model, windows, metadata), expected)
        ids, lengths, source = encoded
        steps = source["sequenceLength"]
        # The snippet's model takes the valid steps first: pre-padded rows are rolled left.
        front = np.stack([np.roll(row, -(steps - n)) if source["padding"] == "pre" else row
                          for row, n in zip(ids, lengths)])
        logits = model(torch.from_numpy(front), torch.from_numpy(lengths.astype(np.int64))).numpy()
        if task == "classify":
            outputs = 1 / (1 + np.exp(-logits)) if logits.shape[-1] == 1 else softmax(logits)
        else:
            outputs = softmax(np.stack([np.roll(row, steps - n, axis=0) if source["padding"] == "pre" else row
                                        for row, n in zip(logits, lengths)]))
        return compare_sequences(name + " pytorch", task, outputs, expected, lengths, source)


def torch_forecast(model, windows, metadata):
    """The forecaster on (x - c) / s, read back as c + s z', with c and s of recur's transform."""
    import torch

    source = json.loads(metadata["data.source"])
    mean, deviation = (float(v) for v in metadata["data.standardization"].split())
    x = windows.astype(np.float64)
    if source["transform"] == "level":
        c, s = np.full((len(x), 1), mean), np.full((len(x), 1), deviation)
    elif source["transform"] == "difference":
        c, s = x[:, -1:], np.full((len(x), 1), deviation)
    else:
        c = x.mean(axis=1, keepdims=True)
        s = np.sqrt(((x - c) ** 2).mean(axis=1, keepdims=True)) + 1e-5 * deviation
    z = torch.from_numpy(((x - c) / s).astype(np.float32)[:, :, None])
    lengths = torch.full((len(x),), x.shape[1], dtype=torch.int64)
    return c + s * model(z, lengths).numpy()


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# MARK: Main


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recur", required=True, help="the recur binary")
    parser.add_argument("--only", help="check only configurations whose name contains this")
    arguments = parser.parse_args()
    recur = os.path.abspath(arguments.recur)
    try:
        import torch  # noqa: F401
        snippet = readme_snippet()
        print(f"PyTorch {torch.__version__}: checking the README's snippet too")
    except ImportError:
        snippet = None
        print("PyTorch round trip SKIPPED: torch is not importable here "
              "(set RECUR_EXPORT_VENV to a virtual environment with torch, onnx, onnxruntime, numpy and safetensors)")
    print(f"ONNX {onnx.__version__}, ONNX Runtime {onnxruntime.__version__}; tolerance |a - b| <= {ABSOLUTE_TOLERANCE} + "
          f"{RELATIVE_TOLERANCE} |b|")
    rng = random.Random(7)
    passed = failed = 0
    with tempfile.TemporaryDirectory() as folder:
        write_data(folder, rng)
        os.chdir(folder)  # the training commands name their data relative to it
        for name, task, options in configurations():
            if arguments.only and arguments.only not in name:
                continue
            try:
                line = check_configuration(recur, folder, name, task, options, rng, snippet)
                print(f"ok   {name}: {line}")
                passed += 1
            except Failure as failure:
                print(f"FAIL {name}: {failure}")
                failed += 1
            except Exception as error:  # ONNX Runtime refusing the graph, output that does not parse
                print(f"FAIL {name}: {type(error).__name__}: {error}")
                failed += 1
            sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def check_configuration(recur, folder, name, task, options, rng, snippet):
    out = os.path.join(folder, name)
    os.makedirs(out)
    run([recur, "train", *options, "--checkpoint-dir", out], stdin="")
    checkpoint = os.path.join(out, "last.safetensors")
    onnx_path = os.path.join(out, "model.onnx")
    if "--projection" in options:
        return check_projection(recur, out, checkpoint, onnx_path, task, options, rng, snippet)
    run([recur, "export", "--checkpoint", checkpoint, "--format", "onnx", "--output", onnx_path])
    lines = prediction_inputs(rng, task)
    tokenizer = options[options.index("--tokenizer") + 1] if "--tokenizer" in options else "word"
    session_metadata = metadata_of(onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]))
    windows = None
    if task == "forecast":
        steps = json.loads(session_metadata["data.source"])["sequenceLength"]
        windows = forecast_windows(folder, steps)
    classes = session_metadata.get("data.classes", "").split("\n")
    predictions = recur_predictions(recur, checkpoint, task, lines, windows)
    expected = expected_outputs(task, predictions, classes)
    onnx_error, encoded = check_onnx(name, task, onnx_path, lines, expected, tokenizer, windows)
    summary = f"onnx max error {onnx_error:.2g}"
    pytorch_path = os.path.join(out, "model.pt.safetensors")
    cell = options[options.index("--cell") + 1]
    if cell == "gru_reset_before":
        message = run([recur, "export", "--checkpoint", checkpoint, "--format", "pytorch", "--output", pytorch_path],
                      expect_failure=True)
        if "nn.GRU" not in message:
            raise Failure(f"the PyTorch export of a reset-before GRU was refused without saying why: {message}")
        return summary + "; pytorch export refused (nn.GRU resets after)"
    run([recur, "export", "--checkpoint", checkpoint, "--format", "pytorch", "--output", pytorch_path])
    if snippet is None:
        return summary + "; pytorch skipped"
    error = check_pytorch(name, task, pytorch_path, expected, encoded, windows, session_metadata, snippet)
    return summary + f"; pytorch max error {error:.2g}"


def check_projection(recur, out, checkpoint, onnx_path, task, options, rng, snippet):
    """ONNX's LSTM has no projection: the export must say so. The PyTorch export (nn.LSTM with
    proj_size) is compared with recur predict, inputs encoded from its own metadata."""
    message = run([recur, "export", "--checkpoint", checkpoint, "--format", "onnx", "--output", onnx_path],
                  expect_failure=True)
    if "proj_size" not in message or os.path.exists(onnx_path):
        raise Failure(f"the ONNX export of an LSTM with a projection was refused without saying why: {message}")
    pytorch_path = os.path.join(out, "model.pt.safetensors")
    run([recur, "export", "--checkpoint", checkpoint, "--format", "pytorch", "--output", pytorch_path])
    summary = "onnx export refused (no projection in ONNX's LSTM)"
    if snippet is None:
        return summary + "; pytorch skipped"
    from safetensors import safe_open
    with safe_open(pytorch_path, "np") as f:
        metadata = f.metadata()
    lines = prediction_inputs(rng, task)
    predictions = recur_predictions(recur, checkpoint, task, lines, None)
    expected = expected_outputs(task, predictions, metadata.get("data.classes", "").split("\n"))
    encoded = encode(lines, metadata, "word")
    error = check_pytorch(os.path.basename(out), task, pytorch_path, expected, encoded, None, metadata, snippet)
    return summary + f"; pytorch max error {error:.2g}"


if __name__ == "__main__":
    sys.exit(main())
