#!/usr/bin/env python3
"""Generates the PyTorch parity fixtures for Recur's recurrent layers.

Each fixture is one safetensors file holding a recurrent layer's inputs, parameters and upstream
gradients in float32, and what PyTorch computes from them in float64: the outputs, the final
states and the gradient of every input and parameter. Recur's tests run the same float32 values
through their own layers and compare against the float64 reference.

    .venv-torch/bin/python tools/make_fixtures.py --out Tests/RecurTests/Fixtures

Everything runs on the CPU in float64, so the files are the same on machines with and without a
GPU. Each case seeds the random generator from its own name, so adding or removing a case leaves
the others unchanged. The committed files are generated: regenerate them, never edit them.
"""

import argparse
import json
import pathlib
import sys
import zlib

import safetensors
import torch
from safetensors import safe_open
from safetensors.torch import save

# cell name in the metadata -> (module class, extra constructor arguments)
CELLS = {
    "lstm": (torch.nn.LSTM, {}),
    "gru": (torch.nn.GRU, {}),
    "rnn_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}),
}

# (num_layers, bidirectional)
TOPOLOGIES = [(1, False), (2, False), (1, True), (2, True)]

# (T time steps, B batch, I input size, H hidden size)
SMALL_SIZES = [(5, 3, 4, 6), (7, 2, 3, 5)]
LARGE_SIZE = (20, 4, 16, 32)
# The large size exercises longer sequences and wider matrices; one bidirectional case per gated
# cell (the reverse direction is where long-sequence indexing goes wrong) keeps the files small.
LARGE_CASES = [("lstm", 1, True), ("gru", 1, True)]

# The LSTM with a projection (`proj_size`): written to PROJECTION_FOLDER under --out, so the
# cases above keep their files and counts. (num_layers, bidirectional, padded): the padded cases
# give every sequence of the batch its own length (post-padding, PyTorch's packed sequences).
PROJECTION_FOLDER = "projection"
PROJECTION_SIZE = (5, 3, 4, 6)
PROJECTION_P = 3
PROJECTION_CASES = [(1, False, False), (2, True, False),
                    (1, False, True), (2, False, True), (1, True, True), (2, True, True)]


def case_name(cell, num_layers, bidirectional, size):
    steps, batch, input_size, hidden_size = size
    direction = "bi" if bidirectional else "uni"
    return f"{cell}_L{num_layers}_{direction}_T{steps}_B{batch}_I{input_size}_H{hidden_size}"


def projection_case_name(num_layers, bidirectional, padded):
    name = case_name("lstm_proj", num_layers, bidirectional, PROJECTION_SIZE) + f"_P{PROJECTION_P}"
    return name + "_padded" if padded else name


def all_cases():
    for cell in CELLS:
        for size in SMALL_SIZES:
            for num_layers, bidirectional in TOPOLOGIES:
                yield cell, num_layers, bidirectional, size
    for cell, num_layers, bidirectional in LARGE_CASES:
        yield cell, num_layers, bidirectional, LARGE_SIZE


def uniform(*shape):
    """Uniform in [-1, 1)."""
    return torch.rand(*shape, dtype=torch.float32) * 2 - 1


def with_gradients(name, tensors, leaves, reference):
    """`tensors` plus the gradient of every leaf and parameter, checked and made contiguous."""
    for key, leaf in leaves.items():
        tensors[f"grad.{key}"] = leaf.grad
    for key, parameter in reference.named_parameters():
        tensors[f"grad.{key}"] = parameter.grad

    for key, value in tensors.items():
        if not bool(torch.isfinite(value).all()) or not bool(value.ne(0).any()):
            raise RuntimeError(f"{name}: {key} is degenerate (non-finite or all zeros)")
    return {key: value.detach().contiguous() for key, value in tensors.items()}


def make_fixture(cell, num_layers, bidirectional, size, generator_note):
    """The tensors and metadata of one case."""
    steps, batch, input_size, hidden_size = size
    name = case_name(cell, num_layers, bidirectional, size)
    torch.manual_seed(zlib.crc32(name.encode()))

    module_class, extra = CELLS[cell]
    # Default PyTorch initialisation in float32: uniform in +-1/sqrt(H).
    module = module_class(
        input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
        batch_first=False, **extra)
    is_lstm = cell == "lstm"
    directions = 2 if bidirectional else 1
    state_shape = (num_layers * directions, batch, hidden_size)

    inputs = {"input": uniform(steps, batch, input_size), "h0": uniform(*state_shape)}
    if is_lstm:
        inputs["c0"] = uniform(*state_shape)
    upstream = {
        "grad_output": torch.randn(steps, batch, directions * hidden_size),
        "grad_h_n": torch.randn(*state_shape),
    }
    if is_lstm:
        upstream["grad_c_n"] = torch.randn(*state_shape)
    parameters = {key: value.detach().clone() for key, value in module.named_parameters()}

    # The reference: the same float32 values, widened exactly to float64.
    reference = module.double()
    leaves = {key: value.double().requires_grad_() for key, value in inputs.items()}
    if is_lstm:
        output, (h_n, c_n) = reference(leaves["input"], (leaves["h0"], leaves["c0"]))
    else:
        output, h_n = reference(leaves["input"], leaves["h0"])
    loss = (output * upstream["grad_output"].double()).sum() + (h_n * upstream["grad_h_n"].double()).sum()
    if is_lstm:
        loss = loss + (c_n * upstream["grad_c_n"].double()).sum()
    loss.backward()

    tensors = {**inputs, **parameters, **upstream}
    tensors["output"] = output.detach()
    tensors["h_n"] = h_n.detach()
    if is_lstm:
        tensors["c_n"] = c_n.detach()
    tensors = with_gradients(name, tensors, leaves, reference)

    metadata = {
        "cell": cell,
        "input_size": str(input_size),
        "hidden_size": str(hidden_size),
        "num_layers": str(num_layers),
        "bidirectional": "true" if bidirectional else "false",
        "batch_first": "false",
        "generator": generator_note,
    }
    return name, tensors, metadata


def make_projection_fixture(num_layers, bidirectional, padded, generator_note):
    """The tensors and metadata of one LSTM-with-projection case.

    As `make_fixture`, plus `weight_hr_l{k}[_reverse]` [P, H]; h0, h_n and the output carry P
    features per direction, c0 and c_n H. A padded case adds `lengths` [B] (I32); the input and
    grad_output are packed with them, and PyTorch's output is 0 past each sequence's length.
    """
    steps, batch, input_size, hidden_size = PROJECTION_SIZE
    name = projection_case_name(num_layers, bidirectional, padded)
    torch.manual_seed(zlib.crc32(name.encode()))

    module = torch.nn.LSTM(
        input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
        batch_first=False, proj_size=PROJECTION_P)
    directions = 2 if bidirectional else 1
    hidden_shape = (num_layers * directions, batch, PROJECTION_P)
    cell_shape = (num_layers * directions, batch, hidden_size)

    inputs = {"input": uniform(steps, batch, input_size), "h0": uniform(*hidden_shape),
              "c0": uniform(*cell_shape)}
    # Distinct lengths in 1 ..< T+1, the full length included, in no sorted order.
    lengths = torch.randperm(steps)[:batch] + 1
    lengths[0] = steps
    lengths = lengths[torch.randperm(batch)]
    upstream = {
        "grad_output": torch.randn(steps, batch, directions * PROJECTION_P),
        "grad_h_n": torch.randn(*hidden_shape),
        "grad_c_n": torch.randn(*cell_shape),
    }
    parameters = {key: value.detach().clone() for key, value in module.named_parameters()}

    reference = module.double()
    leaves = {key: value.double().requires_grad_() for key, value in inputs.items()}
    if padded:
        packed = torch.nn.utils.rnn.pack_padded_sequence(leaves["input"], lengths, enforce_sorted=False)
        packed_output, (h_n, c_n) = reference(packed, (leaves["h0"], leaves["c0"]))
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_output, total_length=steps)
        # Steps past a sequence's end have no output, so their upstream gradient is 0.
        valid = (torch.arange(steps)[:, None] < lengths[None, :]).to(torch.float32)
        upstream["grad_output"] = upstream["grad_output"] * valid[:, :, None]
    else:
        output, (h_n, c_n) = reference(leaves["input"], (leaves["h0"], leaves["c0"]))
    loss = ((output * upstream["grad_output"].double()).sum() + (h_n * upstream["grad_h_n"].double()).sum()
            + (c_n * upstream["grad_c_n"].double()).sum())
    loss.backward()

    tensors = {**inputs, **parameters, **upstream}
    if padded:
        tensors["lengths"] = lengths.to(torch.int32)
    tensors["output"] = output.detach()
    tensors["h_n"] = h_n.detach()
    tensors["c_n"] = c_n.detach()
    tensors = with_gradients(name, tensors, leaves, reference)

    metadata = {
        "cell": "lstm",
        "input_size": str(input_size),
        "hidden_size": str(hidden_size),
        "proj_size": str(PROJECTION_P),
        "num_layers": str(num_layers),
        "bidirectional": "true" if bidirectional else "false",
        "batch_first": "false",
        "padding": "post" if padded else "none",
        "generator": generator_note,
    }
    return name, tensors, metadata


def canonical_bytes(tensors, metadata):
    """The file safetensors writes, with its header in a fixed order.

    The reference writer emits `__metadata__` in hash order, which differs from run to run; sorting
    it (and keeping the writer's tensor layout and data untouched) makes regeneration byte-stable,
    so a diff of the fixtures shows only real changes.
    """
    raw = save(tensors, metadata=metadata)
    header_length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_length])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + header_length:]


def check_readback(path, tensors, metadata):
    """Reads the file back with the reference reader and compares every tensor exactly."""
    with safe_open(str(path), "pt") as file:
        if file.metadata() != metadata or set(file.keys()) != set(tensors):
            raise RuntimeError(f"{path}: metadata or names differ after writing")
        for key, value in tensors.items():
            if not torch.equal(file.get_tensor(key), value):
                raise RuntimeError(f"{path}: {key} differs after writing")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=pathlib.Path, help="directory for the .safetensors files")
    arguments = parser.parse_args()

    torch.use_deterministic_algorithms(True)
    arguments.out.mkdir(parents=True, exist_ok=True)
    generator_note = (
        f"tools/make_fixtures.py --out DIR (torch {torch.__version__}, safetensors {safetensors.__version__})")

    # Files of cases that no longer exist would otherwise linger beside the new ones.
    prefixes = tuple(f"{cell}_L" for cell in CELLS)
    for stale in arguments.out.glob("*.safetensors"):
        if stale.name.startswith(prefixes):
            stale.unlink()

    total = 0
    for cell, num_layers, bidirectional, size in all_cases():
        name, tensors, metadata = make_fixture(cell, num_layers, bidirectional, size, generator_note)
        path = arguments.out / f"{name}.safetensors"
        path.write_bytes(canonical_bytes(tensors, metadata))
        check_readback(path, tensors, metadata)
        total += path.stat().st_size
        print(f"{path}  {path.stat().st_size} bytes", file=sys.stderr)

    projection = arguments.out / PROJECTION_FOLDER
    projection.mkdir(exist_ok=True)
    for stale in projection.glob("*.safetensors"):
        stale.unlink()
    for num_layers, bidirectional, padded in PROJECTION_CASES:
        name, tensors, metadata = make_projection_fixture(num_layers, bidirectional, padded, generator_note)
        path = projection / f"{name}.safetensors"
        path.write_bytes(canonical_bytes(tensors, metadata))
        check_readback(path, tensors, metadata)
        total += path.stat().st_size
        print(f"{path}  {path.stat().st_size} bytes", file=sys.stderr)
    print(f"total {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
