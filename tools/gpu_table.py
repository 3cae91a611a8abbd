#!/usr/bin/env python3
"""Joins `recur bench --json` (one device) with `tools/bench_torch_layers.py --json` (the same
shapes through PyTorch, e.g. cuDNN) into one side-by-side table: for every suite row and the
forward and forward+backward passes, Recur's median, PyTorch's, and Recur / PyTorch (below 1 means
Recur is faster). A row whose recurrent scans ran as persistent launches (one launch for all time
steps, `persistent_scans` > 0) is marked `P`; with a third file, the same bench run with
`--persistent-scans off`, its one-launch-per-step median is shown beside it. The last column is
what one run of the row enqueued and waited for (kernel launches + CLBlast calls + fills, host
synchronisations), where the bench counted it. GEMM rows of the bench are listed after the table.

usage: python3 tools/gpu_table.py BENCH.jsonl TORCH.jsonl [STEPWISE_BENCH.jsonl]
"""
import json
import sys


def read_lines(path):
    """The JSON objects of a file, one per line. A line cut short (a command stopped by its time
    limit mid-write) is skipped with a note on standard error; a missing file reads as empty."""
    rows = []
    try:
        with open(path) as lines:
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    print(f"{path}:{number}: skipped, not a whole JSON object ({error})", file=sys.stderr)
    except FileNotFoundError:
        print(f"{path}: missing", file=sys.stderr)
    return rows


def key(row):
    return (row["cell"], row["B"], row["T"], row["I"], row["H"])


def commands(row):
    """`launches + CLBlast calls + fills, waits` of one bench row, or '-' where not counted."""
    if "kernel_launches" not in row:
        return "-"
    return (f"{row['kernel_launches']}+{row['gemm_calls']}+{row['fills']}, "
            f"{row['host_synchronizations']}")


def main():
    bench, torch_rows = read_lines(sys.argv[1]), read_lines(sys.argv[2])
    stepwise_rows = read_lines(sys.argv[3]) if len(sys.argv) > 3 else []
    peers = {key(r): r for r in torch_rows}
    stepwise = {(key(r), r["pass"]): r for r in stepwise_rows if "cell" in r}
    passes = {"forward": "forward_ms", "forward+backward": "forward_backward_ms"}
    print(f"{'row':<36}{'pass':<18}{'Recur ms':>11}{'per-step ms':>13}{'PyTorch ms':>12}{'ratio':>8}"
          f"  commands")
    for row in bench:
        if row.get("pass") not in passes or row.get("layers", 1) != 1 or row.get("bidirectional"):
            continue
        peer = peers.get(key(row))
        name = f"{row['cell']} B={row['B']} T={row['T']} I={row['I']} H={row['H']}"
        theirs = peer[passes[row["pass"]]] if peer else None
        ratio = f"{row['median_ms'] / theirs:8.2f}" if theirs else f"{'-':>8}"
        theirs_text = f"{theirs:12.3f}" if theirs else f"{'-':>12}"
        mark = "P" if row.get("persistent_scans", 0) > 0 else " "
        other = stepwise.get((key(row), row["pass"]))
        other_text = f"{other['median_ms']:13.3f}" if other else f"{'-':>13}"
        print(f"{name:<36}{row['pass']:<18}{row['median_ms']:10.3f}{mark}{other_text}{theirs_text}{ratio}"
              f"  {commands(row)}")
    for row in bench:
        if row.get("pass") == "gemm":
            print(f"{row['name']:<36}{'gemm':<18}{row['median_ms']:10.3f}{'':>26}{'':>8}  {row['gflops']:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
