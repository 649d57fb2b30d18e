"""Inference for deployment: batches that survive bad files, timelines of long recordings in bounded memory, model
cards. Real tiny models (one epoch on conftest's feature dirs, read through a 20-bin fbank.conf) and real audio."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile

import numpy as np
import pytest
import soundfile
import torch

from support import CLASSES, PYTHON, python_env, tiny_fbank_conf, train_tiny_run

RATE = 16000


def varied_audio(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """float32 in [-1, 1]: tones and noise whose pitch and loudness change every half second (windows differ)."""
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(int(np.ceil(seconds * 2))):
        t = np.arange(rate // 2) / rate
        tone = np.sin(2 * np.pi * rng.uniform(100, 900) * t) * rng.uniform(0.05, 0.5)
        pieces.append(tone + rng.normal(0, rng.uniform(0.005, 0.1), t.size))
    return np.clip(np.concatenate(pieces)[:int(round(seconds * rate))], -1, 1).astype(np.float32)


def write_audio(path, seconds: float, rate: int = RATE, seed: int = 0) -> str:
    soundfile.write(str(path), varied_audio(seconds, rate, seed), rate, subtype="PCM_16")
    return str(path)


@pytest.fixture(scope="module")
def tiny_model(feature_dirs, tmp_path_factory):
    """A trained run (exp/train/seed0/fold1) whose data root names the synth corpus in its protocol.json."""
    root = tmp_path_factory.mktemp("classify")
    data = root / "data"
    for part in ("train", "valid"):
        shutil.copytree(feature_dirs / part, data / "fold1" / part)
    (data / "protocol.json").write_text(json.dumps({
        "corpus": "synth", "class_set": "4class", "classes": CLASSES, "num_folds": 1, "fold_scheme": "one fold",
        "speaker_independent": True, "valid_mode": "utt", "valid_source": "training-fold speakers"}))
    run = root / "exp" / "train" / "seed0" / "fold1"
    train_tiny_run(data / "fold1" / "train", data / "fold1" / "valid", run, CLASSES, tiny_fbank_conf(root / "fb.conf"))
    return run


@pytest.fixture(scope="module")
def recognizer(tiny_model):
    from ser import EmotionRecognizer

    return EmotionRecognizer.from_dir(str(tiny_model))


def reference_posteriors(recognizer, samples: np.ndarray) -> np.ndarray:
    """The model run on one utterance alone, its input computed by the front-end from int16-range samples."""
    m = recognizer.members[0]
    feats = m.frontend.inputs_of_samples(samples.astype(np.float32) * 32768.0, m.model_dir, m.normaliser)
    with torch.no_grad():
        logits = m.model(torch.from_numpy(feats)[None], torch.tensor([feats.shape[0]]), None).logits
    return torch.softmax(logits, -1)[0].numpy()


def classify(*args, check_rc=None):
    proc = subprocess.run([PYTHON, "-m", "ser.bin.classify", *map(str, args)], capture_output=True, text=True,
                          env=python_env())
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr[-3000:]
    return proc


def bad_folder(tmp_path):
    """Good files and one file of each kind of bad input, with the reason each must be reported with."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = [write_audio(folder / f"good{i}.wav", 1.0 + i, seed=i) for i in range(3)]
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("these are my notes, not audio\n")
    soundfile.write(str(folder / "nosamples.wav"), np.zeros((0, 1), dtype=np.float32), RATE, subtype="PCM_16")
    write_audio(folder / "short.wav", 0.05)
    whole = open(write_audio(folder / "cut.wav", 1.0), "rb").read()
    (folder / "cut.wav").write_bytes(whole[:len(whole) // 2])  # a copy that stopped half way
    bad = {"cut.wav": "cut short", "empty.wav": "empty", "notes.wav": "not audio", "nosamples.wav": "no samples",
           "short.wav": "too short"}
    if os.geteuid() != 0:  # root reads any file
        write_audio(folder / "unreadable.wav", 1.0)
        os.chmod(folder / "unreadable.wav", 0)
        bad["unreadable.wav"] = "unreadable"
    return folder, good, bad


def test_a_folder_with_bad_files_classifies_the_good_ones_and_names_each_bad_one(tiny_model, tmp_path):
    folder, good, bad = bad_folder(tmp_path)
    listed = tmp_path / "files.txt"
    listed.write_text(f"{good[0]}\n{tmp_path / 'gone.wav'}\n")
    out = tmp_path / "scores.csv"
    proc = classify("--model", tiny_model, folder, "--list", listed, "--format", "csv", "--output", out, check_rc=1)
    lines = proc.stderr.strip().splitlines()
    for name, reason in [*bad.items(), ("gone.wav", "missing")]:
        named = [ln for ln in lines if name in ln]
        assert len(named) == 1 and reason in named[0], (name, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert lines[-1].endswith(f"4 file(s) classified, {len(bad) + 1} failed")
    rows = out.read_text().splitlines()
    assert rows[0] == "file," + ",".join(CLASSES) + ",prediction"
    assert sorted(r.split(",")[0] for r in rows[1:]) == sorted(good + [good[0]])


def test_all_good_files_exit_zero(tiny_model, tmp_path):
    good = write_audio(tmp_path / "a.wav", 1.0)
    proc = classify("--model", tiny_model, good, check_rc=0)
    assert proc.stdout.splitlines()[1].startswith(good) and "1 file(s) classified, 0 failed" in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if "trained on synthetic audio" in ln]) == 1


def test_the_api_reports_failures_per_item(recognizer, tmp_path):
    folder, good, bad = bad_folder(tmp_path)
    paths = [good[0], *(str(folder / n) for n in bad), str(tmp_path / "gone.wav"), good[1]]
    results = recognizer.classify_files(paths)
    assert [r.ok for r in results] == [True] + [False] * (len(bad) + 1) + [True]
    assert [r.reason for r in results[1:-1]] == [*bad.values(), "missing"]
    assert all(r.source == p for r, p in zip(results, paths))
    wave = varied_audio(1.0)
    batch = recognizer.classify_batch([wave, np.array([]), wave * np.nan, wave * 3, (wave * 32767).astype(np.int16)],
                                      RATE)
    assert [r.ok for r in batch] == [True, False, False, False, True]
    assert [r.reason for r in batch[1:4]] == ["no samples", "not finite", "out of range"]
    assert batch[1].source == "waveform 1"
    with pytest.raises(ValueError, match="empty"):
        recognizer.classify_file(str(folder / "empty.wav"))


def test_batched_inference_equals_each_utterance_alone(recognizer, tmp_path):
    paths = [write_audio(tmp_path / f"{i}.wav", 0.4 + 0.37 * i, seed=i) for i in range(7)]
    assert recognizer.batch_size > 1  # batched by default
    batched = recognizer.classify_files(paths)
    for path, got in zip(paths, batched):
        expected = reference_posteriors(recognizer, soundfile.read(path, dtype="float32")[0])
        np.testing.assert_allclose([got.posteriors[c] for c in CLASSES], expected, atol=2e-5)


@pytest.fixture(scope="module")
def fused_model(feature_dirs, tmp_path_factory):
    """A trained run fusing eGeMAPSv02 functionals (its training functionals: random rows of the right width)."""
    import kaldiio

    pytest.importorskip("opensmile")
    root = tmp_path_factory.mktemp("fused")
    rng = np.random.default_rng(0)
    keys = sorted({line.split()[0] for part in ("train", "valid") for line in open(feature_dirs / part / "utt2emo")})
    with kaldiio.WriteHelper(f"ark,scp:{root}/f.ark,{root}/f.scp") as w:
        for key in keys:
            w(key, rng.normal(size=(1, 88)).astype(np.float32))
    run = root / "run"
    train_tiny_run(feature_dirs / "train", feature_dirs / "valid", run, CLASSES, tiny_fbank_conf(root / "fb.conf"),
                   functionals_scp=str(root / "f.scp"), functionals="eGeMAPSv02")
    return run


def test_a_fused_model_classifies_batches_and_windows_as_each_alone(fused_model, tmp_path):
    """Each utterance (and window) gets its own openSMILE functionals within a batch."""
    from ser import EmotionRecognizer
    from ser.functionals import compute_functionals, make_extractor
    from ser.inputs import standardise_utterance

    recognizer = EmotionRecognizer.from_dir(str(fused_model))
    m = recognizer.members[0]
    extractor = make_extractor("eGeMAPSv02")

    def alone(samples):
        samples = samples.astype(np.float32) * 32768.0
        feats = m.frontend.inputs_of_samples(samples, m.model_dir, m.normaliser)
        utterance = standardise_utterance(m.model_dir, compute_functionals(extractor, samples))
        with torch.no_grad():
            logits = m.model(torch.from_numpy(feats)[None], torch.tensor([feats.shape[0]]),
                             torch.from_numpy(utterance)).logits
        return torch.softmax(logits, -1)[0].numpy()

    paths = [write_audio(tmp_path / f"{i}.wav", 0.6 + 0.5 * i, seed=i) for i in range(3)]
    for path, got in zip(paths, recognizer.classify_files(paths)):
        np.testing.assert_allclose([got.posteriors[c] for c in CLASSES],
                                   alone(soundfile.read(path, dtype="float32")[0]), atol=2e-5)
    samples = soundfile.read(paths[2], dtype="float32")[0]
    for w in recognizer.timeline(paths[2], 1.0, 0.5).windows:
        np.testing.assert_allclose([w.posteriors[c] for c in CLASSES],
                                   alone(samples[round(w.start * RATE):round(w.end * RATE)]), atol=2e-5)


def test_a_timeline_classifies_each_window_on_its_own(recognizer, tiny_model, tmp_path):
    path = write_audio(tmp_path / "long.wav", 7.3)
    samples = soundfile.read(path, dtype="float32")[0]
    timeline = recognizer.timeline(path, 2.0, 1.0)
    assert [(w.start, w.end) for w in timeline.windows] == [(s, min(s + 2.0, 7.3)) for s in range(7)]
    for w in timeline.windows:
        expected = reference_posteriors(recognizer, samples[round(w.start * RATE):round(w.end * RATE)])
        np.testing.assert_allclose([w.posteriors[c] for c in CLASSES], expected, atol=2e-5)
        assert w.label == CLASSES[int(expected.argmax())]
    in_memory = recognizer.timeline_of_waveform(samples, RATE, 2.0, 1.0)
    assert [w.posteriors for w in in_memory.windows] == [w.posteriors for w in timeline.windows]
    gaps = recognizer.timeline(path, 1.0, 3.0)  # hop over segment: windows with gaps between them
    assert [(w.start, w.end) for w in gaps.windows] == [(0, 1), (3, 4), (6, 7)]

    out = tmp_path / "t.json"
    classify("--model", tiny_model, path, "--segment", 2, "--hop", 1, "--format", "json", "--output", out,
             check_rc=0)
    written = json.loads(out.read_text())[0]
    assert written["file"] == path and written["segment"] == 2.0 and len(written["windows"]) == 7
    assert written["windows"][3]["prediction"] == timeline.windows[3].label
    from ser.bin.classify import write

    csv_out = io.StringIO()
    write([recognizer.timeline(path, 2.0)], CLASSES, "csv", csv_out)
    csv_rows = csv_out.getvalue().split()
    assert csv_rows[0] == "file,start,end," + ",".join(CLASSES) + ",prediction"
    assert [r.split(",")[1:3] for r in csv_rows[1:]] == [["0.000", "2.000"], ["2.000", "4.000"], ["4.000", "6.000"],
                                                        ["6.000", "7.300"]]
    bad = classify("--model", tiny_model, path, "--segment", 0)
    assert bad.returncode != 0 and "segment and hop must be positive" in bad.stderr and "Traceback" not in bad.stderr


def test_a_long_file_is_decided_by_pooling_windows(recognizer, tmp_path):
    from ser.recognizer import WHOLE_FILE_MAX_SECONDS

    seconds = 2.5 * WHOLE_FILE_MAX_SECONDS
    path = write_audio(tmp_path / "long.wav", seconds)
    samples = soundfile.read(path, dtype="float32")[0]
    got = recognizer.classify_file(path)
    edges = [0, WHOLE_FILE_MAX_SECONDS, 2 * WHOLE_FILE_MAX_SECONDS, seconds]
    parts = [reference_posteriors(recognizer, samples[round(a * RATE):round(b * RATE)]) * (b - a)
             for a, b in zip(edges, edges[1:])]
    assert got.windows == 3
    np.testing.assert_allclose([got.posteriors[c] for c in CLASSES], np.sum(parts, axis=0) / seconds, atol=2e-5)


PEAK_RSS = """
import resource, sys
from ser import EmotionRecognizer
r = EmotionRecognizer.from_dir(sys.argv[1])
r.timeline(sys.argv[2], 4.0, 4.0) if sys.argv[3] == "timeline" else r.classify_file(sys.argv[2])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_the_length_of_the_recording(tiny_model, tmp_path):
    """Peak RSS classifying a 10-minute recording (whole and as a timeline) stays within 40 MB of a 1-minute one's
    (the 10-minute file's samples alone are 38 MB as float32; read whole, its attention would take gigabytes)."""
    def peak(path, mode):
        proc = subprocess.run([PYTHON, "-c", PEAK_RSS, str(tiny_model), path, mode], capture_output=True, text=True,
                              env={**python_env(), "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return int(proc.stdout.split()[-1]) / 1024  # MB

    short = write_audio(tmp_path / "short.wav", 60.0)
    long = str(tmp_path / "long.wav")
    with soundfile.SoundFile(long, "w", RATE, 1, "PCM_16") as f:  # 10 minutes, written a minute at a time
        for minute in range(10):
            f.write(varied_audio(60.0, seed=minute))
    for mode in ("whole", "timeline"):
        assert peak(long, mode) - peak(short, mode) < 40, mode


def test_a_model_carries_its_card(tiny_model, tmp_path, caplog):
    card = json.loads((tiny_model / "model_card.json").read_text())
    run = json.loads((tiny_model / "run.json").read_text())
    assert card["corpus"] == "synth" and card["synthetic_training_audio"] is True
    assert card["classes"] == CLASSES and card["protocol"]["valid_mode"] == "utt"
    assert card["protocol"]["speaker_norm"] == "none" and card["protocol"]["folds"] == 1
    assert card["config_hash"] == run["identity"]["config_hash"] and card["git_revision"] == run["git_revision"]
    assert "synthetic audio" in card["training_data_licence"] and card["test_metrics"] is None

    def strings(x):
        return [x] if isinstance(x, str) else [s for v in (x.values() if isinstance(x, dict) else x
                                                           if isinstance(x, list) else []) for s in strings(v)]
    assert not [s for s in strings(card) if s.startswith("/")]  # a model dir's card names no absolute path
    assert not [s for s in strings(run) if s.startswith("/")]  # nor its run.json: relative to the run dir
    assert os.path.samefile(tiny_model / run["train_dir"], tiny_model.parents[3] / "data" / "fold1" / "train")

    info = classify("--info", tiny_model, check_rc=0).stdout
    assert "corpus: synth" in info and "valid_mode utt" in info and card["config_hash"] in info
    archive = tmp_path / "m.tar.gz"
    subprocess.run([PYTHON, "-m", "ser.bin.pack_model", "--model", str(tiny_model), "--out", str(archive)],
                   check=True, env=python_env(), capture_output=True)
    assert "model/model_card.json" in tarfile.open(archive).getnames()
    assert classify("--info", archive, check_rc=0).stdout.replace(str(archive), str(tiny_model)) == info

    from ser import EmotionRecognizer

    recognizer = EmotionRecognizer.from_dir(str(archive))
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "synthetic audio" in said[0] and "\n" not in said[0]
    assert len(repr(recognizer).splitlines()) <= 3 and "synth" in repr(recognizer)


def test_scoring_puts_the_test_metrics_and_their_spread_on_the_card(tiny_model, tmp_path):
    """Stage 4 (score_experiment) rewrites the cards with each fold's metrics and the mean and spread."""
    from ser.card import read_card
    from ser.infer import classify_data_dir, load_trained, write_predictions
    from ser.scoring import score_experiment

    exp = tmp_path / "exp"
    data = tmp_path / "data"
    shutil.copytree(tiny_model.parent.parent, exp)
    shutil.copytree(tiny_model.parent / "fold1", exp / "seed0" / "fold2")
    protocol = json.loads((tiny_model.parent.parent.parent.parent / "data" / "protocol.json").read_text())
    protocol["folds"] = {"1": {}, "2": {}}
    data.mkdir()
    (data / "protocol.json").write_text(json.dumps(protocol))
    feature_dirs = tiny_model.parent.parent.parent.parent / "data" / "fold1"
    for fold in ("fold1", "fold2"):
        shutil.copytree(feature_dirs / "valid", data / fold / "test")
        trained = load_trained(str(exp / "seed0" / fold))
        test_set, posteriors = classify_data_dir(trained, str(data / fold / "test"))
        write_predictions(str(exp / "seed0" / fold / "decode_test"), test_set.keys, posteriors, CLASSES)
    results = score_experiment(str(exp), str(data))
    card = read_card(str(exp))
    assert card["test_metrics"]["experiment"]["ua"]["mean"] == pytest.approx(results["summary"]["ua"]["mean"])
    assert card["test_metrics"]["experiment"]["ua"]["std_over_folds"] is not None
    fold = read_card(str(exp / "seed0" / "fold2"))
    assert fold["test_metrics"]["this_fold"]["ua"] == results["runs"]["0"]["2"]["ua"]
    info = classify("--info", exp, check_rc=0).stdout
    assert f"ua {results['summary']['ua']['mean']:.2f} +- " in info
