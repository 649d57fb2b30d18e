"""ASED, the Amharic Speech Emotion Dataset v1 (Retta et al., 2023), as released on GitHub (wgwangang/ASED_V1).

Layout read (the repository's folders, directly below the corpus dir)::

    01Neutral/n1-SS-RR-GG-PP.wav  02Fearful/f2-...  03Happy/h3-...  04Sad/s4-...  05Angry/a5-...

e.g. ``05Angry/a5-03-01-02-50.wav``: emotion letter and folder number (n1 neutral, f2 fearful, h3 happy, s4 sad,
a5 angry), sentence SS (01-07), repetition RR (01, 02), gender GG (01 female, 02 male), speaker PP (01-65).
One released file writes its emotion letter in capitals (``04Sad/S4-04-02-01-29.wav``): letters are read
case-insensitively. 2474 mono 16 kHz files from 65 speakers (25 female, 40 male; the release's README).

Five files carry a gender field that contradicts all other recordings of their speaker (e.g.
``02Fearful/f2-01-01-02-15.wav``; speakers 09 15 21 23 25 are female everywhere else), so a speaker's gender
comes from the published speaker list below (FEMALE_SPEAKERS: the 25 female speakers), not from that field.

EmoBox's one published fold (data/ased/fold_1) is not speaker-grouped: it is a class-stratified random quarter
of each class (``int(0.25 * n)`` utterances per class, Python's random.seed(0) over its own file order), which
``--fold-scheme emobox`` follows as a rule (same sizes per class, not the same utterances). The default
folds are speaker-independent: 5 speaker-grouped, class-stratified folds (``speaker_kfold``).
"""

from __future__ import annotations

import os
import re

from ser.corpora.common import (
    EMOBOX_QUARTER,
    CorpusError,
    FoldScheme,
    Utterance,
    check_unique,
    map_label,
    resolve_class_set,
    speaker_kfold,
)

CORPUS = "ased"
LICENCE = "none published (no licence file in the ASED_V1 repository): ask the authors before redistributing"

EMOTIONS = {"n": "neutral", "f": "fear", "h": "happy", "s": "sad", "a": "angry"}
FOLDERS = {"01Neutral": "n1", "02Fearful": "f2", "03Happy": "h3", "04Sad": "s4", "05Angry": "a5"}
CLASS_SETS: dict[str, dict[str, str]] = {"5class": dict(EMOTIONS)}  # = EmoBox's data/ased/label_map.json
DEFAULT_CLASS_SET = "5class"

# The release (2474 files, its README) and EmoBox's data/ased/ased.jsonl, per folder.
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "5class": {"neutral": 522, "fear": 510, "happy": 486, "sad": 470, "angry": 486},  # 2474
}

NUM_SPEAKERS = 65
# The 25 female speakers (the release's README: 25 female, 40 male), as the gender field of their files says
# (all but the five stray files above); the other 40 speakers are male.
FEMALE_SPEAKERS = frozenset({"01", "03", "05", "07", "09", "11", "13", "15", "17", "19", "21", "23", "25", "27",
                             "29", "31", "33", "35", "37", "43", "47", "48", "49", "58", "62"})
NUM_FOLDS = 5
FOLD_SCHEME = "5 speaker-grouped, class-stratified folds (speaker_kfold, seed 0)"

OBTAIN = ("https://github.com/wgwangang/ASED_V1 (the wavs are in the repository; no licence file is given, "
          "so ask the authors before redistributing)")

_FILE_NAME = re.compile(r"^([A-Za-z])(\d)-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.wav$")


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from the five emotion folders.

    Labels come from the file names (checked against their folder), so no label can lack its audio; ``strict``
    is accepted for the interface every corpus shares. Raises CorpusError naming the file for a name that does
    not parse, a field out of range, or an emotion that differs from its folder.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts = []
    found_folder = False
    for folder, code in FOLDERS.items():
        folder_dir = os.path.join(corpus_dir, folder)
        if not os.path.isdir(folder_dir):
            continue
        found_folder = True
        for name in sorted(os.listdir(folder_dir)):
            if not name.lower().endswith(".wav"):
                continue
            wav = os.path.join(folder_dir, name)
            match = _FILE_NAME.match(name)
            if not match:
                raise CorpusError(f"{wav}: file name is not <emotion><folder>-<sentence>-<repetition>-<gender>-"
                                  "<speaker>.wav (e.g. a5-03-01-02-50.wav)")
            letter, number, sentence, repetition, gender, speaker = match.groups()
            raw = letter.lower()
            emotion = map_label(raw, class_map, EMOTIONS, wav)
            if raw + number != code:
                raise CorpusError(f"{wav}: emotion {letter}{number} differs from its folder {folder} ({code})")
            if not 1 <= int(sentence) <= 7 or repetition not in ("01", "02") or gender not in ("01", "02") \
                    or not 1 <= int(speaker) <= NUM_SPEAKERS:
                raise CorpusError(f"{wav}: a field is out of range (sentence 01-07, repetition 01-02, gender 01-02, "
                                  f"speaker 01-{NUM_SPEAKERS})")
            if emotion is None:
                continue
            utts.append(Utterance(f"{speaker}-{name[:-4]}", speaker, os.path.abspath(wav), emotion,
                                  "f" if speaker in FEMALE_SPEAKERS else "m"))
    if not found_folder:
        raise CorpusError(f"{CORPUS}: none of the folders {' '.join(FOLDERS)} in {corpus_dir}: expected "
                          "01Neutral/n1-01-01-01-01.wav ... 05Angry/a5-...")
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Five speaker-grouped, class-stratified folds."""
    return speaker_kfold(utts, NUM_FOLDS, CORPUS)


FOLD_SCHEMES: dict[str, FoldScheme] = {"emobox": EMOBOX_QUARTER}
