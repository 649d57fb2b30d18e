"""Emotions in Polish speech recordings (Gdańsk University of Technology, MOST Wiedzy open data), as released.

Layout read (any folder depth below the corpus dir, so with or without a top folder)::

    <speaker>.<emotion>_<word>_<take>.wav          e.g. m1.a_nie_1.wav

Five speakers m1..m5 (the ``m`` prefix: male speakers), three emotions a (anger), n (neutral), s (fear,
Polish "strach"), six command words (nie, oddaj, podaj, stop, tak, trzymaj), takes 1-5: 5 x 3 x 6 x 5 =
450 mono 44.1 kHz files. (Counts, speakers and labels as in EmoBox's data/polish metadata and label map.)

Default folds are EmoBox's five speaker-independent folds (leave one speaker out, in EmoBox's order,
read from its data/polish/fold_<k>/polish_test_fold_<k>.jsonl), so results compare with EmoBox's.
"""

from __future__ import annotations

import os
import re

from ser.corpora.common import (
    CorpusError,
    FoldScheme,
    Utterance,
    check_unique,
    folds_by_group,
    map_label,
    resolve_class_set,
    wav_files_below,
)

CORPUS = "polish"
LICENCE = "the licence shown on its MOST Wiedzy open research data page"

EMOTIONS = {"a": "angry", "n": "neutral", "s": "fear"}
CLASS_SETS: dict[str, dict[str, str]] = {"3class": dict(EMOTIONS)}  # = EmoBox's data/polish/label_map.json
DEFAULT_CLASS_SET = "3class"

# EmoBox's data/polish/polish.jsonl: 450 files, 30 per speaker and emotion (6 words x 5 takes).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {"3class": {"angry": 150, "neutral": 150, "fear": 150}}

SPEAKERS = ("m1", "m2", "m3", "m4", "m5")
NUM_SPEAKERS = 5
WORDS = ("nie", "oddaj", "podaj", "stop", "tak", "trzymaj")

# EmoBox's test speaker of each fold (data/polish/fold_<k>/polish_test_fold_<k>.jsonl).
EMOBOX_FOLDS = {1: "m3", 2: "m2", 3: "m4", 4: "m5", 5: "m1"}
FOLD_SCHEME = "leave one speaker out in EmoBox's order (5 folds: 1 m3, 2 m2, 3 m4, 4 m5, 5 m1)"

OBTAIN = ("https://mostwiedzy.pl/en/open-research-data/emotions-in-polish-speech-recordings,11190523461146169-0 "
          "(MOST Wiedzy open research data; the licence is the one shown on that page)")

_FILE_NAME = re.compile(r"^(m\d)\.([a-z])_([a-z]+)_(\d)\.wav$")


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from every wav below corpus_dir.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the
    interface every corpus shares. Raises CorpusError naming the file for a name that does not parse, an
    unknown speaker, emotion or word, or a take out of range (1-5).
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    wavs = wav_files_below(corpus_dir, CORPUS, "<speaker>.<emotion>_<word>_<take>.wav, e.g. m1.a_nie_1.wav")
    utts = []
    for wav in wavs:
        name = os.path.basename(wav)
        match = _FILE_NAME.match(name)
        if not match:
            raise CorpusError(f"{wav}: file name is not <speaker>.<emotion>_<word>_<take>.wav (e.g. m1.a_nie_1.wav)")
        spk, raw, word, take = match.groups()
        if spk not in SPEAKERS:
            raise CorpusError(f"{wav}: speaker {spk} is not one of {' '.join(SPEAKERS)}")
        if word not in WORDS or not 1 <= int(take) <= 5:
            raise CorpusError(f"{wav}: word {word!r} is not one of {' '.join(WORDS)}, or take {take} is not 1-5")
        emotion = map_label(raw, class_map, EMOTIONS, wav)
        if emotion is None:
            continue
        utts.append(Utterance(f"{spk}-{raw}_{word}_{take}", spk, os.path.abspath(wav), emotion, "m"))
    check_unique(utts)
    return utts


def _emobox_fold(spk: str) -> int:
    for fold, test_speaker in EMOBOX_FOLDS.items():
        if spk == test_speaker:
            return fold
    raise CorpusError(f"{CORPUS}: speaker {spk} is in none of EmoBox's folds")


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one speaker out, numbered as EmoBox's folds (EMOBOX_FOLDS)."""
    return folds_by_group(utts, _emobox_fold, len(EMOBOX_FOLDS), CORPUS)


FOLD_SCHEMES: dict[str, FoldScheme] = {"emobox": FoldScheme(FOLD_SCHEME, folds)}
