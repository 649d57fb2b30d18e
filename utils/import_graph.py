#!/usr/bin/env python3
"""ser's internal import graph, and its cycles: python utils/import_graph.py [--root DIR] [--quiet]

Every ``import`` of a ser module counts, at module level or inside a function (a function-level import that closes
a circle is still a circle: it only moves the failure to call time); imports under ``if TYPE_CHECKING:`` do not,
since they never run. Prints one line per module, ``module -> imported, ...``, then either "no cycles" (exit 0) or
each cycle found as ``cycle: a -> b -> ... -> a`` (exit 1).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys

PACKAGE = "ser"


def module_names(root: str) -> dict[str, str]:
    """module name -> its file, for every .py under root/ser."""
    modules = {}
    for folder, dirs, files in os.walk(os.path.join(root, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported(module: str, path: str, modules: dict[str, str]) -> set[str]:
    """The ser modules that ``module`` imports (anywhere in it but TYPE_CHECKING blocks)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_package = os.path.basename(path) == "__init__.py"
    found: set[str] = set()

    def visit(node):
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name:
                    found.add(name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] == PACKAGE:
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        found.add(f"{base}.{alias.name}")  # a submodule
                    elif base in modules:
                        found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def import_graph(root: str) -> dict[str, set[str]]:
    modules = module_names(root)
    return {module: imported(module, path, modules) for module, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], int]]:
    """(a cycle a -> ... -> a, the size of its strongly connected component) for each component of more than one
    module (Tarjan)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = [0]

    def strongconnect(v):  # recursive: its depth is the longest import chain, a few dozen in ser
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    cycles = []
    for component in sorted(components, key=min):
        start = min(component)
        # breadth-first from start until an edge leads back to it: a shortest cycle through start
        previous, frontier, closing = {start: None}, [start], None
        while frontier and closing is None:
            nxt = []
            for v in frontier:
                if start in graph[v]:
                    closing = v
                    break
                for w in sorted(graph[v] & component):
                    if w not in previous:
                        previous[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [closing]
        while previous[path[-1]] is not None:
            path.append(previous[path[-1]])
        cycles.append((path[::-1] + [start], len(component)))
    return cycles


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   help="the checkout holding the ser package (default: this one)")
    p.add_argument("--quiet", action="store_true", help="print the cycles only")
    args = p.parse_args(argv)
    graph = import_graph(args.root)
    if not args.quiet:
        for module in sorted(graph):
            print(f"{module} -> {', '.join(sorted(graph[module])) or '(nothing of ser)'}")
    cycles = find_cycles(graph)
    for cycle, size in cycles:
        print(f"cycle: {' -> '.join(cycle)} ({size} modules import one another in a circle)")
    if cycles:
        return 1
    print(f"no cycles: {len(graph)} modules, {sum(len(v) for v in graph.values())} imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
