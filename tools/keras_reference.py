"""Trains the Keras 3 counterpart of a `recur train` recipe on exactly the same prepared data.

`recur train --export-data FILE` writes the splits it trains on (`train.inputs`, `train.targets`,
`validation.*`, `test.*`; example-major). This script builds the same architecture in Keras
(Embedding -> recurrent layer -> Dense, or Input -> recurrent layer -> Dense for series), trains it
with the same optimizer, batch size and epochs, and prints one JSON object per epoch and a final
one with the test metrics, in the keys `recur train --json` uses.

usage: keras_reference.py --data FILE --task classify|lm|forecast [--cell lstm] [--embedding 32]
       [--hidden 32] [--dropout 0] [--recurrent-dropout 0] [--epochs 5] [--batch-size 32]
       [--learning-rate 1e-3] [--seed 0]
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def build(args, layers, keras, steps, outputs):
    cells = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}
    recurrent = cells[args.cell](
        args.hidden, dropout=args.dropout, recurrent_dropout=args.recurrent_dropout,
        return_sequences=args.task == "lm")
    if args.task == "forecast":
        model = keras.Sequential([keras.Input((steps, 1)), recurrent, layers.Dense(outputs)])
        model.compile(keras.optimizers.Adam(args.learning_rate), "mse", metrics=["mae"])
        return model
    model = keras.Sequential([
        keras.Input((steps,), dtype="int32"), layers.Embedding(args.vocabulary, args.embedding), recurrent])
    if args.task == "lm":
        model.add(layers.Dense(args.vocabulary))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(keras.optimizers.Adam(args.learning_rate), loss, metrics=["accuracy"])
    elif args.classes == 2:
        model.add(layers.Dense(1, activation="sigmoid"))
        model.compile(keras.optimizers.Adam(args.learning_rate), "binary_crossentropy", metrics=["accuracy"])
    else:
        model.add(layers.Dense(args.classes, activation="softmax"))
        model.compile(keras.optimizers.Adam(args.learning_rate), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--task", choices=["classify", "lm", "forecast"], required=True)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--embedding", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--recurrent-dropout", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    from keras import layers
    keras.utils.set_random_seed(args.seed)

    tensors = load_file(args.data)
    with safe_open(args.data, framework="np") as handle:
        metadata = handle.metadata() or {}
    # What the model needs to know of the data, as recur recorded it: vocabulary size, class
    # count, and the standard deviation that turns a standardised series' MAE into its units.
    args.vocabulary = int(metadata.get("vocabulary_size", "0"))
    args.classes = max(len([c for c in metadata.get("classes", "").split("\n") if c]), 2)
    args.scale = float(metadata.get("scale", "1"))

    def split(name):
        if name + ".inputs" not in tensors:
            return None
        x, y = tensors[name + ".inputs"], tensors[name + ".targets"]
        if args.task == "forecast":
            x = x.astype("float32")[..., None]
        elif args.task == "classify" and args.classes == 2:
            y = y.astype("float32")
        return x, y

    train, validation, test = split("train"), split("validation"), split("test")
    steps = train[0].shape[1]
    outputs = train[1].shape[1] if args.task == "forecast" else args.classes
    model = build(args, layers, keras, steps, outputs)

    def metrics(values, prefix=""):
        result = {prefix + "loss": float(values["loss"])}
        if args.task == "forecast":
            result[prefix + "mae"] = float(values["mae"]) * args.scale
        else:
            result[prefix + "accuracy"] = float(values["accuracy"])
        if args.task == "lm":
            result[prefix + "perplexity"] = float(np.exp(values["loss"]))
        return result

    total = 0.0
    record = {}
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        history = model.fit(train[0], train[1], batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True)
        record = metrics({k: v[-1] for k, v in history.history.items()})
        if validation is not None:
            values = model.evaluate(validation[0], validation[1], batch_size=256, verbose=0, return_dict=True)
            record.update(metrics(values, "val_"))
        seconds = time.perf_counter() - start
        total += seconds
        print(json.dumps({"epoch": epoch, **record, "seconds": seconds}), flush=True)
    final = {"final": True, "epochs": args.epochs, **record}
    if test is not None:
        values = model.evaluate(test[0], test[1], batch_size=256, verbose=0, return_dict=True)
        final.update(metrics(values, "test_"))
    final["seconds"] = total
    print(json.dumps(final), flush=True)


if __name__ == "__main__":
    main()
