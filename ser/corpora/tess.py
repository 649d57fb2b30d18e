"""TESS, the Toronto Emotional Speech Set (Dupuis & Pichora-Fuller, 2010), as released.

Layout read (24 414 Hz mono; one file of the release, OAF_food_fear.wav, is 96 kHz)::

    <any folders>/<SPK>_<word>_<emotion>.wav     e.g. OAF_angry/OAF_back_angry.wav, YAF_fear/YAF_lid_fear.wav

Two female speakers, OAF (older, 64) and YAF (younger, 26), each saying "Say the word ..." with 200 target
words in 7 emotions: angry, disgust, fear, happy, neutral, ps (pleasant surprise), sad. The release puts every
speaker x emotion in its own folder, whose names vary between copies (OAF_Pleasant_surprise,
YAF_pleasant_surprised, ...), so the folders are searched recursively and only the file names are read; the
emotion field is matched without regard to case. A copy unpacked twice (a folder nested in itself, as some
mirrors ship it) gives every utterance twice: the error names both files.

Folds: EmoBox's TESS split is one speaker-dependent fold (a random, class-stratified 25% of the utterances
tested; both speakers in train and test); a random draw states no rule, and a single fold that leaves 75% of the
utterances untested is not a fold protocol of this toolkit, so there is no "emobox" scheme here. The default
rule is speaker-independent: train on one speaker, test on the other.
"""

from __future__ import annotations

import os
import re

from ser.corpora.common import (
    CorpusError,
    Utterance,
    check_unique,
    folds_by_group,
    map_label,
    resolve_class_set,
    wav_files_below,
)

CORPUS = "tess"
LICENCE = "a Creative Commons non-commercial licence, as stated on its Borealis (University of Toronto) page"
OBTAIN = ("https://doi.org/10.5683/SP2/E8H2MF (Borealis, University of Toronto dataverse); "
          "licence as stated on that page (a Creative Commons non-commercial licence)")

SPEAKERS = ("OAF", "YAF")
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "ps", "sad")

CLASS_SETS: dict[str, dict[str, str]] = {
    # EmoBox's class set (data/tess/label_map.json): ps (pleasant surprise) is surprise.
    "7class": {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
               "ps": "surprise", "sad": "sad"},
}
DEFAULT_CLASS_SET = "7class"

# 2800 files = 2 speakers x 200 words x 7 emotions (Dupuis & Pichora-Fuller; EmoBox's data/tess/tess.jsonl has
# 400 per emotion, 1400 per speaker).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "7class": {"angry": 400, "disgust": 400, "fear": 400, "happy": 400, "neutral": 400, "surprise": 400,
               "sad": 400},
}
NUM_SPEAKERS = 2  # both female

FOLD_SCHEME = "leave one speaker out (2 folds: OAF, YAF)"

_FILE_NAME = re.compile(r"^([A-Za-z]{3})_([A-Za-z]+)_([A-Za-z]+)\.wav$")


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from every .wav below corpus_dir.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the interface
    every corpus shares. Raises CorpusError naming the file for a name that does not parse, an unknown speaker
    or emotion, and naming both files when one utterance occurs twice.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts: list[Utterance] = []
    for wav in wav_files_below(corpus_dir, CORPUS, "<folders>/<SPK>_<word>_<emotion>.wav "
                                   "(e.g. OAF_angry/OAF_back_angry.wav)"):
        name = os.path.basename(wav)
        match = _FILE_NAME.match(name)
        if not match:
            raise CorpusError(f"{wav}: file name is not <SPK>_<word>_<emotion>.wav")
        spk, word, emotion_field = match.groups()
        if spk.upper() not in SPEAKERS:
            raise CorpusError(f"{wav}: speaker {spk!r} is not one of {' '.join(SPEAKERS)}")
        spk = spk.upper()
        emotion = map_label(emotion_field.lower(), class_map, EMOTIONS, wav)
        if emotion is None:
            continue
        utts.append(Utterance(f"{spk}-{spk}_{word.lower()}_{emotion_field.lower()}", spk, os.path.abspath(wav),
                              emotion, "f"))
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one speaker out: fold 1 tests OAF, fold 2 YAF."""
    return folds_by_group(utts, lambda spk: SPEAKERS.index(spk) + 1, len(SPEAKERS), CORPUS)
