"""Kaldi data directories: the validator's rules, fix/subset/combine/split, and the CLI wrappers.

Kaldi is not installed here. The tests marked "Kaldi:" mirror a check of Kaldi's
egs/wsj/s5/utils/validate_data_dir.sh (named in each comment); the order checks are compared with the very
coreutils commands that script runs (``LC_ALL=C sort -uC`` on the keys, ``LC_ALL=C sort -k2 -C`` on utt2spk).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ser import datadir
from ser.datadir import DataDirError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (utt, spk, emotion, duration, gender)
UTTS = [
    ("spkA-u1", "spkA", "ang", 1.5, "m"),
    ("spkA-u2", "spkA", "hap", 2.0, "m"),
    ("spkB-u1", "spkB", "neu", 0.75, "f"),
    ("spkB-u2", "spkB", "sad", 3.25, "f"),
    ("spkB-u3", "spkB", "neu", 1.0, "f"),
    ("spkC-u1", "spkC", "ang", 1.25, "f"),
]
CLASSES = ["ang", "hap", "neu", "sad"]


def write(path, name, lines, newline_at_end=True):
    text = "\n".join(lines) + ("\n" if newline_at_end and lines else "")
    with open(os.path.join(path, name), "w") as f:
        f.write(text)


def read_lines(path, name):
    with open(os.path.join(path, name)) as f:
        return f.read().splitlines()


def make_dir(path, utts=UTTS, feats=False, segments=False):
    """A valid data dir written by hand (files sorted with Python's sort, which is byte order for ASCII)."""
    os.makedirs(path, exist_ok=True)
    utts = sorted(utts)
    speakers = sorted({u[1] for u in utts})
    write(path, "utt2spk", [f"{u} {s}" for u, s, *_ in utts])
    write(path, "spk2utt", [s + " " + " ".join(u[0] for u in utts if u[1] == s) for s in speakers])
    write(path, "utt2emo", [f"{u} {e}" for u, _, e, _, _ in utts])
    write(path, "utt2dur", [f"{u} {d}" for u, _, _, d, _ in utts])
    write(path, "spk2gender", [f"{s} {next(u[4] for u in utts if u[1] == s)}" for s in speakers])
    if segments:  # recordings <speaker of the first>-rec<i // 2>: spkA-rec0 spkB-rec1 spkB-rec2 spkC-rec2
        recs = {u: f"{u.rsplit('-', 1)[0]}-rec{(i // 2)}" for i, (u, *_) in enumerate(utts)}
        write(path, "segments", [f"{u} {recs[u]} {i * 0.5} {i * 0.5 + d}" for i, (u, _, _, d, _) in enumerate(utts)])
        write(path, "wav.scp", [f"{r} /corpus/{r}.wav" for r in sorted(set(recs.values()))])
    else:
        write(path, "wav.scp", [f"{u} /corpus/{u}.wav" if i % 2 else f"{u} sox /corpus/{u}.flac -t wav - |"
                                for i, (u, *_) in enumerate(utts)])
    if feats:
        write(path, "feats.scp", [f"{u} dump/feats.ark:{100 * i + 9}" for i, (u, *_) in enumerate(utts)])
        write(path, "utt2num_frames", [f"{u} {int(d * 100) - 2}" for u, _, _, d, _ in utts])
    return str(path)


def errors_of(path, **kwargs):
    with pytest.raises(DataDirError) as info:
        datadir.validate_data_dir(path, **kwargs)
    return info.value.errors


def assert_error(path, *fragments, **kwargs):
    """Validation fails with an error holding every fragment (file:line, key, reason)."""
    errors = errors_of(path, **kwargs)
    assert any(all(f in e for f in fragments) for e in errors), (fragments, errors)


def edit(path, name, fn):
    write(path, name, fn(read_lines(path, name)))


# ---------------------------------------------------------------------------------------------- validator

def test_good_dir_passes(tmp_path):
    d = make_dir(tmp_path / "d", feats=True)
    datadir.validate_data_dir(d, classes=CLASSES, need_feats=True)
    datadir.validate_data_dir(make_dir(tmp_path / "s", segments=True), classes=CLASSES)


def test_unsorted_file(tmp_path):
    # Kaldi: check_sorted_and_uniq (awk '{print $1}' | sort -uC) on every file.
    d = make_dir(tmp_path)
    edit(d, "utt2emo", lambda lines: [lines[1], lines[0]] + lines[2:])
    assert_error(d, f"{d}/utt2emo:2", "not sorted", "'spkA-u1'")


def test_duplicate_key(tmp_path):
    # Kaldi: check_sorted_and_uniq (sort -u).
    d = make_dir(tmp_path)
    edit(d, "utt2dur", lambda lines: lines[:2] + [lines[1]] + lines[2:])
    assert_error(d, f"{d}/utt2dur:3", "duplicate key 'spkA-u2'")


def test_missing_trailing_newline(tmp_path):
    # Kaldi: check_sorted_and_uniq's perl test that every line ends with "\n".
    d = make_dir(tmp_path)
    write(d, "spk2gender", read_lines(d, "spk2gender"), newline_at_end=False)
    assert_error(d, f"{d}/spk2gender:3", "newline")


def test_dos_line_ending_and_blank_line(tmp_path):
    d = make_dir(tmp_path)
    edit(d, "utt2emo", lambda lines: lines[:1] + [lines[1] + "\r"] + lines[2:])
    assert_error(d, f"{d}/utt2emo:2", "carriage return")
    d2 = make_dir(tmp_path / "b")
    edit(d2, "utt2dur", lambda lines: lines[:3] + [""] + lines[3:])
    assert_error(d2, f"{d2}/utt2dur:4", "empty line")


def test_utterance_not_speaker_prefixed(tmp_path):
    # ser's rule (DESIGN.md): the speaker id is the prefix of every utterance id. These ids are sorted by
    # speaker too, so Kaldi's sort -k2 test alone would pass them.
    d = make_dir(tmp_path, utts=[("a1", "spkA", "ang", 1.0, "m"), ("b1", "spkB", "hap", 1.0, "f")])
    errors = errors_of(d)
    assert any(f"{d}/utt2spk:1" in e and "'a1'" in e and "does not start with its speaker id 'spkA'" in e
               for e in errors)
    assert not any("sorted by speaker" in e for e in errors)


def test_utt2spk_not_sorted_by_speaker(tmp_path):
    # Kaldi: "utt2spk is not in sorted order when sorted first on speaker-id" (sort -k2 -C).
    d = make_dir(tmp_path, utts=[("s2-u1", "s2", "ang", 1.0, "m"), ("s10-u1", "s10", "hap", 1.0, "f"),
                                 ("s10-u2", "s10", "hap", 1.0, "f")])
    # utt order: s10-u1 s10-u2 s2-u1 ; speaker order s10 < s2: sorted both ways; now break it:
    write(d, "utt2spk", ["s10-u1 s10", "s10-u2 s2", "s2-u1 s10"])
    assert_error(d, f"{d}/utt2spk:3", "sorted by speaker")


def test_utterance_set_mismatch(tmp_path):
    # Kaldi: "utterance lists extracted from utt2spk and wav.scp/feats/utt2dur... differ".
    d = make_dir(tmp_path)
    edit(d, "utt2emo", lambda lines: [l for l in lines if not l.startswith("spkB-u2 ")])
    assert_error(d, f"{d}/utt2spk:4", "'spkB-u2'", "missing from", "utt2emo")
    d2 = make_dir(tmp_path / "b")
    edit(d2, "utt2dur", lambda lines: lines + ["spkZ-u1 1.0"])
    assert_error(d2, f"{d2}/utt2dur:7", "'spkZ-u1'", "not in", "utt2spk")
    d3 = make_dir(tmp_path / "c")
    edit(d3, "wav.scp", lambda lines: lines[1:])
    assert_error(d3, f"{d3}/utt2spk:1", "'spkA-u1'", "wav.scp")


def test_durations_must_be_positive(tmp_path):
    # Kaldi: "Bad line utt2dur" when !($2 > 0).
    for bad in ("0", "-1.5", "abc", "nan"):
        d = make_dir(tmp_path / bad)
        edit(d, "utt2dur", lambda lines: lines[:1] + [f"spkA-u2 {bad}"] + lines[2:])
        assert_error(d, f"{d}/utt2dur:2", "positive", "'spkA-u2'")


def test_unknown_label_and_missing_utt2emo(tmp_path):
    # ser's rules: utt2emo exists; every label is in the class set.
    d = make_dir(tmp_path)
    edit(d, "utt2emo", lambda lines: lines[:4] + ["spkB-u3 fear"] + lines[5:])
    assert_error(d, f"{d}/utt2emo:5", "'fear'", "'spkB-u3'", classes=CLASSES)
    datadir.validate_data_dir(d)  # without a class set any label goes
    os.remove(os.path.join(d, "utt2emo"))
    assert_error(d, f"{d}/utt2emo", "no such file")


def test_spk2utt_inconsistent(tmp_path):
    # Kaldi: "spk2utt and utt2spk do not seem to match" (spk2utt_to_utt2spk.pl output compared with utt2spk).
    d = make_dir(tmp_path)
    edit(d, "spk2utt", lambda lines: ["spkA spkA-u1 spkA-u2 spkB-u1", "spkB spkB-u2 spkB-u3", lines[2]])
    assert_error(d, f"{d}/spk2utt:1", "'spkB-u1'", "speaker 'spkA'", "utt2spk:3")
    d2 = make_dir(tmp_path / "b")
    edit(d2, "spk2utt", lambda lines: [lines[0], "spkB spkB-u1 spkB-u3", lines[2]])
    assert_error(d2, f"{d2}/utt2spk:4", "'spkB-u2'", "missing from", "spk2utt")
    d3 = make_dir(tmp_path / "c")
    edit(d3, "spk2utt", lambda lines: [lines[0], "spkB spkB-u2 spkB-u1 spkB-u3", lines[2]])
    assert_error(d3, f"{d3}/spk2utt:2", "not in sorted order")


def test_missing_and_empty_required_files(tmp_path):
    # Kaldi: utt2spk and spk2utt must exist and be non-empty; wav.scp unless --no-wav; feats.scp unless --no-feats.
    d = make_dir(tmp_path)
    os.remove(os.path.join(d, "wav.scp"))
    assert_error(d, f"{d}/wav.scp", "no such file")
    datadir.validate_data_dir(d, need_wav=False)
    assert_error(d, f"{d}/feats.scp", "no such file", need_wav=False, need_feats=True)
    d2 = make_dir(tmp_path / "b")
    write(d2, "spk2utt", [])
    assert_error(d2, f"{d2}/spk2utt", "empty file")
    with pytest.raises(DataDirError, match="no such directory"):
        datadir.validate_data_dir(str(tmp_path / "nowhere"))


def test_bad_segments(tmp_path):
    # Kaldi: "Bad line in segments file" when NF != 4 or end <= start; ser adds start >= 0 and numbers only.
    cases = {"end <= start": ("spkA-u2 spkA-rec0 2.0 2.0", "not after start"),
             "negative start": ("spkA-u2 spkA-rec0 -0.5 2.0", "negative"),
             "not a number": ("spkA-u2 spkA-rec0 zero 2.0", "not a number"),
             "3 fields": ("spkA-u2 spkA-rec0 2.0", "expected 4 fields")}
    for i, (line, reason) in enumerate(cases.values()):
        d = make_dir(tmp_path / str(i), segments=True)
        edit(d, "segments", lambda lines: lines[:1] + [line] + lines[2:])
        assert_error(d, f"{d}/segments:2", reason)


def test_segments_recordings_match_wav_scp(tmp_path):
    # Kaldi: "recording-ids extracted from segments and wav.scp differ"; segments needs wav.scp.
    d = make_dir(tmp_path, segments=True)
    edit(d, "wav.scp", lambda lines: lines + ["spkZ-rec9 /corpus/unused.wav"])
    assert_error(d, f"{d}/wav.scp:5", "'spkZ-rec9'", "not in", "segments")
    d2 = make_dir(tmp_path / "b", segments=True)
    edit(d2, "wav.scp", lambda lines: lines[1:])
    assert_error(d2, f"{d2}/segments:1", "'spkA-rec0'", "missing from", "wav.scp")
    d3 = make_dir(tmp_path / "c", segments=True)
    os.remove(os.path.join(d3, "wav.scp"))
    assert_error(d3, f"{d3}/wav.scp", "segments exists", need_wav=False)
    # ser: segments must hold the utterances of utt2spk (Kaldi checks it only when text exists).
    d4 = make_dir(tmp_path / "d", segments=True)
    edit(d4, "segments", lambda lines: lines[:-1])
    assert_error(d4, f"{d4}/utt2spk:6", "'spkC-u1'", "segments")


def test_reco2dur_keyed_by_recording_with_segments(tmp_path):
    # Kaldi: reco2dur holds the recordings of segments (or the utterances without segments), durations > 0.
    d = make_dir(tmp_path, segments=True)
    write(d, "reco2dur", ["spkA-rec0 10.0", "spkB-rec1 10.0", "spkB-rec2 10.0", "spkC-rec2 10.0"])
    datadir.validate_data_dir(d)
    write(d, "reco2dur", ["spkA-rec0 10.0", "spkB-rec1 0", "spkC-rec2 10.0"])
    assert_error(d, f"{d}/reco2dur:2", "positive")
    assert_error(d, f"{d}/segments:5", "'spkB-rec2'", "missing from", "reco2dur")
    d2 = make_dir(tmp_path / "b")
    write(d2, "reco2dur", [f"{u[0]} 3.0" for u in sorted(UTTS)][1:])
    assert_error(d2, f"{d2}/utt2spk:1", "reco2dur")


def test_spk2gender(tmp_path):
    # Kaldi: "Mal-formed spk2gender file" unless m/f; speakers must equal spk2utt's.
    d = make_dir(tmp_path)
    edit(d, "spk2gender", lambda lines: [lines[0], "spkB x", lines[2]])
    assert_error(d, f"{d}/spk2gender:2", "'x'", "'spkB'")
    d2 = make_dir(tmp_path / "b")
    edit(d2, "spk2gender", lambda lines: lines[:2])
    assert_error(d2, f"{d2}/spk2utt:3", "'spkC'", "spk2gender")


def test_feats_and_num_frames(tmp_path):
    # Kaldi: feats.scp holds the utterances of utt2spk; utt2num_frames positive integers.
    d = make_dir(tmp_path, feats=True)
    edit(d, "utt2num_frames", lambda lines: lines[:2] + ["spkB-u1 0"] + lines[3:])
    assert_error(d, f"{d}/utt2num_frames:3", "positive integer")
    d2 = make_dir(tmp_path / "b", feats=True)
    edit(d2, "utt2num_frames", lambda lines: lines[:2] + ["spkB-u1 7.5"] + lines[3:])
    assert_error(d2, f"{d2}/utt2num_frames:3", "positive integer")
    d3 = make_dir(tmp_path / "c", feats=True)
    edit(d3, "feats.scp", lambda lines: lines[:-1])
    assert_error(d3, f"{d3}/utt2spk:6", "feats.scp")


def test_wav_scp_entries(tmp_path):
    # Kaldi: "Please do not use tilde (~) in your wav.scp"; ser: Kaldi's rules for input names (a pipe ends in '|').
    for i, (value, reason) in enumerate([("~/corpus/a.wav", "'~'"), ("| sox a.flac -t wav -", "starts with '|'"),
                                         ("sox a.flac -t wav - | cat x", "not at the end"), ("-", "standard input")]):
        d = make_dir(tmp_path / str(i))
        edit(d, "wav.scp", lambda lines: [f"spkA-u1 {value}"] + lines[1:])
        assert_error(d, f"{d}/wav.scp:1", reason)
    d = make_dir(tmp_path / "ok")
    edit(d, "wav.scp", lambda lines: ["spkA-u1 /corpus/all.ark:1234"] + lines[1:])
    datadir.validate_data_dir(d)


def test_text_checked_when_present(tmp_path):
    # Kaldi (with text): text sorted and holding the utterances of utt2spk.
    d = make_dir(tmp_path)
    write(d, "text", [f"{u[0]} hello world" for u in sorted(UTTS)][:-1])
    assert_error(d, f"{d}/utt2spk:6", "text")


def test_all_errors_reported_at_once(tmp_path):
    d = make_dir(tmp_path)
    edit(d, "utt2dur", lambda lines: lines[:1] + ["spkA-u2 0"] + lines[2:])
    edit(d, "spk2gender", lambda lines: [lines[0], "spkB x", lines[2]])
    errors = errors_of(d)
    assert any("utt2dur:2" in e for e in errors) and any("spk2gender:2" in e for e in errors)


def _kaldi_sort_check(path, args):
    """Exit status of the coreutils check Kaldi's validator runs (0: sorted)."""
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(f"sort {args}", shell=True, env=env, stdin=open(path, "rb"),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


@pytest.mark.skipif(shutil.which("sort") is None or shutil.which("awk") is None, reason="needs coreutils sort, awk")
def test_order_checks_agree_with_coreutils_sort(tmp_path):
    # Kaldi: `awk '{print $1}' < f | sort -uC` for every file and `sort -k2 -C utt2spk`, under LC_ALL=C.
    rng = random.Random(0)
    alphabet = ["a", "b", "A", "_", "-", "1", "é"]
    path = str(tmp_path / "utt2spk")
    disagreements = []
    for trial in range(150):
        lines = []
        for _ in range(rng.randint(1, 6)):
            spk = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 2)))
            utt = (spk if rng.random() < 0.6 else "") + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
            lines.append(f"{utt}{rng.choice([' ', ' ', chr(9)])}{spk}")
        if rng.random() < 0.5:
            lines.sort(key=lambda l: l.split()[0].encode())
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        parsed = datadir.parse_table_lines(open(path, encoding="utf-8").read(), path, 2, 2)
        keys_ok = not datadir._order_errors(path, parsed)
        keys_ref = subprocess.run(f"awk '{{print $1}}' < '{path}' | LC_ALL=C sort -uC", shell=True).returncode == 0
        spk_ok = not datadir._speaker_order_errors(path, parsed)
        spk_ref = _kaldi_sort_check(path, "-k2 -C") == 0
        if (keys_ok, spk_ok) != (keys_ref, spk_ref):
            disagreements.append((lines, keys_ok, keys_ref, spk_ok, spk_ref))
    assert not disagreements, disagreements[:3]


# ---------------------------------------------------------------------------------------------- tables

def test_read_table_errors_and_values(tmp_path):
    d = str(tmp_path)
    write(d, "wav.scp", ["u1\tsox  a.flac -t wav - |", "u2 /x.wav"])
    assert datadir.read_table(f"{d}/wav.scp") == {"u1": "sox  a.flac -t wav - |", "u2": "/x.wav"}
    write(d, "bad", ["u1 a b"])
    with pytest.raises(DataDirError, match=r"bad:1: expected 2 fields"):
        datadir.read_table(f"{d}/bad", 2, 2)
    write(d, "dup", ["u1 a", "u1 b"])
    with pytest.raises(DataDirError, match=r"dup:2: duplicate key 'u1'"):
        datadir.read_table(f"{d}/dup")
    write(d, "nonl", ["u1 a", "u2 b"], newline_at_end=False)
    with pytest.raises(DataDirError, match=r"nonl:2: the last line does not end with a newline"):
        datadir.read_table(f"{d}/nonl")


def test_write_table_sorts_bytewise_and_rejects_bad_keys(tmp_path):
    path = str(tmp_path / "t")
    datadir.write_table(path, {"b": "1", "B": "2", "a_": "3", "a-": "4", "é": "5"})
    assert read_lines(str(tmp_path), "t") == ["B 2", "a- 4", "a_ 3", "b 1", "é 5"]  # byte order: B < a- < a_ < b
    with pytest.raises(DataDirError, match="duplicate key"):
        datadir.write_table(path, [("a", "1"), ("a", "2")])
    with pytest.raises(DataDirError, match="whitespace"):
        datadir.write_table(path, {"a b": "1"})
    assert read_lines(str(tmp_path), "t")[0] == "B 2"  # a failed write leaves the old file


def test_utt2spk_spk2utt_round_trip():
    rng = random.Random(1)
    utt2spk = {}
    for s in range(8):
        for u in range(rng.randint(1, 5)):
            utt2spk[f"spk{s}-utt{rng.randint(0, 999):03d}"] = f"spk{s}"
    spk2utt = datadir.utt2spk_to_spk2utt(utt2spk)
    assert set(spk2utt) == set(utt2spk.values())
    for spk, utts in spk2utt.items():
        assert utts.split() == sorted(u for u, s in utt2spk.items() if s == spk)
    assert datadir.spk2utt_to_utt2spk(spk2utt) == utt2spk
    with pytest.raises(DataDirError, match="listed for speakers"):
        datadir.spk2utt_to_utt2spk({"a": "u1 u2", "b": "u2"})


# ---------------------------------------------------------------------------------------------- fix

def test_fix_repairs_unsorted_inconsistent_dir(tmp_path):
    d = make_dir(tmp_path)
    originals = {}
    edit(d, "utt2spk", lambda lines: list(reversed(lines)) + [lines[0]])  # unsorted, a repeated identical line
    edit(d, "utt2emo", lambda lines: [l for l in lines if not l.startswith("spkB-u2 ")])  # spkB-u2 unlabelled
    edit(d, "utt2dur", lambda lines: lines + ["spkZ-u1 1.0"])  # an utterance nobody else knows
    edit(d, "spk2gender", lambda lines: [lines[0], lines[1]])  # spkC has no gender: Kaldi drops its utterances
    edit(d, "spk2utt", lambda lines: lines[:1])  # stale
    write(d, "wav.scp", read_lines(d, "wav.scp"), newline_at_end=False)
    for name in os.listdir(d):
        originals[name] = open(os.path.join(d, name), "rb").read()
    with pytest.raises(DataDirError):
        datadir.validate_data_dir(d)

    result = datadir.fix_data_dir(d)
    datadir.validate_data_dir(d, classes=CLASSES)
    kept = [u for u in sorted(UTTS) if u[0] not in ("spkB-u2", "spkC-u1")]
    assert read_lines(d, "utt2spk") == [f"{u} {s}" for u, s, *_ in kept]
    assert read_lines(d, "utt2emo") == [f"{u} {e}" for u, _, e, _, _ in kept]
    assert read_lines(d, "spk2utt") == ["spkA spkA-u1 spkA-u2", "spkB spkB-u1 spkB-u3"]
    assert result["utterances_dropped"] == 3 and result["utterances_kept"] == 4  # spkB-u2, spkC-u1, spkZ-u1
    assert result["speakers_dropped"] == 1 and result["duplicate_lines_dropped"] == 1
    backup = os.path.join(d, ".backup")
    assert result["backup_dir"] == backup
    for name in result["files_rewritten"]:
        assert open(os.path.join(backup, name), "rb").read() == originals[name]
    assert set(result["files_rewritten"]) == {"utt2spk", "spk2utt", "utt2dur", "wav.scp", "utt2emo"}

    again = datadir.fix_data_dir(d)  # nothing left to fix: nothing rewritten, no new backup
    assert again["files_rewritten"] == [] and again["backup_dir"] is None
    edit(d, "utt2emo", lambda lines: list(reversed(lines)))
    third = datadir.fix_data_dir(d)
    assert third["backup_dir"] == os.path.join(d, ".backup.1")
    assert open(os.path.join(backup, "utt2emo"), "rb").read() == originals["utt2emo"]  # first backup kept


def test_fix_refuses_conflicting_duplicates(tmp_path):
    d = make_dir(tmp_path)
    edit(d, "utt2emo", lambda lines: lines + ["spkA-u1 sad"])
    with pytest.raises(DataDirError, match=r"utt2emo:7: key 'spkA-u1' repeats line 1 with a different value"):
        datadir.fix_data_dir(d)


def test_fix_with_segments_drops_unused_recordings(tmp_path):
    d = make_dir(tmp_path, segments=True)
    edit(d, "wav.scp", lambda lines: [l for l in lines if not l.startswith("spkB-rec1 ")] + ["spkZ-rec7 /z.wav"])
    result = datadir.fix_data_dir(d, backup=False)
    datadir.validate_data_dir(d)
    assert [l.split()[0] for l in read_lines(d, "wav.scp")] == ["spkA-rec0", "spkB-rec2", "spkC-rec2"]
    # spkB-rec1 held spkB-u1 and spkB-u2, which go with it
    assert [l.split()[0] for l in read_lines(d, "utt2spk")] == ["spkA-u1", "spkA-u2", "spkB-u3", "spkC-u1"]
    assert result["recordings_dropped"] == 2 and result["utterances_dropped"] == 2
    assert not os.path.exists(os.path.join(d, ".backup"))


# ---------------------------------------------------------------------------------------------- subset

def test_subset_by_utterances_and_speakers(tmp_path):
    src = make_dir(tmp_path / "src", feats=True)
    write(str(tmp_path), "list", ["spkB-u3", "spkA-u1 whatever follows"])
    dst = str(tmp_path / "dst")
    os.makedirs(dst)
    write(dst, "cmvn.scp", ["old x"])  # stale known file: removed
    datadir.subset_data_dir(src, dst, utt_list=str(tmp_path / "list"))
    datadir.validate_data_dir(dst, need_feats=True)
    assert read_lines(dst, "utt2spk") == ["spkA-u1 spkA", "spkB-u3 spkB"]
    assert read_lines(dst, "spk2gender") == ["spkA m", "spkB f"]
    kept = ("spkA-u1", "spkB-u3")
    assert read_lines(dst, "feats.scp") == [l for l in read_lines(src, "feats.scp") if l.split()[0] in kept]
    assert not os.path.exists(os.path.join(dst, "cmvn.scp"))

    datadir.subset_data_dir(src, dst, spk_list=["spkB"])
    assert [l.split()[0] for l in read_lines(dst, "utt2spk")] == ["spkB-u1", "spkB-u2", "spkB-u3"]
    with pytest.raises(DataDirError, match="no speaker 'spkQ'"):
        datadir.subset_data_dir(src, dst, spk_list=["spkB", "spkQ"])
    with pytest.raises(DataDirError, match="another directory"):
        datadir.subset_data_dir(src, src, utt_list=["spkA-u1"])


def test_subset_with_segments_keeps_only_used_recordings(tmp_path):
    src = make_dir(tmp_path / "src", segments=True)
    dst = str(tmp_path / "dst")
    datadir.subset_data_dir(src, dst, utt_list=["spkA-u1", "spkC-u1"])
    datadir.validate_data_dir(dst)
    assert [l.split()[0] for l in read_lines(dst, "wav.scp")] == ["spkA-rec0", "spkC-rec2"]


# ---------------------------------------------------------------------------------------------- combine

def test_combine(tmp_path):
    a = make_dir(tmp_path / "a", utts=UTTS[:3])
    b = make_dir(tmp_path / "b", utts=UTTS[2:])  # spkB-u1 is in both, identical
    dst = str(tmp_path / "all")
    datadir.combine_data_dirs(dst, [a, b])
    datadir.validate_data_dir(dst, classes=CLASSES)
    assert read_lines(dst, "utt2spk") == [f"{u} {s}" for u, s, *_ in sorted(UTTS)]
    assert read_lines(dst, "spk2utt") == read_lines(make_dir(tmp_path / "ref"), "spk2utt")

    edit(b, "utt2emo", lambda lines: ["spkB-u1 sad"] + lines[1:])
    with pytest.raises(DataDirError, match=rf"{b}/utt2emo:1: 'spkB-u1' has value 'sad' but {a}/utt2emo:3 gives 'neu'"):
        datadir.combine_data_dirs(dst, [a, b])
    c = make_dir(tmp_path / "c", utts=UTTS[5:])
    os.remove(os.path.join(c, "utt2dur"))
    with pytest.raises(DataDirError, match=rf"{c}/utt2dur: no such file"):
        datadir.combine_data_dirs(dst, [a, c])
    with pytest.raises(DataDirError, match="also a source"):
        datadir.combine_data_dirs(a, [a, c])


# ---------------------------------------------------------------------------------------------- split

def _part_utts(parts):
    return [[l.split()[0] for l in read_lines(p, "utt2spk")] for p in parts]


def test_split_per_utterance(tmp_path):
    src = make_dir(tmp_path / "d", feats=True)
    parts = datadir.split_data_dir(src, 4)
    assert parts == [os.path.join(src, "split4", str(i)) for i in range(1, 5)]
    utts = _part_utts(parts)
    flat = [u for part in utts for u in part]
    assert sorted(flat) == sorted(u[0] for u in UTTS) and len(flat) == len(set(flat))  # disjoint, covering
    assert max(map(len, utts)) - min(map(len, utts)) <= 1
    for part in parts:
        datadir.validate_data_dir(part, classes=CLASSES, need_feats=True)
    with pytest.raises(DataDirError, match="6 utterances into 7"):
        datadir.split_data_dir(src, 7)


def test_split_per_speaker_keeps_speakers_whole(tmp_path):
    src = make_dir(tmp_path / "d")
    parts = datadir.split_data_dir(src, 2, by_speaker=True)
    speakers = [{l.split()[1] for l in read_lines(p, "utt2spk")} for p in parts]
    assert not speakers[0] & speakers[1] and speakers[0] | speakers[1] == {"spkA", "spkB", "spkC"}
    assert sorted(map(len, _part_utts(parts))) == [3, 3]  # spkB (3) | spkA + spkC (2 + 1)
    for part in parts:
        datadir.validate_data_dir(part)
    with pytest.raises(DataDirError, match="3 speakers into 4"):
        datadir.split_data_dir(src, 4, by_speaker=True)


def test_split_reused_while_up_to_date(tmp_path):
    src = make_dir(tmp_path / "d")
    parts = datadir.split_data_dir(src, 2)
    marker = os.path.join(parts[0], "marker")
    open(marker, "w").close()  # survives only if the split is reused
    assert datadir.split_data_dir(src, 2) == parts and os.path.exists(marker)
    datadir.split_data_dir(src, 2, by_speaker=True)  # another mode: made again
    assert not os.path.exists(marker)
    open(marker, "w").close()
    edit(src, "utt2emo", lambda lines: lines[:1] + ["spkA-u2 sad"] + lines[2:])  # the source changed
    datadir.split_data_dir(src, 2, by_speaker=True)
    assert not os.path.exists(marker)
    assert "spkA-u2 sad" in read_lines(parts[0], "utt2emo") + read_lines(parts[1], "utt2emo")
    os.remove(os.path.join(src, "split2", ".split_stamp.json"))  # an interrupted split is never reused
    open(marker, "w").close()
    datadir.split_data_dir(src, 2, by_speaker=True)
    assert not os.path.exists(marker)
    assert not [n for n in os.listdir(src) if n.startswith(".split")]  # no temporary dir left behind


# ---------------------------------------------------------------------------------------------- CLI and wrappers

def _run(cmd, **kwargs):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, **kwargs)


def test_cli_exit_codes_and_messages(tmp_path):
    d = make_dir(tmp_path / "d")
    ok = _run([sys.executable, "-m", "ser.bin.datadir", "validate", "--classes", " ".join(CLASSES), d], cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    bad = _run([sys.executable, "-m", "ser.bin.datadir", "validate", "--classes", "ang hap", d], cwd=REPO)
    assert bad.returncode == 1 and f"{d}/utt2emo:3" in bad.stderr and "'neu'" in bad.stderr
    usage = _run([sys.executable, "-m", "ser.bin.datadir", "split", d, "zero"], cwd=REPO)
    assert usage.returncode == 1 and "positive integer" in usage.stderr


def test_wrappers_through_a_symlinked_utils_dir(tmp_path):
    # A recipe's utils is a symlink to the repository's (egs/<corpus>/utils -> ../../utils).
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    os.symlink(os.path.join(REPO, "utils"), recipe / "utils")
    d = make_dir(recipe / "data" / "train")
    for script in ("validate_data_dir.sh", "fix_data_dir.sh"):
        r = _run(["bash", f"utils/{script}", "data/train"], cwd=recipe)
        assert r.returncode == 0, r.stderr
    r = _run(["bash", "utils/split_data.sh", "--per-spk", "data/train", "2"], cwd=recipe)
    assert r.stdout.split() == ["data/train/split2/1", "data/train/split2/2"], r.stderr
    r = _run(["bash", "utils/subset_data_dir.sh", "--spk-list", "/dev/stdin", "data/train", "data/sub"], cwd=recipe,
             input="spkC\n")
    assert r.returncode == 0 and read_lines(str(recipe / "data" / "sub"), "utt2spk") == ["spkC-u1 spkC"], r.stderr
    # Kaldi's SRC N DST form: N utterances spread evenly over the sorted utterances.
    everything = [line.split()[0] for line in read_lines(d, "utt2spk")]
    r = _run(["bash", "utils/subset_data_dir.sh", "data/train", "3", "data/three"], cwd=recipe)
    assert r.returncode == 0, r.stderr
    step = len(everything) / 3
    assert [line.split()[0] for line in read_lines(str(recipe / "data" / "three"), "utt2spk")] == \
        [everything[int(i * step)] for i in range(3)]
    r = _run(["bash", "utils/subset_data_dir.sh", "data/train", "999", "data/many"], cwd=recipe)
    assert r.returncode != 0 and f"asked for 999 utterances of {len(everything)}" in r.stderr
    r = _run(["bash", "utils/combine_data.sh", "data/both", "data/sub", "data/train/split2/1"], cwd=recipe)
    assert r.returncode == 0, r.stderr
    r = _run(["bash", "utils/utt2spk_to_spk2utt.sh", os.path.join(d, "utt2spk")], cwd=recipe)
    assert r.stdout.splitlines() == read_lines(d, "spk2utt")
    back = _run(["bash", "utils/spk2utt_to_utt2spk.sh"], cwd=recipe, input=r.stdout)
    assert back.stdout.splitlines() == read_lines(d, "utt2spk")
    r = _run(["bash", "utils/validate_data_dir.sh", "data/nowhere"], cwd=recipe)
    assert r.returncode == 1 and "no such directory" in r.stderr


def test_wrapper_with_python_from_path(tmp_path):
    # SER_PYTHON_ENV=none (path.sh's convention): python3 from PATH; the tools need only the standard library.
    d = make_dir(tmp_path / "d")
    env = dict(os.environ, SER_PYTHON_ENV="none")
    env.pop("PYTHONPATH", None)
    r = subprocess.run(["bash", os.path.join(REPO, "utils", "validate_data_dir.sh"), "--classes", "ang hap neu sad", d],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert r.returncode == 0 and "valid data directory (6 utterances, 3 speakers)" in r.stdout, r.stderr


def test_atomic_path_leaves_the_old_file_or_the_new_one(tmp_path):
    """An output is replaced only when its writer finishes; a failing writer leaves the old file and no temporary."""
    from ser.atomic import atomic_path, write_json

    path = tmp_path / "results.json"
    write_json(str(path), {"ua": 1.0})
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as tmp:
            open(tmp, "w").write('{"ua": ')
            raise RuntimeError("killed while writing")
    assert json.loads(path.read_text()) == {"ua": 1.0}
    assert os.listdir(tmp_path) == ["results.json"]
    with atomic_path(str(tmp_path / "stats.npz")) as tmp:
        assert tmp.endswith(".npz")  # numpy.savez keeps the name
        np.savez(tmp, x=np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["results.json", "stats.npz"]
