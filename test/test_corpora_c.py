"""Layout tests for the group-c corpora: JL-Corpus, EmoV-DB, Polish, ASED, Oreau.

Each fixture is built here from real file names of the release (as EmoBox's metadata lists them), written as
short wavs at the released rate; the truth each builder returns comes from its own tables, never from parsing.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from ser.bin import prepare_data
from ser.corpora import CORPORA, ased, emovdb, jlcorpus, oreau, polish
from ser.corpora.common import CorpusError, FoldScheme
from ser.datadir import read_table

from support import FakeUtt, assert_bad_names, assert_prepared, assert_speakers_apart, write_wav

SECONDS = 0.05


def _write(truth, utt_id, spk, raw, gender, path, rate):
    truth[utt_id] = FakeUtt(spk, raw, gender, path, write_wav(path, rate, seconds=SECONDS, seed=len(truth)))


def _check_folds(fold_map, utts, num_folds):
    assert sorted(fold_map) == list(range(1, num_folds + 1))
    assert_speakers_apart(fold_map, utts)


def test_registry_lists_the_group_c_corpora():
    for name in ("jlcorpus", "emovdb", "polish", "ased", "oreau"):
        assert CORPORA[name] == f"ser.corpora.{name}"
    for module in (jlcorpus, emovdb, polish, ased, oreau):
        assert module.DEFAULT_CLASS_SET in module.CLASS_SETS
        classes = set(module.CLASS_SETS[module.DEFAULT_CLASS_SET].values())
        assert set(module.EXPECTED_COUNTS[module.DEFAULT_CLASS_SET]) == classes
        assert isinstance(module.FOLD_SCHEMES["emobox"], FoldScheme)
        assert module.NUM_SPEAKERS > 0 and module.OBTAIN


# ------------------------------------------------------------------------------------------ JL-Corpus

JL_SPEAKERS = {"female1": "f", "female2": "f", "male1": "m", "male2": "m"}
JL_EMOTIONS = ("angry", "sad", "neutral", "happy", "excited", "anxious", "apologetic", "assertive", "concerned",
               "encouraging")


def build_jlcorpus(root):
    wav_dir = os.path.join(root, "Raw JL corpus (unchecked and unannotated)", "JL(wav+txt)")
    truth = {}
    for spk, gender in JL_SPEAKERS.items():
        for emotion in JL_EMOTIONS:
            for take in ("1a_1", "12b_2"):
                stem = f"{spk}_{emotion}_{take}"
                _write(truth, f"{spk}-{stem}", spk, emotion, gender, os.path.join(wav_dir, stem + ".wav"), 44100)
                with open(os.path.join(wav_dir, stem + ".txt"), "w") as f:  # the release's transcripts, not read
                    f.write("text\n")
    return truth, wav_dir


def test_jlcorpus_layout_class_sets_folds_and_errors(tmp_path):
    truth, wav_dir = build_jlcorpus(str(tmp_path / "jl"))
    utts = jlcorpus.prepare(str(tmp_path / "jl"))
    assert_prepared(utts, truth, jlcorpus.CLASS_SETS["10class"])
    assert_prepared(jlcorpus.prepare(wav_dir, "5class_primary"), truth, jlcorpus.CLASS_SETS["5class_primary"])
    assert jlcorpus.folds(utts) == {1: ["male2"], 2: ["female1"], 3: ["male1"], 4: ["female2"]}
    assert jlcorpus.FOLD_SCHEMES["emobox"].assign(utts) == jlcorpus.folds(utts)

    assert_bad_names(jlcorpus.prepare, tmp_path / "jl", wav_dir, 44100, [
        ("male1_bored_1a_1.wav", "male1_bored_1a_1.wav.*unknown label 'bored'"),
        ("male1_angry_1a.wav", "male1_angry_1a.wav: file name is not")])
    with pytest.raises(CorpusError, match="expected Raw JL corpus"):
        jlcorpus.prepare(str(tmp_path))


def test_jlcorpus_stage0_writes_data_dirs_and_protocol(tmp_path, monkeypatch):
    truth, _ = build_jlcorpus(str(tmp_path / "jl"))
    # Until stage 0 reads the registry, its --corpus choices are a fixed tuple: let it accept this corpus.
    data = tmp_path / "data"
    prepare_data.main(["--corpus", "jlcorpus", "--corpus-dir", str(tmp_path / "jl"), "--data-dir", str(data),
                       "--strict-counts", "false"])
    protocol = json.loads((data / "protocol.json").read_text())
    assert protocol["corpus"] == "jlcorpus" and protocol["class_set"] == "10class"
    assert protocol["classes"] == list(JL_EMOTIONS)
    assert protocol["num_utterances"] == len(truth) and protocol["num_speakers"] == 4
    assert {int(k): v["test_speakers"] for k, v in protocol["folds"].items()} == \
        {1: ["male2"], 2: ["female1"], 3: ["male1"], 4: ["female2"]}
    assert read_table(str(data / "all" / "utt2spk")) == {u: t.spk for u, t in truth.items()}
    assert read_table(str(data / "all" / "utt2emo")) == {u: t.raw_label for u, t in truth.items()}
    assert read_table(str(data / "all" / "spk2gender")) == JL_SPEAKERS
    for k in range(1, 5):
        test_speakers = set(read_table(str(data / f"fold{k}" / "test" / "utt2spk")).values())
        train_speakers = set(read_table(str(data / f"fold{k}" / "train" / "utt2spk")).values())
        assert test_speakers == set(protocol["folds"][str(k)]["test_speakers"]) and not test_speakers & train_speakers


# ------------------------------------------------------------------------------------------ EmoV-DB

EMOVDB_FILES = {  # folder: real file names of the OpenSLR release (EmoBox's data/emovdb/emovdb.jsonl)
    "bea_Amused": ("amused_1-15_0001.wav", "amused_141_168_0141.wav"),
    "bea_Angry": ("anger_1-28_0001.wav",),
    "bea_Disgusted": ("disgust_1-28_0001.wav",),
    "bea_Neutral": ("Neutral_1-28_0001.wav", "neutral_113-140_0113.wav"),
    "bea_Sleepy": ("sleepiness_1-28_0001.wav",),
    "jenie_Amused": ("amused_1-28_0001.wav",),
    "jenie_Angry": ("anger_1-28_0001.wav",),
    "jenie_Disgusted": ("disgust_141-168_0141.wav",),
    "jenie_Neutral": ("neutral_1-28_0001.wav",),
    "jenie_Sleepy": ("sleepiness_1-28_0001.wav",),
    "josh_Amused": ("amused_1-28_0001.wav",),
    "josh_Neutral": ("neutral_1-28_0001.wav",),
    "josh_Sleepy": ("sleepiness_113_140_0113.wav",),
    "sam_Amused": ("amused_1-28_0001.wav",),
    "sam_Angry": ("anger_225_252_0225.wav",),
    "sam_Disgusted": ("Disgust_1-28_0001.wav", "disgust_253-280_0253.wav"),
    "sam_Neutral": ("neutral_1-28_0001.wav",),
    "sam_Sleepy": ("sleepiness_1-28_0002.wav",),
}
EMOVDB_GENDERS = {"bea": "f", "jenie": "f", "josh": "m", "sam": "m"}
EMOVDB_STYLE = {"Amused": "amused", "Angry": "anger", "Disgusted": "disgust", "Neutral": "neutral",
                "Sleepy": "sleepiness"}


def build_emovdb(root):
    truth = {}
    for folder, names in EMOVDB_FILES.items():
        spk, emotion = folder.split("_")
        for name in names:
            rate = 44100 if spk == "bea" else 16000
            _write(truth, f"{spk}-{name[:-4]}", spk, EMOVDB_STYLE[emotion], EMOVDB_GENDERS[spk],
                   os.path.join(root, folder, name), rate)
    return truth


def test_emovdb_layouts_folds_and_errors(tmp_path):
    truth = build_emovdb(str(tmp_path / "emov"))
    utts = emovdb.prepare(str(tmp_path / "emov"))
    assert_prepared(utts, truth, emovdb.CLASS_SETS["5class"])
    assert emovdb.folds(utts) == {1: ["bea"], 2: ["jenie"], 3: ["josh"], 4: ["sam"]}

    sorted_copy = tmp_path / "sorted" / "josh" / "amused" / "amused_1-28_0001.wav"  # the MEGA layout
    write_wav(str(sorted_copy), 16000, seconds=SECONDS)
    assert [(u.utt_id, u.spk_id, u.emotion, u.gender) for u in emovdb.prepare(str(tmp_path / "sorted"))] == \
        [("josh-amused_1-28_0001", "josh", "amused", "m")]

    assert_bad_names(emovdb.prepare, tmp_path / "emov", tmp_path / "emov" / "sam_Angry", 16000, [
        ("amused_1-28_0009.wav", "amused_1-28_0009.wav: style 'amused' differs from its folder"),
        ("happy_1-28_0009.wav", "happy_1-28_0009.wav: unknown label 'happy'"),
        ("anger_9.wav", "anger_9.wav: file name is not")])


def test_emovdb_emobox_scheme_is_a_stratified_quarter_of_each_class(tmp_path):
    truth = build_emovdb(str(tmp_path / "emov"))
    for folder in ("bea_Sleepy", "sam_Sleepy", "jenie_Sleepy"):  # enough sleepy files for a quarter of 2
        for n in range(10, 17):
            spk = folder.split("_")[0]
            _write(truth, f"{spk}-sleepiness_1-28_{n:04d}", spk, "sleepiness", EMOVDB_GENDERS[spk],
                   str(tmp_path / "emov" / folder / f"sleepiness_1-28_{n:04d}.wav"), 16000)
    utts = emovdb.prepare(str(tmp_path / "emov"))
    scheme = emovdb.FOLD_SCHEMES["emobox"]
    assert scheme.unit == "utterance"
    tested = scheme.assign(utts)
    assert list(tested) == [1]
    emotion_of = {u.utt_id: u.emotion for u in utts}
    per_class = Counter(emotion_of[u] for u in tested[1])
    assert per_class == {c: n // 4 for c, n in Counter(emotion_of.values()).items() if n // 4}
    assert scheme.assign(list(reversed(utts))) == tested  # deterministic whatever the order


# ------------------------------------------------------------------------------------------ Polish

POLISH_EMOTIONS = {"a": "angry", "n": "neutral", "s": "fear"}


def build_polish(root):
    truth = {}
    for spk in ("m1", "m2", "m3", "m4", "m5"):
        for raw in POLISH_EMOTIONS:
            for word, take in (("nie", 1), ("trzymaj", 5)):
                name = f"{spk}.{raw}_{word}_{take}.wav"
                _write(truth, f"{spk}-{raw}_{word}_{take}", spk, raw, "m", os.path.join(root, "polish", name), 44100)
    return truth


def test_polish_layout_folds_and_errors(tmp_path):
    truth = build_polish(str(tmp_path / "pl"))
    utts = polish.prepare(str(tmp_path / "pl"))
    assert_prepared(utts, truth, polish.CLASS_SETS["3class"])
    assert polish.folds(utts) == {1: ["m3"], 2: ["m2"], 3: ["m4"], 4: ["m5"], 5: ["m1"]}

    assert_bad_names(polish.prepare, tmp_path / "pl", tmp_path / "pl" / "polish", 44100, [
        ("m1.x_nie_1.wav", "m1.x_nie_1.wav: unknown label 'x'"),
        ("m1_a_nie_1.wav", "m1_a_nie_1.wav: file name is not"),
        ("m6.a_nie_1.wav", "m6.a_nie_1.wav: speaker m6")])


# ------------------------------------------------------------------------------------------ ASED

ASED_FILES = (  # real names of the release (github.com/wgwangang/ASED_V1); speaker -> published gender below
    "01Neutral/n1-01-01-01-01.wav", "01Neutral/n1-01-01-01-15.wav", "01Neutral/n1-01-01-02-04.wav",
    "01Neutral/n1-01-01-02-06.wav", "01Neutral/n1-01-01-02-50.wav", "01Neutral/n1-03-01-01-29.wav",
    "02Fearful/f2-01-01-01-01.wav", "02Fearful/f2-01-01-01-29.wav", "02Fearful/f2-01-01-02-04.wav",
    "02Fearful/f2-01-01-02-06.wav", "02Fearful/f2-01-01-02-15.wav", "02Fearful/f2-01-01-02-50.wav",
    "03Happy/h3-01-01-01-01.wav", "03Happy/h3-01-01-01-15.wav", "03Happy/h3-01-01-01-29.wav",
    "03Happy/h3-01-01-02-04.wav", "03Happy/h3-01-01-02-06.wav", "03Happy/h3-01-01-02-50.wav",
    "04Sad/S4-04-02-01-29.wav", "04Sad/s4-01-01-01-01.wav", "04Sad/s4-01-01-02-04.wav",
    "04Sad/s4-01-01-02-06.wav", "04Sad/s4-01-01-02-50.wav",
    "05Angry/a5-01-01-01-01.wav", "05Angry/a5-01-01-01-29.wav", "05Angry/a5-01-01-02-04.wav",
    "05Angry/a5-01-01-02-06.wav", "05Angry/a5-01-01-02-50.wav",
)
ASED_GENDERS = {"01": "f", "15": "f", "29": "f", "04": "m", "06": "m", "50": "m"}  # 15's fearful file says 02
ASED_FOLDER_LABEL = {"01Neutral": "n", "02Fearful": "f", "03Happy": "h", "04Sad": "s", "05Angry": "a"}


def build_ased(root):
    truth = {}
    for path in ASED_FILES:
        folder, name = path.split("/")
        spk = name[-6:-4]
        _write(truth, f"{spk}-{name[:-4]}", spk, ASED_FOLDER_LABEL[folder], ASED_GENDERS[spk],
               os.path.join(root, folder, name), 16000)
    return truth


def test_ased_layout_genders_folds_and_errors(tmp_path):
    truth = build_ased(str(tmp_path / "ased"))
    utts = ased.prepare(str(tmp_path / "ased"))
    assert_prepared(utts, truth, ased.CLASS_SETS["5class"])
    _check_folds(ased.folds(utts), utts, 5)
    tested = ased.FOLD_SCHEMES["emobox"].assign(utts)
    assert ased.FOLD_SCHEMES["emobox"].unit == "utterance" and len(tested[1]) == 5  # int(0.25 * 5 or 6) per class

    assert_bad_names(ased.prepare, tmp_path / "ased", tmp_path / "ased" / "05Angry", 16000, [
        ("h3-01-01-02-04.wav", "h3-01-01-02-04.wav: emotion h3 differs from its folder 05Angry"),
        ("x5-01-01-02-04.wav", "x5-01-01-02-04.wav: unknown label 'x'"),
        ("a5-01-01-03-04.wav", "a5-01-01-03-04.wav: a field is out of range")])
    with pytest.raises(CorpusError, match="none of the folders"):
        ased.prepare(str(tmp_path))


# ------------------------------------------------------------------------------------------ Oreau

OREAU_FILES = (  # real paths below OréauFR_02 (EmoBox's data/oreau/oreau.jsonl)
    "m/sessc/07a02Ca.wav", "m/sesst/07a01Ta.wav", "m/sessj/07a01Ja.wav", "m/sessp/07a01Pa.wav", "m/sessd/07a02Da.wav",
    "m/sesss/07z03Sa.wav", "m/sessn/07a01Na.wav", "m/sessc/08a03Ca.wav", "m/sesst/08a01Ta.wav", "m/sessj/08a02Ja.wav",
    "m/sessn/08a01Na.wav", "f/sessc/10a01Ca.wav", "f/sesst/10a01Ta.wav", "f/sessj/10a01Ja.wav", "f/sessp/10a01Pa.wav",
    "f/sessd/10a01Da.wav", "f/sesss/10a01Sa.wav", "f/sessn/10a01Na.wav", "f/sessc/11a01Ca.wav", "f/sessp/11a01Pa.wav",
    "f/sessn/11a01Na.wav", "f/sessd/13a05Da.wav", "f/sesss/13a05Sa.wav", "m/sessc/09a05Ca.wav", "m/sessj/09a05Ja.wav",
    "m/sessn/09a06Na.wav",
)
OREAU_LABEL = {"c": "C", "t": "T", "j": "J", "p": "P", "d": "D", "s": "S", "n": "N"}


def build_oreau(root):
    top = os.path.join(root, "Ore\u0301auFR_02")  # the release's folder name, with a combining accent
    truth = {}
    for path in OREAU_FILES:
        gender, session, name = path.split("/")
        spk = name[:2]
        _write(truth, f"{spk}-{name[:-4]}", spk, OREAU_LABEL[session[-1]], gender, os.path.join(top, path), 44100)
    return truth, top


def test_oreau_layout_folds_and_errors(tmp_path):
    truth, top = build_oreau(str(tmp_path / "oreau"))
    utts = oreau.prepare(str(tmp_path / "oreau"))
    assert_prepared(utts, truth, oreau.CLASS_SETS["7class"])
    assert [u.utt_id for u in oreau.prepare(top)] == [u.utt_id for u in utts]
    _check_folds(oreau.folds(utts), utts, 5)
    assert oreau.FOLD_SCHEMES["emobox"].unit == "utterance"

    assert_bad_names(oreau.prepare, top, os.path.join(top, "f", "sessj"), 44100, [
        ("10a02Ta.wav", "10a02Ta.wav: emotion T differs from its session folder sessj"),
        ("10a02Xa.wav", "10a02Xa.wav: unknown label 'X'"),
        ("10-a02Ja.wav", "10-a02Ja.wav: file name is not")])
    with pytest.raises(CorpusError, match="expected OréauFR_02"):
        oreau.prepare(str(tmp_path))
