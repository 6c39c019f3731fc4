#!/usr/bin/env python3
"""Keeps the module graph of a crate as docs/DESIGN.md draws it: layers that import only from
below, and no import cycle among the modules of any one folder.

    scripts/check_layers.py            checks the nginx glue (src/) and the core (core/src/)
    scripts/check_layers.py --graph    also prints each crate's module graph

A module's layer is the first entry of LAYERS naming its top-level module (the file
`src/<name>.rs` or folder `src/<name>/`). A reference is any `crate::<path>`, `super::<path>`
or `self::<path>` in the code (comments left out), or a `use` of a child module, resolved to
the longest module path that is a file. Exits 1 with one line per violation.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module may use modules of its own layer or below, never above.
LAYERS = {
    "src": [
        ["ffi"],
        ["settings"],
        ["respond"],
        ["jobs"],
        ["handler"],
        ["lib"],
    ],
    "core/src": [
        ["base64", "buffers", "filter", "markup", "mp4", "s3", "scte35", "source"],
        ["crypto", "events", "index", "url"],
        ["cache", "format", "fragment", "ism", "mime", "segment", "text"],
        ["drm", "live", "stored"],
        ["presentation"],
        ["package"],
        ["config"],
        ["error"],
        ["metrics", "handling"],
        ["request"],
        ["body", "remote"],
        ["lib"],
    ],
}

COMMENT = re.compile(r"//.*")
PATH = r"((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)"
REFERENCE = re.compile(r"\bcrate::" + PATH)
RELATIVE = re.compile(r"\b((?:super::)+|self::)" + PATH)
CHILD_USE = re.compile(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+" + PATH, re.M)
GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\};", re.S)


def module_of(path: Path, src: Path) -> tuple[str, ...]:
    rel = path.relative_to(src).with_suffix("")
    parts = rel.parts
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts or ("lib",)


TESTS = re.compile(r"^#\[cfg\(test\)\]\s*\n\s*(?:pub\s+)?mod\s", re.M)


def references(text: str, module: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Module paths `text` (the file of `module`) refers to, from the crate's root. Test code
    (a `#[cfg(test)] mod` at the end of a file) may use anything and is left out."""
    tests = TESTS.search(text)
    if tests:
        text = text[:tests.start()]
    code = "\n".join(COMMENT.sub("", line) for line in text.splitlines())
    found = {tuple(m.group(1).split("::")) for m in REFERENCE.finditer(code)}
    here = () if module == ("lib",) else module
    for m in RELATIVE.finditer(code):
        up = m.group(1).count("super::")
        base = here[:len(here) - up] if up else here
        found.add(base + tuple(m.group(2).split("::")))
    for m in CHILD_USE.finditer(code):
        first = m.group(1).split("::")[0]
        if first not in ("crate", "super", "self", "std", "core", "alloc"):
            found.add(here + tuple(m.group(1).split("::")))
    for group in GROUP.finditer(code):
        # `use crate::{a::b, c}`: each item at the top of the braces.
        depth, item = 0, ""
        for ch in group.group(1) + ",":
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                name = item.strip().split("{")[0].strip(": ")
                if name and name != "self":
                    found.add(tuple(name.split("::")))
                item = ""
            else:
                item += ch
    return found


def check(crate: str, show_graph: bool) -> list[str]:
    src = ROOT / crate
    files = {module_of(p, src): p for p in src.rglob("*.rs")
             if p.stem != "tests" and not p.stem.endswith("_tests")}
    modules = set(files)
    rank = {}
    for level, names in enumerate(LAYERS[crate]):
        for name in names:
            rank[name] = level
    problems = []
    # Edges between sibling modules of each folder: (parent, child_a) -> child_b.
    siblings: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for module, path in sorted(files.items()):
        top = module[0]
        if top not in rank:
            problems.append(f"{crate}: module `{top}` ({path.relative_to(ROOT)}) is in no layer "
                            "(add it to scripts/check_layers.py)")
            continue
        for ref in references(path.read_text(), module):
            target = next((ref[:n] for n in range(len(ref), 0, -1) if ref[:n] in modules), None)
            if target is None:
                continue  # an item of lib.rs (a macro, a static) or of a parent's re-export
            if rank.get(target[0], -1) > rank[top]:
                problems.append(f"{path.relative_to(ROOT)}: `{top}` uses `{'::'.join(target)}`, "
                                f"a layer above it")
            # The first module where the two paths part: that folder's siblings.
            common = 0
            while (common < min(len(module), len(target))
                   and module[common] == target[common]):
                common += 1
            if common < len(module) and common < len(target):
                parent = module[:common]
                siblings.setdefault(parent, {}).setdefault(module[common], set()).add(
                    target[common])
    for parent, graph in sorted(siblings.items()):
        cycle = find_cycle(graph)
        where = "::".join(parent) or crate
        if cycle:
            problems.append(f"{crate}: import cycle among the modules of `{where}`: "
                            + " -> ".join(cycle))
        if show_graph:
            print(f"{crate} {where}:")
            for node in sorted(graph):
                print(f"    {node} -> {', '.join(sorted(graph[node] - {node}))}")
    return problems


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graph", action="store_true")
    ap.add_argument("crates", nargs="*", default=list(LAYERS))
    a = ap.parse_args()
    problems = [p for crate in a.crates for p in check(crate, a.graph)]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
