"""Tests for corpus preparation (ser.corpora.*) and stage 0 (ser.bin.prepare_data) on fake corpora.

The fakes (support.py) follow the real release layouts and label formats, traps included; the
truth each builder returns comes from its own loops. One test runs on the real RAVDESS copy when present.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter

import pytest
import soundfile

from ser.bin import prepare_data
from ser.corpora import CORPORA, corpus_module, iemocap, msp_improv, ravdess, savee
from ser.corpora.common import (
    CorpusError,
    Utterance,
    check_counts,
    prepare_recipe_data,
    split_train_valid,
    valid_mode_of_fold,
    write_data_dir,
)
from ser.datadir import read_table, validate_data_dir
from ser.stamps import STAGE0_DONE

import support

RAVDESS_REAL = "/work/shared/corpora/RAVDESS"


def run_prepare(corpus, corpus_dir, data_dir, *extra):
    prepare_data.main(["--corpus", corpus, "--corpus-dir", str(corpus_dir), "--data-dir", str(data_dir),
                       "--strict-counts", "false", *extra])
    return json.loads((data_dir / "protocol.json").read_text())


def check_recipe_data(data_dir, protocol, truth, class_of_raw, expected_folds):
    """Everything stage 0 promises, checked against the fake corpus's truth."""
    classes = (data_dir / "all" / "classes.txt").read_text().split()
    assert classes == protocol["classes"]
    kept = {utt: t for utt, t in truth.items() if t.raw_label in class_of_raw}
    all_dir = str(data_dir / "all")
    assert read_table(os.path.join(all_dir, "utt2spk")) == {utt: t.spk for utt, t in kept.items()}
    assert read_table(os.path.join(all_dir, "utt2emo")) == {utt: class_of_raw[t.raw_label] for utt, t in kept.items()}
    assert read_table(os.path.join(all_dir, "wav.scp")) == {utt: os.path.abspath(t.wav) for utt, t in kept.items()}
    assert read_table(os.path.join(all_dir, "spk2gender")) == {t.spk: t.gender for t in kept.values()}
    durations = read_table(os.path.join(all_dir, "utt2dur"))
    assert {utt: pytest.approx(float(d), abs=1e-6) for utt, d in durations.items()} == \
        {utt: t.duration for utt, t in kept.items()}
    assert protocol["counts"] == dict(Counter(class_of_raw[t.raw_label] for t in kept.values()))
    validate_data_dir(all_dir, classes=classes)

    assert {int(k): v["test_speakers"] for k, v in protocol["folds"].items()} == expected_folds
    assert sorted(p.name for p in data_dir.iterdir() if p.name.startswith("fold")) == \
        sorted(f"fold{k}" for k in expected_folds)
    all_speakers = {t.spk for t in kept.values()}
    for fold, test_speakers in expected_folds.items():
        split_spk = {}
        for split in ("train", "valid", "test"):
            split_dir = str(data_dir / f"fold{fold}" / split)
            validate_data_dir(split_dir, classes=classes)
            split_spk[split] = read_table(os.path.join(split_dir, "utt2spk"))
            counts = Counter(read_table(os.path.join(split_dir, "utt2emo")).values())
            assert protocol["folds"][str(fold)]["counts"][split] == dict(counts)
        assert set(split_spk["test"].values()) == set(test_speakers)
        assert not set(test_speakers) & (set(split_spk["train"].values()) | set(split_spk["valid"].values()))
        assert set(split_spk["valid"].values()) <= all_speakers - set(test_speakers)
        assert split_spk["valid"], f"fold {fold}: empty validation set"
        utts = [u for s in split_spk.values() for u in s]
        assert sorted(utts) == sorted(kept), f"fold {fold}: train+valid+test must be all utterances, once"
    assert (data_dir / STAGE0_DONE).is_file()  # the one completion mark, written last (what stage 1 asks for)
    assert protocol["prepare_command"].startswith("python -m ser.bin.prepare_data --corpus")


# ------------------------------------------------------------------------------------------ IEMOCAP

def iemocap_folds():
    return {s: [f"Ses{s:02d}F", f"Ses{s:02d}M"] for s in range(1, 6)}


def test_iemocap_stage0_exc_merged(tmp_path, capsys):
    truth = support.build_iemocap(str(tmp_path / "IEMOCAP_full_release"))
    protocol = run_prepare("iemocap", tmp_path / "IEMOCAP_full_release", tmp_path / "data")
    err = capsys.readouterr().err
    assert "WARNING" in err and "ang          found     20  expected   1103" in err  # lenient: a warning
    class_of_raw = {"ang": "ang", "hap": "hap", "exc": "hap", "neu": "neu", "sad": "sad"}
    check_recipe_data(tmp_path / "data", protocol, truth, class_of_raw, iemocap_folds())
    assert protocol["classes"] == ["ang", "hap", "neu", "sad"] and protocol["class_set"] == "4class_exc_merged"
    utt2spk = read_table(str(tmp_path / "data" / "all" / "utt2spk"))
    # The speaker is the session plus the gender of the last field, not the dialog prefix.
    assert utt2spk["Ses01M-Ses01F_impro04_M012"] == "Ses01M"
    assert any(u.startswith("Ses01F-Ses01M_impro05a_F") for u in utt2spk)
    assert any("_script01_1b_" in u for u in utt2spk)
    # The dimensional labels [V, A, D] of each label line are kept (utt2vad), for every fold's dirs too.
    for part in ("all", "fold1/train", "fold1/test"):
        vad = read_table(str(tmp_path / "data" / part / "utt2vad"), 4, 4)
        assert set(vad) == set(read_table(str(tmp_path / "data" / part / "utt2spk")))
        assert set(vad.values()) == {"2.5 3 2.5"}


def test_iemocap_4class_drops_exc(tmp_path):
    truth = support.build_iemocap(str(tmp_path / "iemocap"))
    utts = iemocap.prepare(str(tmp_path / "iemocap"), "4class")
    expected = {utt for utt, t in truth.items() if t.raw_label in ("ang", "hap", "neu", "sad")}
    assert {u.utt_id for u in utts} == expected
    assert iemocap.folds(utts) == iemocap_folds()


def _replace_line(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1  # the line number of the replaced text


def test_iemocap_bad_label_lines_name_file_and_line(tmp_path):
    support.build_iemocap(str(tmp_path / "iemocap"))
    label_file = str(tmp_path / "iemocap" / "Session2" / "dialog" / "EmoEvaluation" / "Ses02F_impro01.txt")
    lineno = _replace_line(label_file, "[1.0000 - 3.0000]", "[1.0000 3.0000]")
    with pytest.raises(CorpusError, match=f"{re.escape(label_file)}:{lineno}: malformed label line"):
        iemocap.prepare(str(tmp_path / "iemocap"))


def test_iemocap_unknown_label_and_foreign_turn(tmp_path):
    support.build_iemocap(str(tmp_path / "iemocap"))
    label_file = str(tmp_path / "iemocap" / "Session3" / "dialog" / "EmoEvaluation" / "Ses03M_impro02.txt")
    lineno = _replace_line(label_file, "_M011\thap\t", "_M011\thappy\t")
    with pytest.raises(CorpusError, match=f"{re.escape(label_file)}:{lineno}: unknown label 'happy'"):
        iemocap.prepare(str(tmp_path / "iemocap"))
    _replace_line(label_file, "_M011\thappy\t", "_M011\thap\t")
    lineno = _replace_line(label_file, "Ses03M_impro02_M011", "Ses03M_impro09_M011")
    with pytest.raises(CorpusError, match=f"{re.escape(label_file)}:{lineno}: turn Ses03M_impro09_M011 does not"):
        iemocap.prepare(str(tmp_path / "iemocap"))


def test_iemocap_label_without_audio_strict_and_lenient(tmp_path, caplog):
    truth = support.build_iemocap(str(tmp_path / "iemocap"))
    missing = truth["Ses04F-Ses04F_impro01_F010"].wav
    os.remove(missing)
    with pytest.raises(CorpusError, match=r"Ses04F_impro01\.txt:\d+: Ses04F_impro01_F010 -> " + re.escape(missing)):
        iemocap.prepare(str(tmp_path / "iemocap"), strict=True)
    with caplog.at_level(logging.WARNING):
        utts = iemocap.prepare(str(tmp_path / "iemocap"), strict=False)
    assert missing in caplog.text
    assert "Ses04F-Ses04F_impro01_F010" not in {u.utt_id for u in utts}
    assert len(utts) == 10 * 8 - 1


def test_strict_counts_error_lists_found_and_expected(tmp_path, capsys):
    truth = support.build_iemocap(str(tmp_path / "iemocap"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / ".stage0.done").write_text("an earlier run\n")
    with pytest.raises(SystemExit) as exit_info:
        prepare_data.main(["--corpus", "iemocap", "--corpus-dir", str(tmp_path / "iemocap"),
                           "--data-dir", str(tmp_path / "data"), "--strict-counts", "true"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    found = Counter({"exc": "hap"}.get(t.raw_label, t.raw_label) for t in truth.values())
    for cls, published in iemocap.EXPECTED_COUNTS["4class_exc_merged"].items():
        assert f"{cls:<12} found {found[cls]:>6}  expected {published:>6}" in err
    assert f"{'total':<12} found {sum(found[c] for c in ('ang', 'hap', 'neu', 'sad')):>6}  expected   5531" in err
    assert not (tmp_path / "data" / STAGE0_DONE).exists()  # stage 1 refuses to start


# --------------------------------------------------------------------------------------- MSP-IMPROV

MSP_CLASSES = {"A": "ang", "H": "hap", "N": "neu", "S": "sad"}


def test_msp_improv_stage0(tmp_path):
    truth = support.build_msp_improv(str(tmp_path / "msp"))
    protocol = run_prepare("msp_improv", tmp_path / "msp", tmp_path / "data", "--valid-mode", "spk")
    folds = {s: [f"F{s:02d}", f"M{s:02d}"] for s in range(1, 7)}
    check_recipe_data(tmp_path / "data", protocol, truth, MSP_CLASSES, folds)
    assert protocol["valid_mode"] == "spk"
    wav_scp = read_table(str(tmp_path / "data" / "all" / "wav.scp"))
    # Sentence 05 of session 3 lives in session3/, not session5/.
    assert wav_scp["F03-MSP-IMPROV-S05S-F03-T-FM02"].endswith("/session3/S05S/T/MSP-IMPROV-S05S-F03-T-FM02.wav")
    vad = read_table(str(tmp_path / "data" / "all" / "utt2vad"), 4, 4)  # valence arousal dominance
    assert set(vad) == set(wav_scp) and vad["F03-MSP-IMPROV-S05S-F03-T-FM02"] in ("3.2 2.8 3", "3 3 3")


def test_msp_improv_audio_dir_and_label_file_spelling(tmp_path):
    truth = support.build_msp_improv(str(tmp_path / "msp"), audio_subdir="Audio", label_file_name="Evalution.txt")
    utts = msp_improv.prepare(str(tmp_path / "msp"))
    assert {u.utt_id: (u.spk_id, u.emotion, u.gender) for u in utts} == \
        {utt: (t.spk, MSP_CLASSES[t.raw_label], t.gender) for utt, t in truth.items() if t.raw_label in MSP_CLASSES}


def test_msp_improv_bad_lines(tmp_path):
    support.build_msp_improv(str(tmp_path / "msp"))
    label_file = str(tmp_path / "msp" / "Evaluation.txt")
    lineno = _replace_line(label_file, "UTD-IMPROV-S02H-F04-P-MF01.avi; H;", "UTD-IMPROV-S02H-F04-P-MF01.avi H;")
    with pytest.raises(CorpusError, match=f"{re.escape(label_file)}:{lineno}: malformed consensus label line"):
        msp_improv.prepare(str(tmp_path / "msp"))
    _replace_line(label_file, "UTD-IMPROV-S02H-F04-P-MF01.avi H;", "UTD-IMPROV-S02H-F04-P-MF01.avi; Q;")
    with pytest.raises(CorpusError, match=f"{re.escape(label_file)}:{lineno}: unknown label 'Q'"):
        msp_improv.prepare(str(tmp_path / "msp"))


# ------------------------------------------------------------------------------------------ RAVDESS

def test_ravdess_stage0(tmp_path):
    truth = support.build_ravdess(str(tmp_path / "ravdess"))
    protocol = run_prepare("ravdess", tmp_path / "ravdess", tmp_path / "data")
    folds = {k: [f"Actor{a:02d}" for a in range(4 * k - 3, 4 * k + 1)] for k in range(1, 7)}
    check_recipe_data(tmp_path / "data", protocol, truth, ravdess.EMOTION_CODES, folds)
    wav_scp = read_table(str(tmp_path / "data" / "all" / "wav.scp"))
    assert not any("-03-02-" in utt for utt in wav_scp)  # song files skipped
    stereo = wav_scp["Actor05-03-01-02-01-02-02-05"]  # the stereo 48 kHz file is listed as it is
    assert soundfile.info(stereo).channels == 2 and soundfile.info(stereo).samplerate == 48000


def test_ravdess_7class_and_bad_names(tmp_path):
    truth = support.build_ravdess(str(tmp_path / "ravdess"))
    utts = ravdess.prepare(str(tmp_path / "ravdess"), "7class_no_calm")
    assert {u.utt_id for u in utts} == {utt for utt, t in truth.items() if t.raw_label != "02"}
    bad = tmp_path / "ravdess" / "Actor_03" / "03-01-09-01-01-01-03.wav"
    support.write_wav(str(bad), 48000)
    with pytest.raises(CorpusError, match=f"{re.escape(str(bad))}: unknown label '09'"):
        ravdess.prepare(str(tmp_path / "ravdess"))
    os.remove(bad)
    misplaced = tmp_path / "ravdess" / "Actor_03" / "03-01-01-01-01-01-04.wav"
    support.write_wav(str(misplaced), 48000)
    with pytest.raises(CorpusError, match=f"{re.escape(str(misplaced))}: actor field 04 differs"):
        ravdess.prepare(str(tmp_path / "ravdess"))


@pytest.mark.skipif(not os.path.isdir(RAVDESS_REAL), reason=f"the real RAVDESS copy {RAVDESS_REAL} is absent")
def test_ravdess_real_copy(tmp_path):
    # Published counts (docs/method.md section 6): 1440 = neutral 96, every other emotion 192.
    others = ("calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    published = {"neutral": 96, **{emotion: 192 for emotion in others}}
    prepare_data.main(["--corpus", "ravdess", "--corpus-dir", RAVDESS_REAL, "--data-dir", str(tmp_path / "data"),
                       "--strict-counts", "true"])
    emotions = read_table(str(tmp_path / "data" / "all" / "utt2emo"))
    assert len(emotions) == 1440 and dict(Counter(emotions.values())) == published
    genders = read_table(str(tmp_path / "data" / "all" / "spk2gender"))
    assert len(genders) == 24 and all(g == ("m" if int(s[-2:]) % 2 else "f") for s, g in genders.items())
    for fold in range(1, 7):
        assert len(read_table(str(tmp_path / "data" / f"fold{fold}" / "test" / "utt2spk"))) == 240


# -------------------------------------------------------------------------------------------- SAVEE

def test_savee_both_layouts(tmp_path):
    class_of_raw = {c: c for c in ("a", "d", "f", "h", "n", "sa", "su")}
    for layout in ("nested", "flat"):
        truth = support.build_savee(str(tmp_path / layout), layout)
        protocol = run_prepare("savee", tmp_path / layout, tmp_path / f"data_{layout}")
        folds = {1: ["DC"], 2: ["JE"], 3: ["JK"], 4: ["KL"]}
        check_recipe_data(tmp_path / f"data_{layout}", protocol, truth, class_of_raw, folds)
        emotions = read_table(str(tmp_path / f"data_{layout}" / "all" / "utt2emo"))
        assert emotions["JK-sa02"] == "sa" and emotions["KL-su01"] == "su" and emotions["DC-a01"] == "a"


def test_savee_errors(tmp_path):
    support.build_savee(str(tmp_path / "savee"), "nested")
    support.write_wav(str(tmp_path / "savee" / "DC_n01.wav"), 44100)  # the same utterance, flat layout
    with pytest.raises(CorpusError, match="utterance id DC-n01 occurs twice"):
        savee.prepare(str(tmp_path / "savee"))
    os.remove(tmp_path / "savee" / "DC_n01.wav")
    bad = tmp_path / "savee" / "AudioData" / "JE" / "x01.wav"
    support.write_wav(str(bad), 44100)
    with pytest.raises(CorpusError, match=f"{re.escape(str(bad))}: unknown label 'x'"):
        savee.prepare(str(tmp_path / "savee"))


# --------------------------------------------------------------------------------- shared machinery

def _utts(per_speaker_class: dict[tuple[str, str], int]) -> list[Utterance]:
    return [Utterance(f"{spk}-{emo}{i:03d}", spk, f"/x/{spk}{emo}{i}.wav", emo, "f")
            for (spk, emo), n in per_speaker_class.items() for i in range(n)]


def test_split_train_valid_utt_mode_is_stratified():
    sizes = {("s1", "a"): 30, ("s1", "b"): 7, ("s2", "a"): 12, ("s2", "b"): 19, ("s3", "a"): 3, ("s3", "b"): 29}
    utts = _utts(sizes)
    train, valid = split_train_valid(utts, 0.2, "utt", seed=3)
    assert len(valid) == round(0.2 * len(utts)) and len(train) + len(valid) == len(utts)
    assert not {u.utt_id for u in train} & {u.utt_id for u in valid}
    class_sizes = Counter(u.emotion for u in utts)
    class_counts = Counter(u.emotion for u in valid)
    for emotion, n in class_sizes.items():  # every class gets its share of the total, rounded down or up
        assert int(len(valid) * n / len(utts)) <= class_counts[emotion] <= int(len(valid) * n / len(utts)) + 1
    valid_counts = Counter((u.spk_id, u.emotion) for u in valid)
    for (spk, emotion), n in sizes.items():  # then each class's share over its speakers, rounded down or up
        quota = class_counts[emotion] * n / class_sizes[emotion]
        assert int(quota) <= valid_counts[(spk, emotion)] <= int(quota) + 1
    again = split_train_valid(list(reversed(utts)), 0.2, "utt", seed=3)[1]
    assert [u.utt_id for u in again] == [u.utt_id for u in valid]
    assert {u.utt_id for u in split_train_valid(utts, 0.2, "utt", seed=4)[1]} != {u.utt_id for u in valid}


def test_split_train_valid_spk_mode_holds_out_whole_speakers():
    utts = _utts({(f"s{k}", "a"): 4 for k in range(10)})
    train, valid = split_train_valid(utts, 0.25, "spk", seed=0)
    valid_spk = {u.spk_id for u in valid}
    assert len(valid_spk) == 3 and not valid_spk & {u.spk_id for u in train}
    assert len(valid) == 12
    two = _utts({("s1", "a"): 2, ("s2", "a"): 2})
    assert len({u.spk_id for u in split_train_valid(two, 0.9, "spk")[1]}) == 1  # never all speakers
    with pytest.raises(ValueError, match="at least 2 training speakers"):
        split_train_valid(_utts({("s1", "a"): 5}), 0.1, "spk")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_train_valid(utts, 1.0, "utt")


def _ravdess_like(seed_genders: bool = True) -> list[Utterance]:
    """RAVDESS's real counts: 24 actors (odd ids male), 4 neutral and 8 of each other class per actor."""
    counts = {"neu": 4, "cal": 8, "hap": 8, "sad": 8, "ang": 8, "fea": 8, "dis": 8, "sur": 8}
    return [Utterance(f"a{a:02d}-{emo}{i}", f"a{a:02d}", f"/x/{a}{emo}{i}.wav", emo,
                      ("m" if a % 2 else "f") if seed_genders else None)
            for a in range(1, 25) for emo, n in counts.items() for i in range(n)]


@pytest.mark.parametrize("mode", ["utt", "spk"])
def test_every_ravdess_class_is_in_every_folds_validation_set(mode):
    # The old per-(speaker, class) quota rounded each actor's 4 neutral utterances to 0 in every fold and seed.
    utts = _ravdess_like()
    for data_seed in range(5):
        for fold in range(6):
            test_speakers = {f"a{a:02d}" for a in range(4 * fold + 1, 4 * fold + 5)}
            train, valid = split_train_valid([u for u in utts if u.spk_id not in test_speakers], 0.1, mode,
                                             data_seed)
            assert {u.emotion for u in valid} == {u.emotion for u in utts}, (mode, data_seed, fold)
            assert {u.emotion for u in train} == {u.emotion for u in utts}
            if mode == "spk":  # 2 of the 20 training actors, one of each gender
                assert sorted(u.gender for u in valid[::60]) == ["f", "m"]
                assert not {u.spk_id for u in valid} & {u.spk_id for u in train}


@pytest.mark.parametrize("num_speakers, held_out", [(7, 1), (8, 2), (10, 2), (24, 2), (25, 3)])
def test_spk_validation_holds_out_two_speakers_or_more_from_eight(num_speakers, held_out):
    """From MIN_SPEAKERS_FOR_SPK_VALID (8) training speakers up, at least two are held out, one of each gender
    (IEMOCAP's 8 per session fold: 1 F and 1 M, where 10% alone gives one speaker); --valid-mode auto uses
    utterances below 8, so that six or more speakers always remain to train on."""
    utts = [Utterance(f"s{k:02d}-{emo}{i}", f"s{k:02d}", f"/x/{k}{emo}{i}.wav", emo, "fm"[k % 2])
            for k in range(num_speakers) for emo in "ab" for i in range(3)]
    train, valid = split_train_valid(utts, 0.1, "spk", seed=0)
    speakers = sorted({u.spk_id for u in valid})
    assert len(speakers) == held_out and not set(speakers) & {u.spk_id for u in train}
    if held_out == 2:
        assert sorted(u.gender for u in valid[::6]) == ["f", "m"]
    assert valid_mode_of_fold("auto", num_speakers) == ("spk" if num_speakers >= 8 else "utt")


def test_spk_validation_chooses_speakers_that_hold_every_class():
    # Speakers holding one class each (as many of URDU's do): a plain draw of 2 of 8 misses classes.
    utts = _utts({(f"s{k}", "ab"[k % 2]): 5 for k in range(8)})
    for seed in range(10):
        train, valid = split_train_valid(utts, 0.25, "spk", seed)
        assert {u.emotion for u in valid} == {"a", "b"} == {u.emotion for u in train}


def test_auto_validation_holds_out_speakers_where_enough_train(tmp_path, capsys):
    support.build_msp_improv(str(tmp_path / "msp"))  # 12 speakers, 6 session folds: 10 training speakers
    protocol = run_prepare("msp_improv", tmp_path / "msp", tmp_path / "data")
    assert protocol["valid_mode"] == "spk" and protocol["valid_mode_requested"] == "auto"
    for fold in protocol["folds"].values():  # 10% of 10 is 1: two, one of each gender (speakers F0k, M0k)
        assert fold["valid_mode"] == "spk" and sorted(s[0] for s in fold["valid_speakers"]) == ["F", "M"]
    support.build_savee(str(tmp_path / "savee"), "nested")  # 4 speakers: 3 train in each LOSO fold
    protocol = run_prepare("savee", tmp_path / "savee", tmp_path / "data_savee")
    assert protocol["valid_mode"] == "utt"
    assert all(fold["valid_mode"] == "utt" and len(fold["valid_speakers"]) == 3
               for fold in protocol["folds"].values())
    assert "fold(s) 1 2 3 4: validation from utterances of every training speaker (utt)" in capsys.readouterr().err
    assert valid_mode_of_fold("auto", 20, fold_unit="utterance") == "utt"  # test speakers also train


def test_check_counts_strict_and_lenient(caplog):
    utts = _utts({("s1", "a"): 3, ("s1", "b"): 2})
    check_counts(utts, {"a": 3, "b": 2}, strict=True, corpus="c")
    with pytest.raises(CorpusError) as error:
        check_counts(utts, {"a": 3, "b": 4}, strict=True, corpus="c")
    assert "b            found      2  expected      4" in str(error.value)
    assert "total        found      5  expected      7" in str(error.value)
    with caplog.at_level(logging.WARNING):
        check_counts(utts, {"a": 3, "b": 4}, strict=False, corpus="c")
    assert "expected      4" in caplog.text


def test_interrupted_or_failed_stage_never_looks_done(tmp_path):
    wav = str(tmp_path / "a.wav")
    support.write_wav(wav, 16000)
    utts = [Utterance(f"s{k}-u{i}", f"s{k}", wav, "a", "m") for k in range(3) for i in range(4)]
    folds = {1: ["s0"], 2: ["s1"], 3: ["s2"]}
    data_dir = tmp_path / "data"
    stale = data_dir / "fold7"
    stale.mkdir(parents=True)
    (data_dir / ".tmp-prepare-killed" / "all").mkdir(parents=True)
    kwargs = dict(corpus="c", class_set="one", classes=["a"], fold_scheme="one speaker per fold")
    (data_dir / ".stage0.done").write_text("an earlier run\n")
    prepare_recipe_data(utts, folds, str(data_dir), command="first", **kwargs)
    assert not (data_dir / ".stage0.done").exists()  # removed first; the caller marks success
    assert json.loads((data_dir / "protocol.json").read_text())["prepare_command"] == "first" and not stale.exists()
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".tmp")]
    broken = utts + [Utterance("s0-missing", "s0", str(tmp_path / "missing.wav"), "a", "m")]
    with pytest.raises(CorpusError, match="audio file not found: .*missing.wav"):
        prepare_recipe_data(broken, folds, str(data_dir), command="second", **kwargs)
    assert not (data_dir / ".stage0.done").exists()
    with pytest.raises(CorpusError, match=r"speaker\(s\) \['s2'\] are in no fold"):
        prepare_recipe_data(utts, {1: ["s0"], 2: ["s1"]}, str(data_dir), **kwargs)


def test_write_data_dir_takes_paths_with_spaces_and_rejects_ambiguous_ones_and_mixed_genders(tmp_path):
    from ser.datadir import read_table

    write_data_dir(str(tmp_path / "ok"), [Utterance("s1-u1", "s1", "/my corpus/a  b.wav", "a", "m")])
    assert read_table(str(tmp_path / "ok" / "wav.scp")) == {"s1-u1": "/my corpus/a  b.wav"}
    for wav in (" /a.wav", "/a.wav ", "/odd/name.wav |"):
        with pytest.raises(CorpusError, match="cannot be a wav.scp value"):
            write_data_dir(str(tmp_path / "d"), [Utterance("s1-u1", "s1", wav, "a", "m")])
    with pytest.raises(CorpusError, match="both genders"):
        write_data_dir(str(tmp_path / "d"), [Utterance("s1-u1", "s1", "/a.wav", "a", "m"),
                                             Utterance("s1-u2", "s1", "/b.wav", "a", "f")])


def test_synth_follows_the_corpus_interface_and_stage0_skips_when_up_to_date(tmp_path, capsys):
    from ser.corpora.synth import generate_synth_corpus, synth_folds

    generate_synth_corpus(str(tmp_path / "synth"), num_speakers=4, utts_per_class=2)
    protocol = run_prepare("synth", tmp_path / "synth", tmp_path / "data")
    marker = tmp_path / "data" / ".stage0.done"
    stamp, written = marker.read_text(), (tmp_path / "data" / "protocol.json").stat().st_mtime_ns
    args = ["--corpus", "synth", "--corpus-dir", str(tmp_path / "synth"), "--data-dir", str(tmp_path / "data"),
            "--strict-counts", "false"]
    prepare_data.main(args + ["--skip-if-up-to-date"])
    assert (tmp_path / "data" / "protocol.json").stat().st_mtime_ns == written  # nothing redone
    prepare_data.main(args + ["--seed", "1", "--skip-if-up-to-date"])  # other options: prepared again
    assert marker.read_text() != stamp and (tmp_path / "data" / "protocol.json").stat().st_mtime_ns != written
    with pytest.raises(SystemExit):
        prepare_data.main(args + ["--class-set", "7class"])
    assert "synth has no class set '7class'" in capsys.readouterr().err and not marker.exists()
    protocol = run_prepare("synth", tmp_path / "synth", tmp_path / "data")
    assert {int(k): v["test_speakers"] for k, v in protocol["folds"].items()} == synth_folds(4)
    assert protocol["classes"] == ["ang", "hap", "neu", "sad"] and protocol["num_utterances"] == 32
    for fold in (1, 2):
        for split in ("train", "valid", "test"):
            validate_data_dir(str(tmp_path / "data" / f"fold{fold}" / split), classes=protocol["classes"])


# ------------------------------------------------------------- classic reference and speaker normalisation

CORPUS_BUILDERS = {
    "iemocap": lambda root: support.build_iemocap(root),
    "msp_improv": lambda root: support.build_msp_improv(root),
    "ravdess": lambda root: support.build_ravdess(root),
    "savee": lambda root: support.build_savee(root, "nested"),
}


@pytest.mark.slow
@pytest.mark.parametrize("corpus", sorted(CORPUS_BUILDERS))
def test_recipe_runs_the_classic_reference_under_both_protocols(corpus, tmp_path):
    """Each corpus recipe, on its fake corpus in the real layout: stages 0-1 on every fold, then the eGeMAPS classic
    reference through stages 2-4 on fold 1, with and without per-speaker normalisation, as two experiments whose
    results.json name their protocol. (Every fold of a classic reference: test_manifest.py's first-hour run.)"""
    pytest.importorskip("opensmile", reason="opensmile is installed by tools/install.sh --opensmile/--test")
    import subprocess

    CORPUS_BUILDERS[corpus](str(tmp_path / "corpus"))
    recipe = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "egs", corpus, "run.sh")
    env = support.recipe_env()
    common = [recipe, "--corpus-dir", str(tmp_path / "corpus"), "--strict-counts", "false", "--nj", "1",
              "--data-dir", str(tmp_path / "data"), "--dump-dir", str(tmp_path / "dump"),
              "--exp-root", str(tmp_path / "exp"), "--train-config", "conf/classic/egemaps.yaml",
              "--classic-configs", "", "--folds", "1"]
    # Stages 0-4 without normalisation, then 2-4 under the per-speaker protocol (stages 0-1 are reused).
    for extra in (["--speaker-norm", "none"], ["--speaker-norm", "cmvn", "--stage", "2"]):
        proc = subprocess.run(common + extra, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    for tag, norm in (("egemaps", "none"), ("egemaps_spkcmvn", "cmvn")):
        with open(tmp_path / "exp" / tag / "results.json") as f:
            results = json.load(f)
        assert results["protocol"]["speaker_norm"] == norm and results["protocol"]["corpus"] == corpus
        assert results["protocol"]["folds_scored"] == [1] and not results["protocol"]["complete"]
        assert results["protocol"]["selection"] == "speaker_grouped_cv" and results["config"]["system"] == "classic"


def test_every_registered_corpus_declares_the_licence_of_its_data():
    """Model cards quote it (ser.card); only the generated corpus says its audio is synthetic."""
    from ser.card import corpus_licence

    for name in CORPORA:
        module = corpus_module(name)
        assert isinstance(module.LICENCE, str) and len(module.LICENCE.strip()) > 10, name
        assert corpus_licence(name) == (module.LICENCE, name == "synth")
    assert corpus_licence("mine")[0].startswith("unknown")


@pytest.mark.parametrize("name", sorted(set(CORPORA) - {"manifest"}))
def test_every_registered_corpus_has_a_recipe_and_the_whole_interface(name):
    """One module and one registry line per corpus, and a recipe dir that names it: run.sh, README.md, no links
    but utils/ (ser.sh finds the template's path.sh, cmd.sh and conf/)."""
    module = corpus_module(name)
    recipe = os.path.join(support.REPO, "egs", name)
    run = open(os.path.join(recipe, "run.sh")).read()
    assert os.access(os.path.join(recipe, "run.sh"), os.X_OK) and f"--corpus {name} " in run
    assert "../TEMPLATE/ser.sh" in run and os.path.isfile(os.path.join(recipe, "README.md"))
    links = [entry for entry in os.listdir(recipe) if os.path.islink(os.path.join(recipe, entry))]
    assert links == ["utils"]
    assert module.CORPUS == name and module.DEFAULT_CLASS_SET in module.CLASS_SETS and module.FOLD_SCHEME
    if name != "synth":  # the generated corpus has no published counts and is made, not obtained
        assert module.OBTAIN and module.NUM_SPEAKERS > 0
        assert module.DEFAULT_CLASS_SET in module.EXPECTED_COUNTS
