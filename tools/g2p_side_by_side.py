#!/usr/bin/env python3
"""The table of tools/g2p_side_by_side.sh: Recur's `recur train --format pairs --json` output
and tools/g2p_pytorch.py's JSON side by side, as markdown; `--json FILE` writes both results.
Exits 1 when the parameter counts differ (the models are not the same).

    python3 tools/g2p_side_by_side.py --recur-output RECUR.jsonl --recur-log RECUR.log \\
        --pytorch PYTORCH.json [--json FILE]

Seconds per epoch: Recur's epoch seconds include the validation pass; g2p_pytorch.py reports the
training alone and with validation, and the ratio compares like with like (with validation).
Test WER and PER are the last epoch's model's: Recur decodes with its --beam (greedy at 1), and
PyTorch's column is the same decoding (greedy, or the beam of the same width).
"""
import argparse
import json
import re
import sys


def mean(values):
    return sum(values) / len(values) if values else float("nan")


def recur_result(output_path, log_path):
    records = [json.loads(line) for line in open(output_path) if line.startswith("{")]
    epochs = [r for r in records if "epoch" in r and not r.get("final")]
    final = next((r for r in records if r.get("final")), {})
    found = re.search(r"(\d+) parameters on", open(log_path).read())
    if not found:
        sys.exit(f"no parameter count in {log_path}")
    return {"parameters": int(found.group(1)), "epochs": epochs, "final": final,
            "seconds_with_validation": mean([r["seconds"] for r in epochs]),
            "test_wer": final.get("test_sequence_error_rate"), "test_per": final.get("test_edit_distance_error_rate")}


def pytorch_result(path):
    summary = json.load(open(path))
    width = summary["configuration"]["beam"]
    test = summary["test"]["beam" if width > 1 else "greedy"]
    return {"parameters": summary["parameters"], "summary": summary,
            "seconds_training": mean([r["training_seconds"] for r in summary["epochs"]]),
            "seconds_with_validation": mean([r["seconds"] for r in summary["epochs"]]),
            "test_wer": test["wer"], "test_per": test["per"], "test_width": width}


def cell(value, digits=2, percent=False):
    if value is None:
        return "—"
    return f"{100 * value:.2f}%" if percent else f"{value:.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recur-output", required=True, help="recur train --json's stdout")
    parser.add_argument("--recur-log", required=True, help="recur train --json's stderr")
    parser.add_argument("--pytorch", required=True, help="g2p_pytorch.py --json's file")
    parser.add_argument("--json", help="write both results here")
    args = parser.parse_args()
    recur = recur_result(args.recur_output, args.recur_log)
    torch = pytorch_result(args.pytorch)
    ratio = recur["seconds_with_validation"] / torch["seconds_with_validation"]
    width = torch["test_width"]
    decoding = "greedy" if width == 1 else f"beam {width}"
    print(f"| framework | parameters | s/epoch (training) | s/epoch (with validation) | test WER ({decoding}) "
          f"| test PER ({decoding}) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| Recur | {recur['parameters']} | — | {cell(recur['seconds_with_validation'])} "
          f"| {cell(recur['test_wer'], percent=True)} | {cell(recur['test_per'], percent=True)} |")
    threads = torch['summary']['threads']
    print(f"| PyTorch ({threads} thread{'s' if threads != 1 else ''}) | {torch['parameters']} "
          f"| {cell(torch['seconds_training'])} | {cell(torch['seconds_with_validation'])} "
          f"| {cell(torch['test_wer'], percent=True)} | {cell(torch['test_per'], percent=True)} |")
    print(f"\nRecur / PyTorch seconds per epoch (with validation): {ratio:.2f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"recur": recur, "pytorch": torch, "recur_over_pytorch_seconds": ratio}, file, indent=2)
    if recur["parameters"] != torch["parameters"]:
        print(f"error: Recur has {recur['parameters']} parameters, PyTorch {torch['parameters']}: "
              "the models differ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
