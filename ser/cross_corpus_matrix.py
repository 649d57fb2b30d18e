"""The cross-corpus matrix: every trained experiment of some recipes scored on every other recipe's data.

    python -m ser.bin.cross_corpus_matrix egs/ravdess egs/savee egs/synth --out exp_cross [--max-utts 400]

A recipe dir holds data/all (utt2emo, wav.scp) and exp/<tag>/ experiments with a results.json. Each neural
experiment (one EmotionRecognizer can load: every seed<s>/fold<k> run) is scored by ser.cross_corpus.evaluate on
each other recipe's data/all over the classes both name (ser.emotions.shared_classes); a pair sharing fewer than
2 classes is skipped with a note, and so are experiments that are not audio classifiers (classic references),
cross-corpus results found under exp/, and models that cannot classify single files (per-speaker
normalisation). Each pair's result goes to OUT/<recipe>.<tag>_on_<target>/ and is reused while its inputs are
unchanged (ser.cross_corpus.is_up_to_date), so an interrupted matrix resumes where it stopped.

MATRIX.md and matrix.json in OUT: rows = recipe/tag, columns = target recipes, each cell the UA over runs with the
chance level of its class set and a COLLAPSE flag (ser.cross_corpus.collapse_check); the diagonal holds the
experiment's own in-corpus UA (its results.json, under its own protocol).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass

import yaml

from ser.atomic import write_json, write_text
from ser.cross_corpus import COLLAPSE_MARGIN, COLLAPSE_SHARE, SUBSAMPLE_RULE, evaluate, is_up_to_date
from ser.datadir import read_table
from ser.emotions import shared_classes

MIN_SHARED = 2


@dataclass
class Recipe:
    name: str  # the recipe dir's name: the matrix's column
    path: str
    data_dir: str  # data/all
    classes: list[str]  # the labels of data/all/utt2emo
    corpus: str  # data/protocol.json's corpus, else the recipe's name


def read_recipe(path: str) -> Recipe:
    path = os.path.normpath(path)
    data_dir = os.path.join(path, "data", "all")
    if not all(os.path.isfile(os.path.join(data_dir, n)) for n in ("utt2emo", "wav.scp")):
        raise ValueError(f"{path}: no data/all with utt2emo and wav.scp (run the recipe's stage 0)")
    labels = read_table(os.path.join(data_dir, "utt2emo"), 2, 2)
    name = os.path.basename(os.path.abspath(path))
    corpus = name
    protocol = os.path.join(path, "data", "protocol.json")
    if os.path.isfile(protocol):
        with open(protocol) as f:
            corpus = json.load(f).get("corpus", name)
    return Recipe(name, path, data_dir, sorted(set(labels.values())), corpus)


def experiments(recipe: Recipe) -> list[tuple[str, str]]:
    """(tag, exp dir) of every exp/<tag> with a results.json, sorted by tag."""
    found = glob.glob(os.path.join(recipe.path, "exp", "*", "results.json"))
    return sorted((os.path.basename(os.path.dirname(p)), os.path.dirname(p)) for p in found)


def inspect_experiment(exp_dir: str) -> tuple[list[str] | None, str | None]:
    """(the model's classes, None) for an experiment the matrix scores, else (None, why it is left out)."""
    from ser.rundir import model_dirs

    with open(os.path.join(exp_dir, "results.json")) as f:
        protocol = json.load(f).get("protocol", {})
    if protocol.get("kind") == "cross_corpus":
        return None, "a cross-corpus result, not a trained experiment"
    try:
        runs = model_dirs(exp_dir)
    except FileNotFoundError:
        if glob.glob(os.path.join(exp_dir, "seed*", "fold*", "model.npz")) + \
                glob.glob(os.path.join(exp_dir, "fold*", "model.npz")):
            return None, "a classic reference (functionals + logistic regression), not a classifier of audio"
        return None, "no trained runs (seed<s>/fold<k>/model.pth)"
    with open(os.path.join(runs[0], "config.yaml")) as f:
        speaker_norm = (yaml.safe_load(f) or {}).get("speaker_norm", "none")
    if speaker_norm != "none":
        return None, (f"trained with per-speaker normalisation ({speaker_norm}), which needs all of a speaker's "
                      "utterances: not a classifier of single files")
    with open(os.path.join(runs[0], "run.json")) as f:
        return json.load(f)["identity"]["classes"], None


def in_corpus_ua(exp_dir: str) -> float | None:
    with open(os.path.join(exp_dir, "results.json")) as f:
        results = json.load(f)
    try:
        return float(results["summary"]["ua"]["mean"])
    except (KeyError, TypeError, ValueError):
        return None


def pair_dir_name(recipe: str, tag: str, target: str) -> str:
    return f"{recipe}.{tag}_on_{target}"


def cell_of(results: dict, out: str, pair_dir: str) -> dict:
    p, collapse = results["protocol"], results["collapse"]
    return {"ua": results["summary"]["ua"]["mean"], "ua_std": results["summary"]["ua"]["std_over_folds"],
            "ua_ensemble": results["ensemble"]["ua"], "chance": p["chance_ua"], "collapse": collapse["collapsed"],
            "collapse_reasons": collapse["ensemble"]["reasons"], "runs_collapsed": len(collapse["runs_collapsed"]),
            "runs": len(results["runs"]), "classes": p["classes"], "class_map": p["class_set"][len("mapped: "):],
            "utterances": p["utterances_scored"], "results": os.path.relpath(os.path.join(pair_dir, "results.json"),
                                                                             out)}


def build_matrix(recipe_dirs: list[str], out: str, tags: list[str] | None = None, max_utts: int | None = None,
                 device: str = "cpu", command: str = "", log=print) -> dict:
    """Score every pair, write MATRIX.md and matrix.json into out, and return matrix.json's content."""
    from ser.recognizer import EmotionRecognizer

    recipes = [read_recipe(p) for p in recipe_dirs]
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ValueError(f"two recipe dirs share a name ({' '.join(names)}); the matrix's columns need one each")
    if len(recipes) < 2:
        raise ValueError("a cross-corpus matrix needs at least two recipes")
    if max_utts is not None and max_utts < MIN_SHARED:
        raise ValueError(f"--max-utts {max_utts}: at least {MIN_SHARED} (one utterance per scored class)")
    os.makedirs(out, exist_ok=True)
    rows, cells, in_corpus, skipped, failed, matched = [], {}, {}, [], [], set()
    for recipe in recipes:
        for tag, exp_dir in experiments(recipe):
            row = f"{recipe.name}/{tag}"
            if tags and tag not in tags and row not in tags:
                continue
            matched.update({tag, row})
            classes, why = inspect_experiment(exp_dir)
            if why:
                skipped.append({"experiment": row, "target": None, "reason": why})
                log(f"{row}: skipped: {why}")
                continue
            rows.append(row)
            cells[row] = {}
            in_corpus[row] = in_corpus_ua(exp_dir)
            recognizer = None
            for target in recipes:
                if target is recipe:
                    continue
                pair = f"{row} -> {target.name}"
                try:
                    class_map = shared_classes(classes, target.classes)
                except ValueError as e:  # one list names an emotion twice: no one-to-one map
                    class_map, why = {}, str(e)
                else:
                    shared = " ".join(f"{s}={t}" for s, t in class_map.items()) or "none"
                    why = f"{len(class_map)} shared classes ({shared}); at least {MIN_SHARED} needed"
                if len(class_map) < MIN_SHARED:
                    skipped.append({"experiment": row, "target": target.name, "reason": why})
                    log(f"{pair}: skipped: {why}")
                    continue
                pair_dir = os.path.join(out, pair_dir_name(recipe.name, tag, target.name))
                try:
                    if is_up_to_date(pair_dir, exp_dir, target.data_dir, class_map, max_utts):
                        with open(os.path.join(pair_dir, "results.json")) as f:
                            results = json.load(f)
                        log(f"{pair}: up to date ({pair_dir})")
                    else:
                        if recognizer is None:
                            recognizer = EmotionRecognizer.from_dir(exp_dir, device)
                        results = evaluate(exp_dir, target.data_dir, class_map, pair_dir, device, command,
                                           target.corpus, max_utts, recognizer)
                        log(f"{pair}: UA {results['summary']['ua']['mean']:.2f} over "
                            f"{len(class_map)} classes -> {pair_dir}")
                except (OSError, ValueError) as e:
                    failed.append({"experiment": row, "target": target.name, "reason": str(e)})
                    log(f"{pair}: FAILED: {e}")
                    continue
                cells[row][target.name] = cell_of(results, out, pair_dir)
    if tags:
        unknown = [t for t in tags if t not in matched]
        if unknown:
            raise ValueError(f"--tags: no experiment {unknown[0]} under {' '.join(r.path + '/exp' for r in recipes)}")
    matrix = {
        "rows": rows, "columns": names, "cells": cells, "in_corpus_ua": in_corpus, "skipped": skipped,
        "failed": failed, "command": command,
        "recipes": {r.name: {"path": os.path.abspath(r.path), "corpus": r.corpus, "classes": r.classes}
                    for r in recipes},
        "protocol": {"ua": "mean over the experiment's runs, every run scored on all of the target's data/all",
                     "classes": "those both name (ser/emotions.py); chance = 100 / their number",
                     "collapse": f"the ensemble or at least half the runs: one class above {COLLAPSE_SHARE:g}% of "
                                 f"the predictions, or UA within {COLLAPSE_MARGIN:g} points of chance (or below)",
                     "max_utts": max_utts, "subsample": SUBSAMPLE_RULE if max_utts is not None else None},
    }
    write_text(os.path.join(out, "MATRIX.md"), matrix_markdown(matrix))
    write_json(os.path.join(out, "matrix.json"), matrix, indent=1)
    return matrix


def cell_text(cell: dict) -> str:
    text = f"{cell['ua']:.2f} (chance {cell['chance']:.2f})"
    return text + " **COLLAPSE**" if cell["collapse"] else text


def matrix_markdown(matrix: dict) -> str:
    columns = matrix["columns"]
    notes = {(s["experiment"], s["target"]): s["reason"] for s in matrix["skipped"]}
    notes.update({(f["experiment"], f["target"]): "FAILED: " + f["reason"] for f in matrix["failed"]})
    p = matrix["protocol"]
    lines = ["# Cross-corpus matrix", "",
             "Rows: trained experiments (recipe/tag); columns: the recipe whose data/all is scored. Each cell: UA (%) "
             f"of the experiment's runs, mean over runs, on the classes both name, with chance (100 / classes); "
             f"**COLLAPSE**: {p['collapse']}. The diagonal: the experiment's own in-corpus UA (its own protocol). "
             "Each cell's class map, ensemble UA and per-class recall are in its results.json and RESULTS.md.", ""]
    if p["max_utts"] is not None:
        lines += [f"- subsample: at most {p['max_utts']} utterances per target ({p['subsample']})"]
    lines += [f"- {name}: {r['path']} (corpus {r['corpus']}; classes {' '.join(r['classes'])})"
              for name, r in matrix["recipes"].items()]
    lines += [f"- command: `{matrix['command']}`" if matrix["command"] else "- command: (not recorded)", "",
              "| experiment | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in matrix["rows"]:
        texts = []
        for column in columns:
            if row.split("/")[0] == column:
                ua = matrix["in_corpus_ua"][row]
                texts.append("in-corpus " + ("n/a" if ua is None else f"{ua:.2f}"))
            elif column in matrix["cells"][row]:
                texts.append(cell_text(matrix["cells"][row][column]))
            else:
                texts.append("failed" if notes.get((row, column), "").startswith("FAILED") else "skipped")
        lines.append(f"| {row} | " + " | ".join(texts) + " |")
    if notes:
        lines += ["", "## Skipped and failed", ""]
        lines += [f"- {e}{'' if t is None else ' -> ' + t}: {why}" for (e, t), why in notes.items()]
    return "\n".join(lines + [""])
