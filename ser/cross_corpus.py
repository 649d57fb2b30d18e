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
"""

from __future__ import annotations

import json
import os

import numpy as np

from ser.atomic import write_json, write_text
from ser.datadir import read_table
from ser.metrics import classification_scores, mean_std

METRICS = ("ua", "wa", "macro_f1")


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


def evaluate(exp_dir: str, data_dir: str, class_map: dict[str, str], out_dir: str, device: str = "cpu",
             command: str = "", target_corpus: str | None = None) -> dict:
    from ser.audio import AudioError, load_mono
    from ser.recognizer import MIN_SECONDS, EmotionRecognizer

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

        mapped = recognizer.posteriors_of_samples(samples_at)[:, columns]
        per_run[:, u] = mapped / mapped.sum(axis=1, keepdims=True)
    y_true = [targets.index(labels[k]) for k in keys]
    runs = {os.path.relpath(m.model_dir, exp_dir): classification_scores(y_true, per_run[r].argmax(1), len(targets))
            for r, m in enumerate(recognizer.members)}
    ensemble = per_run.mean(axis=0)
    with open(os.path.join(recognizer.members[0].model_dir, "run.json")) as f:
        run = json.load(f)
    train_corpus = _corpus_of(exp_dir)
    test_corpus = target_corpus or _corpus_of_data(data_dir)
    summary = {}
    for m in METRICS:
        mean, std = mean_std(s[m] for s in runs.values())
        summary[m] = {"mean": mean, "std_over_folds": std, "seed_means": [], "seed_std": 0.0}
    results = {
        "experiment": f"{os.path.basename(os.path.normpath(exp_dir))} on {test_corpus}",
        "exp_dir": os.path.abspath(exp_dir),
        "protocol": {"kind": "cross_corpus", "corpus": f"{train_corpus} -> {test_corpus}",
                     "class_set": "mapped: " + " ".join(f"{s}={t}" for s, t in class_map.items()),
                     "classes": targets, "fold_scheme": "cross-corpus (every run on all of the target data)",
                     "valid_mode": "as trained", "speaker_norm": "none", "target_data_dir": os.path.abspath(data_dir),
                     "folds": {name: {} for name in runs}, "folds_scored": list(runs), "complete": True,
                     "seeds": sorted({int(n.split("/")[0][4:]) for n in runs if n.startswith("seed")}) or [None],
                     "selection": recognizer.members[0].config["model_selection"],
                     "utterances_scored": len(keys), "utterances_left_out": len(labels) - len(keys)},
        "config_hash": run["identity"]["config_hash"],
        "git_revision": run.get("git_revision", "unknown"),
        "config": recognizer.members[0].config,
        "command": command,
        "summary": summary,
        "runs": runs,
        "ensemble": classification_scores(y_true, ensemble.argmax(1), len(targets)),
    }
    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, "posteriors"), "".join(
        f"{k} " + " ".join(f"{p:.6f}" for p in row) + "\n" for k, row in zip(keys, ensemble)))
    write_json(os.path.join(out_dir, "results.json"), results, indent=1)
    s, e = results["summary"]["ua"], results["ensemble"]
    write_text(os.path.join(out_dir, "RESULTS.md"), "\n".join([
        f"# {results['experiment']}: cross-corpus", "",
        f"- model: {results['exp_dir']} ({len(runs)} runs); target: {results['protocol']['target_data_dir']}",
        f"- class map (model=target): {results['protocol']['class_set'][len('mapped: '):]}; "
        f"{len(keys)} utterances scored, {len(labels) - len(keys)} of unmapped classes left out",
        f"- command: `{command}`" if command else "- command: (not recorded)", "",
        f"UA over runs: {s['mean']:.2f} +- {s['std_over_folds']:.2f}; ensemble of the runs: UA {e['ua']:.2f}, "
        f"WA {e['wa']:.2f}.", ""]))
    return results


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
