"""Layout tests for the group-a corpora: CREMA-D, TESS, EmoDB, EMOVO, CaFE.

Each fixture is built here from real file names of the release (as listed in EmoBox's metadata), written as short
wavs at the released sample rate; the truth is what the builder wrote, never a re-parse of it.
"""

from __future__ import annotations

import json
import os

import pytest

from ser.bin import prepare_data
from ser.corpora import CORPORA, cafe, cremad, emodb, emovo, tess
from ser.corpora.common import CorpusError
from ser.datadir import read_table

import support
from support import FakeUtt, assert_bad_names, assert_prepared, assert_speakers_apart

SECONDS = 0.05


def _wav(path, rate, seed=0):
    return support.write_wav(str(path), rate, seconds=SECONDS, seed=seed)


def check_folds(folds, utts, expected):
    assert folds == expected
    assert_speakers_apart(folds, utts)


def test_registry():
    for name in ("cafe", "cremad", "emodb", "emovo", "tess"):
        assert CORPORA[name] == f"ser.corpora.{name}"
    for module in (cafe, cremad, emodb, emovo, tess):
        assert module.DEFAULT_CLASS_SET in module.CLASS_SETS
        for class_set, counts in module.EXPECTED_COUNTS.items():
            assert set(counts) == set(module.CLASS_SETS[class_set].values())
    assert sum(cremad.EXPECTED_COUNTS["6class"].values()) == 7442
    assert sum(tess.EXPECTED_COUNTS["7class"].values()) == 2800
    assert sum(emodb.EXPECTED_COUNTS["7class"].values()) == 535
    assert sum(emovo.EXPECTED_COUNTS["7class"].values()) == 588
    assert sum(cafe.EXPECTED_COUNTS["7class"].values()) == 936
    assert len(cremad.FEMALE_ACTORS) == 43 and cremad.NUM_SPEAKERS == 91


# ------------------------------------------------------------------------------------------ CREMA-D

CREMAD_FILES = {
    1001: ("1001_DFA_NEU_XX", "1001_IEO_ANG_HI", "1001_IEO_DIS_HI", "1001_IEO_FEA_HI", "1001_IEO_HAP_HI",
           "1001_IEO_SAD_HI"),
    **{actor: tuple(f"{actor}_DFA_{e}_XX" for e in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"))
       for actor in (1002, 1003, 1004, 1005)},
    1091: ("1091_IEO_SAD_LO", "1091_WSI_HAP_XX"),
}
CREMAD_SEX = {1001: "Male", 1002: "Female", 1003: "Female", 1004: "Female", 1005: "Male", 1091: "Female"}


def build_cremad(root, demographics=True):
    truth = {}
    for index, (actor, stems) in enumerate(sorted(CREMAD_FILES.items())):
        for stem in stems:
            wav = os.path.join(root, "AudioWAV", stem + ".wav")
            truth[f"{actor}-{stem}"] = FakeUtt(str(actor), stem.split("_")[2], CREMAD_SEX[actor][0].lower(), wav,
                                               _wav(wav, 16000, index))
    if demographics:
        with open(os.path.join(root, "VideoDemographics.csv"), "w") as f:
            f.write('"ActorID","Age","Sex","Race","Ethnicity"\n')
            f.writelines(f'{a},30,"{s}","Caucasian","Not Hispanic"\n' for a, s in CREMAD_SEX.items())
    return truth


def test_cremad(tmp_path):
    truth = build_cremad(str(tmp_path / "crema"))
    utts = cremad.prepare(str(tmp_path / "crema"))
    assert_prepared(utts, truth, cremad.CLASS_SETS["6class"])
    check_folds(cremad.folds(utts), utts, {1: ["1001", "1091"], 2: ["1002"], 3: ["1003"], 4: ["1004"], 5: ["1005"]})
    assert_prepared(cremad.prepare(str(tmp_path / "crema"), "4class"), truth, cremad.CLASS_SETS["4class"])
    # Without the csv (the AudioWAV folder given on its own) the published genders are used: the same.
    os.remove(tmp_path / "crema" / "VideoDemographics.csv")
    assert_prepared(cremad.prepare(str(tmp_path / "crema" / "AudioWAV")), truth, cremad.CLASS_SETS["6class"])


def test_cremad_errors(tmp_path):
    build_cremad(str(tmp_path / "crema"))
    assert_bad_names(cremad.prepare, tmp_path / "crema", tmp_path / "crema" / "AudioWAV", 16000, [
        ("1002_DFA_SUR_XX.wav", "1002_DFA_SUR_XX.wav.*unknown label 'SUR'"),
        ("1002_XYZ_ANG_XX.wav", "1002_XYZ_ANG_XX.wav.*out of range"),
        ("1002-DFA.wav", "1002-DFA.wav: file name is not")])
    with pytest.raises(CorpusError, match="expected AudioWAV"):
        cremad.prepare(str(tmp_path / "empty"))


# --------------------------------------------------------------------------------------------- TESS

TESS_FOLDERS = {  # the release's per-speaker, per-emotion folders, names as they vary
    ("OAF", "angry"): "OAF_angry", ("OAF", "disgust"): "OAF_disgust", ("OAF", "fear"): "OAF_Fear",
    ("OAF", "happy"): "OAF_happy", ("OAF", "neutral"): "OAF_neutral", ("OAF", "ps"): "OAF_Pleasant_surprise",
    ("OAF", "sad"): "OAF_Sad", ("YAF", "angry"): "YAF_angry", ("YAF", "disgust"): "YAF_disgust",
    ("YAF", "fear"): "YAF_fear", ("YAF", "happy"): "YAF_happy", ("YAF", "neutral"): "YAF_neutral",
    ("YAF", "ps"): "YAF_pleasant_surprised", ("YAF", "sad"): "YAF_sad",
}


def build_tess(root):
    truth = {}
    for index, ((spk, emotion), folder) in enumerate(sorted(TESS_FOLDERS.items())):
        for word in ("back", "bar"):
            stem = f"{spk}_{word}_{emotion}"
            wav = os.path.join(root, "TESS Toronto emotional speech set data", folder, stem + ".wav")
            truth[f"{spk}-{stem}"] = FakeUtt(spk, emotion, "f", wav, _wav(wav, 24414, index))
    appledouble = os.path.join(root, "__MACOSX", "TESS Toronto emotional speech set data", "OAF_angry",
                               "._OAF_back_angry.wav")
    os.makedirs(os.path.dirname(appledouble))
    with open(appledouble, "wb") as f:  # what a macOS zip adds beside each file: not audio, skipped
        f.write(b"\0\5\26\7")
    return truth


def test_tess(tmp_path):
    truth = build_tess(str(tmp_path / "tess"))
    utts = tess.prepare(str(tmp_path / "tess"))
    assert_prepared(utts, truth, tess.CLASS_SETS["7class"])
    check_folds(tess.folds(utts), utts, {1: ["OAF"], 2: ["YAF"]})


def test_tess_errors(tmp_path):
    build_tess(str(tmp_path / "tess"))
    top = tmp_path / "tess" / "TESS Toronto emotional speech set data"
    assert_bad_names(tess.prepare, tmp_path / "tess", top / "YAF_sad", 24414, [
        ("YAF_bar_bored.wav", "YAF_bar_bored.wav.*unknown label 'bored'"),
        ("XAF_bar_sad.wav", "XAF_bar_sad.wav: speaker 'XAF'"),
        ("YAF bar sad.wav", "YAF bar sad.wav: file name is not")])
    _wav(top / "nested" / "OAF_angry" / "OAF_back_angry.wav", 24414)  # a copy unpacked inside itself
    with pytest.raises(CorpusError, match="OAF-OAF_back_angry occurs twice"):
        tess.prepare(str(tmp_path / "tess"))


# -------------------------------------------------------------------------------------------- EmoDB

EMODB_FILES = ("03a01Fa", "03a01Nc", "03a01Wa", "03a02Ta", "03b01Lb", "08a01Ab", "08a01Fd", "08a01Lc", "08a02Tb",
               "09a01Ea", "09a01Fa", "09a01Nb", "10a01Ac", "10a01Nb", "10a01Wa", "11a01Aa", "11a01Ld", "11a01Nd",
               "12a01Fb", "12a01Lb", "12a01Nb", "13a01Ac", "13a01Ea", "13a01Fd", "14a01Aa", "14a01Ea", "14a01Na",
               "15a01Ea", "15a01Fb", "15a01La", "16a01Ec", "16a01Fc", "16a01Tb")
EMODB_GENDERS = {"03": "m", "08": "f", "09": "f", "10": "m", "11": "m", "12": "m", "13": "f", "14": "f",
                 "15": "m", "16": "f"}


def build_emodb(root):
    truth = {}
    for index, stem in enumerate(EMODB_FILES):
        spk = stem[:2]
        wav = os.path.join(root, "wav", stem + ".wav")
        truth[f"{spk}-{stem}"] = FakeUtt(spk, stem[5], EMODB_GENDERS[spk], wav, _wav(wav, 16000, index))
    os.makedirs(os.path.join(root, "lablaut"))  # other folders of the zip are not read
    with open(os.path.join(root, "lablaut", "03a01Fa.lab"), "w") as f:
        f.write("#\n")
    return truth


def test_emodb(tmp_path):
    truth = build_emodb(str(tmp_path / "emodb"))
    for corpus_dir in (tmp_path / "emodb", tmp_path / "emodb" / "wav"):
        utts = emodb.prepare(str(corpus_dir))
        assert_prepared(utts, truth, emodb.CLASS_SETS["7class"])
    check_folds(emodb.folds(utts), utts, {k: [spk] for k, spk in enumerate(sorted(EMODB_GENDERS), start=1)})


def test_emodb_errors(tmp_path):
    build_emodb(str(tmp_path / "emodb"))
    assert_bad_names(emodb.prepare, tmp_path / "emodb", tmp_path / "emodb" / "wav", 16000, [
        ("03a01Xa.wav", "03a01Xa.wav.*unknown label 'X'"),
        ("04a01Fa.wav", "04a01Fa.wav: speaker 04"),
        ("03a01F.wav", "03a01F.wav: file name is not")])


# -------------------------------------------------------------------------------------------- EMOVO

EMOVO_SENTENCES = ("b1", "l2", "n5", "d1", "b3", "l4", "n1")  # one per emotion, rotating over the actors


def build_emovo(root):
    truth = {}
    for a, spk in enumerate(("f1", "f2", "f3", "m1", "m2", "m3")):
        for e, code in enumerate(("neu", "dis", "gio", "pau", "rab", "sor", "tri")):
            stem = f"{code}-{spk}-{EMOVO_SENTENCES[(a + e) % len(EMOVO_SENTENCES)]}"
            wav = os.path.join(root, "EMOVO", spk, stem + ".wav")
            truth[f"{spk}-{stem}"] = FakeUtt(spk, code, spk[0], wav, _wav(wav, 48000, a * 7 + e))
    os.makedirs(os.path.join(root, "EMOVO", "documents"))
    return truth


def test_emovo(tmp_path):
    truth = build_emovo(str(tmp_path / "emovo"))
    utts = emovo.prepare(str(tmp_path / "emovo"))
    assert_prepared(utts, truth, emovo.CLASS_SETS["7class"])
    check_folds(emovo.folds(utts), utts, {1: ["f1"], 2: ["f2"], 3: ["f3"], 4: ["m1"], 5: ["m2"], 6: ["m3"]})
    scheme = emovo.FOLD_SCHEMES["emobox"]
    assert scheme.unit == "speaker"
    check_folds(scheme.assign(utts), utts, {1: ["f2"], 2: ["m3"], 3: ["m2"], 4: ["f3"], 5: ["f1"], 6: ["m1"]})


def test_emovo_errors(tmp_path):
    build_emovo(str(tmp_path / "emovo"))
    assert_bad_names(emovo.prepare, tmp_path / "emovo", tmp_path / "emovo" / "EMOVO" / "m2", 48000, [
        ("ans-m2-b1.wav", "ans-m2-b1.wav.*unknown label 'ans'"),
        ("neu-m1-b1.wav", "neu-m1-b1.wav: actor field m1 differs from its folder m2"),
        ("neu_m2_b1.wav", "neu_m2_b1.wav: file name is not")])


def test_emovo_stage0(tmp_path, monkeypatch):
    """Stage 0 through ser.bin.prepare_data on the EMOVO fixture: data dirs and protocol.json."""
    truth = build_emovo(str(tmp_path / "emovo"))
    data = tmp_path / "data"
    prepare_data.main(["--corpus", "emovo", "--corpus-dir", str(tmp_path / "emovo"), "--data-dir", str(data),
                       "--strict-counts", "false"])
    protocol = json.loads((data / "protocol.json").read_text())
    classes = ["neutral", "disgust", "happy", "fear", "angry", "surprise", "sad"]
    assert protocol["classes"] == classes == (data / "all" / "classes.txt").read_text().split()
    assert protocol["num_folds"] == 6 and protocol["speaker_independent"]
    assert {int(k): v["test_speakers"] for k, v in protocol["folds"].items()} == \
        {1: ["f1"], 2: ["f2"], 3: ["f3"], 4: ["m1"], 5: ["m2"], 6: ["m3"]}
    class_of = emovo.CLASS_SETS["7class"]
    assert read_table(str(data / "all" / "utt2emo")) == {u: class_of[t.raw_label] for u, t in truth.items()}
    assert read_table(str(data / "all" / "utt2spk")) == {u: t.spk for u, t in truth.items()}
    assert read_table(str(data / "all" / "spk2gender")) == {t.spk: t.gender for t in truth.values()}
    for fold in range(1, 7):
        test_spk = set(read_table(str(data / f"fold{fold}" / "test" / "utt2spk")).values())
        train_spk = set(read_table(str(data / f"fold{fold}" / "train" / "utt2spk")).values())
        assert test_spk == set(protocol["folds"][str(fold)]["test_speakers"]) and not test_spk & train_spk
    assert (data / ".stage0.done").is_file()


# --------------------------------------------------------------------------------------------- CaFE

CAFE_FOLDERS = {"C": "Colère", "D": "Dégoût", "J": "Joie", "N": "Neutre", "P": "Peur", "S": "Surprise",
                "T": "Tristesse"}
# Per actor: (emotion, intensity, sentence); every actor gets a neutral and two emotions at both intensities.
CAFE_ACTOR_FILES = (("N", "1", "1"), ("C", "1", "2"), ("J", "2", "3"))
CAFE_ROTATING = ("D", "P", "S", "T")


def build_cafe(root):
    truth = {}
    for actor in range(1, 13):
        files = CAFE_ACTOR_FILES + ((CAFE_ROTATING[actor % 4], str(actor % 2 + 1), "6"),)
        for index, (letter, intensity, sentence) in enumerate(files):
            stem = f"{actor:02d}-{letter}-{intensity}-{sentence}"
            if letter == "N":
                wav = os.path.join(root, "CaFE_48k", "Neutre", stem + ".wav")
            else:
                wav = os.path.join(root, "CaFE_48k", CAFE_FOLDERS[letter], ("Faible", "Fort")[int(intensity) - 1],
                                   stem + ".wav")
            truth[f"{actor:02d}-{stem}"] = FakeUtt(f"{actor:02d}", letter, "m" if actor % 2 else "f", wav,
                                                   _wav(wav, 48000, actor * 5 + index))
    return truth


def test_cafe(tmp_path):
    truth = build_cafe(str(tmp_path / "cafe"))
    for corpus_dir in (tmp_path / "cafe", tmp_path / "cafe" / "CaFE_48k"):
        utts = cafe.prepare(str(corpus_dir))
        assert_prepared(utts, truth, cafe.CLASS_SETS["7class"])
    expected = {1: ["01", "07", "08", "10"], 2: ["02", "04", "09", "12"], 3: ["03", "05", "06", "11"]}
    check_folds(cafe.folds(utts), utts, expected)
    check_folds(cafe.FOLD_SCHEMES["emobox"].assign(utts), utts, expected)


def test_cafe_errors(tmp_path):
    build_cafe(str(tmp_path / "cafe"))
    top = tmp_path / "cafe" / "CaFE_48k"
    assert_bad_names(cafe.prepare, tmp_path / "cafe", top / "Peur" / "Fort", 48000, [
        ("05-X-2-1.wav", "05-X-2-1.wav.*unknown label 'X'"),
        ("05-P-1-1.wav", "05-P-1-1.wav: intensity 1 differs from its folder Fort"),
        ("13-P-2-1.wav", "13-P-2-1.wav: a field is out of range")])
    _wav(tmp_path / "cafe" / "CaFE_192k" / "Neutre" / "01-N-1-1.wav", 192000)  # both releases under one dir
    with pytest.raises(CorpusError, match="01-N-1-1.wav occurs twice.*one release"):
        cafe.prepare(str(tmp_path / "cafe"))
