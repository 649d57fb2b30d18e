"""The URDU recipe: its layout on a tree of real file names, the real 16 kHz copy where ../shared has it, EmoBox's
kind of split recorded as speaker-dependent, and stage 0 fetching the release with --download-dir (local server)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import zipfile

import pytest

from ser.bin import prepare_data
from ser.corpora import urdu
from ser.corpora.common import CorpusError

from support import REPO, SHARED_CORPORA, Server, recipe_env, write_wav

# Real names of the release: (folder, file, speaker, gender, class)
REAL_NAMES = [
    ("Angry", "SM1_F10_A010.wav", "SM1", "m", "angry"), ("Angry", "SF6_F1_A064.wav", "SF6", "f", "angry"),
    ("Happy", "SM7_F16_H088.wav", "SM7", "m", "happy"), ("Happy", "SF1_F11_H011.wav", "SF1", "f", "happy"),
    ("Neutral", "SM5_F63_N091.wav", "SM5", "m", "neutral"), ("Neutral", "SF9_F4_N04.wav", "SF9", "f", "neutral"),
    ("Sad", "SM24_F8_S020.wav", "SM24", "m", "sad"), ("Sad", "SF10_F1_S01.wav", "SF10", "f", "sad"),
    ("Sad", "SM25_F24_S074.wav", "SM25", "m", "sad"), ("Angry", "SM3_F2_A022.wav", "SM3", "m", "angry"),
]


def build(root, top="URDU-Dataset-master"):
    truth = {}
    for i, (folder, name, spk, gender, emotion) in enumerate(REAL_NAMES):
        path = os.path.join(root, top, folder, name)
        write_wav(path, 44100, seed=i)  # the release's rate
        truth[f"{spk}-{name[:-4]}"] = (spk, gender, emotion, path)
    return truth


def test_layout_of_the_release_with_its_top_folder(tmp_path):
    truth = build(str(tmp_path))
    utts = urdu.prepare(str(tmp_path))
    assert {u.utt_id: (u.spk_id, u.gender, u.emotion, u.wav) for u in utts} == truth
    folds = urdu.folds(utts)
    tested = [spk for speakers in folds.values() for spk in speakers]
    assert len(folds) == 5 and sorted(tested) == sorted({t[0] for t in truth.values()})


@pytest.mark.parametrize("folder, name, message", [
    ("Happy", "SM1_F10_A010.wav", "emotion letter A differs from its folder Happy"),
    ("Sad", "SM1-F10-S010.wav", "file name is not SGX_FYY_EZZ.wav"),
    ("Sad", "SX1_F10_S010.wav", "file name is not SGX_FYY_EZZ.wav"),
])
def test_bad_names_are_named(tmp_path, folder, name, message):
    build(str(tmp_path))
    write_wav(str(tmp_path / "URDU-Dataset-master" / folder / name), 44100)
    with pytest.raises(CorpusError, match=message) as error:
        urdu.prepare(str(tmp_path))
    assert name in str(error.value)


def test_emobox_scheme_is_one_speaker_dependent_fold(tmp_path):
    build(str(tmp_path))
    for folder, letter in (("Angry", "A"), ("Happy", "H"), ("Neutral", "N"), ("Sad", "S")):
        for n in range(4):  # 4 more of each class, of speaker SM5's
            write_wav(str(tmp_path / "URDU-Dataset-master" / folder / f"SM5_F{70 + n}_{letter}1{n}0.wav"), 44100)
    prepare_data.main(["--corpus", "urdu", "--corpus-dir", str(tmp_path), "--data-dir", str(tmp_path / "data"),
                       "--fold-scheme", "emobox", "--strict-counts", "false"])
    protocol = json.loads((tmp_path / "data" / "protocol.json").read_text())
    assert protocol["num_folds"] == 1 and protocol["speaker_independent"] is False
    test = protocol["folds"]["1"]["counts"]["test"]
    assert test == {"angry": 1, "happy": 1, "neutral": 1, "sad": 1}  # int(0.25 n): 7 angry or sad, 6 happy or
    # neutral -> 1 each


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_CORPORA, "URDU")),
                    reason="the URDU copy is not at ../shared/corpora/URDU")
def test_the_real_copy_matches_the_published_counts(tmp_path):
    prepare_data.main(["--corpus", "urdu", "--corpus-dir", os.path.join(SHARED_CORPORA, "URDU"),
                       "--data-dir", str(tmp_path / "data")])  # strict: counts and speakers checked
    protocol = json.loads((tmp_path / "data" / "protocol.json").read_text())
    assert protocol["counts"] == {"angry": 100, "happy": 100, "neutral": 100, "sad": 100}
    assert protocol["num_speakers"] == 29 and protocol["speaker_independent"]
    test_speakers = [set(f["test_speakers"]) for f in protocol["folds"].values()]
    assert sum(len(s) for s in test_speakers) == 29 and len(set().union(*test_speakers)) == 29


def test_stage0_fetches_the_release_with_download_dir(tmp_path):
    """A recipe made by setup.sh for a module that mirrors urdu's DOWNLOADS on a local server: stage 0 fetches the
    zip (checksum checked), unpacks it, and prepares the data from it."""
    build(str(tmp_path / "release"))
    archive = tmp_path / "URDU-Dataset-master.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for root, _, files in os.walk(tmp_path / "release"):
            for f in files:
                z.write(os.path.join(root, f), os.path.relpath(os.path.join(root, f), tmp_path / "release"))
    data = archive.read_bytes()
    server = Server("range")
    server.thread.start()
    try:
        server.files["/urdu/URDU-Dataset-master.zip"] = data
        recipe = tmp_path / "egs" / "urdu_mirror"
        assert subprocess.run([os.path.join(REPO, "egs", "TEMPLATE", "setup.sh"), str(recipe), "--corpus",
                               "local/mirror.py"], capture_output=True).returncode == 0
        (recipe / "local").mkdir()
        (recipe / "local" / "mirror.py").write_text(
            "from ser.corpora.urdu import *  # noqa: F401,F403\n"
            "from ser.corpora.urdu import folds, prepare  # noqa: F401\n"
            "CORPUS = 'urdu_mirror'\nEXPECTED_COUNTS = {}\n"
            f"DOWNLOADS = [{{'url': '{server.base}/urdu/URDU-Dataset-master.zip', "
            f"'sha256': '{hashlib.sha256(data).hexdigest()}', 'name': 'URDU-Dataset-master.zip'}}]\n"
            "DOWNLOAD_ROOT = 'URDU-Dataset-master'\n")
        env = recipe_env()
        proc = subprocess.run([str(recipe / "run.sh"), "--download-dir", str(tmp_path / "dl"), "--stop-stage", "0"],
                              capture_output=True, text=True, env=env)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stage 0: fetching" in proc.stderr and len(server.requests) == 1
    wav_scp = (recipe / "data" / "all" / "wav.scp").read_text()
    assert wav_scp.count("\n") == len(REAL_NAMES)
    assert str(tmp_path / "dl" / "urdu_mirror" / "URDU-Dataset-master") in wav_scp


def test_stage0_without_the_corpus_says_where_it_is_obtained(tmp_path):
    proc = subprocess.run([os.path.join(REPO, "egs", "urdu", "run.sh"), "--corpus-dir", str(tmp_path / "none"),
                           "--data-dir", str(tmp_path / "data"), "--dump-dir", str(tmp_path / "dump"),
                           "--exp-root", str(tmp_path / "exp"), "--stop-stage", "0"],
                          capture_output=True, text=True, env=recipe_env())
    assert proc.returncode != 0 and not (tmp_path / "data" / "all").exists()
    assert f"corpus directory {tmp_path / 'none'} does not exist" in proc.stderr
    assert "urdu is obtained from https://github.com/siddiquelatif/URDU-Dataset" in proc.stderr
