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
    """One table per protocol (corpus, class set, folds, validation, speaker normalisation), so that no column
    ever holds numbers of two protocols. Stale results (ser.rundir.mark_results_stale) are left out, saying so on
    stderr."""
    from ser.scoring import protocol_name, spread, system_description

    groups: dict[str, list[str]] = {}
    for path in results_files:
        with open(path) as f:
            r = json.load(f)
        if r.get("stale"):
            print(f"compare_results: leaving out {path}: stale ({r['stale']})", file=sys.stderr)
            continue
        p = r["protocol"]
        folds = f"{len(p['folds_scored'])}/{len(p['folds'])}" + ("" if p["complete"] else " (incomplete)")
        num_folds = len(p["folds_scored"])
        systems = [(r["experiment"], len(p["seeds"]), r["summary"], spread(r["summary"]["ua"]["seed_std"],
                                                                            len(p["seeds"])))]
        ensemble = r.get("seed_ensemble")
        if ensemble:  # another system (one model per fold from several seeds): a row of its own
            systems.append((f"{r['experiment']} (seed ensemble)", f"{len(ensemble['seeds'])} averaged",
                            ensemble["summary"], "n/a"))
        system = system_description(r["config"], p.get("frontend_model_type"))
        for name, seeds, s, seed_std in systems:
            def cell(m):
                return f"{s[m]['mean']:.2f} +- {spread(s[m]['std_over_folds'], num_folds)}"
            groups.setdefault(protocol_name(p), []).append(
                f"| {name} | {len(p['classes'])} | {folds} | {seeds} | {cell('ua')} | {cell('wa')} | "
                f"{cell('macro_f1')} | {seed_std} | {p['selection']} | {system} | "
                f"`{r['config_hash']}` | `{r['git_revision']}` |")
    out = []
    for name, rows in sorted(groups.items()):
        out += [f"### Protocol: {name}", "",
                "| experiment | classes | folds | seeds | UA | WA | macro-F1 | UA seed std | selection | system "
                "| config | git |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|", *rows, ""]
    return "\n".join(out)


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
