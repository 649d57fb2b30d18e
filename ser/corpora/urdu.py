"""URDU (Latif et al., 2018, arXiv 1812.10411): 400 utterances of Urdu talk-show speech, 4 emotions, 100 each.

Layout read (44.1 kHz mono as released; 16 kHz copies work the same, stage 1 resamples)::

    {Angry,Happy,Neutral,Sad}/SGX_FYY_EZZ.wav      also under one top folder (URDU-Dataset-master/ or URDU/)

``SGX``: speaker code, G its gender (M or F) and X its number (the same speaker across emotion folders); ``FYY``:
the speaker's file number; ``EZZ``: emotion letter (A angry, H happy, N neutral, S sad) and the file's number
within that emotion. The release speaks of 38 speakers; the file names hold 29 speaker codes, with 2 to 80 files
each, and folds group by that code. The letter must agree with the folder.

Folds: 5 speaker-grouped, class-stratified folds of the 29 codes (``speaker_kfold``, seed 0). EmoBox's URDU
protocol is one utterance-level split testing a random quarter of each class (25 of 100), in which speakers are
shared between training and test (e.g. SM5 on both sides). Its draw cannot be re-derived, so ``--fold-scheme
emobox`` follows its rule with a seeded draw of its own (``common.EMOBOX_QUARTER``: the same sizes, not the same
utterances) and records the protocol as speaker-dependent: its numbers are of another protocol than the default's.
"""

from __future__ import annotations

import glob
import os
import re

from ser.corpora.common import (
    EMOBOX_QUARTER,
    CorpusError,
    Utterance,
    check_unique,
    map_label,
    named_folders,
    resolve_class_set,
    speaker_kfold,
)

CORPUS = "urdu"
LICENCE = "research use only, as the release states"
OBTAIN = ("https://github.com/siddiquelatif/URDU-Dataset (research use only, as the release states; "
          "cite Latif et al. 2018)")
DOWNLOADS = [{"url": "https://github.com/siddiquelatif/URDU-Dataset/archive/refs/heads/master.zip", "sha256": None,
              "name": "URDU-Dataset-master.zip"}]
DOWNLOAD_ROOT = "URDU-Dataset-master"

EMOTION_FOLDERS = {"Angry": "A", "Happy": "H", "Neutral": "N", "Sad": "S"}
CLASS_SETS: dict[str, dict[str, str]] = {"4class": {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}}
DEFAULT_CLASS_SET = "4class"  # EmoBox's class set (label_map A/H/N/S)
EXPECTED_COUNTS: dict[str, dict[str, int]] = {"4class": {"angry": 100, "happy": 100, "neutral": 100, "sad": 100}}
NUM_SPEAKERS = 29  # speaker codes in the file names (the release text says 38 speakers)

NUM_FOLDS = 5
FOLD_SCHEME = f"{NUM_FOLDS} speaker-grouped, class-stratified folds of the 29 speaker codes (seed 0)"

_FILE_NAME = re.compile(r"^(S([MF])\d+)_F\d+_([A-Z])\d+\.wav$")


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of every emotion folder; labels from the file names, checked against their folders.

    ``strict`` is accepted for the interface every corpus shares. Raises CorpusError naming the file for a name
    that does not parse or a letter that differs from its folder.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts = []
    for emotion_dir, folder_letter in named_folders(corpus_dir, EMOTION_FOLDERS, CORPUS,
                                                    "Angry/SM1_F10_A010.wav ... (as the release unpacks)"):
        for wav in sorted(glob.glob(os.path.join(emotion_dir, "*.wav"))):
            name = os.path.basename(wav)
            match = _FILE_NAME.match(name)
            if not match:
                raise CorpusError(f"{wav}: file name is not SGX_FYY_EZZ.wav (speaker, file, emotion)")
            spk, gender, letter = match.groups()
            if letter != folder_letter:
                raise CorpusError(f"{wav}: emotion letter {letter} differs from its folder "
                                  f"{os.path.basename(emotion_dir)} ({folder_letter})")
            emotion = map_label(letter, class_map, EMOTION_FOLDERS.values(), wav)
            if emotion is not None:
                utts.append(Utterance(f"{spk}-{name[:-4]}", spk, os.path.abspath(wav), emotion, gender.lower()))
    if not utts:
        raise CorpusError(f"{CORPUS}: no SGX_FYY_EZZ.wav files in the emotion folders of {corpus_dir}")
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    return speaker_kfold(utts, NUM_FOLDS, CORPUS, seed=0)


FOLD_SCHEMES = {"emobox": EMOBOX_QUARTER}  # EmoBox's URDU fold_1: 25 of each class of 100, speakers shared
