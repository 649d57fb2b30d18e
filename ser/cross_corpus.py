"""Cross-corpus evaluation: every model of an experiment scored on another corpus's data dir, through a class map.

    python -m ser.bin.cross_corpus --exp-dir egs/ravdess/exp/train_fusion --data-dir egs/iemocap/data/all \
        --class-map "angry=ang happy=hap neutral=neu sad=sad" --out egs/ravdess/exp/train_fusion_on_iemocap

The class map pairs a model class with a class of the target data dir (``model=target``); only the mapped classes
are scored. A target utterance whose label is not mapped is left out (and counted); a model's decision is the
mapped class of highest posterior, its posteriors over the mapped classes renormalised. Every run of the
experiment (each fold and seed: none of them saw the target corpus) is scored on all of the target's audio, read
through its wav.scp as its own stage 1 would; the mean +- std over runs is the result, and the ensemble of all
runs (posteriors averaged) is reported beside it. results.json records the protocol as cross-corpus, so
compare_results puts it in a table of its own.

The report gives each mapped class's recall (of the ensemble and the mean over runs), the chance level of UA
(100 / number of scored classes), and flags a collapse: one class taking more than 60% of the predictions, or UA
no more than 2 points above chance (a "COLLAPSE" line in RESULTS.md, ``collapse`` in results.json). ``max_utts``
scores a class-stratified subsample, the same for every model (recorded in the protocol). results.json records a
digest of its inputs (the runs' weights and configs, the target's utt2emo and wav.scp, the class map and the
subsample), so a caller can tell a result that is still up to date (``is_up_to_date``).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ser.atomic import write_json, write_text
from ser.datadir import read_table
from ser.metrics import classification_scores, mean_std

METRICS = ("ua", "wa", "macro_f1")
COLLAPSE_SHARE = 60.0  # % of the predictions one class may take before the system counts as collapsed
COLLAPSE_MARGIN = 2.0  # UA points above chance below which the system counts as collapsed
RUN_FILES = ("model.pth", "config.yaml", "run.json", "cmvn.ark", "fbank.conf")  # what a run's posteriors depend on
SUBSAMPLE_RULE = ("class-stratified: each class's share of max_utts in proportion to its count (largest remainder, "
                  "at least one each), its utterances taken in the order of the SHA-1 of their keys")


def parse_class_map(text: str) -> dict[str, str]:
    """``"a=x b=y"`` (or one pair per line of a file) -> {model class: target class}."""
    pairs = {}
    for item in text.split():
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            raise ValueError(f"--class-map: {item!r} is not MODEL_CLASS=TARGET_CLASS")
        if source in pairs:
            raise ValueError(f"--class-map: {source} is mapped twice")
        pairs[source] = target
    if not pairs:
        raise ValueError("--class-map: no pairs")
    if len(set(pairs.values())) != len(pairs):
        raise ValueError("--class-map: two model classes map to one target class; map one each")
    return pairs


def chance_ua(num_classes: int) -> float:
    """UA (in %) of a system that guesses: 100 / the number of scored classes."""
    return 100.0 / num_classes


def collapse_check(y_true, posteriors: np.ndarray, classes: list[str]) -> dict:
    """Whether one system's decisions collapsed: a class above COLLAPSE_SHARE % of the predictions, or UA within
    COLLAPSE_MARGIN points of chance (or below it). posteriors (N, C) over ``classes``; y_true class indices."""
    y_pred = np.asarray(posteriors).argmax(axis=1)
    counts = np.bincount(y_pred, minlength=len(classes))
    share = 100.0 * counts / max(int(counts.sum()), 1)
    ua = classification_scores(y_true, y_pred, len(classes))["ua"]
    chance = chance_ua(len(classes))
    reasons = []
    top = int(share.argmax())
    if share[top] > COLLAPSE_SHARE:
        reasons.append(f"{classes[top]} takes {share[top]:.0f}% of the predictions (> {COLLAPSE_SHARE:g}%)")
    if not ua > chance + COLLAPSE_MARGIN:
        reasons.append(f"UA {ua:.2f} is within {COLLAPSE_MARGIN:g} points of chance ({chance:.2f}) or below it")
    return {"collapsed": bool(reasons), "reasons": reasons, "ua": ua, "chance": chance,
            "prediction_share": {c: float(p) for c, p in zip(classes, share)}}


def stratified_subsample(keys: list[str], labels: dict[str, str], max_utts: int) -> list[str]:
    """At most max_utts of keys, class-stratified and deterministic (SUBSAMPLE_RULE); sorted."""
    by_class: dict[str, list[str]] = {}
    for k in keys:
        by_class.setdefault(labels[k], []).append(k)
    if len(keys) <= max_utts:
        return sorted(keys)
    if max_utts < len(by_class):
        raise ValueError(f"max_utts {max_utts} is below the {len(by_class)} scored classes; give at least one each")
    classes = sorted(by_class)
    exact = {c: max_utts * len(by_class[c]) / len(keys) for c in classes}
    take = {c: max(1, int(exact[c])) for c in classes}
    for c in sorted(classes, key=lambda c: (int(exact[c]) - exact[c], c)):  # largest remainder first
        if sum(take.values()) >= max_utts:
            break
        if take[c] < len(by_class[c]):
            take[c] += 1
    while sum(take.values()) > max_utts:  # the at-least-one floor overshot: trim the largest shares
        c = max(classes, key=lambda c: (take[c], c))
        take[c] -= 1
    chosen = []
    for c in classes:
        chosen += sorted(by_class[c], key=lambda k: hashlib.sha1(k.encode()).hexdigest())[:take[c]]
    return sorted(chosen)


def inputs_digest(exp_dir: str, data_dir: str, class_map: dict[str, str], max_utts: int | None = None) -> str:
    """A digest of what a cross-corpus result depends on: each run's weights and configs (or the model archive),
    the target's utt2emo and wav.scp, the class map and the subsample size."""
    from ser.rundir import model_dirs
    from ser.stamps import inputs_digest as digest

    if os.path.isfile(exp_dir):
        paths = [os.path.abspath(exp_dir)]
    else:
        paths = [os.path.join(os.path.abspath(d), name) for d in model_dirs(exp_dir) for name in RUN_FILES
                 if os.path.isfile(os.path.join(d, name))]
    paths += [os.path.join(os.path.abspath(data_dir), name) for name in ("utt2emo", "wav.scp")]
    return digest(paths, json.dumps([sorted(class_map.items()), max_utts]))


def is_up_to_date(out_dir: str, exp_dir: str, data_dir: str, class_map: dict[str, str],
                  max_utts: int | None = None) -> bool:
    """Whether out_dir holds the result of exactly these inputs (results.json, RESULTS.md and posteriors)."""
    path = os.path.join(out_dir, "results.json")
    if not all(os.path.isfile(os.path.join(out_dir, n)) for n in ("results.json", "RESULTS.md", "posteriors")):
        return False
    try:
        with open(path) as f:
            recorded = json.load(f)["protocol"].get("inputs_digest")
        return recorded == inputs_digest(exp_dir, data_dir, class_map, max_utts)
    except (OSError, ValueError, KeyError):
        return False


def mapped_posteriors(log_posteriors: np.ndarray, columns: list[int]) -> np.ndarray:
    """(runs, classes) log posteriors -> posteriors over the mapped columns, renormalised in the log domain (a
    model sure of an unmapped class has mapped probabilities that underflow to 0)."""
    mapped = log_posteriors[:, columns]
    mapped = np.exp(mapped - mapped.max(axis=1, keepdims=True))
    return mapped / mapped.sum(axis=1, keepdims=True)


def evaluate(exp_dir: str, data_dir: str, class_map: dict[str, str], out_dir: str, device: str = "cpu",
             command: str = "", target_corpus: str | None = None, max_utts: int | None = None,
             recognizer=None) -> dict:
    """Score exp_dir on data_dir through class_map into out_dir; ``recognizer``: exp_dir already loaded."""
    from ser.audio import AudioError, load_mono
    from ser.recognizer import MIN_SECONDS, EmotionRecognizer

    digest = inputs_digest(exp_dir, data_dir, class_map, max_utts)
    if recognizer is None:
        recognizer = EmotionRecognizer.from_dir(exp_dir, device)
    unknown = sorted(set(class_map) - set(recognizer.classes))
    if unknown:
        raise ValueError(f"--class-map: {unknown[0]} is not a class of the model ({' '.join(recognizer.classes)})")
    labels = read_table(os.path.join(data_dir, "utt2emo"), 2, 2)
    wavs = read_table(os.path.join(data_dir, "wav.scp"), 2)
    targets = list(class_map.values())
    missing = sorted(set(targets) - set(labels.values()))
    if missing:
        raise ValueError(f"{data_dir}/utt2emo: no utterance of target class {missing[0]}")
    keys = [k for k in sorted(labels) if labels[k] in targets]
    if set(keys) - set(wavs):
        raise ValueError(f"{data_dir}: utt2emo and wav.scp hold different utterances; run utils/fix_data_dir.sh")
    mapped_count = len(keys)
    if max_utts is not None:
        keys = stratified_subsample(keys, labels, max_utts)
    columns = [recognizer.classes.index(c) for c in class_map]  # model columns in the order of `targets`

    per_run = np.zeros((len(recognizer.members), len(keys), len(targets)))
    for u, key in enumerate(keys):
        cache: dict[int, np.ndarray] = {}

        def samples_at(rate: int, spec=wavs[key], cache=cache):
            if rate not in cache:
                try:
                    cache[rate] = load_mono(spec, rate, None, MIN_SECONDS, command_allowed=True)
                except AudioError as e:
                    raise AudioError(f"{data_dir}/wav.scp: {key}: {e}") from None
            return cache[rate]

        per_run[:, u] = mapped_posteriors(recognizer.posteriors_of_samples(samples_at, log=True), columns)
    y_true = [targets.index(labels[k]) for k in keys]
    runs = {os.path.relpath(m.model_dir, exp_dir): classification_scores(y_true, per_run[r].argmax(1), len(targets))
            for r, m in enumerate(recognizer.members)}
    ensemble = per_run.mean(axis=0)
    run_checks = {name: collapse_check(y_true, per_run[r], targets) for r, name in enumerate(runs)}
    ensemble_check = collapse_check(y_true, ensemble, targets)
    collapsed_runs = [name for name, c in run_checks.items() if c["collapsed"]]
    collapse = {"collapsed": ensemble_check["collapsed"] or 2 * len(collapsed_runs) >= len(runs),
                "rule": f"the ensemble, or at least half the runs: one class above {COLLAPSE_SHARE:g}% of the "
                        f"predictions, or UA within {COLLAPSE_MARGIN:g} points of chance (or below)",
                "ensemble": ensemble_check, "runs_collapsed": collapsed_runs,
                "runs": {name: c["reasons"] for name, c in run_checks.items()}}
    ensemble_scores = classification_scores(y_true, ensemble.argmax(1), len(targets))
    recall = {}
    for i, (source, target) in enumerate(class_map.items()):
        values = [r["per_class_recall"][i] for r in runs.values() if r["per_class_recall"][i] is not None]
        recall[target] = {"model_class": source, "ensemble": ensemble_scores["per_class_recall"][i],
                          "run_mean": float(np.mean(values)) if values else None}
    with open(os.path.join(recognizer.members[0].model_dir, "run.json")) as f:
        run = json.load(f)
    train_corpus = _corpus_of(exp_dir)
    test_corpus = target_corpus or _corpus_of_data(data_dir)
    scheme = "cross-corpus (every run on all of the target data)" if max_utts is None else (
        f"cross-corpus (every run on a class-stratified subsample: at most {max_utts} of the target's "
        f"{mapped_count} utterances of mapped classes)")
    summary = {}
    for m in METRICS:
        mean, std = mean_std(s[m] for s in runs.values())
        summary[m] = {"mean": mean, "std_over_folds": std, "seed_means": [], "seed_std": 0.0}
    results = {
        "experiment": f"{os.path.basename(os.path.normpath(exp_dir))} on {test_corpus}",
        "exp_dir": os.path.abspath(exp_dir),
        "protocol": {"kind": "cross_corpus", "corpus": f"{train_corpus} -> {test_corpus}",
                     "class_set": "mapped: " + " ".join(f"{s}={t}" for s, t in class_map.items()),
                     "classes": targets, "fold_scheme": scheme,
                     "valid_mode": "as trained", "speaker_norm": "none", "target_data_dir": os.path.abspath(data_dir),
                     "folds": {name: {} for name in runs}, "folds_scored": list(runs), "complete": True,
                     "seeds": sorted({int(n.split("/")[0][4:]) for n in runs if n.startswith("seed")}) or [None],
                     "selection": recognizer.members[0].config["model_selection"],
                     "utterances_scored": len(keys), "utterances_left_out": len(labels) - mapped_count,
                     "subsample": None if max_utts is None else {"max_utts": max_utts, "of": mapped_count,
                                                                 "rule": SUBSAMPLE_RULE},
                     "chance_ua": chance_ua(len(targets)), "inputs_digest": digest},
        "config_hash": run["identity"]["config_hash"],
        "git_revision": run.get("git_revision", "unknown"),
        "config": recognizer.members[0].config,
        "command": command,
        "summary": summary,
        "runs": runs,
        "ensemble": ensemble_scores,
        "per_class_recall": recall,
        "collapse": collapse,
    }
    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, "posteriors"), "".join(
        f"{k} " + " ".join(f"{p:.6f}" for p in row) + "\n" for k, row in zip(keys, ensemble)))
    write_text(os.path.join(out_dir, "RESULTS.md"), results_markdown(results))
    write_json(os.path.join(out_dir, "results.json"), results, indent=1)  # last: the mark of a finished result
    return results


def results_markdown(results: dict) -> str:
    p, s, e = results["protocol"], results["summary"]["ua"], results["ensemble"]
    sub = p.get("subsample")
    scored = (f"{p['utterances_scored']} utterances scored" if not sub else
              f"{p['utterances_scored']} of {sub['of']} utterances scored (a subsample: {sub['rule']})")

    def pct(x):
        return "n/a" if x is None else f"{x:.2f}"

    collapse = results["collapse"]
    lines = [
        f"# {results['experiment']}: cross-corpus", "",
        f"- model: {results['exp_dir']} ({len(results['runs'])} runs); target: {p['target_data_dir']}",
        f"- class map (model=target): {p['class_set'][len('mapped: '):]}; {scored}, "
        f"{p['utterances_left_out']} of unmapped classes left out",
        f"- command: `{results['command']}`" if results["command"] else "- command: (not recorded)", "",
        f"UA over runs: {s['mean']:.2f} +- {s['std_over_folds']:.2f}; ensemble of the runs: UA {e['ua']:.2f}, "
        f"WA {e['wa']:.2f}. Chance: UA {p['chance_ua']:.2f} ({len(p['classes'])} classes).", ""]
    if collapse["collapsed"]:
        why = [f"the ensemble: {'; '.join(collapse['ensemble']['reasons'])}."] if collapse["ensemble"]["reasons"] \
            else []
        if collapse["runs_collapsed"]:
            why.append(f"{len(collapse['runs_collapsed'])} of {len(results['runs'])} runs collapsed.")
        lines += [f"**COLLAPSE**: {' '.join(why)} The decisions carry little of the target's emotions.", ""]
    lines += ["| target class | model class | recall, ensemble | recall, mean over runs | predicted, ensemble |",
              "|---|---|---|---|---|"]
    share = collapse["ensemble"]["prediction_share"]
    for t, r in results["per_class_recall"].items():
        lines.append(f"| {t} | {r['model_class']} | {pct(r['ensemble'])} | {pct(r['run_mean'])} | {share[t]:.1f}% |")
    return "\n".join(lines + [""])


def _corpus_of(exp_dir: str) -> str:
    """The corpus an experiment was trained on: its scored results.json, else the recipe dir egs/<corpus>/exp/<tag>."""
    path = os.path.join(exp_dir, "results.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)["protocol"].get("corpus", "?")
    return os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(exp_dir))))


def _corpus_of_data(data_dir: str) -> str:
    """The corpus of a data dir, from the protocol.json of its data root (data/all or data/fold<k>/<set>)."""
    here = os.path.abspath(data_dir)
    for _ in range(3):
        here = os.path.dirname(here)
        path = os.path.join(here, "protocol.json")
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f).get("corpus", "?")
    raise ValueError(f"{data_dir}: no protocol.json above it names its corpus; give --target-corpus NAME")
