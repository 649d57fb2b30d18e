"""ShEMO, the Sharif Emotional Speech Database (Mohamad Nezami, Jamshid Lou & Karami, LRE 2019), as released.

Layout read (the release's female.zip and male.zip unpacked side by side, also one folder further down)::

    female/F<SS><E><NN>.wav      e.g. female/F14A09.wav
    male/M<SS><E><NN>.wav        e.g. male/M02F01.wav

The first letter is the speaker's gender (F female, M male) and SS the speaker number within it, so F01 and M01
are different speakers; E is the emotion (A anger, F fear, H happiness, N neutral, S sadness, W surprise) and NN
the utterance's number for that speaker and emotion. A file's folder must agree with its gender letter.
87 speakers (F01-F31, M01-M56), 3000 semi-natural utterances from Persian radio plays, mono, mostly 44.1 kHz
(EmoBox's metadata also lists 121 files at 22.05 kHz).

EmoBox reads only the 2838 utterances listed in the shemo.json of the Hugging Face copy, and tests one
speaker-DEPENDENT fold: 25% of each class drawn at random (EmoBox's write_folds, seeded over its file order).
That draw cannot be re-derived from the release, so no "emobox" fold scheme is offered. The default folds are
speaker-grouped instead: 5 class-stratified folds of whole speakers (``speaker_kfold``).
"""

from __future__ import annotations

import glob
import os
import re

from ser.corpora.common import (
    CorpusError,
    Utterance,
    check_unique,
    map_label,
    named_folders,
    resolve_class_set,
    speaker_kfold,
)

CORPUS = "shemo"
LICENCE = "free for academic use"

EMOTION_CODES = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad", "W": "surprise", "F": "fear"}
CLASS_SETS: dict[str, dict[str, str]] = {
    "6class": dict(EMOTION_CODES),  # EmoBox's label_map.json: angry happy neutral sad surprise fear
    "5class_no_fear": {code: name for code, name in EMOTION_CODES.items() if code != "F"},  # fear has only 38
}
DEFAULT_CLASS_SET = "6class"

# The ShEMO paper (Mohamad Nezami et al. 2019, table of utterances per emotion): 3000 in all; the same release
# without fear is the 2962-utterance copy found on Hugging Face (Zahra99/ShEMO_Audio).
_SIX = {"angry": 1059, "happy": 201, "neutral": 1028, "sad": 449, "surprise": 225, "fear": 38}
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "6class": _SIX,  # 3000
    "5class_no_fear": {name: n for name, n in _SIX.items() if name != "fear"},  # 2962
}

NUM_FEMALE, NUM_MALE = 31, 56  # README of the release: 87 speakers (31 female, 56 male)
NUM_SPEAKERS = NUM_FEMALE + NUM_MALE
NUM_FOLDS = 5
FOLD_SCHEME = f"{NUM_FOLDS} speaker-grouped folds, class-stratified (speaker_kfold, seed 0)"

_FILE_NAME = re.compile(r"^([FM])(\d{2})([A-Z])(\d{2})\.wav$")
_FOLDERS = {"female": "F", "male": "M"}


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from female/ and male/.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the
    interface every corpus shares. Raises CorpusError naming the file for a name that does not parse, an
    unknown emotion letter, a speaker number out of range, or a gender letter that differs from its folder.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts = []
    for folder, letter in named_folders(corpus_dir, _FOLDERS, CORPUS,
                                        "female/F01A01.wav ... and male/M01A01.wav ..., as the zips unpack"):
        wavs = sorted(glob.glob(os.path.join(folder, "*.wav")))
        for wav in wavs:
            match = _FILE_NAME.match(os.path.basename(wav))
            if not match:
                raise CorpusError(f"{wav}: file name is not <F|M><speaker 2 digits><emotion letter><2 digits>.wav")
            gender, number, code, _ = match.groups()
            if gender != letter:
                raise CorpusError(f"{wav}: gender letter {gender} differs from its folder {os.path.basename(folder)}/")
            if not 1 <= int(number) <= (NUM_FEMALE if gender == "F" else NUM_MALE):
                raise CorpusError(f"{wav}: speaker {gender}{number} out of range "
                                  f"(F01-F{NUM_FEMALE:02d}, M01-M{NUM_MALE:02d})")
            emotion = map_label(code, class_map, EMOTION_CODES, wav)
            if emotion is None:
                continue
            spk = f"{gender}{number}"
            utts.append(Utterance(f"{spk}-{os.path.basename(wav)[:-4]}", spk, os.path.abspath(wav), emotion,
                                  gender.lower()))
    if not utts:
        raise CorpusError(f"{CORPUS}: no utterances of the class set in {corpus_dir}")
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Five speaker-grouped, class-stratified folds (deterministic)."""
    return speaker_kfold(utts, NUM_FOLDS, CORPUS)


OBTAIN = ("https://github.com/mansourehk/ShEMO (female.zip, male.zip; mirror "
          "https://github.com/pariajm/sharif-emotional-speech-database); free for academic use")
