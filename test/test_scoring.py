"""Scoring: per-fold metrics from prediction files, fold/seed aggregation, results.json, the cross-recipe table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from ser.scoring import score_experiment

from support import REPO, python_env

CLASSES = ["ang", "hap", "neu", "sad"]


def write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(line + "\n" for line in sorted(lines))


def fake_experiment(root, seeds=(0, 1), folds=(1, 2, 3), missing_fold=None, rng_seed=0):
    """Data dirs with test labels and an exp dir with random (better than chance) predictions."""
    rng = np.random.default_rng(rng_seed)
    data, exp = root / "data", root / "exp" / "mytag"
    truth = {}
    for fold in folds:
        utts = [(f"spk{fold}{s}-u{n:03d}", f"spk{fold}{s}", CLASSES[rng.integers(4)]) for s in "ab" for n in range(25)]
        truth[fold] = utts
        write(str(data / f"fold{fold}" / "test" / "utt2emo"), [f"{u} {e}" for u, _, e in utts])
        write(str(data / f"fold{fold}" / "test" / "utt2spk"), [f"{u} {s}" for u, s, _ in utts])
    protocol = {"corpus": "fake", "class_set": "4class", "classes": CLASSES, "fold_scheme": "test",
                "folds": {str(k): {"test_speakers": []} for k in folds}, "valid_mode": "utt", "valid_fraction": 0.1}
    with open(data / "protocol.json", "w") as f:
        json.dump(protocol, f)
    predictions = {}
    for seed in seeds:
        for fold in folds:
            if fold == missing_fold:
                continue
            run = exp / f"seed{seed}" / f"fold{fold}"
            pred = [(u, e if rng.random() < 0.6 else CLASSES[rng.integers(4)]) for u, _, e in truth[fold]]
            predictions[(seed, fold)] = pred
            write(str(run / "decode_test" / "predictions"), [f"{u} {p}" for u, p in pred])
            with open(run / "config.yaml", "w") as f:
                yaml.safe_dump({"frontend": "fbank", "encoder": "flam", "encoder_conf": {"pooling": "flam"},
                                "augment": "eam", "model_selection": "valid_ua"}, f)
            with open(run / "run.json", "w") as f:
                json.dump({"identity": {"config_hash": "abc", "classes": CLASSES}, "git_revision": "deadbeef"}, f)
            with open(run / "selection.json", "w") as f:
                json.dump({"rule": "valid_ua", "epoch": 3}, f)
    return data, exp, truth, predictions


def test_fold_and_seed_aggregation_against_sklearn(tmp_path):
    data, exp, truth, predictions = fake_experiment(tmp_path)
    results = score_experiment(str(exp), str(data), command="run.sh --stage 4")
    per_run_ua = {}
    for (seed, fold), pred in predictions.items():
        y_true = [e for _, _, e in truth[fold]]
        y_pred = [p for _, p in pred]
        run = results["runs"][str(seed)][str(fold)]
        assert run["ua"] == pytest.approx(100 * balanced_accuracy_score(y_true, y_pred))
        assert run["wa"] == pytest.approx(100 * accuracy_score(y_true, y_pred))
        per_run_ua[(seed, fold)] = run["ua"]
    ua = results["summary"]["ua"]
    assert ua["mean"] == pytest.approx(np.mean(list(per_run_ua.values())))
    seed_means = [np.mean([per_run_ua[(s, f)] for f in (1, 2, 3)]) for s in (0, 1)]
    assert ua["seed_means"] == pytest.approx(seed_means)
    assert ua["seed_std"] == pytest.approx(np.std(seed_means, ddof=1))
    assert ua["std_over_folds"] == pytest.approx(
        np.mean([np.std([per_run_ua[(s, f)] for f in (1, 2, 3)], ddof=1) for s in (0, 1)]))
    assert results["protocol"]["complete"] and results["protocol"]["seeds"] == [0, 1]
    assert results["protocol"]["corpus"] == "fake" and results["config_hash"] == "abc"
    assert results["command"] == "run.sh --stage 4"
    with open(exp / "results.json") as f:
        assert json.load(f)["summary"]["ua"]["mean"] == pytest.approx(ua["mean"])
    assert (exp / "seed0" / "fold1" / "decode_test" / "confusion.png").stat().st_size > 1000
    assert "ang" in (exp / "seed0" / "fold1" / "decode_test" / "confusion.txt").read_text()


def test_incomplete_experiment_is_marked(tmp_path):
    data, exp, _, _ = fake_experiment(tmp_path, seeds=(0,), missing_fold=2)
    results = score_experiment(str(exp), str(data))
    assert results["protocol"]["folds_scored"] == [1, 3] and not results["protocol"]["complete"]
    assert "(incomplete)" in (exp / "RESULTS.md").read_text()


def test_a_speaker_dependent_split_is_named_in_results(tmp_path):
    """protocol.json's speaker_independent and valid_source travel into results.json and RESULTS.md."""
    data, exp, _, _ = fake_experiment(tmp_path, seeds=(0,))
    protocol = json.loads((data / "protocol.json").read_text())
    results = score_experiment(str(exp), str(data))
    assert results["protocol"]["validation"] == "held out from training-fold speakers only"
    assert "speaker-dependent" not in (exp / "RESULTS.md").read_text()
    protocol.update(speaker_independent=False, valid_source="training part of each fold")
    (data / "protocol.json").write_text(json.dumps(protocol))
    results = score_experiment(str(exp), str(data))
    assert results["protocol"]["speaker_independent"] is False
    assert results["protocol"]["validation"] == "held out from training part of each fold only"
    assert "**(speaker-dependent: test speakers also train)**" in (exp / "RESULTS.md").read_text()


def test_predictions_must_cover_the_test_set(tmp_path):
    data, exp, _, _ = fake_experiment(tmp_path, seeds=(0,))
    path = exp / "seed0" / "fold1" / "decode_test" / "predictions"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(ValueError, match="1 missing"):
        score_experiment(str(exp), str(data))


def test_compare_results_table(tmp_path):
    data, exp, _, _ = fake_experiment(tmp_path, seeds=(0,))
    score_experiment(str(exp), str(data))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "utils", "compare_results.py"), str(tmp_path / "exp")],
                          capture_output=True, text=True, env=python_env())
    assert proc.returncode == 0, proc.stderr
    title, _, header, _, row = proc.stdout.splitlines()
    assert title.startswith("### Protocol: corpus fake") and "speaker_norm none" in title
    assert "UA" in header and "selection" in header
    with open(exp / "results.json") as f:
        ua = json.load(f)["summary"]["ua"]
    assert f"{ua['mean']:.2f}" in row and "valid_ua" in row and "`abc`" in row
    # Another protocol (per-speaker normalisation) gets a table of its own, never a row in the first one.
    with open(exp / "results.json") as f:
        other = json.load(f)
    other["protocol"]["speaker_norm"] = "cmvn"
    (tmp_path / "exp" / "other").mkdir()
    with open(tmp_path / "exp" / "other" / "results.json", "w") as f:
        json.dump(other, f)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "utils", "compare_results.py"), str(tmp_path / "exp")],
                          capture_output=True, text=True, env=python_env())
    tables = proc.stdout.split("### Protocol: ")[1:]
    assert len(tables) == 2 and all(t.count(f"{ua['mean']:.2f} +-") == 1 for t in tables)
    assert "speaker_norm cmvn" in tables[0] and "speaker_norm none" in tables[1]
    empty = subprocess.run([sys.executable, os.path.join(REPO, "utils", "compare_results.py"), str(tmp_path / "none")],
                           capture_output=True, text=True)
    assert empty.returncode != 0 and "no results.json" in empty.stderr


def test_runs_of_different_configs_are_not_averaged(tmp_path):
    """One fold retrained with another config: stage 4 names the runs instead of averaging them, unless told to
    (and then results.json records it). Different seeds of one config are one config."""
    data, exp, _, _ = fake_experiment(tmp_path)
    for seed in (0, 1):  # the seeds differ, as they do in a real experiment
        config = exp / f"seed{seed}" / "fold2" / "config.yaml"
        config.write_text(config.read_text() + f"seed: {seed}\n")
    assert score_experiment(str(exp), str(data))["mixed_configs"] is None
    changed = exp / "seed1" / "fold2" / "config.yaml"
    changed.write_text(changed.read_text().replace("augment: eam", "augment: lam"))
    with pytest.raises(ValueError, match=r"2 different configs .*seed1/fold2"):
        score_experiment(str(exp), str(data))
    results = score_experiment(str(exp), str(data), allow_mixed_configs=True)
    assert len(results["mixed_configs"]) == 2


def compare_results(*paths):
    return subprocess.run([sys.executable, os.path.join(REPO, "utils", "compare_results.py"), *map(str, paths)],
                          capture_output=True, text=True, env=python_env())


def test_no_stale_result_survives_a_refusal_or_a_fold_moved_aside(tmp_path):
    """A refused stage 4 and a scored fold moved aside (a retrain with another config) mark the earlier
    results.json and RESULTS.md stale; compare_results leaves them out and says so; scoring again clears it."""
    from ser.rundir import claim_run_dir

    data, exp, _, _ = fake_experiment(tmp_path)
    score_experiment(str(exp), str(data))
    changed = exp / "seed1" / "fold2" / "config.yaml"
    changed.write_text(changed.read_text().replace("augment: eam", "augment: lam"))
    with pytest.raises(ValueError, match="2 different configs"):
        score_experiment(str(exp), str(data))
    results = json.loads((exp / "results.json").read_text())
    assert "stage 4 refused" in results["stale"] and "2 different configs" in results["stale"]
    assert (exp / "RESULTS.md").read_text().startswith("> **Stale**")
    proc = compare_results(exp)
    assert proc.returncode == 0 and "mytag" not in proc.stdout
    assert f"leaving out {exp / 'results.json'}: stale" in proc.stderr
    score_experiment(str(exp), str(data), allow_mixed_configs=True)
    assert "stale" not in json.loads((exp / "results.json").read_text())
    assert "mytag" in compare_results(exp).stdout
    claim_run_dir(str(exp / "seed0" / "fold1"), {"config_hash": "another"})
    assert (exp / "seed0" / "fold1.bak1").is_dir()
    results = json.loads((exp / "results.json").read_text())
    assert results["stale"] == "seed0/fold1, which it scored, was moved aside to fold1.bak1"
    assert "mytag" not in compare_results(exp).stdout


def test_seed_ensemble_averages_posteriors_and_is_judged_on_validation(tmp_path):
    data, exp, truth, _ = fake_experiment(tmp_path, seeds=(0, 1, 2))
    rng = np.random.default_rng(5)
    posteriors = {}
    for fold in (1, 2, 3):
        for set_name in ("valid", "test"):
            if set_name == "valid":  # validation utterances of training-fold speakers
                utts = [(f"tr{fold}-u{n:03d}", CLASSES[rng.integers(4)]) for n in range(30)]
                write(str(data / f"fold{fold}" / "valid" / "utt2emo"), [f"{u} {e}" for u, e in utts])
            else:
                utts = [(u, e) for u, _, e in truth[fold]]
            for seed in (0, 1, 2):
                # Noisy posteriors leaning to the truth: each seed alone errs, their mean errs less.
                p = rng.dirichlet(np.ones(4), size=len(utts)) + 0.35 * np.eye(4)[[CLASSES.index(e) for _, e in utts]]
                p /= p.sum(1, keepdims=True)
                posteriors[(fold, set_name, seed)] = (utts, p)
                write(str(exp / f"seed{seed}" / f"fold{fold}" / f"decode_{set_name}" / "posteriors"),
                      [f"{u} " + " ".join(f"{v:.6f}" for v in row) for (u, _), row in zip(utts, p)])
    ensemble = score_experiment(str(exp), str(data))["seed_ensemble"]
    assert ensemble["seeds"] == [0, 1, 2]

    def ua_of(fold, set_name):
        utts = posteriors[(fold, set_name, 0)][0]
        mean = np.mean([np.round(posteriors[(fold, set_name, s)][1], 6) for s in (0, 1, 2)], axis=0)
        return 100 * balanced_accuracy_score([e for _, e in utts], [CLASSES[i] for i in mean.argmax(1)])

    test_uas = [ua_of(k, "test") for k in (1, 2, 3)]
    assert ensemble["summary"]["ua"]["mean"] == pytest.approx(np.mean(test_uas))
    assert [ensemble["folds"][str(k)]["ua"] for k in (1, 2, 3)] == pytest.approx(test_uas)
    assert ensemble["valid"]["ensemble_ua"] == pytest.approx(np.mean([ua_of(k, "valid") for k in (1, 2, 3)]))
    singles = [100 * balanced_accuracy_score([e for _, e in posteriors[(k, "valid", s)][0]],
                                             [CLASSES[i] for i in posteriors[(k, "valid", s)][1].argmax(1)])
               for k in (1, 2, 3) for s in (0, 1, 2)]
    assert ensemble["valid"]["single_run_ua"] == pytest.approx(np.mean(singles))
    assert "Seed ensemble (another system" in (exp / "RESULTS.md").read_text()
    # One seed: no ensemble.
    data1, exp1, _, _ = fake_experiment(tmp_path / "one", seeds=(0,))
    assert score_experiment(str(exp1), str(data1))["seed_ensemble"] is None


def test_pooled_confusion_per_class_table_curves_and_n_a_spreads(tmp_path):
    from sklearn.metrics import confusion_matrix, precision_score, recall_score

    data, exp, truth, predictions = fake_experiment(tmp_path, seeds=(0,))
    history = [{"epoch": e, "train": {"kl": 1.0 / e, "focal": 0.5 / e}, "train_acc": 40.0 + 10 * e,
                "valid": {"ua": 30.0 + 5 * e}} for e in (1, 2, 3)]
    (exp / "seed0" / "fold1" / "history.json").write_text(json.dumps(history))
    results = score_experiment(str(exp), str(data))
    y_true = [e for k in (1, 2, 3) for _, _, e in truth[k]]
    y_pred = [p for k in (1, 2, 3) for _, p in predictions[(0, k)]]
    pooled = results["pooled"]
    assert pooled["confusion"] == confusion_matrix(y_true, y_pred, labels=CLASSES).tolist()
    assert pooled["per_class_recall"] == pytest.approx(100 * recall_score(y_true, y_pred, labels=CLASSES,
                                                                          average=None))
    assert pooled["per_class_precision"] == pytest.approx(100 * precision_score(y_true, y_pred, labels=CLASSES,
                                                                                average=None))
    text = (exp / "RESULTS.md").read_text()
    assert f"| ang | {pooled['per_class_recall'][0]:.2f} | {pooled['per_class_precision'][0]:.2f} |" in text
    assert "| n/a |" in text and "+- 0.00" not in text  # one seed: no seed spread
    assert (exp / "confusion_pooled.txt").read_text().split()[1:5] == CLASSES
    assert (exp / "confusion_pooled.png").stat().st_size > 1000
    assert (exp / "seed0" / "fold1" / "curves.png").stat().st_size > 1000
    assert not (exp / "seed0" / "fold2" / "curves.png").exists()  # no history: no curves


def test_compare_results_gives_the_seed_ensemble_a_row_of_its_own(tmp_path):
    data, exp, _, _ = fake_experiment(tmp_path, seeds=(0, 1))
    results = score_experiment(str(exp), str(data))
    results["seed_ensemble"] = {"seeds": [0, 1], "summary": {m: {"mean": 61.0, "std_over_folds": 2.0}
                                                             for m in ("ua", "wa", "macro_f1")}}
    (exp / "results.json").write_text(json.dumps(results))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "utils", "compare_results.py"), str(exp)],
                          capture_output=True, text=True, env=python_env())
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| mytag")]
    assert len(rows) == 2 and rows[1].startswith("| mytag (seed ensemble) |") and "| 2 averaged |" in rows[1]
    assert "61.00 +- 2.00" in rows[1] and "| n/a |" in rows[1]


def test_the_score_command_hashes_configs_with_keys_added_later(tmp_path):
    """ser.bin.score in a process of its own (as stage 4 runs it): a run whose config holds a key added after the
    hash's first version (loss_conf.speaker_adv) is hashed against the registries' defaults, which the command
    fills first (it stopped with "no loss_shared is registered")."""
    data, exp, _, _ = fake_experiment(tmp_path, seeds=(0,), folds=(1, 2))
    for run in exp.glob("seed0/fold*"):
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["loss_conf"] = {"speaker_adv": 0.1}
        (run / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "ser.bin.score", "--exp-dir", str(exp), "--data-dir", str(data)],
                          capture_output=True, text=True, env=python_env())
    assert proc.returncode == 0, proc.stderr
    assert json.loads((exp / "results.json").read_text())["protocol"]["folds_scored"] == [1, 2]
