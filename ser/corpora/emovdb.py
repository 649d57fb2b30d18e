"""EmoV-DB, the Emotional Voices Database (Adigwe et al., 2018), English part, as released (OpenSLR 115).

Layouts read::

    <spk>_<Emotion>/<style>_<first>-<last>_<NNNN>.wav    OpenSLR 115: one archive per speaker and emotion,
                                                         e.g. bea_Amused/amused_1-15_0001.wav
    <spk>/<folder>/<style>_<first>-<last>_<NNNN>.wav     the "sorted" copy on MEGA (any emotion folder name)

Speakers bea and jenie (female), josh and sam (male); josh recorded only Amused, Neutral and Sleepy. The label
is the style word that begins the file name, read case-insensitively (amused, anger, disgust, neutral,
sleepiness; some files write ``Neutral_``/``Disgust_``), and in the OpenSLR layout it must agree with the
folder's emotion (Amused, Angry, Disgusted, Neutral, Sleepy). ``first-last`` is the range of the transcript
file (some names write ``first_last``, and a few numbers lie outside their range); NNNN is the CMU Arctic
sentence number. Mono; bea's files are 44.1 kHz, the others' 16 kHz (as EmoBox's metadata lists them).

Counts are those of EmoBox's metadata of the OpenSLR release (6887 files); the repository's README lists
counts of an earlier copy (7000 files: e.g. bea Neutral 373, jenie Angry 523), which this release does not have.

EmoBox's one published fold (data/emovdb/fold_1) is not speaker-grouped: it is a class-stratified random quarter
of each class (``int(0.25 * n)`` per class), which ``--fold-scheme emobox`` follows as a rule (same sizes per
class, not the same utterances). The default folds are speaker-independent: leave one speaker out.
"""

from __future__ import annotations

import glob
import os
import re

from ser.corpora.common import (
    EMOBOX_QUARTER,
    CorpusError,
    FoldScheme,
    Utterance,
    check_unique,
    leave_one_speaker_out,
    map_label,
    resolve_class_set,
)

CORPUS = "emovdb"
LICENCE = "non-commercial use only (EmoV-DB's LICENSE.md)"

STYLES = {"amused": "amused", "anger": "angry", "disgust": "disgust", "neutral": "neutral", "sleepiness": "sleepy"}
FOLDER_STYLE = {"Amused": "amused", "Angry": "anger", "Disgusted": "disgust", "Neutral": "neutral",
                "Sleepy": "sleepiness"}
CLASS_SETS: dict[str, dict[str, str]] = {"5class": dict(STYLES)}  # = EmoBox's data/emovdb/label_map.json
DEFAULT_CLASS_SET = "5class"

# EmoBox's data/emovdb/emovdb.jsonl (the OpenSLR release, 6887 files).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "5class": {"amused": 1315, "angry": 1267, "disgust": 1019, "neutral": 1566, "sleepy": 1720},  # 6887
}

SPEAKERS = {"bea": "f", "jenie": "f", "josh": "m", "sam": "m"}
NUM_SPEAKERS = 4
FOLD_SCHEME = "leave one speaker out (4 folds: bea, jenie, josh, sam)"

OBTAIN = ("https://www.openslr.org/115/ (one archive per speaker and emotion; see "
          "https://github.com/numediart/EmoV-DB); non-commercial use only (the repository's LICENSE.md)")

_FILE_NAME = re.compile(r"^([A-Za-z]+)_(\d+)[-_](\d+)_(\d{4})\.wav$")
_SLR_DIR = re.compile(r"^([a-z]+)_([A-Z][a-z]+)$")


def _audio_files(corpus_dir: str) -> list[tuple[str, str, str | None]]:
    """(path, speaker, style of its folder or None) for every wav of either layout."""
    found = []
    for folder in sorted(os.listdir(corpus_dir)) if os.path.isdir(corpus_dir) else []:
        path = os.path.join(corpus_dir, folder)
        if not os.path.isdir(path):
            continue
        match = _SLR_DIR.match(folder)
        if match and match.group(1) in SPEAKERS:
            if match.group(2) not in FOLDER_STYLE:
                raise CorpusError(f"{path}: emotion folder {match.group(2)} is not one of {' '.join(FOLDER_STYLE)}")
            style = FOLDER_STYLE[match.group(2)]
            found += [(wav, match.group(1), style)
                      for wav in sorted(glob.glob(os.path.join(glob.escape(path), "*.wav")))]
        elif folder in SPEAKERS:
            found += [(wav, folder, None)
                      for wav in sorted(glob.glob(os.path.join(glob.escape(path), "*", "*.wav")))]
    if not found:
        raise CorpusError(f"{CORPUS}: no audio in {corpus_dir}: expected <spk>_<Emotion>/<style>_<a>-<b>_<NNNN>.wav "
                          "(e.g. bea_Amused/amused_1-15_0001.wav) or <spk>/<emotion>/... for speakers "
                          f"{' '.join(SPEAKERS)}")
    return found


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from whichever layout is present.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the
    interface every corpus shares. Raises CorpusError naming the file for a name that does not parse, an
    unknown style, or a style that differs from its folder's emotion.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts = []
    for wav, spk, folder_style in _audio_files(corpus_dir):
        name = os.path.basename(wav)
        match = _FILE_NAME.match(name)
        if not match:
            raise CorpusError(f"{wav}: file name is not <style>_<first>-<last>_<NNNN>.wav "
                              "(e.g. amused_1-15_0001.wav)")
        raw = match.group(1).lower()
        emotion = map_label(raw, class_map, STYLES, wav)
        if folder_style is not None and raw != folder_style:
            raise CorpusError(f"{wav}: style {match.group(1)!r} differs from its folder's emotion ({folder_style})")
        if emotion is None:
            continue
        utts.append(Utterance(f"{spk}-{name[:-4]}", spk, os.path.abspath(wav), emotion, SPEAKERS[spk]))
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one speaker out: fold 1 tests bea, 2 jenie, 3 josh, 4 sam."""
    return leave_one_speaker_out(utts, CORPUS)


FOLD_SCHEMES: dict[str, FoldScheme] = {"emobox": EMOBOX_QUARTER}
