"""Scoring an experiment: per-fold UA/WA/macro-F1/confusion, fold mean +- std, results.json and RESULTS.md.

An experiment is ``exp/<tag>/seed<s>/fold<k>/`` with test predictions in ``decode_test/predictions``. Every
number is stored with its protocol (corpus, class set, folds, validation source, selection rule, config hash,
git revision), so tables across recipes and papers compare like with like.
"""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
import yaml

from ser.atomic import write_json, write_text
from ser.card import write_card
from ser.datadir import label_error, read_table, read_utt2emo
from ser.metrics import classification_scores, mean_std, scores_from_confusion
from ser.rundir import mark_results_stale

METRICS = ("ua", "wa", "macro_f1")


def _numbered(pattern: str, prefix: str) -> dict[int, str]:
    found = {}
    for path in glob.glob(pattern):
        m = re.fullmatch(prefix + r"(\d+)", os.path.basename(path))
        if m and os.path.isdir(path):
            found[int(m.group(1))] = path
    return dict(sorted(found.items()))


def score_fold(fold_dir: str, test_dir: str, classes: list[str]) -> dict:
    """Scores of one fold's test predictions against the test data dir; writes scores.json and the confusion."""
    decode = os.path.join(fold_dir, "decode_test")
    pred_path = os.path.join(decode, "predictions")
    predictions = read_table(pred_path, 2, 2)
    reference = read_utt2emo(test_dir, classes)
    if set(predictions) != set(reference):
        missing = sorted(set(reference) - set(predictions))
        extra = sorted(set(predictions) - set(reference))
        raise ValueError(f"{pred_path}: predictions do not cover the test set {test_dir} "
                         f"({len(missing)} missing, e.g. {missing[:1]}; {len(extra)} unexpected, e.g. {extra[:1]})")
    index = {c: i for i, c in enumerate(classes)}
    keys = sorted(reference)
    for key in keys:
        error = label_error(predictions[key], classes)
        if error:
            raise ValueError(f"{pred_path}: {error} (utterance {key!r})")
    y_true = [index[reference[k]] for k in keys]
    y_pred = [index[predictions[k]] for k in keys]
    scores = classification_scores(y_true, y_pred, len(classes))
    utt2spk = read_table(os.path.join(test_dir, "utt2spk"), 2, 2)
    per_speaker = {}
    for spk in sorted(set(utt2spk[k] for k in keys)):
        idx = [i for i, k in enumerate(keys) if utt2spk[k] == spk]
        per_speaker[spk] = classification_scores([y_true[i] for i in idx], [y_pred[i] for i in idx], len(classes))["ua"]
    scores["per_speaker_ua"] = per_speaker
    selection_path = os.path.join(fold_dir, "selection.json")
    if os.path.isfile(selection_path):
        with open(selection_path) as f:
            scores["selection"] = json.load(f)
    write_json(os.path.join(decode, "scores.json"), scores, indent=1)
    from ser.plot import plot_training_curves

    label = run_label(fold_dir)
    write_confusion(np.array(scores["confusion"]), classes, os.path.join(decode, "confusion"),
                    f"{label}: UA {scores['ua']:.2f} WA {scores['wa']:.2f}")
    history_path = os.path.join(fold_dir, "history.json")
    if os.path.isfile(history_path):  # neural runs: the training curves beside the model
        with open(history_path) as f:
            history = json.load(f)
        if history:
            plot_training_curves(history, os.path.join(fold_dir, "curves.png"), label,
                                 scores.get("selection", {}).get("epoch"))
    return scores


def run_label(fold_dir: str) -> str:
    """``<tag> seed<s> fold<k>`` of an exp/<tag>/seed<s>/fold<k> dir: a title a reader can place."""
    parts = os.path.normpath(os.path.abspath(fold_dir)).split(os.sep)
    return " ".join(parts[-3:])


def write_confusion(matrix: np.ndarray, classes: list[str], path_stem: str, title: str) -> None:
    """``<stem>.txt`` (counts, rows true) and ``<stem>.png``."""
    from ser.plot import plot_confusion

    width = max(len(c) for c in classes) + 1
    lines = ["ref\\hyp".ljust(width) + "".join(c.rjust(width) for c in classes)]
    for c, row in zip(classes, matrix.tolist()):
        lines.append(c.ljust(width) + "".join(str(v).rjust(width) for v in row))
    write_text(path_stem + ".txt", "\n".join(lines) + "\n")
    plot_confusion(matrix, classes, path_stem + ".png", title)


def summarize(per_seed: dict[int, dict[int, dict]]) -> dict:
    """Mean +- std over folds per seed; over all runs; and the spread of the per-seed fold means."""
    summary = {}
    for metric in METRICS:
        all_runs = [s[metric] for folds in per_seed.values() for s in folds.values()]
        seed_means = [mean_std(s[metric] for s in folds.values())[0] for folds in per_seed.values()]
        mean, std = mean_std(all_runs)
        summary[metric] = {"mean": mean, "std_over_runs": std,
                           "std_over_folds": float(np.mean([mean_std(s[metric] for s in f.values())[1]
                                                            for f in per_seed.values()])),
                           "seed_means": seed_means, "seed_std": mean_std(seed_means)[1],
                           "seed_range": float(max(seed_means) - min(seed_means))}
    speaker_uas = [ua for folds in per_seed.values() for s in folds.values() for ua in s["per_speaker_ua"].values()]
    summary["speaker_averaged_ua"] = float(np.mean(speaker_uas)) if speaker_uas else None
    return summary


def read_posteriors(path: str, num_classes: int) -> dict[str, np.ndarray]:
    """A decode dir's ``posteriors`` file -> {utt: (C,) array}; a malformed line is an error naming it."""
    table = {}
    for lineno, (utt, values) in enumerate(read_table(path, 2).items(), 1):
        try:
            row = np.array([float(v) for v in values.split()])
        except ValueError:
            row = np.array([])
        if row.shape != (num_classes,) or not np.all(np.isfinite(row)):
            raise ValueError(f"{path}:{lineno}: expected {num_classes} finite posteriors for {utt}")
        table[utt] = row
    return table


def ensemble_scores(run_dirs: list[str], set_name: str, data_dir: str, classes: list[str]) -> dict | None:
    """Scores of the mean posteriors of ``run_dirs`` (one fold, several seeds) on ``decode_<set_name>``; None when
    a run has not decoded that set."""
    paths = [os.path.join(r, f"decode_{set_name}", "posteriors") for r in run_dirs]
    if not all(os.path.isfile(p) for p in paths):
        return None
    tables = [read_posteriors(p, len(classes)) for p in paths]
    reference = read_utt2emo(data_dir, classes)
    for path, table in zip(paths, tables):
        if set(table) != set(reference):
            raise ValueError(f"{path}: its utterances differ from {data_dir}/utt2emo")
    keys = sorted(reference)
    index = {c: i for i, c in enumerate(classes)}
    y_true = [index[reference[k]] for k in keys]
    mean = np.mean([[t[k] for k in keys] for t in tables], axis=0)
    single = [classification_scores(y_true, np.array([t[k] for k in keys]).argmax(1), len(classes))["ua"]
              for t in tables]
    return {**classification_scores(y_true, mean.argmax(1), len(classes)), "single_run_ua": single}


def seed_ensemble(seed_dirs: dict[int, str], folds: list[int], data_dir: str, classes: list[str]) -> dict | None:
    """The seeds of each fold as one system (their test posteriors averaged), with the validation evidence for it:
    the same ensemble on each fold's validation set (training-fold speakers) against the single runs there.
    None when a run has no test posteriors."""
    per_fold, valid = {}, {}
    for k in folds:
        runs = [os.path.join(d, f"fold{k}") for d in seed_dirs.values()]
        per_fold[k] = ensemble_scores(runs, "test", os.path.join(data_dir, f"fold{k}", "test"), classes)
        if per_fold[k] is None:
            return None
        scored = ensemble_scores(runs, "valid", os.path.join(data_dir, f"fold{k}", "valid"), classes)
        if scored is not None:
            valid[k] = scored
    summary = {m: dict(zip(("mean", "std_over_folds"), mean_std(r[m] for r in per_fold.values()))) for m in METRICS}
    evidence = None
    if len(valid) == len(folds):
        evidence = {"ensemble_ua": mean_std(v["ua"] for v in valid.values())[0],
                    "single_run_ua": mean_std(u for v in valid.values() for u in v["single_run_ua"])[0]}
    return {"seeds": sorted(seed_dirs), "rule": "mean of the seeds' posteriors per fold", "summary": summary,
            "valid": evidence,
            "folds": {str(k): {m: r[m] for m in (*METRICS, "per_class_recall", "confusion")}
                      for k, r in per_fold.items()}}


def _configs_of(run_dirs: list[str]) -> dict[str, list[str]]:
    """{hash of a run's config.yaml with its seed left out: the runs trained with it}."""
    from ser.config import config_hash

    runs_of: dict[str, list[str]] = {}
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, "config.yaml")) as f:
            config = yaml.safe_load(f)
        config.pop("seed", None)
        runs_of.setdefault(config_hash(config), []).append(run_dir)
    return runs_of


def score_experiment(exp_dir: str, data_dir: str, command: str = "", allow_mixed_configs: bool = False) -> dict:
    """Score every seed and fold of exp_dir against data_dir/fold<k>/test; write results.json and RESULTS.md.
    Runs trained with different configs (their seeds aside) are not averaged unless ``allow_mixed_configs``. A
    refusal marks the results written before stale (ser.rundir.mark_results_stale)."""
    try:
        return _score_experiment(exp_dir, data_dir, command, allow_mixed_configs)
    except ValueError as refusal:
        mark_results_stale(exp_dir, f"stage 4 refused to score the experiment again ({refusal})")
        raise


def _score_experiment(exp_dir: str, data_dir: str, command: str, allow_mixed_configs: bool) -> dict:
    with open(os.path.join(data_dir, "protocol.json")) as f:
        protocol = json.load(f)
    classes = protocol["classes"]
    seeds = _numbered(os.path.join(exp_dir, "seed*"), "seed")
    if not seeds:
        raise ValueError(f"{exp_dir}: no seed<s>/fold<k> runs to score")
    per_seed: dict[int, dict[int, dict]] = {}
    expected_folds = sorted(int(k) for k in protocol["folds"])
    run_dirs = []
    for seed, seed_dir in seeds.items():
        folds = _numbered(os.path.join(seed_dir, "fold*"), "fold")
        if not folds:
            raise ValueError(f"{seed_dir}: no fold<k> runs to score")
        per_seed[seed] = {k: score_fold(folds[k], os.path.join(data_dir, f"fold{k}", "test"), classes)
                          for k in folds}
        run_dirs += folds.values()
    folds_scored = sorted({k for f in per_seed.values() for k in f})
    runs_of_config = _configs_of(run_dirs)
    if len(runs_of_config) > 1 and not allow_mixed_configs:
        groups = "; ".join(f"config {h}: {', '.join(os.path.relpath(r, exp_dir) for r in runs)}"
                           for h, runs in runs_of_config.items())
        raise ValueError(f"{exp_dir}: its runs were trained with {len(runs_of_config)} different configs (seed "
                         f"aside), which are not averaged: {groups}. Retrain them alike, or score with "
                         "--allow-mixed-configs")
    first_run = run_dirs[0]
    with open(os.path.join(first_run, "config.yaml")) as f:
        config = yaml.safe_load(f)
    with open(os.path.join(first_run, "run.json")) as f:
        run = json.load(f)
    results = {
        "experiment": os.path.basename(os.path.normpath(exp_dir)),
        "exp_dir": os.path.abspath(exp_dir),
        "protocol": {**protocol, "folds_scored": folds_scored, "complete": folds_scored == expected_folds,
                     "seeds": sorted(per_seed), "selection": selection_rule(config),
                     "validation": f"held out from {protocol.get('valid_source', 'training-fold speakers')} only",
                     "speaker_norm": config.get("speaker_norm", "none"), "frontend": config.get("frontend"),
                     "frontend_model_type": checkpoint_model_type(config),
                     "mixup": run.get("mixup", "none" if config.get("system") == "classic" else config["augment"])},
        "config_hash": run["identity"]["config_hash"],
        "git_revision": run.get("git_revision", "unknown"),
        "config": config,
        "command": command,
        "mixed_configs": sorted(runs_of_config) if len(runs_of_config) > 1 else None,
        "summary": summarize(per_seed),
        "seed_ensemble": (seed_ensemble(seeds, folds_scored, data_dir, classes)
                          if len(per_seed) > 1 and all(sorted(f) == folds_scored for f in per_seed.values())
                          else None),
        "runs": {str(s): {str(k): {m: v[m] for m in (*METRICS, "num_utts", "per_class_recall", "confusion",
                                                        "per_speaker_ua", "selection") if m in v}
                          for k, v in folds.items()} for s, folds in per_seed.items()},
    }
    pooled = np.sum([r["confusion"] for folds in per_seed.values() for r in folds.values()], axis=0)
    results["pooled"] = {**scores_from_confusion(pooled), "confusion": pooled.tolist(),
                         "what": "every test utterance of every fold and seed in one confusion matrix"}
    write_confusion(pooled, classes, os.path.join(exp_dir, "confusion_pooled"),
                    f"{results['experiment']}: {len(folds_scored)} folds x {len(per_seed)} seed(s) pooled "
                    f"({int(pooled.sum())} decisions)")
    write_json(os.path.join(exp_dir, "results.json"), results, indent=1)
    write_text(os.path.join(exp_dir, "RESULTS.md"), results_markdown(results))
    trained = [d for d in run_dirs if os.path.isfile(os.path.join(d, "model.pth"))]  # classifiers of audio
    for model_dir in [exp_dir, *trained] if trained else []:  # their model cards, now with test metrics
        write_card(model_dir)
    return results


def selection_rule(config: dict) -> str:
    """How a fold's model was chosen: the neural model_selection, or the classic reference's speaker-grouped CV."""
    return "speaker_grouped_cv" if config.get("system") == "classic" else config["model_selection"]


def checkpoint_model_type(config: dict) -> str | None:
    """The model_type in the config.json of a pretrained front-end's checkpoint (frontend_conf.path, or the hub's
    model_id when downloaded); None for front-ends without one or where the directory is gone."""
    frontend_conf = config.get("frontend_conf") or {}
    path = frontend_conf.get("path")
    if not path:
        return frontend_conf.get("model_id") if frontend_conf.get("download") else None
    try:
        with open(os.path.join(path, "config.json")) as f:
            return json.load(f).get("model_type")
    except (OSError, ValueError):
        return None


def system_description(config: dict, model_type: str | None = None) -> str:
    """One line naming the system; model_type: its front-end's checkpoint type (checkpoint_model_type)."""
    if config.get("system") == "classic":
        return f"classic reference: openSMILE `{config['feature_set']}` functionals + logistic regression"
    fused = f", fused `{config['functionals']}` functionals" if config.get("functionals", "none") != "none" else ""
    checkpoint = f" ({model_type})" if model_type else ""
    return (f"front-end `{config['frontend']}`{checkpoint}{fused}, encoder `{config['encoder']}`"
            f" ({config['encoder_conf'].get('pooling', 'mean')} pooling), augment `{config['augment']}`")


PROTOCOL_KEYS = ("corpus", "class_set", "fold_scheme", "valid_mode", "speaker_norm")


def protocol_name(protocol: dict) -> str:
    """The protocol fields that make numbers comparable; results under different names never share a column."""
    return ", ".join(f"{k} {protocol.get(k, 'none' if k == 'speaker_norm' else '?')}" for k in PROTOCOL_KEYS)


def spread(value: float, count: int) -> str:
    """A std printed as a number, or n/a where it spans fewer than two items."""
    return f"{value:.2f}" if count > 1 else "n/a"


def results_markdown(results: dict) -> str:
    p = results["protocol"]
    s = results["summary"]
    class_set = f" (class set `{p['class_set']}`)" if p.get("class_set") else ""
    lines = [f"# {results['experiment']}: {p.get('corpus', '?')}", "",
             f"- classes ({len(p['classes'])}): {' '.join(p['classes'])}{class_set}",
             f"- folds: {len(p['folds'])} ({p.get('fold_scheme', 'speaker-independent')}); scored: {p['folds_scored']}"
             + ("" if p["complete"] else " **(incomplete)**")
             + ("" if p.get("speaker_independent", True) else " **(speaker-dependent: test speakers also train)**"),
             f"- validation: {p['validation']} ({p.get('valid_mode', '?')}, fraction {p.get('valid_fraction', '?')});"
             f" model selection: {p['selection']}",
             f"- seeds: {p['seeds']}; config hash `{results['config_hash']}`; git `{results['git_revision']}`",
             f"- speaker normalisation: `{p.get('speaker_norm', 'none')}`"
             + (" (per-speaker statistics, test speakers' from their own test audio: a transductive protocol)"
                if p.get("speaker_norm", "none") != "none" else ""),
             f"- {system_description(results['config'], p.get('frontend_model_type'))}; mixup: {p.get('mixup', '?')}",
             f"- command: `{results['command']}`" if results["command"] else "- command: (not recorded)", "",
             "| seed | fold | UA | WA | macro-F1 | utts | selected epoch |", "|---|---|---|---|---|---|---|"]
    for seed, folds in results["runs"].items():
        for fold, r in folds.items():
            epoch = r.get("selection", {}).get("epoch", "-")
            lines.append(f"| {seed} | {fold} | {r['ua']:.2f} | {r['wa']:.2f} | {r['macro_f1']:.2f} | {r['num_utts']} "
                         f"| {epoch} |")
    lines += ["", "| metric | mean | std over folds | seed spread (std of seed means) |", "|---|---|---|---|"]
    num_folds, num_seeds = len(p["folds_scored"]), len(p["seeds"])
    for metric in METRICS:
        m = s[metric]
        lines.append(f"| {metric.upper() if metric != 'macro_f1' else 'macro-F1'} | {m['mean']:.2f} | "
                     f"{spread(m['std_over_folds'], num_folds)} | {spread(m['seed_std'], num_seeds)} |")
    pooled = results.get("pooled")
    if pooled:
        lines += ["", f"Per class, {pooled['num_utts']} test decisions pooled over folds and seeds "
                  "(`confusion_pooled.txt`, `confusion_pooled.png`):", "",
                  "| class | recall | precision | utterances |", "|---|---|---|---|"]
        support = np.sum(pooled["confusion"], axis=1)
        for c, r, q, n in zip(p["classes"], pooled["per_class_recall"], pooled["per_class_precision"], support):
            lines.append(f"| {c} | {'n/a' if r is None else f'{r:.2f}'} | {'n/a' if q is None else f'{q:.2f}'} "
                         f"| {int(n)} |")
    if s.get("speaker_averaged_ua") is not None:
        lines += ["", f"Speaker-averaged UA: {s['speaker_averaged_ua']:.2f}"]
    ensemble = results.get("seed_ensemble")
    if ensemble:
        e = ensemble["summary"]
        lines += ["", f"Seed ensemble (another system: the posteriors of seeds {ensemble['seeds']} averaged per fold): "
                  f"UA {e['ua']['mean']:.2f} +- {e['ua']['std_over_folds']:.2f}, WA {e['wa']['mean']:.2f}, "
                  f"macro-F1 {e['macro_f1']['mean']:.2f}."]
        if ensemble["valid"]:
            v = ensemble["valid"]
            lines.append(f"On the validation sets (training-fold speakers) the ensemble's UA is {v['ensemble_ua']:.2f}"
                         f" against {v['single_run_ua']:.2f} for its single runs.")
    return "\n".join(lines) + "\n"
