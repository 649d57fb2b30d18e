"""Model cards: what a trained model is, kept beside it as ``model_card.json`` (in every run dir, in an
experiment dir once it is scored, and in every packed archive) and printed by ``ser-classify --info MODEL``.

A card records the corpus and classes; the protocol (folds, fold scheme, valid_mode, speaker_norm); the test
metrics with their spread over folds (once stage 4 scored the experiment); the training data's licence (the corpus
module's LICENCE); ser's version and git revision; the config hash. A model trained on synthetic audio says so.
Paths in a card are relative to the model dir (or left out): a model dir can be moved or packed.
"""

from __future__ import annotations

import json
import os

import yaml

from ser.atomic import write_json
from ser.corpora import CORPORA, corpus_module
from ser.rundir import model_dirs
from ser.version import __version__

CARD_FILE = "model_card.json"
SCORED_METRICS = ("ua", "wa", "macro_f1")


def _json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _protocol_of(train_dir: str | None) -> dict | None:
    """protocol.json of the data root a run's training dir lies in (data/fold<k>/train -> data/protocol.json)."""
    path = train_dir
    for _ in range(2):
        if not path:
            return None
        path = os.path.dirname(os.path.normpath(path))
        found = _json(os.path.join(path, "protocol.json"))
        if found is not None:
            return found
    return None


def corpus_licence(corpus: str | None) -> tuple[str, bool]:
    """(licence, synthetic) of a registered corpus; an unregistered one's licence is unknown."""
    if corpus in CORPORA:
        module = corpus_module(corpus)
        return module.LICENCE, bool(getattr(module, "SYNTHETIC", False))
    return f"unknown ({corpus or 'the corpus'} is not a registered corpus of ser.corpora)", False


def _experiment_of(model_path: str) -> tuple[str | None, str | None, str | None]:
    """(experiment dir with results.json, seed, fold) of a run dir exp/<tag>/seed<s>/fold<k>, or of the experiment."""
    if os.path.isfile(os.path.join(model_path, "results.json")):
        return model_path, None, None
    fold_dir = os.path.normpath(os.path.abspath(model_path))
    seed_dir = os.path.dirname(fold_dir)
    exp = os.path.dirname(seed_dir)
    if os.path.basename(fold_dir).startswith("fold") and os.path.isfile(os.path.join(exp, "results.json")):
        return exp, os.path.basename(seed_dir)[4:], os.path.basename(fold_dir)[4:]
    return None, None, None


def _metrics(results: dict | None, seed: str | None, fold: str | None) -> dict | None:
    if results is None:
        return None
    summary = results.get("summary", {})
    metrics = {"experiment": {m: {k: summary[m].get(k) for k in ("mean", "std_over_folds", "std_over_runs")}
                              for m in SCORED_METRICS if isinstance(summary.get(m), dict)},
               "folds_scored": results.get("protocol", {}).get("folds_scored"),
               "seeds": results.get("protocol", {}).get("seeds")}
    run = results.get("runs", {}).get(seed or "", {}).get(fold or "")
    if run:
        metrics["this_fold"] = {m: run[m] for m in SCORED_METRICS if m in run}
        metrics["this_fold"]["num_utts"] = run.get("num_utts")
    return metrics


def build_card(model_path: str) -> dict:
    """The card of a run or an experiment, from the files a training run and stage 4 leave."""
    runs = model_dirs(model_path)
    with open(os.path.join(runs[0], "config.yaml")) as f:
        config = yaml.safe_load(f)
    run = _json(os.path.join(runs[0], "run.json")) or {}
    identity = run.get("identity", {})
    train_dir = run.get("train_dir")
    if train_dir and run.get("paths_relative_to") == "run dir":
        train_dir = os.path.join(runs[0], train_dir)
    protocol = _protocol_of(train_dir) or {}
    exp, seed, fold = _experiment_of(model_path)
    results = _json(os.path.join(exp, "results.json")) if exp else None
    if not protocol and results:
        protocol = results.get("protocol", {})
    corpus = protocol.get("corpus")
    licence, synthetic = corpus_licence(corpus)
    card = {
        "corpus": corpus or "unknown (the run's data dir and protocol.json are not where training left them)",
        "synthetic_training_audio": synthetic,
        "training_data_licence": licence,
        "classes": identity.get("classes"),
        "class_set": protocol.get("class_set"),
        "runs": len(runs),
        "protocol": {"folds": protocol.get("num_folds"), "fold_scheme": protocol.get("fold_scheme"),
                     "speaker_independent": protocol.get("speaker_independent"),
                     "valid_mode": protocol.get("valid_mode"), "valid_source": protocol.get("valid_source"),
                     "speaker_norm": config.get("speaker_norm"), "selection": config.get("model_selection")},
        "model": {"frontend": config.get("frontend"), "encoder": config.get("encoder"),
                  "functionals": config.get("functionals")},
        "test_metrics": _metrics(results, seed, fold),
        "ser_version": __version__,
        "git_revision": run.get("git_revision", "unknown"),
        "config_hash": identity.get("config_hash"),
    }
    card["summary"] = card_summary(card)
    return card


def card_summary(card: dict) -> str:
    metrics = (card.get("test_metrics") or {}).get("experiment", {})
    ua = metrics.get("ua")
    scored = f"test UA {_number(ua['mean'])} +- {_number(ua['std_over_folds'])}" if ua and ua["mean"] is not None \
        else "not scored"
    synthetic = " [SYNTHETIC training audio]" if card.get("synthetic_training_audio") else ""
    return f"{card.get('corpus')}{synthetic}, {len(card.get('classes') or [])} classes, {scored}"


def _number(value) -> str:
    return "?" if value is None else f"{value:.2f}"


def write_card(model_path: str) -> dict:
    """Build the card of a run or an experiment and write it to model_path/model_card.json."""
    card = build_card(model_path)
    write_json(os.path.join(model_path, CARD_FILE), card, indent=1)
    return card


def read_card(model_path: str) -> dict:
    """The stored card of a model path; a model without one (trained by an older ser) gets one built now."""
    card = _json(os.path.join(model_path, CARD_FILE))
    return card if card is not None else build_card(model_path)


def synthetic_warning(card: dict, source: str) -> str | None:
    if not card.get("synthetic_training_audio"):
        return None
    return (f"{source}: trained on synthetic audio ({card.get('corpus')} corpus): its decisions on real speech "
            "mean nothing")


def format_card(card: dict, source: str) -> str:
    """The card as text, one fact per line."""
    p, m = card.get("protocol", {}), card.get("model", {})
    lines = [f"model: {source}",
             f"corpus: {card.get('corpus')}" + ("  (SYNTHETIC audio)" if card.get("synthetic_training_audio") else ""),
             f"training data licence: {card.get('training_data_licence')}",
             f"classes: {' '.join(card.get('classes') or [])} (class set {card.get('class_set')})",
             f"protocol: {p.get('folds')} folds ({p.get('fold_scheme')}), speaker independent "
             f"{p.get('speaker_independent')}, valid_mode {p.get('valid_mode')}, speaker_norm "
             f"{p.get('speaker_norm')}, selection {p.get('selection')}",
             f"model: {card.get('runs')} run(s); frontend {m.get('frontend')}, encoder {m.get('encoder')}, "
             f"functionals {m.get('functionals')}"]
    metrics = card.get("test_metrics")
    if not metrics:
        lines.append("test metrics: not scored (stage 4 writes them)")
    else:
        lines.append("test metrics (mean +- std over folds, std over runs): " + ", ".join(
            f"{k} {_number(v['mean'])} +- {_number(v['std_over_folds'])} ({_number(v['std_over_runs'])})"
            for k, v in metrics["experiment"].items()) + f"; folds {metrics.get('folds_scored')}, seeds "
            f"{metrics.get('seeds')}")
        if metrics.get("this_fold"):
            lines.append("this fold: " + ", ".join(f"{k} {v}" for k, v in metrics["this_fold"].items()))
    lines.append(f"ser {card.get('ser_version')}, git revision {card.get('git_revision')}, config hash "
                 f"{card.get('config_hash')}")
    return "\n".join(lines)
