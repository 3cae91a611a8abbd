#!/usr/bin/env python3
"""Cuts the committed CMU dictionary excerpt (Tests/RecurTests/Datasets/cmudict) from the full
g014b2b split.

Rule: list each file's distinct words in order of first appearance and keep the words whose
0-based position in that list is a multiple of STEP (50 for the training file, 40 for the test
file), each with every line it has anywhere in the file (all its pronunciations), in file order.

    python3 tools/cmudict_excerpt.py FULL_DATA/cmudict Tests/RecurTests/Datasets/cmudict
"""
import sys

STEPS = {"g014b2b.train": 50, "g014b2b.test": 40}


def excerpt(lines, step):
    order = {}
    for line in lines:
        order.setdefault(line.split("\t", 1)[0], len(order))
    return [line for line in lines if order[line.split("\t", 1)[0]] % step == 0]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: cmudict_excerpt.py FULL_CMUDICT_FOLDER OUTPUT_FOLDER")
    source, output = sys.argv[1:]
    for name, step in STEPS.items():
        with open(f"{source}/{name}", encoding="utf-8", newline="\n") as file:
            lines = file.read().splitlines(keepends=True)
        kept = excerpt(lines, step)
        with open(f"{output}/{name}", "w", encoding="utf-8", newline="\n") as file:
            file.writelines(kept)
        print(f"{name}: {len(kept)} of {len(lines)} lines")


if __name__ == "__main__":
    main()
