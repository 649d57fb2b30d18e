#!/usr/bin/env python3
"""One Markdown table across experiments and recipes: utils/compare_results.py egs/*/exp [more dirs or results.json]

Each row carries its protocol (corpus, classes, folds, seeds, selection rule, config hash, git revision), so
numbers measured under different protocols are never silently compared as equals.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys


def find_results(paths: list[str]) -> list[str]:
    found = []
    for path in paths:
        if os.path.isfile(path):
            found.append(path)
        else:
            found += glob.glob(os.path.join(path, "**", "results.json"), recursive=True)
    return sorted(set(found))


def table(results_files: list[str]) -> str:
    rows = ["| corpus | experiment | classes | folds | seeds | UA | WA | macro-F1 | UA seed std | selection | front-end "
            "| config | git |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in results_files:
        with open(path) as f:
            r = json.load(f)
        p, s = r["protocol"], r["summary"]
        cell = lambda m: f"{s[m]['mean']:.2f} +- {s[m]['std_over_folds']:.2f}"
        folds = f"{len(p['folds_scored'])}/{len(p['folds'])}" + ("" if p["complete"] else " (incomplete)")
        rows.append(f"| {p.get('corpus', '?')} | {r['experiment']} | {len(p['classes'])} ({p.get('class_set', '')}) | "
                    f"{folds} | {len(p['seeds'])} | {cell('ua')} | {cell('wa')} | {cell('macro_f1')} | "
                    f"{s['ua']['seed_std']:.2f} | {p['selection']} | "
                    f"{r['config']['frontend']} | `{r['config_hash']}` | `{r['git_revision']}` |")
    return "\n".join(rows) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="exp dirs (searched recursively for results.json) or results.json files")
    args = p.parse_args()
    files = find_results(args.paths)
    if not files:
        sys.exit(f"error: no results.json under {' '.join(args.paths)}")
    sys.stdout.write(table(files))


if __name__ == "__main__":
    main()
