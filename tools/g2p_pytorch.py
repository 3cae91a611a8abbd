#!/usr/bin/env python3
"""Grapheme-to-phoneme in PyTorch on the CPU: Recur's encoder-decoder (`recur train --format
pairs`) trained part for part the same way, for a side-by-side comparison of results and speed
(tools/g2p_side_by_side.sh runs both).

    tools/g2p_pytorch.sh TRAIN_FILE TEST_FILE [options]          # creates or reuses the venv
    python3 tools/g2p_pytorch.py TRAIN_FILE TEST_FILE [options]  # with torch installed

The options carry `recur train`'s names and defaults (--hidden, --decoder-hidden, --layers,
--decoder-layers, --embedding, --bidirectional, --attention, --input-feeding, --dropout, --learning-rate,
--clip-norm, --batch-size, --epochs, --beam, --validation-split, --split-seed, --seed,
--source-tokenizer, --target-tokenizer, --teacher-forcing, --label-smoothing).

Data (the rules of Recur's `SequencePairs`):
- A file holds one pair a line, `source<TAB>target`, UTF-8; a CR before the LF is dropped, empty
  lines are skipped; a malformed line stops the run naming the file and line.
- Tokens are characters or space-separated words per side (both character by default, as Recur;
  G2P wants `--target-tokenizer word`).
- Lines with the same source are one group whose targets are its references in file order.
  Training uses every (source, reference) pair; a hypothesis is right when it equals any one.
- Validation split, by source, as `SequencePairs.isValidation` with `recur train`'s seed (the
  split seed + 1): held out when `splitmix64(fnv1a64(utf8(source)) XOR seed) >> 11` times 2^-53 is
  below --validation-split. The test file is the test set.
- Vocabularies fitted to the training part: 0 padding, 1 unknown, 2 start, 3 end, then the tokens
  by descending count, ties in order of first appearance (sources counted once per group, targets
  once per reference).

Model (Recur's `EncoderDecoder` and `LuongAttention`, under the same parameter names):
- Both embeddings E wide; encoder: --layers stacked LSTM (or GRU) layers of H units per direction,
  bidirectional with --bidirectional (M = D · H output features), padding masked.
- Bridge: every decoder layer starts from the top encoder layer's final state (directions side by
  side); when K (--decoder-hidden, default M) differs from M, through tanh(W x + b), one Dense per
  decoder layer for h and one for c.
- Decoder: --decoder-layers (default --layers) layers of K units reading the target embeddings;
  with teacher forcing 1 it runs over the whole target in one RNN call. With --input-feeding
  (Luong's, needs --attention) every step reads [e_t; h~_{t-1}] (zeros at the first step), h~ the
  attentional state before the output dropout, so the decoder steps one token at a time.
- Attention (--attention dot|general|additive; none by default): Luong's scores of the decoder's
  top output h_t against the encoder outputs s (dot h.s; general s.(W h) with W [M, K]; additive
  v.tanh(W_q h + W_k s), attention size M, no biases), softmax over the valid source steps, context
  c_t, then tanh(W_c [c_t; h_t] + b_c), context first.
- Dropout (--dropout p): on both embeddings' outputs, between stacked RNN layers, and on the
  features the output layer reads. Output layer: Linear(K, V).
- Initialisation: PyTorch's defaults (Recur draws from the same distributions, not the same
  values). --init-from CHECKPOINT continues from a Recur pair checkpoint instead (`recur train
  --checkpoint-dir`'s last.safetensors): its parameters, its Adam moments and steps, and its
  completed epochs (--epochs is the total, as with `recur train --resume`). With --epochs equal to
  the checkpoint's it only scores the test file: the same loss and outputs as Recur's show that the
  forward passes agree; one more epoch without dropout, against `recur train --resume`, checks the
  gradients, the optimizer and the batch order.

Training (Recur's `SequencePairTrainer`): every epoch visits the training pairs in Recur's own
seeded order, so both see the same batches; loss: cross-entropy, mean over the batch's non-padding
target tokens (label smoothing as PyTorch's); Adam (betas 0.9, 0.999, epsilon 1e-8); optional
global-norm clipping (--clip-norm, 0: none, Recur's default); --schedule constant or cosine
(Recur's `LearningRateSchedule.cosine` to 0 over epochs × batches per epoch). Teacher forcing
below 1 chooses the decoder's inputs step by step without dropout, each step the reference with that probability else the previous argmax, then trains on them in one call.
The epoch's loss is the mean of its batches' losses.

Evaluation (Recur's `SequencePairTrainer.evaluate`, batches of 64 in file order): teacher-forced
loss and token accuracy over the pairs; word error rate (sources whose output matches none of their
references) and phoneme error rate (edit distance to the closest reference over its length, summed)
of the outputs decoded with --beam (greedy at 1; beam search ranks by log probability over
length^--length-normalization, 0: none), at most twice the longest source + 10 tokens. Validation
after every epoch; the test set after the last epoch (as `recur train --test-file`), greedily and,
with --beam > 1, with the beam. Seconds per epoch are reported for training alone and with the
validation (Recur's epoch seconds include it).
"""
import argparse
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, UNK, START, END = 0, 1, 2, 3
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
MASK64 = (1 << 64) - 1


# MARK: data

def fnv1a64(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & MASK64
    return value


def splitmix64(state: int) -> int:
    z = (state + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def is_validation(source: str, fraction: float, seed: int) -> bool:
    draw = splitmix64(fnv1a64(source.encode("utf-8")) ^ (seed & MASK64)) >> 11
    return draw * 2.0 ** -53 < fraction


def tokenize(text: str, kind: str):
    return list(text) if kind == "character" else text.split()


def read_groups(path, source_kind, target_kind):
    """{source: (source tokens, [reference tokens, ...])} in order of first appearance."""
    groups = {}
    with open(path, "rb") as file:
        data = file.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        sys.exit(f"{path}:{line}: not UTF-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if line == "":
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            sys.exit(f"{path}:{number}: expected source<TAB>target, found {len(fields) - 1} tabs")
        source_tokens = tokenize(fields[0], source_kind)
        target_tokens = tokenize(fields[1], target_kind)
        if not source_tokens or not target_tokens:
            side = "source" if not source_tokens else "target"
            sys.exit(f"{path}:{number}: empty {side}")
        groups.setdefault(fields[0], (source_tokens, []))[1].append(target_tokens)
    if not groups:
        sys.exit(f"{path}: no pairs")
    return groups


class Vocabulary:
    def __init__(self, sequences):
        counts = {}
        for sequence in sequences:
            for token in sequence:
                counts[token] = counts.get(token, 0) + 1
        ordered = sorted(counts.items(), key=lambda item: -item[1])  # stable: ties keep first appearance
        self.tokens = SPECIALS + [token for token, _ in ordered]
        self.ids = {token: index for index, token in enumerate(self.tokens) if index >= len(SPECIALS)}

    def __len__(self):
        return len(self.tokens)

    def encode(self, tokens):
        return [self.ids.get(token, UNK) for token in tokens]

    def decode(self, ids):
        return [self.tokens[i] for i in ids]


def padded(sequences, with_markers):
    """[T, B] int64, padding 0, and the lengths; targets get start and end markers."""
    if with_markers:
        sequences = [[START] + s + [END] for s in sequences]
    lengths = [len(s) for s in sequences]
    batch = torch.zeros(max(lengths), len(sequences), dtype=torch.long)
    for column, sequence in enumerate(sequences):
        batch[: len(sequence), column] = torch.tensor(sequence, dtype=torch.long)
    return batch, torch.tensor(lengths)


# MARK: model

class Score(nn.Module):
    """Luong's score of decoder outputs h (K features) against encoder outputs s (M features),
    with Recur's `Attention` parameters: dot none; general `weight` [M, K] (s . W h); additive
    `query.weight` [M, K], `key.weight` [M, M] (no biases) and `v` [M] (v . tanh(W_q h + W_k s))."""

    def __init__(self, kind, query_size, key_size):
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.weight = nn.Parameter(torch.empty(key_size, query_size))
            nn.init.uniform_(self.weight, -query_size ** -0.5, query_size ** -0.5)
        elif kind == "additive":
            self.query = nn.Linear(query_size, key_size, bias=False)
            self.key = nn.Linear(key_size, key_size, bias=False)
            self.v = nn.Parameter(torch.empty(key_size).uniform_(-key_size ** -0.5, key_size ** -0.5))
        elif query_size != key_size:
            raise SystemExit(f"the dot score needs --decoder-hidden {query_size} to equal the encoder's "
                             f"{key_size} output features; the general score projects between sizes")

    def forward(self, queries, memory):
        """queries [B, T, K], memory [B, S, M] → scores [B, T, S]."""
        if self.kind == "additive":
            joined = torch.tanh(self.query(queries).unsqueeze(2) + self.key(memory).unsqueeze(1))  # [B, T, S, M]
            return joined @ self.v
        if self.kind == "general":
            queries = queries @ self.weight.t()  # [B, T, M]
        return torch.bmm(queries, memory.transpose(1, 2))


class LuongAttention(nn.Module):
    """Recur's `LuongAttention`: c_t = softmax over the valid source steps of score(h_t, s) times
    s, then tanh(W_c [c_t; h_t] + b_c), context first (`combine` [K, M + K] with a bias)."""

    def __init__(self, kind, decoder_size, memory_size):
        super().__init__()
        self.score = Score(kind, decoder_size, memory_size)
        self.combine = nn.Linear(memory_size + decoder_size, decoder_size)

    def forward(self, outputs, memory, mask):
        """outputs [T, B, K], memory [B, S, M], mask [B, S] true at padding → [T, B, K]."""
        queries = outputs.transpose(0, 1)  # [B, T, K]
        scores = self.score(queries, memory).masked_fill(mask.unsqueeze(1), float("-inf"))
        context = torch.bmm(torch.softmax(scores, dim=2), memory)  # [B, T, M]
        return torch.tanh(self.combine(torch.cat([context, queries], dim=2))).transpose(0, 1)


class EncoderDecoder(nn.Module):
    """Recur's `EncoderDecoder` (Sources/Recur/Models/EncoderDecoder.swift), part for part and
    under the same parameter names."""

    def __init__(self, args, source_size, target_size):
        super().__init__()
        rnn = nn.LSTM if args.cell == "lstm" else nn.GRU
        self.is_lstm = args.cell == "lstm"
        self.directions = 2 if args.bidirectional else 1
        memory_size = args.hidden * self.directions  # M
        decoder_size = args.decoder_hidden or memory_size  # K
        self.decoder_layers = args.decoder_layers or args.layers
        self.source_embedding = nn.Embedding(source_size, args.embedding)
        self.encoder = rnn(args.embedding, args.hidden, num_layers=args.layers, bidirectional=args.bidirectional,
                           dropout=args.dropout if args.layers > 1 else 0.0)
        bridged = decoder_size != memory_size
        self.bridge_h = nn.ModuleList(
            [nn.Linear(memory_size, decoder_size) for _ in range(self.decoder_layers)] if bridged else [])
        self.bridge_c = nn.ModuleList(
            [nn.Linear(memory_size, decoder_size) for _ in range(self.decoder_layers)]
            if bridged and self.is_lstm else [])
        self.target_embedding = nn.Embedding(target_size, args.embedding)
        self.input_feeding = args.input_feeding
        self.decoder_size = decoder_size
        self.decoder = rnn(args.embedding + (decoder_size if args.input_feeding else 0), decoder_size,
                           num_layers=self.decoder_layers,
                           dropout=args.dropout if self.decoder_layers > 1 else 0.0)
        self.attention = LuongAttention(args.attention, decoder_size, memory_size) if args.attention != "none" else None
        self.output = nn.Linear(decoder_size, target_size)
        self.dropout = nn.Dropout(args.dropout)  # each use draws its own mask

    def encode(self, source, lengths):
        """source [S, B] → memory [B, S, M] (0 at padding), mask [B, S] true at padding, and
        the decoder's initial state [L_d, B, K] (h, c for the LSTM; with input feeding, paired with
        h~ = 0 [1, B, K])."""
        embedded = self.dropout(self.source_embedding(source))
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, enforce_sorted=False)
        outputs, state = self.encoder(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, total_length=source.shape[0])
        mask = (source == PAD).t()
        if self.is_lstm:
            state = (self.bridged(state[0], self.bridge_h), self.bridged(state[1], self.bridge_c))
        else:
            state = self.bridged(state, self.bridge_h)
        if self.input_feeding:
            state = (state, torch.zeros(1, source.shape[1], self.decoder_size))
        return outputs.transpose(0, 1), mask, state

    def bridged(self, final, projections):
        """Every decoder layer starts from the top encoder layer's final state [B, M] (directions
        side by side): through tanh(W x + b) per layer when K differs from M, else as it is."""
        top = torch.cat(list(final[-self.directions:]), dim=1)
        if len(projections) == 0:
            return top.unsqueeze(0).expand(self.decoder_layers, -1, -1).contiguous()
        return torch.stack([torch.tanh(projection(top)) for projection in projections])

    def decode(self, inputs, state, memory, mask):
        """Decoder input ids [T, B] → logits [T, B, V] and the final state, in one RNN call
        (with input feeding, one call per step)."""
        embedded = self.dropout(self.target_embedding(inputs))
        if self.input_feeding:
            state, fed = state
            steps = []
            for t in range(inputs.shape[0]):
                output, state = self.decoder(torch.cat([embedded[t: t + 1], fed], dim=2), state)
                fed = self.attention(output, memory, mask)  # [1, B, K]
                steps.append(fed)
            return self.output(self.dropout(torch.cat(steps))), (state, fed)
        outputs, state = self.decoder(embedded, state)
        if self.attention is not None:
            outputs = self.attention(outputs, memory, mask)
        return self.output(self.dropout(outputs)), state

    def state_columns(self, state, select):
        """`select` applied to every tensor of a decoder state (batch on dimension 1 in each)."""
        if isinstance(state, tuple):
            return tuple(self.state_columns(part, select) for part in state)
        return select(state)

    def forward(self, source, source_lengths, inputs, teacher_forcing=1.0, generator=None):
        """Logits [T - 1, B, V] for decoder inputs [T - 1, B] (<s> y_1 … y_{n-1}). Below 1
        teacher forcing chooses the inputs step by step without dropout or gradient (scheduled
        sampling, as Recur), then runs them in one call."""
        memory, mask, state = self.encode(source, source_lengths)
        if teacher_forcing < 1.0:
            inputs = self.scheduled(inputs, state, memory, mask, teacher_forcing, generator)
        return self.decode(inputs, state, memory, mask)[0]

    @torch.no_grad()
    def scheduled(self, reference, state, memory, mask, teacher_forcing, generator):
        training = self.training
        self.eval()
        inputs = reference.clone()
        for t in range(reference.shape[0] - 1):
            logits, state = self.decode(inputs[t: t + 1], state, memory, mask)
            own = logits[0].argmax(dim=1)
            replace = (torch.rand(own.shape, generator=generator, dtype=torch.float64) >= teacher_forcing) \
                & (reference[t + 1] != PAD)
            inputs[t + 1] = torch.where(replace, own, reference[t + 1])
        self.train(training)
        return inputs

    @torch.no_grad()
    def greedy(self, source, source_lengths, max_length):
        memory, mask, state = self.encode(source, source_lengths)
        batch = source.shape[1]
        token = torch.full((1, batch), START, dtype=torch.long)
        finished = torch.zeros(batch, dtype=torch.bool)
        outputs = []
        for _ in range(max_length):
            logits, state = self.decode(token, state, memory, mask)
            token = logits.argmax(dim=2)
            outputs.append(token[0])
            finished |= token[0] == END
            if finished.all():
                break
        return [cut(column) for column in torch.stack(outputs, dim=1).tolist()]

    @torch.no_grad()
    def beam(self, source, source_lengths, width, alpha, max_length):
        memory, mask, state = self.encode(source, source_lengths)
        batch = source.shape[1]
        memory, mask = memory.repeat_interleave(width, 0), mask.repeat_interleave(width, 0)
        state = self.state_columns(state, lambda s: s.repeat_interleave(width, 1))
        token = torch.full((1, batch * width), START, dtype=torch.long)
        scores = torch.full((batch, width), float("-inf"))
        scores[:, 0] = 0.0  # one live beam at the start, so the first step gives `width` distinct ones
        lengths = torch.zeros(batch, width)
        finished = torch.zeros(batch, width, dtype=torch.bool)
        history = torch.zeros(batch, width, 0, dtype=torch.long)
        for _ in range(max_length):
            logits, state = self.decode(token, state, memory, mask)
            log_probs = torch.log_softmax(logits[0], dim=1).view(batch, width, -1)
            # A finished beam continues only with padding, at no cost, so it keeps its score.
            stopped = torch.full_like(log_probs[0, 0], float("-inf"))
            stopped[PAD] = 0.0
            log_probs = torch.where(finished.unsqueeze(2), stopped, log_probs)
            vocabulary = log_probs.shape[2]
            scores, chosen = (scores.unsqueeze(2) + log_probs).view(batch, -1).topk(width, dim=1)
            parent = chosen // vocabulary
            token = chosen % vocabulary
            lengths = lengths.gather(1, parent) + (~finished.gather(1, parent)).float()
            finished = finished.gather(1, parent) | (token == END)
            history = torch.cat([history.gather(1, parent.unsqueeze(2).expand(-1, -1, history.shape[2])),
                                 token.unsqueeze(2)], dim=2)
            rows = (parent + torch.arange(batch).unsqueeze(1) * width).view(-1)
            state = self.state_columns(state, lambda s: s[:, rows])
            token = token.view(1, -1)
            if finished.all():
                break
        ranked = scores / lengths.clamp(min=1) ** alpha if alpha > 0 else scores
        best = ranked.argmax(dim=1)
        return [cut(history[b, best[b]].tolist()) for b in range(batch)]


def cut(ids):
    """The tokens before the first end marker (padding after it dropped)."""
    return ids[: ids.index(END)] if END in ids else ids


# MARK: metrics

def edit_distance(a, b):
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y))
        previous = current
    return previous[-1]


def error_rates(hypotheses, references):
    """(WER, PER): hypotheses[i] against the references references[i] (a list of token lists)."""
    wrong = distance = length = 0
    for hypothesis, refs in zip(hypotheses, references):
        wrong += hypothesis not in refs
        best = None
        for ref in refs:  # the closest reference; the first one on ties
            d = edit_distance(hypothesis, ref)
            if best is None or d < best[0]:
                best = (d, len(ref))
        distance += best[0]
        length += best[1]
    return wrong / len(hypotheses), distance / length


# MARK: Recur's random streams

def derived_seed(seed, stream, index):
    """`SequencePairTrainer.derivedSeed`: a seed per (seed, stream, index)."""
    first = splitmix64((seed ^ (stream * 0x9E3779B97F4A7C15)) & MASK64)
    return splitmix64((first ^ index) & MASK64)


def example_order(seed, epoch, count):
    """`SequencePairTrainer.exampleOrder`: Recur's shuffle of the training pairs for an epoch
    (Fisher–Yates over SplitMix64 draws, rejection-sampled below each bound), so both
    frameworks visit the same batches."""
    state = derived_seed(seed, 0x5EED0FE90C, epoch)
    order = list(range(count))
    for i in range(count - 1, 0, -1):
        bound = i + 1
        limit = MASK64 - (MASK64 % bound)
        while True:
            state = (state + 0x9E3779B97F4A7C15) & MASK64
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
            z ^= z >> 31
            if z < limit:
                break
        j = z % bound
        order[i], order[j] = order[j], order[i]
    return order


# MARK: Recur checkpoints

def read_safetensors(path):
    """{name: tensor} and the metadata of a safetensors file (its float32 and int32 tensors)."""
    with open(path, "rb") as file:
        size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(size))
        data = file.read()
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = {"F32": torch.float32, "I32": torch.int32}.get(entry["dtype"])
        if dtype is not None:
            tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(entry["shape"])
    return tensors, metadata


def load_recur_checkpoint(model, optimizer, path):
    """Copies the `model.<name>` tensors of a Recur `SequencePairCheckpoint` into the model
    (every name and shape must match both ways) and its Adam state (`optimizer.<name>.exp_avg`,
    `.exp_avg_sq`, `.step`, PyTorch's names) into the optimizer. Returns the checkpoint's
    completed epochs and optimizer steps, where training continues."""
    tensors, metadata = read_safetensors(path)
    saved = {name[len("model."):]: value for name, value in tensors.items() if name.startswith("model.")}
    own = dict(model.named_parameters())
    if set(saved) != set(own):
        sys.exit(f"{path}: parameters differ: only in the checkpoint {sorted(set(saved) - set(own))}, "
                 f"only here {sorted(set(own) - set(saved))}")
    with torch.no_grad():
        for name, parameter in own.items():
            if tuple(saved[name].shape) != tuple(parameter.shape):
                sys.exit(f"{path}: {name} is {tuple(saved[name].shape)}, here {tuple(parameter.shape)}")
            parameter.copy_(saved[name])
            moments = [tensors.get(f"optimizer.{name}.{slot}") for slot in ("exp_avg", "exp_avg_sq", "step")]
            if all(moment is not None for moment in moments):
                optimizer.state[parameter] = {"step": torch.tensor(float(moments[2].item())),
                                              "exp_avg": moments[0].clone(), "exp_avg_sq": moments[1].clone()}
    progress = json.loads(metadata.get("recur.progress", "{}"))
    return progress.get("completedEpochs", 0), progress.get("step", 0)


# MARK: training and evaluation

def chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start: start + size]


def pair_batch(pairs):
    """Sources [S, B] with their lengths, decoder inputs [T - 1, B] and targets [T - 1, B]
    (padding 0, ignored by the loss)."""
    source, lengths = padded([s for s, _ in pairs], with_markers=False)
    target, _ = padded([t for _, t in pairs], with_markers=True)
    return source, lengths, target[:-1], target[1:]


def decode(model, groups, args, width):
    """Outputs for every group, in Recur's batches of `--eval-batch-size` sources in file order."""
    outputs = []
    for chunk in chunks(groups, args.eval_batch_size):
        source, lengths = padded([s for s, _ in chunk], with_markers=False)
        limit = args.max_decode_length or 2 * int(lengths.max()) + 10
        if width == 1:
            outputs += model.greedy(source, lengths, limit)
        else:
            outputs += model.beam(source, lengths, width, args.length_normalization, limit)
    return outputs


@torch.no_grad()
def evaluate(model, groups, pairs, args, width):
    """Recur's `SequencePairTrainer.evaluate`: teacher-forced loss and token accuracy over the
    pairs, then WER and PER of the decoded sources."""
    model.eval()
    loss_sum = correct = total = 0.0
    for chunk in chunks(pairs, args.eval_batch_size):
        source, lengths, inputs, wanted = pair_batch(chunk)
        logits = model(source, lengths, inputs)
        counted = wanted != PAD
        tokens = float(counted.sum())
        loss_sum += float(F.cross_entropy(logits.reshape(-1, logits.shape[2]), wanted.reshape(-1),
                                          ignore_index=PAD)) * tokens
        correct += float(((logits.argmax(dim=2) == wanted) & counted).sum())
        total += tokens
    hypotheses = decode(model, groups, args, width)
    wer, per = error_rates(hypotheses, [refs for _, refs in groups])
    return {"loss": loss_sum / total, "token_accuracy": correct / total, "wer": wer, "per": per}


def learning_rate(args, step, total_steps):
    """`LearningRateSchedule`: constant, or cosine from --learning-rate to 0 over the run's
    steps, lr(s) = lr · (1 + cos(π · min(s, S) / S)) / 2."""
    if args.schedule == "constant":
        return args.learning_rate
    return args.learning_rate * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)) / 2


def encode_groups(groups, source_vocabulary, target_vocabulary):
    return [(source_vocabulary.encode(tokens), [target_vocabulary.encode(r) for r in refs])
            for tokens, refs in groups]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train_file")
    parser.add_argument("test_file")
    parser.add_argument("--tokenizer", choices=["character", "word"], help="both sides, unless set apart")
    parser.add_argument("--source-tokenizer", choices=["character", "word"])
    parser.add_argument("--target-tokenizer", choices=["character", "word"])
    parser.add_argument("--validation-split", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, default=0, help="the validation split draws with this + 1, as Recur")
    parser.add_argument("--seed", type=int, default=0, help="shuffles (Recur's order), weights, dropout")
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--embedding", type=int, default=32, help="E, both embeddings")
    parser.add_argument("--hidden", type=int, default=32, help="H, encoder units per direction")
    parser.add_argument("--decoder-hidden", type=int, default=0, help="K; 0: M = D · H")
    parser.add_argument("--layers", type=int, default=1, help="encoder layers")
    parser.add_argument("--decoder-layers", type=int, default=0, help="0: --layers")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--attention", choices=["none", "dot", "general", "additive"], default="none")
    parser.add_argument("--input-feeding", action="store_true", help="needs --attention")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's")
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--clip-norm", type=float, default=0.0, help="global gradient norm bound; 0: none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--teacher-forcing", type=float, default=1.0)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--beam", type=int, default=1, help="validation decodes with it; the test also greedily")
    parser.add_argument("--length-normalization", type=float, default=0.0)
    parser.add_argument("--max-decode-length", type=int, default=0, help="0: twice the longest source + 10")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: every core")
    parser.add_argument("--limit-batches", type=int, default=0, help="stop each epoch after this many batches")
    parser.add_argument("--init-from", help="continue from a Recur pair checkpoint (parameters, Adam state, "
                        "epochs done; --epochs is the total, as recur train --resume)")
    parser.add_argument("--json", help="write the configuration and results here")
    args = parser.parse_args()
    if args.input_feeding and args.attention == "none":
        parser.error("--input-feeding feeds the attentional state back: it needs --attention")
    source_kind = args.source_tokenizer or args.tokenizer or "character"
    target_kind = args.target_tokenizer or args.tokenizer or "character"

    torch.set_num_threads(args.threads or os.cpu_count())
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    groups = read_groups(args.train_file, source_kind, target_kind)
    test_groups = list(read_groups(args.test_file, source_kind, target_kind).values())
    # Recur draws the validation split with the split seed + 1 (the test split, not drawn when a
    # test file is given, would take the seed itself).
    held_out = {s: is_validation(s, args.validation_split, args.split_seed + 1) for s in groups}
    training = [g for s, g in groups.items() if not held_out[s]]
    validation = [g for s, g in groups.items() if held_out[s]]
    if not training or not validation:
        sys.exit(f"the split leaves {len(training)} training and {len(validation)} validation sources")
    source_vocabulary = Vocabulary(tokens for tokens, _ in training)
    target_vocabulary = Vocabulary(r for _, refs in training for r in refs)
    training = encode_groups(training, source_vocabulary, target_vocabulary)
    validation = encode_groups(validation, source_vocabulary, target_vocabulary)
    test = encode_groups(test_groups, source_vocabulary, target_vocabulary)
    training_pairs = [(s, r) for s, refs in training for r in refs]
    validation_pairs = [(s, r) for s, refs in validation for r in refs]
    test_pairs = [(s, r) for s, refs in test for r in refs]

    model = EncoderDecoder(args, len(source_vocabulary), len(target_vocabulary))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.999), eps=1e-8)
    completed, step = load_recur_checkpoint(model, optimizer, args.init_from) if args.init_from else (0, 0)
    parameters = sum(p.numel() for p in model.parameters())
    batches_per_epoch = math.ceil(len(training_pairs) / args.batch_size)
    if args.limit_batches:
        batches_per_epoch = min(batches_per_epoch, args.limit_batches)
    total_steps = args.epochs * batches_per_epoch
    summary = {
        "configuration": vars(args),
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "data": {"training_sources": len(training), "training_pairs": len(training_pairs),
                 "validation_sources": len(validation), "validation_pairs": len(validation_pairs),
                 "test_sources": len(test), "source_vocabulary": len(source_vocabulary),
                 "target_vocabulary": len(target_vocabulary)},
        "parameters": parameters, "epochs": [],
    }
    print(f"{parameters} parameters{f' from {args.init_from}, {completed} epochs done' if args.init_from else ''}; {len(training)} training sources ({len(training_pairs)} pairs), "
          f"{len(validation)} validation, {len(test)} test sources; vocabularies {len(source_vocabulary)} and "
          f"{len(target_vocabulary)}; {torch.get_num_threads()} threads", flush=True)

    for epoch in range(completed + 1, args.epochs + 1):
        order = example_order(args.seed, epoch, len(training_pairs))
        model.train()
        start = time.perf_counter()
        losses = []
        for index, chunk in enumerate(chunks(order, args.batch_size)):
            if index >= batches_per_epoch:
                break
            source, lengths, inputs, wanted = pair_batch([training_pairs[i] for i in chunk])
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(args, step, total_steps)
            logits = model(source, lengths, inputs, args.teacher_forcing, generator)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[2]), wanted.reshape(-1),
                                   ignore_index=PAD, label_smoothing=args.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            if args.clip_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
            optimizer.step()
            losses.append(loss.item())
            step += 1
        seconds = time.perf_counter() - start
        metrics = evaluate(model, validation, validation_pairs, args, args.beam)
        record = {"epoch": epoch, "loss": sum(losses) / len(losses), "first_loss": losses[0],
                  **{"val_" + k: v for k, v in metrics.items()},
                  "training_seconds": seconds, "seconds": time.perf_counter() - start}
        summary["epochs"].append(record)
        print(f"epoch {epoch}: loss {record['loss']:.6f} (first batch {losses[0]:.6f}), val_loss "
              f"{metrics['loss']:.6f}, val_token_accuracy {metrics['token_accuracy']:.4f}, val WER "
              f"{100 * metrics['wer']:.2f}%, PER {100 * metrics['per']:.2f}%; {seconds:.1f} s training, "
              f"{record['seconds']:.1f} s with validation", flush=True)

    # The model after the last epoch, as `recur train --test-file` scores it.
    results = {}
    for name, width in [("greedy", 1)] + ([("beam", args.beam)] if args.beam > 1 else []):
        start = time.perf_counter()
        metrics = evaluate(model, test, test_pairs, args, width)
        results[name] = {"width": width, **metrics, "seconds": time.perf_counter() - start}
        print(f"test ({name}, width {width}): loss {metrics['loss']:.6f}, WER {100 * metrics['wer']:.3f}%, "
              f"PER {100 * metrics['per']:.3f}%", flush=True)
    summary["test"] = results
    if args.json:
        with open(args.json, "w") as file:
            json.dump(summary, file, indent=2)


if __name__ == "__main__":
    main()
