#!/usr/bin/env python3
"""Grapheme-to-phoneme in PyTorch on the CPU: the reference that Recur's sequence-to-sequence
models are compared with (same data rules, split, vocabularies, metrics and model options).

    tools/g2p_pytorch.sh TRAIN_FILE TEST_FILE [options]          # creates or reuses the venv
    python3 tools/g2p_pytorch.py TRAIN_FILE TEST_FILE [options]  # with torch and numpy installed

Data (the rules of Recur's `SequencePairs`):
- A file holds one pair a line, `source<TAB>target`, UTF-8, LF line ends (a CR before the LF is
  dropped). Empty lines are skipped. A line without exactly one tab, or with a side that has no
  tokens, stops the run naming the file and line.
- Source tokens are characters (Unicode code points), target tokens are space-separated words by
  default (`--source-tokens`, `--target-tokens`: character or word).
- Lines with the same source are one group: its targets are the source's references, in file
  order. Training uses every (source, reference) pair; a hypothesis is right when it equals any
  reference of its source.
- Validation split, by source: a source goes to validation when
  `splitmix64(fnv1a64(utf8(source)) XOR seed) >> 11` times 2^-53 is below the fraction
  (`--validation-fraction`, `--split-seed`). fnv1a64 is FNV-1a, 64 bits (offset basis
  0xcbf29ce484222325, prime 0x100000001b3); splitmix64 is one step of SplitMix64 from that state
  (add 0x9e3779b97f4a7c15, then the usual two multiply-xorshift rounds). Each source decides on
  its own, so every reference of a word lands on the same side, whatever else the file holds.
- Vocabularies, fitted to the training part: id 0 padding, 1 unknown, 2 start, 3 end, then the
  tokens by descending count, ties in order of first appearance.

Model (Luong et al. 2015's global attention, the structure OpenNMT uses for all three scores):
- Encoder: embedding, a stacked LSTM or GRU, optionally bidirectional (`--hidden` units per
  direction, so its outputs have 2H features when bidirectional).
- Bridge: the decoder's initial state of layer l is encoder layer min(l, L_enc - 1)'s final state
  (both directions concatenated), through a linear map when the sizes differ (h and c each).
- Decoder step: the RNN reads the previous target token's embedding (and, with input feeding, the
  previous attentional vector); attention scores its top output h_t against the encoder outputs
  s_i (luong-dot: h_t . s_i; luong-general: h_t . W s_i; bahdanau: v . tanh(W_q h_t + W_k s_i),
  the additive score), masked over source padding; the context c_t is the weighted sum; the
  attentional vector tanh(W_c [c_t; h_t]) goes through dropout to the output layer.
- Loss: cross-entropy over target tokens (padding ignored), optional label smoothing; Adam;
  global-norm gradient clipping (`--clip`, 0 disables). Teacher forcing: each target step of each
  sequence reads the reference token with probability `--teacher-forcing`, else the model's own
  previous argmax.
- Decoding: greedy, and beam search (`--beam`) whose finished hypotheses are ranked by log
  probability over length^alpha (`--length-normalization` alpha; 0 ranks by log probability).
  Both stop at the end token or `--max-decode-length` tokens (0: twice the longest source of
  the batch plus 10).

Metrics (Recur's `SequenceMetricSums`): token accuracy, teacher-forced, over non-padding target
tokens (end token included); word error rate (WER), the fraction of sources whose output equals
none of their references; phoneme error rate (PER), the Levenshtein distance to the closest
reference summed over sources, over the summed length of those references (ties: the first
reference in file order).

Every epoch reports training loss, validation token accuracy, WER, PER and seconds; the epoch with
the lowest validation WER (then PER; the earliest on ties) is the one tested, with greedy decoding
and with the beam. `--json FILE` writes everything.
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

class Attention(nn.Module):
    def __init__(self, kind, query_size, key_size):
        super().__init__()
        self.kind = kind
        if kind == "luong-dot":
            if query_size != key_size:
                raise SystemExit(f"luong-dot needs encoder outputs ({key_size}) as wide as the decoder "
                                 f"({query_size}); use luong-general or bahdanau with a bidirectional encoder")
        elif kind == "luong-general":
            self.weight = nn.Linear(key_size, query_size, bias=False)
        elif kind == "bahdanau":
            self.query = nn.Linear(query_size, query_size, bias=False)
            self.key = nn.Linear(key_size, query_size, bias=True)
            self.vector = nn.Linear(query_size, 1, bias=False)
        else:
            raise SystemExit(f"unknown attention {kind}")

    def keys(self, memory):
        """What the scores need of the encoder outputs, computed once per batch. memory [B, S, E]."""
        if self.kind == "luong-general":
            return self.weight(memory)  # [B, S, H]
        if self.kind == "bahdanau":
            return self.key(memory)  # [B, S, H]
        return memory

    def forward(self, query, keys, memory, mask):
        """query [B, H], keys [B, S, *], memory [B, S, E], mask [B, S] true at padding."""
        if self.kind == "bahdanau":
            scores = self.vector(torch.tanh(self.query(query).unsqueeze(1) + keys)).squeeze(2)
        else:
            scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)  # [B, S]
        weights = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=1)
        return torch.bmm(weights.unsqueeze(1), memory).squeeze(1), weights  # [B, E], [B, S]


class Seq2Seq(nn.Module):
    def __init__(self, args, source_size, target_size):
        super().__init__()
        rnn = nn.LSTM if args.cell == "lstm" else nn.GRU
        self.is_lstm = args.cell == "lstm"
        self.input_feeding = args.input_feeding
        self.directions = 2 if args.bidirectional else 1
        self.encoder_layers = args.encoder_layers
        self.decoder_layers = args.decoder_layers or args.encoder_layers
        hidden = args.hidden
        memory_size = hidden * self.directions
        self.source_embedding = nn.Embedding(source_size, args.embedding, padding_idx=PAD)
        self.target_embedding = nn.Embedding(target_size, args.embedding, padding_idx=PAD)
        self.encoder = rnn(args.embedding, hidden, num_layers=self.encoder_layers,
                           bidirectional=args.bidirectional,
                           dropout=args.dropout if self.encoder_layers > 1 else 0.0)
        decoder_input = args.embedding + (hidden if args.input_feeding else 0)
        self.decoder = rnn(decoder_input, hidden, num_layers=self.decoder_layers,
                           dropout=args.dropout if self.decoder_layers > 1 else 0.0)
        self.bridge_h = nn.Linear(memory_size, hidden) if memory_size != hidden else None
        self.bridge_c = nn.Linear(memory_size, hidden) if memory_size != hidden and self.is_lstm else None
        self.attention = Attention(args.attention, hidden, memory_size)
        self.combine = nn.Linear(memory_size + hidden, hidden, bias=False)
        self.output = nn.Linear(hidden, target_size)
        self.dropout = nn.Dropout(args.dropout)
        self.hidden = hidden

    def encode(self, source, lengths):
        """source [S, B] → memory [B, S, E], keys, mask [B, S], initial decoder state."""
        embedded = self.dropout(self.source_embedding(source))
        packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, enforce_sorted=False)
        outputs, state = self.encoder(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, total_length=source.shape[0])
        memory = outputs.transpose(0, 1)  # [B, S, E]
        mask = (source == PAD).transpose(0, 1)
        if self.is_lstm:
            state = (self.bridged(state[0], self.bridge_h), self.bridged(state[1], self.bridge_c))
        else:
            state = self.bridged(state, self.bridge_h)
        return memory, self.attention.keys(memory), mask, state

    def bridged(self, final, projection):
        """Encoder final states [L_enc × dirs, B, H] → decoder initial states [L_dec, B, H]."""
        batch = final.shape[1]
        layers = final.view(self.encoder_layers, self.directions, batch, self.hidden)
        layers = layers.permute(0, 2, 1, 3).reshape(self.encoder_layers, batch, self.directions * self.hidden)
        chosen = torch.stack([layers[min(l, self.encoder_layers - 1)] for l in range(self.decoder_layers)])
        return projection(chosen) if projection is not None else chosen.contiguous()

    def step(self, token, state, feed, memory, keys, mask):
        """One decoder step for tokens [B]: logits [B, V], the new state and attentional vector."""
        embedded = self.dropout(self.target_embedding(token))
        rnn_input = torch.cat([embedded, feed], dim=1) if self.input_feeding else embedded
        output, state = self.decoder(rnn_input.unsqueeze(0), state)
        top = output.squeeze(0)
        context, weights = self.attention(top, keys, memory, mask)
        attentional = torch.tanh(self.combine(torch.cat([context, top], dim=1)))
        return self.output(self.dropout(attentional)), state, attentional

    def forward(self, source, source_lengths, target, teacher_forcing=1.0, generator=None):
        """Logits [T - 1, B, V] for target [T, B] (start … end), predicting target[1:]."""
        memory, keys, mask, state = self.encode(source, source_lengths)
        feed = memory.new_zeros(source.shape[1], self.hidden)
        token = target[0]
        logits = []
        for t in range(target.shape[0] - 1):
            step_logits, state, feed = self.step(token, state, feed, memory, keys, mask)
            logits.append(step_logits)
            token = target[t + 1]
            if teacher_forcing < 1.0:
                own = step_logits.argmax(dim=1)
                keep = torch.rand(token.shape, generator=generator) < teacher_forcing
                token = torch.where(keep, token, own)
        return torch.stack(logits)

    @torch.no_grad()
    def greedy(self, source, source_lengths, max_length):
        memory, keys, mask, state = self.encode(source, source_lengths)
        batch = source.shape[1]
        feed = memory.new_zeros(batch, self.hidden)
        token = torch.full((batch,), START, dtype=torch.long)
        finished = torch.zeros(batch, dtype=torch.bool)
        outputs = []
        for _ in range(max_length):
            logits, state, feed = self.step(token, state, feed, memory, keys, mask)
            token = logits.argmax(dim=1)
            outputs.append(token)
            finished |= token == END
            if finished.all():
                break
        return [cut(column) for column in torch.stack(outputs, dim=1).tolist()]

    @torch.no_grad()
    def beam(self, source, source_lengths, width, alpha, max_length):
        memory, keys, mask, state = self.encode(source, source_lengths)
        batch = source.shape[1]

        def expand(tensor, dim):  # repeat each sequence `width` times, beams of a sequence adjacent
            return tensor.repeat_interleave(width, dim=dim)

        memory, keys, mask = expand(memory, 0), expand(keys, 0), expand(mask, 0)
        state = tuple(expand(s, 1) for s in state) if self.is_lstm else expand(state, 1)
        feed = memory.new_zeros(batch * width, self.hidden)
        token = torch.full((batch * width,), START, dtype=torch.long)
        scores = torch.full((batch, width), float("-inf"))
        scores[:, 0] = 0.0  # one live beam at the start, so the first step gives `width` distinct ones
        lengths = torch.zeros(batch, width)
        finished = torch.zeros(batch, width, dtype=torch.bool)
        history = torch.zeros(batch, width, 0, dtype=torch.long)
        for _ in range(max_length):
            logits, state, feed = self.step(token, state, feed, memory, keys, mask)
            log_probs = torch.log_softmax(logits, dim=1).view(batch, width, -1)
            # A finished beam continues only with padding, at no cost, so it keeps its score.
            stopped = torch.full_like(log_probs[0, 0], float("-inf"))
            stopped[PAD] = 0.0
            log_probs = torch.where(finished.unsqueeze(2), stopped, log_probs)
            vocabulary = log_probs.shape[2]
            candidates = (scores.unsqueeze(2) + log_probs).view(batch, -1)
            scores, chosen = candidates.topk(width, dim=1)
            parent = chosen // vocabulary
            token = chosen % vocabulary
            lengths = lengths.gather(1, parent) + (~finished.gather(1, parent)).float()
            finished = finished.gather(1, parent) | (token == END)
            history = torch.cat([history.gather(1, parent.unsqueeze(2).expand(-1, -1, history.shape[2])),
                                 token.unsqueeze(2)], dim=2)
            rows = (parent + torch.arange(batch).unsqueeze(1) * width).view(-1)
            state = tuple(s[:, rows] for s in state) if self.is_lstm else state[:, rows]
            feed = feed[rows]
            token = token.view(-1)
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


# MARK: training and evaluation

def batches(items, size):
    for start in range(0, len(items), size):
        yield items[start: start + size]


def max_length_for(args, source_lengths):
    return args.max_decode_length or 2 * int(source_lengths.max()) + 10


def decode(model, groups, args, width):
    """Outputs for every group, in batches sorted by source length (decoding needs no order)."""
    order = sorted(range(len(groups)), key=lambda i: len(groups[i][0]))
    outputs = [None] * len(groups)
    for chunk in batches(order, args.eval_batch_size):
        source, lengths = padded([groups[i][0] for i in chunk], with_markers=False)
        limit = max_length_for(args, lengths)
        if width == 1:
            hypotheses = model.greedy(source, lengths, limit)
        else:
            hypotheses = model.beam(source, lengths, width, args.length_normalization, limit)
        for i, hypothesis in zip(chunk, hypotheses):
            outputs[i] = hypothesis
    return outputs


def evaluate(model, groups, args, width):
    model.eval()
    hypotheses = decode(model, groups, args, width)
    return error_rates(hypotheses, [refs for _, refs in groups])


@torch.no_grad()
def token_accuracy(model, pairs, args):
    model.eval()
    correct = total = 0
    for chunk in batches(pairs, args.eval_batch_size):
        source, source_lengths = padded([s for s, _ in chunk], with_markers=False)
        target, _ = padded([t for _, t in chunk], with_markers=True)
        predicted = model(source, source_lengths, target).argmax(dim=2)
        wanted = target[1:]
        counted = wanted != PAD
        correct += int(((predicted == wanted) & counted).sum())
        total += int(counted.sum())
    return correct / total


def encode_groups(groups, source_vocabulary, target_vocabulary):
    return [(source_vocabulary.encode(tokens), [target_vocabulary.encode(r) for r in refs])
            for tokens, refs in groups]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train_file")
    parser.add_argument("test_file")
    parser.add_argument("--source-tokens", choices=["character", "word"], default="character")
    parser.add_argument("--target-tokens", choices=["character", "word"], default="word")
    parser.add_argument("--validation-fraction", type=float, default=0.05)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1, help="weights, shuffling, dropout, teacher forcing")
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--embedding", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256, help="decoder units; encoder units per direction")
    parser.add_argument("--encoder-layers", type=int, default=1)
    parser.add_argument("--decoder-layers", type=int, default=0, help="0: as many as the encoder")
    parser.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--attention", choices=["luong-dot", "luong-general", "bahdanau"], default="luong-general")
    parser.add_argument("--input-feeding", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--clip", type=float, default=5.0, help="global gradient norm bound; 0: none")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval-batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--teacher-forcing", type=float, default=1.0)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--length-normalization", type=float, default=1.0)
    parser.add_argument("--max-decode-length", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: every core")
    parser.add_argument("--limit-batches", type=int, default=0, help="stop each epoch after this many batches")
    parser.add_argument("--log-every", type=int, default=0, help="print progress every this many batches; 0: never")
    parser.add_argument("--json", help="write the configuration and results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads or os.cpu_count())
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    groups = read_groups(args.train_file, args.source_tokens, args.target_tokens)
    test_groups = list(read_groups(args.test_file, args.source_tokens, args.target_tokens).values())
    training = [g for s, g in groups.items() if not is_validation(s, args.validation_fraction, args.split_seed)]
    validation = [g for s, g in groups.items() if is_validation(s, args.validation_fraction, args.split_seed)]
    if not training or not validation:
        sys.exit(f"the split leaves {len(training)} training and {len(validation)} validation sources")
    source_vocabulary = Vocabulary(tokens for tokens, _ in training)
    target_vocabulary = Vocabulary(r for _, refs in training for r in refs)
    training = encode_groups(training, source_vocabulary, target_vocabulary)
    validation = encode_groups(validation, source_vocabulary, target_vocabulary)
    test = encode_groups(test_groups, source_vocabulary, target_vocabulary)
    training_pairs = [(s, r) for s, refs in training for r in refs]
    validation_pairs = [(s, r) for s, refs in validation for r in refs]

    model = Seq2Seq(args, len(source_vocabulary), len(target_vocabulary))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    parameters = sum(p.numel() for p in model.parameters())
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
    print(f"data: {len(training)} training words ({len(training_pairs)} pairs), {len(validation)} validation "
          f"words, {len(test)} test words; vocabularies {len(source_vocabulary)} / {len(target_vocabulary)}; "
          f"{parameters} parameters; {torch.get_num_threads()} threads", flush=True)

    best = None
    for epoch in range(1, args.epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(training_pairs), generator=generator).tolist()
        loss_sum = token_count = 0.0
        batch_count = math.ceil(len(order) / args.batch_size)
        if args.limit_batches:
            batch_count = min(batch_count, args.limit_batches)
        for index, chunk in enumerate(batches(order, args.batch_size)):
            if args.limit_batches and index >= args.limit_batches:
                break
            source, source_lengths = padded([training_pairs[i][0] for i in chunk], with_markers=False)
            target, _ = padded([training_pairs[i][1] for i in chunk], with_markers=True)
            logits = model(source, source_lengths, target, args.teacher_forcing, generator)
            wanted = target[1:]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[2]), wanted.reshape(-1),
                                   ignore_index=PAD, label_smoothing=args.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            if args.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            counted = float((wanted != PAD).sum())
            loss_sum += loss.item() * counted
            token_count += counted
            if args.log_every and (index + 1) % args.log_every == 0:
                print(f"  batch {index + 1}/{batch_count}: loss {loss_sum / token_count:.4f}  "
                      f"{time.perf_counter() - start:.1f} s", flush=True)
        seconds = time.perf_counter() - start
        evaluation_start = time.perf_counter()
        accuracy = token_accuracy(model, validation_pairs, args)
        wer, per = evaluate(model, validation, args, width=1)
        record = {"epoch": epoch, "train_loss": loss_sum / token_count, "validation_token_accuracy": accuracy,
                  "validation_wer": wer, "validation_per": per, "seconds": seconds,
                  "evaluation_seconds": time.perf_counter() - evaluation_start}
        summary["epochs"].append(record)
        print(f"epoch {epoch}: loss {record['train_loss']:.4f}  validation token accuracy {accuracy:.4f}  "
              f"WER {100 * wer:.2f}%  PER {100 * per:.2f}%  {seconds:.1f} s "
              f"(+{record['evaluation_seconds']:.1f} s validation)", flush=True)
        if best is None or (wer, per) < best[0]:
            best = ((wer, per), epoch, {k: v.clone() for k, v in model.state_dict().items()})

    model.load_state_dict(best[2])
    results = {"epoch": best[1]}
    for name, width in (("greedy", 1), ("beam", args.beam)):
        start = time.perf_counter()
        wer, per = evaluate(model, test, args, width)
        results[name] = {"width": width, "wer": wer, "per": per, "seconds": time.perf_counter() - start}
        print(f"test ({name}, width {width}, epoch {best[1]}): WER {100 * wer:.2f}%  PER {100 * per:.2f}%  "
              f"({results[name]['seconds']:.1f} s)", flush=True)
    summary["test"] = results
    examples = decode(model, test[:5], args, args.beam)
    for (source, refs), output in zip(test[:5], examples):
        spelled = ("" if args.source_tokens == "character" else " ").join(source_vocabulary.decode(source))
        print(f"  {spelled}: {' '.join(target_vocabulary.decode(output))}"
              f"  (reference {' '.join(target_vocabulary.decode(refs[0]))})")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(summary, file, indent=2)


if __name__ == "__main__":
    main()
