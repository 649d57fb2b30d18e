"""The cross-corpus matrix: emotion names across corpora, the collapse flag, and the matrix over tiny recipes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from ser.cross_corpus import collapse_check, evaluate, stratified_subsample
from ser.emotions import EMOTIONS, canonical, shared_classes

from support import CLASSES, PYTHON, REPO, python_env, tiny_fbank_conf, train_tiny_run

SYNTH = ["ang", "hap", "neu", "sad"]  # also IEMOCAP's and MSP-IMPROV's
RAVDESS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
SAVEE = ["a", "d", "f", "h", "n", "sa", "su"]
ENGLISH = ["angry", "happy", "neutral", "sad", "fear", "disgust", "surprise", "calm", "boredom"]


def test_aliases_name_one_emotion_across_corpora():
    assert shared_classes(SYNTH, RAVDESS) == {"ang": "angry", "hap": "happy", "neu": "neutral", "sad": "sad"}
    assert shared_classes(SAVEE, RAVDESS) == {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy",
                                              "n": "neutral", "sa": "sad", "su": "surprised"}
    assert shared_classes(RAVDESS, ENGLISH) == {"neutral": "neutral", "calm": "calm", "happy": "happy", "sad": "sad",
                                                "angry": "angry", "fearful": "fear", "disgust": "disgust",
                                                "surprised": "surprise"}
    assert shared_classes(SAVEE, SYNTH) == {"a": "ang", "h": "hap", "n": "neu", "sa": "sad"}
    assert shared_classes(["Anger", "JOY", "Bored"], SYNTH + ["boredom"]) == {"Anger": "ang", "JOY": "hap",
                                                                              "Bored": "boredom"}
    assert shared_classes(["calm", "boredom"], SYNTH) == {}
    assert shared_classes(["low", "high"], ["High", "mid"]) == {"high": "High"}  # unknown names match themselves
    for name, emotion in [("Happiness", "happy"), ("afraid", "fear"), ("fea", "fear"), ("su", "surprise"),
                          ("sa", "sad"), ("dis", "disgust"), ("a", "angry"), ("calm", "calm"), ("bored", "boredom")]:
        assert canonical(name) == emotion
    assert all(canonical(e) == e for e in EMOTIONS)
    with pytest.raises(ValueError, match="ang and angry both name the emotion angry"):
        shared_classes(["ang", "angry"], RAVDESS)


def one_hot(predictions, classes=3):
    return np.eye(classes)[predictions]


def test_collapse_flags_one_dominant_class_or_chance_level_ua():
    classes = ["angry", "happy", "sad"]
    truth = [0] * 10 + [1] * 10 + [2] * 10
    good = collapse_check(truth, one_hot(truth), classes)
    assert not good["collapsed"] and good["ua"] == 100.0 and good["chance"] == pytest.approx(100 / 3)
    assert good["prediction_share"] == pytest.approx({c: 100 / 3 for c in classes})
    # 18 of 30 predictions (60%) are angry: not above 60%; 19 (63%) are
    sixty = [0] * 10 + [0] * 8 + [1] * 2 + [2] * 10
    assert not collapse_check(truth, one_hot(sixty), classes)["collapsed"]
    above = [0] * 10 + [0] * 9 + [1] + [2] * 10
    check = collapse_check(truth, one_hot(above), classes)
    assert check["collapsed"] and check["reasons"] == ["angry takes 63% of the predictions (> 60%)"]
    everything_happy = collapse_check(truth, one_hot([1] * 30), classes)
    assert everything_happy["collapsed"] and len(everything_happy["reasons"]) == 2  # 100% happy, UA = chance
    # about balanced predictions (20 per class) with recalls 35, 35, 40 (UA 36.7) and 35, 35, 35 (UA 35.0, within 2
    # points of chance)
    truth20 = [c for c in range(3) for _ in range(20)]

    def decisions(correct):
        return [p for c in range(3) for p in [c] * correct[c] + [(c + 1 + i % 2) % 3 for i in range(20 - correct[c])]]

    check = collapse_check(truth20, one_hot(decisions([7, 7, 8])), classes)
    assert check["ua"] == pytest.approx(110 / 3) and not check["collapsed"]
    check = collapse_check(truth20, one_hot(decisions([7, 7, 7])), classes)
    assert check["ua"] == pytest.approx(35.0) and check["collapsed"]
    assert check["reasons"] == ["UA 35.00 is within 2 points of chance (33.33) or below it"]
    # posteriors, not only one-hot decisions: the argmax decides
    soft = np.full((30, 3), 0.3)
    soft[np.arange(30), truth] = 0.4
    assert not collapse_check(truth, soft, classes)["collapsed"]


def test_stratified_subsample_is_deterministic_and_keeps_every_class():
    labels = {f"u{i:03d}": "a" for i in range(60)} | {f"v{i:03d}": "b" for i in range(30)} | {"w000": "c"}
    keys = sorted(labels)
    chosen = stratified_subsample(keys, labels, 10)
    assert chosen == stratified_subsample(list(reversed(keys)), labels, 10) and chosen == sorted(chosen)
    counts = {c: sum(labels[k] == c for k in chosen) for c in "abc"}
    assert counts == {"a": 6, "b": 3, "c": 1}
    assert stratified_subsample(keys, labels, 500) == keys
    with pytest.raises(ValueError, match="below the 3 scored classes"):
        stratified_subsample(keys, labels, 2)


# Tiny recipes: the synth generator's audio under three corpora's spellings of its classes, and tiny models
# trained for one epoch on conftest's feature dirs (20 bins: an fbank.conf of 20 mel bins reads the audio alike).
RECIPES = {"alpha": {"ang": "ang", "hap": "hap", "neu": "neu", "sad": "sad"},
           "beta": {"ang": "angry", "hap": "happy", "neu": "calm", "sad": "sad"},
           "gamma": {"ang": "boredom", "neu": "calm", "sad": "sad"}}
MODEL_CLASSES = {"alpha": SYNTH, "beta": ["angry", "happy", "calm", "sad"]}


def write_tiny_run(feature_dirs, root, classes, outdir, fbank_conf):
    """One epoch of the trainer's fast config on conftest's feature dirs, their labels renamed to ``classes``."""
    renamed = dict(zip(CLASSES, classes))
    dirs = {}
    for part in ("train", "valid"):
        dirs[part] = root / f"{'_'.join(classes)}_{part}"
        if not dirs[part].exists():
            shutil.copytree(feature_dirs / part, dirs[part])
            lines = (feature_dirs / part / "utt2emo").read_text().split("\n")
            (dirs[part] / "utt2emo").write_text("\n".join(" ".join([*ln.split()[:1], renamed[ln.split()[1]]])
                                                          if ln else "" for ln in lines))
    train_tiny_run(dirs["train"], dirs["valid"], outdir, classes, fbank_conf)


@pytest.fixture(scope="module")
def tiny_recipes(feature_dirs, tmp_path_factory):
    from ser.corpora.synth import generate_synth_corpus, prepare_synth

    root = tmp_path_factory.mktemp("cross_matrix")
    generate_synth_corpus(str(root / "corpus"), num_speakers=2, utts_per_class=2)
    utterances = prepare_synth(str(root / "corpus"))
    fbank_conf = tiny_fbank_conf(root / "fbank.conf")
    for name, spelling in RECIPES.items():
        data = root / name / "data"
        (data / "all").mkdir(parents=True)
        kept = sorted((u for u in utterances if u.emotion in spelling), key=lambda u: u.utt_id)
        (data / "all" / "wav.scp").write_text("".join(f"{u.utt_id} {u.wav}\n" for u in kept))
        (data / "all" / "utt2emo").write_text("".join(f"{u.utt_id} {spelling[u.emotion]}\n" for u in kept))
        (data / "protocol.json").write_text(json.dumps({"corpus": f"{name}_corpus"}))
    for name, classes in MODEL_CLASSES.items():
        exp = root / name / "exp" / "train"
        write_tiny_run(feature_dirs, root, classes, exp / "seed0" / "fold1", fbank_conf)
        shutil.copytree(exp / "seed0" / "fold1", exp / "seed0" / "fold2")  # two runs: an ensemble of two
        (exp / "results.json").write_text(json.dumps({"protocol": {"corpus": name, "kind": "cross_validation"},
                                                      "summary": {"ua": {"mean": 50.0 + len(name)}}}))
    classic = root / "gamma" / "exp" / "egemaps"  # a classic reference: arrays of a linear model, no audio
    (classic / "seed0" / "fold1").mkdir(parents=True)
    (classic / "seed0" / "fold1" / "model.npz").write_bytes(b"")
    (classic / "results.json").write_text(json.dumps({"protocol": {"corpus": "gamma"}}))
    earlier = root / "alpha" / "exp" / "train_on_beta"  # an earlier cross-corpus result kept under exp/
    earlier.mkdir()
    (earlier / "results.json").write_text(json.dumps({"protocol": {"kind": "cross_corpus"}}))
    return root


@pytest.mark.slow
def test_matrix_cells_are_the_pairs_results_and_skipped_pairs_are_reported(tiny_recipes, tmp_path):
    from ser.cross_corpus_matrix import build_matrix, pair_dir_name

    recipes = [str(tiny_recipes / name) for name in RECIPES]
    out = tmp_path / "matrix"
    logged = []
    matrix = build_matrix(recipes, str(out), max_utts=5, command="test", log=logged.append)
    assert matrix["rows"] == ["alpha/train", "beta/train"] and matrix["columns"] == list(RECIPES)
    assert {(r, c) for r in matrix["cells"] for c in matrix["cells"][r]} == \
        {("alpha/train", "beta"), ("beta/train", "alpha"), ("beta/train", "gamma")}
    expected_maps = {("alpha/train", "beta"): "ang=angry hap=happy sad=sad",
                     ("beta/train", "alpha"): "angry=ang happy=hap sad=sad",
                     ("beta/train", "gamma"): "calm=calm sad=sad"}  # angry and boredom are not one emotion
    for (row, column), class_map in expected_maps.items():
        cell = matrix["cells"][row][column]
        recipe, tag = row.split("/")
        pair = out / pair_dir_name(recipe, tag, column)
        results = json.loads((pair / "results.json").read_text())
        assert cell["results"] == os.path.relpath(pair / "results.json", out)
        assert cell["class_map"] == class_map == results["protocol"]["class_set"][len("mapped: "):]
        assert cell["ua"] == results["summary"]["ua"]["mean"] and cell["ua_ensemble"] == results["ensemble"]["ua"]
        assert cell["chance"] == results["protocol"]["chance_ua"] == pytest.approx(100 / len(class_map.split()))
        assert cell["collapse"] == results["collapse"]["collapsed"]
        assert results["protocol"]["corpus"] == f"{recipe} -> {column}_corpus"
        assert results["protocol"]["subsample"]["max_utts"] == 5 and results["protocol"]["utterances_scored"] == 5
        assert list(results["per_class_recall"]) == [p.split("=")[1] for p in class_map.split()]
        report = (pair / "RESULTS.md").read_text()
        assert ("**COLLAPSE**" in report) == cell["collapse"] and "Chance: UA" in report
        line = next(ln for ln in (out / "MATRIX.md").read_text().splitlines() if ln.startswith(f"| {row} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1 + matrix["columns"].index(column)] == \
            f"{cell['ua']:.2f} (chance {cell['chance']:.2f})" + (" **COLLAPSE**" if cell["collapse"] else "")
    assert matrix["in_corpus_ua"] == {"alpha/train": 55.0, "beta/train": 54.0}
    skipped = {(s["experiment"], s["target"]): s["reason"] for s in matrix["skipped"]}
    assert set(skipped) == {("alpha/train", "gamma"), ("alpha/train_on_beta", None), ("gamma/egemaps", None)}
    assert skipped[("alpha/train", "gamma")].startswith("1 shared classes (sad=sad); at least 2 needed")
    assert "classic reference" in skipped[("gamma/egemaps", None)]
    assert "cross-corpus result" in skipped[("alpha/train_on_beta", None)]
    text = (out / "MATRIX.md").read_text()
    assert "- alpha/train -> gamma: 1 shared classes" in text and "- gamma/egemaps: a classic reference" in text
    assert json.loads((out / "matrix.json").read_text()) == json.loads(json.dumps(matrix))
    assert matrix["failed"] == [] and "at most 5 utterances per target" in text

    # The same pair scored alone gives the same numbers.
    alone = evaluate(str(tiny_recipes / "beta" / "exp" / "train"), str(tiny_recipes / "alpha" / "data" / "all"),
                     {"angry": "ang", "happy": "hap", "sad": "sad"}, str(tmp_path / "alone"), max_utts=5)
    assert alone["summary"]["ua"]["mean"] == matrix["cells"]["beta/train"]["alpha"]["ua"]
    assert alone["runs"] == json.loads((out / pair_dir_name("beta", "train", "alpha") / "results.json")
                                       .read_text())["runs"]

    # Resumable: up-to-date pairs are read back, a pair whose result went missing is scored again (the command
    # line and its utils wrapper).
    done = {p: (p / "results.json").stat().st_mtime_ns for p in out.iterdir() if p.is_dir()}
    missing = out / pair_dir_name("alpha", "train", "beta")
    (missing / "results.json").unlink()
    proc = subprocess.run([PYTHON, os.path.join(REPO, "utils", "cross_corpus_matrix.py"), *recipes, "--out",
                           str(out), "--max-utts", "5"], capture_output=True, text=True, env=python_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("up to date") == 2 and "alpha/train -> beta: UA" in proc.stderr
    assert "2 experiments x 3 recipes: 3 pairs scored" in proc.stderr and "3 skipped, 0 failed" in proc.stderr
    for pair, mtime in done.items():
        assert ((pair / "results.json").stat().st_mtime_ns == mtime) == (pair != missing)
    again = json.loads((out / "matrix.json").read_text())
    assert again["cells"] == matrix["cells"]

    # --tags restricts the rows; an unknown tag is an error.
    only = build_matrix(recipes, str(out), tags=["beta/train"], max_utts=5, log=logged.append)
    assert only["rows"] == ["beta/train"] and only["cells"]["beta/train"] == matrix["cells"]["beta/train"]
    with pytest.raises(ValueError, match="no experiment nosuch"):
        build_matrix(recipes, str(out), tags=["nosuch"], max_utts=5, log=logged.append)


def test_mapped_posteriors_survive_a_model_sure_of_an_unmapped_class():
    """Renormalising over the mapped classes equals a softmax of those classes' logits (scipy, the reference), even
    where the logits' gap to an unmapped class makes the mapped probabilities underflow to 0."""
    from scipy.special import log_softmax, softmax

    from ser.cross_corpus import mapped_posteriors

    logits = np.array([[0.0, 2.0, 900.0, -1.0], [3.0, 1.0, 0.5, 1200.0]])
    columns = [0, 1, 3]
    got = mapped_posteriors(log_softmax(logits, axis=1), columns)
    assert np.all(np.isfinite(got)) and np.allclose(got, softmax(logits[:, columns], axis=1), rtol=1e-12)
