"""A user's own data: the CSV manifest, fold rules (given column, speaker k-fold, leave one speaker out), segments,
and egs/TEMPLATE/setup.sh making a recipe that runs it (README "Your own data", docs/extending.md "Adding a corpus")."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import soundfile

from ser.audio import INT16_SCALE, read_audio
from ser.bin import prepare_data
from ser.corpora import CORPORA
from ser.corpora.common import CorpusError, Utterance, leave_one_speaker_out, speaker_kfold
from ser.corpora.manifest import prepare

from support import REPO, recipe_env, write_wav

SETUP = os.path.join(REPO, "egs", "TEMPLATE", "setup.sh")
CLASSES = ("angry", "happy", "sad")


def write_manifest(path, rows, header=("path", "label", "speaker", "gender", "fold")):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture()
def own_data(tmp_path):
    """4 speakers x 3 classes x 2 wavs under tmp/audio/<spk>/, a manifest beside them with relative paths."""
    rows, truth = [], {}
    for s, spk in enumerate(("alice", "bob", "carol", "dave")):
        for c, label in enumerate(CLASSES):
            for n in range(2):
                rel = f"audio/{spk}/{label} {n}.wav"  # a space in the name
                write_wav(str(tmp_path / rel), 16000, seed=s * 10 + c * 2 + n)
                rows.append([rel, label, spk, "f" if s % 2 else "Male", s // 2 + 1])
                truth[f"{spk}-audio-{spk}-{label}_{n}"] = (spk, label, "f" if s % 2 else "m", s // 2 + 1,
                                                          str(tmp_path / rel))
    return tmp_path, write_manifest(tmp_path / "data.csv", rows), truth


def test_rows_become_utterances_with_paths_against_the_manifest_folder(own_data):
    tmp, manifest, truth = own_data
    utts = prepare(manifest)
    assert {u.utt_id: (u.spk_id, u.emotion, u.gender, u.given_fold, u.wav) for u in utts} == truth


def test_stage0_takes_the_fold_column_and_records_the_protocol(own_data):
    tmp, manifest, truth = own_data
    prepare_data.main(["--corpus", "manifest", "--corpus-dir", manifest, "--data-dir", str(tmp / "data")])
    protocol = json.loads((tmp / "data" / "protocol.json").read_text())
    assert protocol["corpus"] == "data" and protocol["classes"] == list(CLASSES)
    assert protocol["fold_scheme"].startswith("the folds given") and protocol["speaker_independent"]
    assert {k: v["test_speakers"] for k, v in protocol["folds"].items()} == {"1": ["alice", "bob"],
                                                                            "2": ["carol", "dave"]}
    assert (tmp / "data" / "all" / "spk2gender").read_text().split("\n")[0] == "alice m"


@pytest.mark.parametrize("scheme, expected", [("loso", 4), ("kfold", 2)])
def test_stage0_fold_schemes_override_the_column(own_data, scheme, expected):
    tmp, manifest, _ = own_data
    prepare_data.main(["--corpus", "manifest", "--corpus-dir", manifest, "--data-dir", str(tmp / "data"),
                       "--fold-scheme", scheme, "--num-folds", "2"])
    protocol = json.loads((tmp / "data" / "protocol.json").read_text())
    tested = [spk for fold in protocol["folds"].values() for spk in fold["test_speakers"]]
    assert protocol["num_folds"] == expected and sorted(tested) == ["alice", "bob", "carol", "dave"]


def test_class_set_keeps_the_labels_named_in_their_order(own_data):
    tmp, manifest, _ = own_data
    prepare_data.main(["--corpus", "manifest", "--corpus-dir", manifest, "--data-dir", str(tmp / "data"),
                       "--class-set", "sad,angry"])
    assert (tmp / "data" / "all" / "classes.txt").read_text() == "sad\nangry\n"
    assert set((tmp / "data" / "all" / "utt2emo").read_text().split()[1::2]) == {"sad", "angry"}


BAD_ROWS = {  # (row replacing line 3 of the manifest, what the error says)
    "missing file": (["audio/alice/nothing.wav", "angry", "alice", "m", 1], "audio file not found"),
    "empty label": (["audio/alice/angry 1.wav", " ", "alice", "m", 1], "empty label"),
    "duplicate path": (["audio/alice/angry 0.wav", "angry", "alice", "m", 1], "listed twice (also on line 2)"),
    "shared speaker": (["audio/alice/angry 1.wav", "angry", "alice", "m", 2], "folds must keep speakers apart"),
    "bad gender": (["audio/alice/angry 1.wav", "angry", "alice", "x", 1], "gender 'x'"),
    "bad fold": (["audio/alice/angry 1.wav", "angry", "alice", "m", "one"], "fold 'one'"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_is_named_by_file_and_line_and_nothing_is_written(own_data, case, capsys):
    tmp, manifest, _ = own_data
    lines = open(manifest).read().splitlines()
    row, message = BAD_ROWS[case]
    lines[2] = ",".join(str(v) for v in row)
    open(manifest, "w").write("\n".join(lines) + "\n")
    with pytest.raises(SystemExit):
        prepare_data.main(["--corpus", "manifest", "--corpus-dir", manifest, "--data-dir", str(tmp / "data")])
    err = capsys.readouterr().err
    assert f"{manifest}:3: " in err and message in err
    assert not (tmp / "data" / "all").exists() and not (tmp / "data" / ".stage0.done").exists()


def test_header_without_a_required_column_names_line_1(tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", [["a.wav", "angry"]], header=("path", "label"))
    with pytest.raises(CorpusError, match=r"m\.csv:1: the header lacks column\(s\) speaker"):
        prepare(manifest)


def test_segments_read_exactly_the_samples_of_their_range(tmp_path):
    """A segment row reads as the file's samples [round(start*rate), round(end*rate)), in this process and through
    the wav.scp command run by bash (the independent reference: soundfile reading the file)."""
    long_wav = tmp_path / "rec.wav"
    write_wav(str(long_wav), 16000, channels=1, seconds=3.0, seed=3)
    manifest = write_manifest(tmp_path / "seg.csv", [
        ["rec.wav", "angry", "spk1", 0.5, 1.25], ["rec.wav", "sad", "spk1", 1.25, 3.0]],
        header=("path", "label", "speaker", "start", "end"))
    utts = prepare(manifest)
    reference, rate = soundfile.read(str(long_wav), dtype="float32", always_2d=True)
    for utt, (start, end) in zip(utts, ((0.5, 1.25), (1.25, 3.0))):
        expected = reference[round(start * rate):round(end * rate)] * np.float32(INT16_SCALE)
        samples, got_rate = read_audio(utt.wav, command_allowed=True)
        assert got_rate == rate and np.array_equal(samples, expected)
        piped = subprocess.run(["bash", "-c", utt.wav[:-1].replace("python", shlex.quote(sys.executable), 1)],
                               capture_output=True, check=True, env={**os.environ, "PYTHONPATH": REPO}).stdout
        from_command, _ = soundfile.read(io.BytesIO(piped), dtype="float32", always_2d=True)
        assert np.array_equal(from_command * np.float32(INT16_SCALE), expected)
    bad = write_manifest(tmp_path / "bad.csv", [["rec.wav", "angry", "spk1", 2.0, 3.5]],
                         header=("path", "label", "speaker", "start", "end"))
    with pytest.raises(CorpusError, match=r"bad\.csv:2: end 3\.5 s is beyond the recording"):
        prepare(bad)


def utterances(spec):
    """[(speaker, class, count)] -> Utterance records."""
    return [Utterance(f"{spk}-{emo}{i}", spk, f"/x/{spk}{emo}{i}.wav", emo, None)
            for spk, emo, count in spec for i in range(count)]


def test_speaker_kfold_keeps_speakers_whole_balances_classes_and_is_deterministic():
    rng = np.random.default_rng(0)
    spec = [(f"s{k:02d}", emo, int(rng.integers(1, 12))) for k in range(20) for emo in ("a", "b", "c")]
    utts = utterances(spec)
    folds = speaker_kfold(utts, 5, "test", seed=1)
    assert folds == speaker_kfold(list(reversed(utts)), 5, "test", seed=1)  # input order does not matter
    tested = [spk for speakers in folds.values() for spk in speakers]
    assert sorted(tested) == sorted({u.spk_id for u in utts}) and len(tested) == len(set(tested))
    totals = Counter(u.emotion for u in utts)
    for speakers in folds.values():
        counts = Counter(u.emotion for u in utts if u.spk_id in speakers)
        for emo, total in totals.items():  # each fold holds about a fifth of every class
            assert abs(counts[emo] / total - 0.2) < 0.1
    with pytest.raises(CorpusError, match="need at least 5 speakers"):
        speaker_kfold(utterances([("s1", "a", 3), ("s2", "a", 3)]), 5, "test")


def test_leave_one_speaker_out_and_a_class_missing_from_training_warns(tmp_path, capfd):
    assert leave_one_speaker_out(utterances([("b", "x", 1), ("a", "x", 1)]), "t") == {1: ["a"], 2: ["b"]}
    rows = []
    for spk, labels in (("s1", ("angry", "happy")), ("s2", ("angry", "happy")), ("s3", ("angry", "sad"))):
        for label in labels:
            for n in range(3):
                rel = f"{spk}_{label}{n}.wav"
                write_wav(str(tmp_path / rel), 16000, seed=n)
                rows.append([rel, label, spk])
    manifest = write_manifest(tmp_path / "m.csv", rows, header=("path", "label", "speaker"))
    prepare_data.main(["--corpus", "manifest", "--corpus-dir", manifest, "--data-dir", str(tmp_path / "data"),
                       "--fold-scheme", "loso"])
    warned = [line for line in capfd.readouterr().err.splitlines() if "no training utterance" in line]
    assert len(warned) == 1 and "WARNING: m: fold 3: class(es) sad" in warned[0]


def test_setup_sh_refuses_a_directory_that_holds_something(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    proc = subprocess.run([SETUP, str(tmp_path / "mine")], capture_output=True, text=True)
    assert proc.returncode == 1 and "nothing is overwritten" in proc.stderr
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


@pytest.mark.slow
def test_a_corpus_module_of_ones_own_follows_the_readme_without_editing_ser(tmp_path):
    """docs/extending.md "Adding a corpus", step by step on a made-up corpus: a module file (parser, class set,
    published counts, fold rule) and a recipe made by setup.sh --corpus; stage 0 writes its data dirs. No file of
    ser is edited."""
    corpus = tmp_path / "release"
    for spk, gender in (("ann", "f"), ("ben", "m"), ("cid", "m")):
        for code in ("A", "N"):
            write_wav(str(corpus / f"{spk}_{code}.wav"), 22050)
    proc = subprocess.run([SETUP, str(tmp_path / "recipe"), "--corpus", "local/madeup.py"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    module = tmp_path / "recipe" / "local" / "madeup.py"
    module.parent.mkdir()
    module.write_text('''"""Made-up corpus: <speaker>_<A|N>.wav."""
import glob
import os

from ser.corpora import CORPORA
from ser.corpora.common import CorpusError, Utterance, check_unique, leave_one_speaker_out, map_label

CORPUS = "madeup"
OBTAIN = "nowhere: it is made up"
CLASS_SETS = {"2class": {"A": "angry", "N": "neutral"}}
DEFAULT_CLASS_SET = "2class"
EXPECTED_COUNTS = {"2class": {"angry": 3, "neutral": 3}}
GENDERS = {"ann": "f", "ben": "m", "cid": "m"}
FOLD_SCHEME = "leave one speaker out"


def prepare(corpus_dir, class_set=DEFAULT_CLASS_SET, strict=True):
    utts = []
    for wav in sorted(glob.glob(os.path.join(corpus_dir, "*.wav"))):
        spk, code = os.path.basename(wav)[:-4].split("_")
        if spk not in GENDERS:
            raise CorpusError(f"{wav}: unknown speaker {spk}")
        emotion = map_label(code, CLASS_SETS[class_set], ("A", "N"), wav)
        utts.append(Utterance(f"{spk}-{code}", spk, os.path.abspath(wav), emotion, GENDERS[spk]))
    check_unique(utts)
    return utts


def folds(utts):
    return leave_one_speaker_out(utts, CORPUS)
''')
    proc = subprocess.run([str(tmp_path / "recipe" / "run.sh"), "--corpus-dir", str(corpus), "--stop-stage", "0"],
                          capture_output=True, text=True, env=recipe_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    protocol = json.loads((tmp_path / "recipe" / "data" / "protocol.json").read_text())
    assert protocol["corpus"] == "madeup" and protocol["num_folds"] == 3 and protocol["classes"] == ["angry", "neutral"]
    assert "madeup" not in CORPORA  # nothing registered in ser


@pytest.mark.slow
def test_setup_sh_and_a_manifest_run_every_stage_and_classify(tmp_path):
    """From a folder of wavs and a CSV: setup.sh, then ./run.sh --corpus-manifest runs stages 0-4 with the
    classic reference beside the neural model, stage 5 trains the final model, and ser-classify uses it."""
    from ser.corpora.synth import generate_synth_corpus

    generate_synth_corpus(str(tmp_path / "wavs"), num_speakers=4, utts_per_class=3)
    rows = [line.split() for line in (tmp_path / "wavs" / "labels.txt").read_text().splitlines()]
    manifest = write_manifest(tmp_path / "wavs" / "mine.csv", [[p, label, spk, g] for p, label, spk, g in rows],
                              header=("path", "label", "speaker", "gender"))
    recipe = tmp_path / "egs" / "mine"
    assert subprocess.run([SETUP, str(recipe)], capture_output=True).returncode == 0
    common = ["--corpus-manifest", manifest, "--num-folds", "2", "--nj", "2", "--train-config", "conf/train.yaml",
              "--train-args", "--set max_epoch=2 --set encoder_conf.d_model=32 --set encoder_conf.num_heads=4"]
    proc = subprocess.run([str(recipe / "run.sh"), *common, "--classic-configs", "conf/classic/egemaps.yaml"],
                          capture_output=True, text=True, env=recipe_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    for tag in ("train", "egemaps"):
        results = json.loads((recipe / "exp" / tag / "results.json").read_text())
        assert results["protocol"]["corpus"] == "mine" and results["protocol"]["folds_scored"] == [1, 2]
        assert results["protocol"]["complete"]  # every fold, the classic reference's too
    proc = subprocess.run([str(recipe / "run.sh"), *common, "--stage", "5"], capture_output=True, text=True,
                          env=recipe_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "decisions.txt"
    proc = subprocess.run([sys.executable, "-m", "ser.bin.classify", "--model", str(recipe / "exp" / "train" / "final"),
                           str(tmp_path / "wavs" / "spk01"), "--output", str(out)],
                          capture_output=True, text=True, env={**recipe_env(), "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(out.read_text().strip().splitlines()) >= 12


def test_without_opensmile_a_recipe_runs_the_fbank_model_and_says_so_once(own_data):
    """openSMILE is an optional extra: without it the default is the fbank-only config and the classic references
    are skipped, said in one line at the start, and stage 1 computes no functionals."""
    tmp, manifest, _ = own_data
    blocker = tmp / "no_opensmile"
    blocker.mkdir()
    # As if not installed: every Python of the run finds no opensmile (importlib.util.find_spec gives None)
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['opensmile'] = None\n")
    recipe = tmp / "recipe"
    assert subprocess.run([SETUP, str(recipe)], capture_output=True).returncode == 0
    env = {**recipe_env(), "PYTHONPATH": str(blocker)}
    proc = subprocess.run([str(recipe / "run.sh"), "--corpus-manifest", manifest, "--stop-stage", "1", "--nj", "1"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [line for line in proc.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1 and "running the fbank-only model (conf/train.yaml)" in notes[0]
    assert "tools/install.sh --opensmile" in notes[0]
    assert (recipe / "dump" / "fbank" / ".stage1.done").exists() and not (recipe / "dump" / "functionals").exists()
