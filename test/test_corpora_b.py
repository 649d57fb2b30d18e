"""Layout tests for SUBESCO, ShEMO, AESDD and MESD: small trees of real release file names (taken from EmoBox's
metadata of each corpus), written as short wavs at the released rates; the truth is what the builders wrote."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ser.bin import prepare_data
from ser.corpora import CORPORA, aesdd, mesd, shemo, subesco
from ser.corpora.common import CorpusError, leave_one_speaker_out
from ser.datadir import read_table

import support
from support import FakeUtt, assert_prepared, assert_speakers_apart

SECONDS = 0.05


def _wav(path, rate, seed=0):
    return support.write_wav(str(path), rate, seconds=SECONDS, seed=seed)


def _check_folds_apart(module, utts):
    folds = module.folds(utts)
    assert_speakers_apart(folds, utts)
    for speakers in folds.values():
        test = {u.utt_id for u in utts if u.spk_id in speakers}
        train = {u.utt_id for u in utts if u.spk_id not in speakers}
        assert test and train and not {u.spk_id for u in utts if u.utt_id in test} & \
            {u.spk_id for u in utts if u.utt_id in train}
    return folds


def test_registry():
    for name in ("aesdd", "mesd", "shemo", "subesco"):
        assert CORPORA[name] == f"ser.corpora.{name}"
    assert list(CORPORA) == sorted(CORPORA)


# ------------------------------------------------------------------------------------------ SUBESCO

SUBESCO_EMOTIONS = ("ANGRY", "DISGUST", "FEAR", "HAPPY", "NEUTRAL", "SAD", "SURPRISE")
# (gender, number, name, rate): one speaker of every EmoBox fold, F02 and M10 both of fold 5.
SUBESCO_SPEAKERS = (("F", "03", "SMITA", 44100), ("F", "01", "OISHI", 44100), ("F", "06", "SIMI", 48000),
                    ("M", "04", "BIBHAS", 44100), ("F", "02", "MONIKA", 44100), ("M", "10", "EVAN", 48000))


def build_subesco(root):
    truth = {}
    for i, (gender, number, name, rate) in enumerate(SUBESCO_SPEAKERS):
        for j, emotion in enumerate(SUBESCO_EMOTIONS):
            sentence, take = 1 + (i + j) % 10, 1 + j % 5
            stem = f"{gender}_{number}_{name}_S_{sentence}_{emotion}_{take}"
            wav = os.path.join(root, "SUBESCO", stem + ".wav")
            truth[f"{gender}{number}-{stem}"] = FakeUtt(f"{gender}{number}", emotion, gender.lower(), wav,
                                                        _wav(wav, rate, seed=j))
    # the release's one file with a stray bracket: take 3
    wav = os.path.join(root, "SUBESCO", "F_02_MONIKA_S_2_SURPRISE_3].wav")
    truth["F02-F_02_MONIKA_S_2_SURPRISE_3"] = FakeUtt("F02", "SURPRISE", "f", wav, _wav(wav, 44100))
    return truth


def test_subesco_layout_and_stage0(tmp_path, monkeypatch):
    truth = build_subesco(tmp_path / "subesco")
    utts = subesco.prepare(str(tmp_path / "subesco"))
    assert_prepared(utts, truth, subesco.CLASS_SETS["7class"])
    folds = _check_folds_apart(subesco, utts)
    assert folds == {1: ["F03"], 2: ["F01"], 3: ["F06"], 4: ["M04"], 5: ["F02", "M10"]}
    assert subesco.FOLD_SCHEMES["emobox"].assign(utts) == folds
    assert len(leave_one_speaker_out(utts, "subesco")) == 6
    assert sum(subesco.EXPECTED_COUNTS["7class"].values()) == 7000
    assert len(subesco.SPEAKERS) == subesco.NUM_SPEAKERS == 20
    assert sorted(s for f in subesco.EMOBOX_FOLDS.values() for s in f) == sorted(subesco.SPEAKERS)

    # Stage 0 through the command line (the registry may not yet feed prepare_data's --corpus choices).
    data = tmp_path / "data"
    prepare_data.main(["--corpus", "subesco", "--corpus-dir", str(tmp_path / "subesco"), "--data-dir", str(data),
                       "--strict-counts", "false"])
    protocol = json.loads((data / "protocol.json").read_text())
    assert protocol["classes"] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert protocol["num_utterances"] == len(truth) and protocol["speaker_independent"]
    assert {int(k): v["test_speakers"] for k, v in protocol["folds"].items()} == folds
    assert read_table(str(data / "all" / "utt2spk")) == {utt: t.spk for utt, t in truth.items()}
    assert read_table(str(data / "all" / "spk2gender")) == {t.spk: t.gender for t in truth.values()}
    for k in folds:
        assert set(read_table(str(data / f"fold{k}" / "test" / "utt2spk")).values()) == set(folds[k])


def test_subesco_errors(tmp_path):
    build_subesco(tmp_path / "s")
    bad = tmp_path / "s" / "SUBESCO" / "F_01_OISHI_S_1_BORED_1.wav"
    _wav(bad, 44100)
    with pytest.raises(CorpusError, match="F_01_OISHI_S_1_BORED_1.wav.*unknown label 'BORED'"):
        subesco.prepare(str(tmp_path / "s"))
    os.remove(bad)
    for name in ("F_01_SMITA_S_1_ANGRY_1.wav", "F_11_OISHI_S_1_ANGRY_1.wav", "F_01_OISHI_S_1_ANGRY_6.wav",
                 "F01_OISHI_ANGRY_1.wav"):
        _wav(tmp_path / "s" / name, 44100)
        with pytest.raises(CorpusError, match=name.replace(".", r"\.")):
            subesco.prepare(str(tmp_path / "s"))
        os.remove(tmp_path / "s" / name)
    with pytest.raises(CorpusError, match="no .wav files"):
        subesco.prepare(str(tmp_path / "empty"))


# ------------------------------------------------------------------------------------------ ShEMO

SHEMO_SPEAKERS = ("F01", "F14", "F31", "M02", "M56")
SHEMO_CODES = ("A", "H", "N", "S", "W", "F")


def build_shemo(root):
    truth = {}
    for i, spk in enumerate(SHEMO_SPEAKERS):
        folder = "female" if spk[0] == "F" else "male"
        for j, code in enumerate(SHEMO_CODES):
            for n in range(1, 1 + (j % 2) + 1):  # one or two utterances per emotion
                stem = f"{spk}{code}{n:02d}"
                wav = os.path.join(root, folder, stem + ".wav")
                rate = 22050 if (i, j) == (1, 0) else 44100
                truth[f"{spk}-{stem}"] = FakeUtt(spk, code, spk[0].lower(), wav, _wav(wav, rate, seed=j))
    return truth


def test_shemo_layout(tmp_path):
    truth = build_shemo(tmp_path / "shemo")
    utts = shemo.prepare(str(tmp_path / "shemo"))
    assert_prepared(utts, truth, shemo.CLASS_SETS["6class"])
    folds = _check_folds_apart(shemo, utts)
    assert len(folds) == 5 and all(len(v) == 1 for v in folds.values())
    assert shemo.folds(utts) == folds  # deterministic
    no_fear = shemo.prepare(str(tmp_path / "shemo"), "5class_no_fear")
    assert_prepared(no_fear, truth, shemo.CLASS_SETS["5class_no_fear"])
    assert sum(shemo.EXPECTED_COUNTS["6class"].values()) == 3000 and shemo.NUM_SPEAKERS == 87
    # unpacked one folder further down
    shutil.move(str(tmp_path / "shemo"), str(tmp_path / "top"))
    os.makedirs(tmp_path / "shemo")
    shutil.move(str(tmp_path / "top"), str(tmp_path / "shemo" / "ShEMO"))
    assert {u.utt_id for u in shemo.prepare(str(tmp_path / "shemo"))} == {u.utt_id for u in utts}


def test_shemo_errors(tmp_path):
    build_shemo(tmp_path / "s")
    for folder, name, message in (("female", "F01X01.wav", "unknown label 'X'"),
                                  ("female", "M03A01.wav", "differs from its folder"),
                                  ("male", "M57A01.wav", "out of range"),
                                  ("male", "M3A01.wav", "file name is not")):
        path = tmp_path / "s" / folder / name
        _wav(path, 44100)
        with pytest.raises(CorpusError, match=f"{name}.*{message}"):
            shemo.prepare(str(tmp_path / "s"))
        os.remove(path)
    with pytest.raises(CorpusError, match="no folder female or male"):
        shemo.prepare(str(tmp_path / "nothing"))


# ------------------------------------------------------------------------------------------ AESDD

AESDD_FOLDERS = {"a": "anger", "d": "disgust", "f": "fear", "h": "happiness", "s": "sadness"}


def build_aesdd(root):
    """Speakers 1, 2, 5 in every emotion folder; the release's name variants: (01), (5)a, (5)b."""
    truth = {}
    files = [(code, f"{code}{n:02d}", str(spk), "") for n, code in enumerate(AESDD_FOLDERS, start=1)
             for spk in (1, 2, 5)]
    files += [("d", "d03", "01", ""), ("s", "s01", "5", "a"), ("s", "s01", "5", "b"), ("f", "f10", "01", "")]
    for i, (code, utt, speaker, take) in enumerate(files):
        wav = os.path.join(root, "AESDD", AESDD_FOLDERS[code], f"{utt} ({speaker}){take}.wav")
        spk = f"spk{int(speaker)}"
        truth[f"{spk}-{utt}_{speaker}{take}"] = FakeUtt(spk, code, None, wav, _wav(wav, 44100, seed=i))
    return truth


def test_aesdd_layout(tmp_path):
    truth = build_aesdd(tmp_path / "aesdd")
    utts = aesdd.prepare(str(tmp_path / "aesdd"))
    assert_prepared(utts, truth, aesdd.CLASS_SETS["5class"])
    assert _check_folds_apart(aesdd, utts) == {1: ["spk1"], 2: ["spk2"], 3: ["spk5"]}
    assert sum(aesdd.EXPECTED_COUNTS["5class"].values()) == 604


def test_aesdd_errors(tmp_path):
    build_aesdd(tmp_path / "a")
    for folder, name, message in (("anger", "x01 (1).wav", "unknown label 'x'"),
                                  ("fear", "a01 (1).wav", "differs from its folder"),
                                  ("anger", "a21 (1).wav", "out of range"),
                                  ("anger", "a01(1).wav", "file name is not")):
        path = tmp_path / "a" / "AESDD" / folder / name
        _wav(path, 44100)
        with pytest.raises(CorpusError, match=f"{name.replace('(', '.').replace(')', '.')}.*{message}"):
            aesdd.prepare(str(tmp_path / "a"))
        os.remove(path)
    with pytest.raises(CorpusError, match="no folder anger or disgust"):
        aesdd.prepare(str(tmp_path / "none"))


# ------------------------------------------------------------------------------------------ MESD

MESD_EMOTIONS = ("Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness")
MESD_WORDS = (("A", "abajo"), ("A", "de_nada"), ("B", "amenazado"))
MESD_VOICES = {"F": ("female", "f"), "M": ("male", "m"), "C": ("child", None)}


def build_mesd(root):
    truth = {}
    folder = os.path.join(root, "Mexican Emotional Speech Database (MESD)")
    for voice, (spk, gender) in MESD_VOICES.items():
        for j, emotion in enumerate(MESD_EMOTIONS):
            word_corpus, word = MESD_WORDS[j % len(MESD_WORDS)]
            stem = f"{emotion}_{voice}_{word_corpus}_{word}"
            wav = os.path.join(folder, stem + ".wav")
            truth[f"{spk}-{stem}"] = FakeUtt(spk, emotion, gender, wav, _wav(wav, 48000, seed=j))
    return truth


def test_mesd_layout(tmp_path):
    truth = build_mesd(tmp_path / "mesd")
    utts = mesd.prepare(str(tmp_path / "mesd"))
    assert_prepared(utts, truth, mesd.CLASS_SETS["6class"])
    assert _check_folds_apart(mesd, utts) == {1: ["female"], 2: ["male"], 3: ["child"]}
    # pointed at the release folder itself
    inner = tmp_path / "mesd" / "Mexican Emotional Speech Database (MESD)"
    assert {u.utt_id for u in mesd.prepare(str(inner))} == set(truth)
    assert sum(mesd.EXPECTED_COUNTS["6class"].values()) == 862


def test_mesd_errors(tmp_path):
    build_mesd(tmp_path / "m")
    folder = tmp_path / "m" / "Mexican Emotional Speech Database (MESD)"
    for name, message in (("Joy_F_A_abajo.wav", "unknown label 'Joy'"), ("Anger_X_A_abajo.wav", "voice type X"),
                          ("Anger_F_C_abajo.wav", "word corpus C"), ("Anger-F-A-abajo.wav", "file name is not")):
        _wav(folder / name, 48000)
        with pytest.raises(CorpusError, match=f"{name}.*{message}"):
            mesd.prepare(str(tmp_path / "m"))
        os.remove(folder / name)
    with pytest.raises(CorpusError, match="no .wav files"):
        mesd.prepare(str(tmp_path / "void"))
