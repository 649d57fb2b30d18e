"""How evenly a corpus's speakers cover the classes (ser.speaker_norm.class_coverage): the measure, its record in
stage 0's protocol.json, and --speaker-norm's warning (ser.bin.recipe folds); on the real corpora, URDU is flagged
and RAVDESS is not."""

from __future__ import annotations

import json
import math
import os

import pytest

from ser.bin import recipe
from ser.corpora import corpus_module
from ser.corpora.common import Utterance, prepare_recipe_data
from ser.speaker_norm import COVERAGE_THRESHOLD, class_coverage, coverage_warning

import support

CLASSES = ["ang", "hap", "neu", "sad"]
URDU, RAVDESS = "/work/shared/corpora/URDU", "/work/shared/corpora/RAVDESS"


def test_coverage_is_the_mean_normalised_class_entropy_of_the_speakers():
    even = [(f"s{s}", c) for s in range(3) for c in CLASSES for _ in range(2)]
    single = [(f"s{s}", CLASSES[s]) for s in range(3) for _ in range(5)]
    half = [("s0", "ang"), ("s0", "hap"), ("s1", "neu"), ("s1", "sad")]
    assert class_coverage(even, CLASSES)["mean_normalised_entropy"] == 1.0
    assert class_coverage(even, CLASSES)["speakers_with_every_class"] == 1.0
    assert class_coverage(single, CLASSES)["mean_normalised_entropy"] == 0.0
    assert class_coverage(half, CLASSES)["mean_normalised_entropy"] == pytest.approx(math.log(2) / math.log(4))
    # Mean over speakers: one even speaker and one single-class speaker average to 0.5.
    mixed = [("a", c) for c in CLASSES] + [("b", "ang")] * 4
    assert class_coverage(mixed, CLASSES)["mean_normalised_entropy"] == 0.5
    assert class_coverage(mixed, CLASSES)["speakers_with_every_class"] == 0.5


def _prepare(tmp_path, pairs):
    wav = str(tmp_path / "a.wav")
    support.write_wav(wav, 16000)
    utts = [Utterance(f"{spk}-u{i}", spk, wav, emo, "m") for i, (spk, emo) in enumerate(pairs)]
    speakers = sorted({spk for spk, _ in pairs})
    data_dir = tmp_path / "data"
    prepare_recipe_data(utts, {k + 1: [spk] for k, spk in enumerate(speakers)}, str(data_dir), corpus="c",
                        class_set="four", classes=CLASSES, fold_scheme="one speaker per fold")
    return data_dir


@pytest.mark.parametrize("even", [True, False])
def test_stage_0_records_coverage_and_speaker_norm_warns_when_poor(tmp_path, capsys, even):
    if even:
        pairs = [(f"s{s}", c) for s in range(4) for c in CLASSES for _ in range(3)]
    else:  # each speaker holds one emotion but a stray utterance
        pairs = [(f"s{s}", CLASSES[s]) for s in range(4) for _ in range(11)] + [(f"s{s}", CLASSES[s - 1])
                                                                                 for s in range(4)]
    data_dir = _prepare(tmp_path, pairs)
    coverage = json.loads((data_dir / "protocol.json").read_text())["speaker_class_coverage"]
    assert coverage == class_coverage(pairs, CLASSES)
    assert (coverage["mean_normalised_entropy"] >= COVERAGE_THRESHOLD) == even
    assert recipe.folds(str(data_dir), "", "none") == "1 2 3 4"
    assert "--speaker-norm" not in capsys.readouterr().err  # no normalisation, no warning
    recipe.folds(str(data_dir), "", "cmvn")
    assert ("warning: --speaker-norm on c: its speakers cover the classes poorly" in capsys.readouterr().err) != even
    # A protocol.json written before stage 0 recorded the measure: it is computed from data/all.
    protocol = json.loads((data_dir / "protocol.json").read_text())
    del protocol["speaker_class_coverage"]
    (data_dir / "protocol.json").write_text(json.dumps(protocol))
    recipe.folds(str(data_dir), "", "cmvn")
    assert ("cover the classes poorly" in capsys.readouterr().err) != even


@pytest.mark.skipif(not (os.path.isdir(URDU) and os.path.isdir(RAVDESS)), reason="the real corpora are not here")
def test_urdu_is_flagged_and_ravdess_is_not():
    measured = {}
    for name, path in (("urdu", URDU), ("ravdess", RAVDESS)):
        utts = corpus_module(name).prepare(path)
        classes = sorted({u.emotion for u in utts})
        measured[name] = class_coverage(((u.spk_id, u.emotion) for u in utts), classes)
    assert coverage_warning(measured["urdu"], "urdu") is not None
    assert coverage_warning(measured["ravdess"], "ravdess") is None
    assert measured["ravdess"]["speakers_with_every_class"] == 1.0
    assert measured["urdu"]["mean_normalised_entropy"] < 0.1 < 0.9 < measured["ravdess"]["mean_normalised_entropy"]
