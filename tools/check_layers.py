#!/usr/bin/env python3
"""The folder dependency graph of Sources/Recur, checked against the layering order.

A folder Y depends on a folder X when a Swift file in Y names a top-level declaration (type,
protocol, typealias, function, constant) that a file in X declares. The check fails when the
graph has a cycle (named, with an example reference for each edge) or when an edge points
upwards in LAYERS below, so a folder only ever uses the folders beneath it.

The graph is approximate, by design: declarations are found by a regular expression on lines
that start at column 0, references are whole-word matches outside comments and string literals
(interpolations count); member accesses (`.name`), argument labels (lower-case `name:`) and
same-named local declarations are skipped, and members added by extensions count only through
the extended type's name. That is enough to see which folder leans on which; the compiler stays
the judge of what actually resolves.

    tools/check_layers.py            print the edges, fail on a cycle or an upward edge
    tools/check_layers.py --names    print every name each edge uses, with its first use
    tools/check_layers.py --quiet    print only the failures
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "Recur")

# The layering, bottom first. A folder may use any folder in an earlier group, never one in a
# later group; the folders inside one group may not use each other. A folder missing from this
# list fails the check, so a new folder has to be given its place.
LAYERS = [
    ["Support"],     # errors, JSON, files, seeded randomness, hashing, durations, index checks
    ["Tensor"],      # Shape and DType: a tensor's vocabulary, below any backend
    ["Backend"],     # Tensor and the Backend protocol (they name each other), CPU and OpenCL
    ["Cells"],       # one file per recurrent cell
    ["Layers"],      # recurrent, embedding, dense and dropout layers, Sequential, gradient flow
    ["IO", "Data"],  # safetensors and state dictionaries; data sources, readers, examples
    ["Models"],      # model specification, its loss, text generation
    ["Training"],    # trainer, optimizers, schedules, checkpoints, prediction from a checkpoint
    ["Reference"],   # the plain float64 reference of losses, optimizer steps and the recurrent scan
    ["Diagnostics", "Reporting"],  # self-check, fixture check, benchmarks; charts
]

DECLARATION = re.compile(
    r"^(?:@\w+(?:\([^)]*\))?\s+)*"
    r"(?:(?:public|internal|package|final|open|indirect|nonisolated)\s+)*"
    r"(?:struct|class|enum|protocol|actor|typealias|func|let|var)\s+([A-Za-z_]\w*)",
    re.MULTILINE,
)
WORD = re.compile(r"[A-Za-z_]\w*")
# A word is not a reference when it is a member access, a declaration of a local with the same
# name, or an argument label (a lower-case word before a colon; a type before a colon is a
# conformance or an inheritance, and counts).
LOCAL_DECLARATION = re.compile(r"(?:func|let|var|case|struct|class|enum)\s+$")


def strip_comments_and_strings(text):
    """Blanks out comments and string literals (keeping line breaks), approximately."""
    out = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append("\n" * text.count("\n", i, end))
            i = end
        elif text.startswith('"""', i):
            end = text.find('"""', i + 3)
            end = n if end < 0 else end + 3
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif text[i] == '"':
            # Interpolations (`\(expression)`) are code and are kept; the rest is blanked.
            j = i + 1
            out.append('"')
            while j < n and text[j] not in '"\n':
                if text.startswith("\\(", j):
                    depth, k = 1, j + 2
                    while k < n and depth and text[k] != "\n":
                        depth += {"(": 1, ")": -1}.get(text[k], 0)
                        k += 1
                    out.append(" " + text[j + 2:k - 1] + " ")
                    j = k
                else:
                    j += 2 if text[j] == "\\" else 1
            out.append('"')
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def swift_files():
    for directory, _, names in os.walk(ROOT):
        for name in sorted(names):
            if name.endswith(".swift"):
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, ROOT)
                yield relative.split(os.sep)[0], relative, path


def build_graph():
    """Returns the folders and {(user, provider): [(file, name, line)]}, first use of each name."""
    sources = []
    declared = {}  # name -> folder; a name declared in two folders is ambiguous and skipped
    ambiguous = set()
    for folder, relative, path in swift_files():
        with open(path, encoding="utf-8") as file:
            code = strip_comments_and_strings(file.read())
        sources.append((folder, relative, code))
        for match in DECLARATION.finditer(code):
            name = match.group(1)
            if declared.get(name, folder) != folder:
                ambiguous.add(name)
            declared[name] = folder
    for name in ambiguous:
        del declared[name]

    edges = {}
    for folder, relative, code in sources:
        for match in WORD.finditer(code):
            name = match.group(0)
            provider = declared.get(name)
            if provider is None or provider == folder:
                continue
            start, end = match.span()
            if start > 0 and code[start - 1] == ".":
                continue
            if end < len(code) and code[end] == ":" and name[0].islower():
                continue
            if LOCAL_DECLARATION.search(code, max(0, start - 12), start):
                continue
            uses = edges.setdefault((folder, provider), [])
            if all(used != name for _, used, _ in uses):
                uses.append((relative, name, code.count("\n", 0, start) + 1))
    folders = sorted({folder for folder, _, _ in sources})
    return folders, edges


def strongly_connected(folders, edges):
    """The groups of folders that reach each other (Tarjan), sorted; single folders left out."""
    successors = {folder: sorted(p for (u, p) in edges if u == folder) for folder in folders}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(folder):
        index[folder] = low[folder] = len(index)
        stack.append(folder)
        on_stack.add(folder)
        for provider in successors[folder]:
            if provider not in index:
                visit(provider)
                low[folder] = min(low[folder], low[provider])
            elif provider in on_stack:
                low[folder] = min(low[folder], index[provider])
        if low[folder] == index[folder]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == folder:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for folder in folders:
        if folder not in index:
            visit(folder)
    return groups


def shortest_cycle(group, edges):
    """A shortest cycle through the group's first folder, as a list ending where it starts."""
    start = group[0]
    previous = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for folder in frontier:
            for provider in sorted(p for (u, p) in edges if u == folder and p in group):
                if provider == start:
                    path = [folder]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return list(reversed(path)) + [start]
                if provider not in previous:
                    previous[provider] = folder
                    following.append(provider)
        frontier = following
    return [start]


def main():
    quiet = "--quiet" in sys.argv[1:]
    every_name = "--names" in sys.argv[1:]
    folders, edges = build_graph()
    rank = {folder: index for index, group in enumerate(LAYERS) for folder in group}
    failures = []

    if not quiet:
        print("Folder dependencies of Sources/Recur (user -> provider: example reference):")
        for (user, provider), uses in sorted(edges.items()):
            relative, name, line = uses[0]
            print(f"  {user} -> {provider}: {relative}:{line} uses {name}")
            if every_name:
                for relative, name, line in uses[1:]:
                    print(f"      {relative}:{line} uses {name}")

    for folder in folders:
        if folder not in rank:
            failures.append(f"folder {folder} has no place in LAYERS (tools/check_layers.py)")
    for (user, provider), uses in sorted(edges.items()):
        relative, name, line = uses[0]
        if user in rank and provider in rank and rank[provider] >= rank[user]:
            failures.append(
                f"{user} -> {provider} goes against the layering "
                f"({relative}:{line} uses {name}, declared in {provider})"
            )
    for group in strongly_connected(folders, edges):
        failures.append(
            f"cycle among {len(group)} folders ({', '.join(group)}), "
            f"e.g. {' -> '.join(shortest_cycle(group, edges))}"
        )

    if failures:
        for failure in failures:
            print("error: " + failure, file=sys.stderr)
        return 1
    if not quiet:
        order = " -> ".join(" | ".join(group) for group in LAYERS)
        print(f"No cycle; every edge points down the layering {order}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
