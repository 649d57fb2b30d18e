"""CaFE, the Canadian French Emotional speech dataset (Gournay, Lahaie & Lefebvre, MMSys 2018), as released.

Layout read (CaFE_48k: 48 kHz; the CaFE_192k release, 192 kHz, has the same tree)::

    <Emotion>/<Intensity>/<AA>-<E>-<I>-<S>.wav     e.g. Colère/Faible/01-C-1-1.wav
    Neutre/<AA>-N-1-<S>.wav                         neutral has one intensity and no intensity folder

AA actor 01-12 (odd male, even female), E emotion letter (C colère/anger, D dégoût/disgust, J joie/happiness,
N neutre, P peur/fear, S surprise, T tristesse/sadness), I intensity (1 faible/low, 2 fort/high), S sentence 1-6.
The emotion folders' accented names come out differently depending on the unzip tool (EmoBox's copy reads
"ColŠre", "D‚go–t"), so folders are searched recursively and labels come from the file names; an intensity
folder named Faible or Fort must agree with the file's I field. Point --corpus-dir at one release (CaFE_48k or
CaFE_192k): an utterance found twice is an error naming both files.

Folds: EmoBox's 3 folds (data/cafe/fold_<k>) are speaker-independent, 4 actors each; the default rule is that
grouping (fold 1 tests actors 01 07 08 10, fold 2 02 04 09 12, fold 3 03 05 06 11), and ``--fold-scheme
emobox`` names the same rule.
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

CORPUS = "cafe"
LICENCE = "a Creative Commons non-commercial licence, as stated on Zenodo record 1478765"
OBTAIN = ("https://zenodo.org/record/1478765 (CaFE_48k.zip, or CaFE_192k_1.zip + CaFE_192k_2.zip); "
          "licence as stated on the Zenodo record (a Creative Commons non-commercial licence)")

NUM_ACTORS = 12
EMOTIONS = ("C", "D", "J", "N", "P", "S", "T")
INTENSITY_FOLDERS = {"faible": "1", "fort": "2"}

CLASS_SETS: dict[str, dict[str, str]] = {
    # EmoBox's class set (data/cafe/label_map.json, its letters lower-cased): all seven.
    "7class": {"C": "angry", "D": "disgust", "J": "happy", "N": "neutral", "P": "fear", "S": "surprise",
               "T": "sad"},
}
DEFAULT_CLASS_SET = "7class"

# 936 = 12 actors x 6 sentences x (6 emotions x 2 intensities + neutral) (Gournay et al., 2018; EmoBox's
# data/cafe/cafe.jsonl: 144 per emotion, 72 neutral, 78 per actor).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "7class": {"angry": 144, "disgust": 144, "happy": 144, "neutral": 72, "fear": 144, "surprise": 144,
               "sad": 144},
}
NUM_SPEAKERS = 12  # 6 male (odd numbers), 6 female (even)

# EmoBox's speaker grouping (the test actors of its fold_1, fold_2, fold_3).
EMOBOX_FOLDS = {1: ("01", "07", "08", "10"), 2: ("02", "04", "09", "12"), 3: ("03", "05", "06", "11")}
FOLD_SCHEME = "EmoBox's 3 folds of 4 actors: 01 07 08 10 | 02 04 09 12 | 03 05 06 11"

_FILE_NAME = re.compile(r"^(\d{2})-([A-Z])-(\d)-(\d)\.wav$")


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from every .wav below corpus_dir.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the interface
    every corpus shares. Raises CorpusError naming the file for a name that does not parse, a field out of range,
    an intensity that differs from its Faible/Fort folder, and naming both files when one utterance occurs twice.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts: list[Utterance] = []
    seen: dict[str, str] = {}
    for wav in wav_files_below(corpus_dir, CORPUS, "<Emotion>/<Intensity>/<AA>-<E>-<I>-<S>.wav "
                                   "(e.g. CaFE_48k/Colère/Faible/01-C-1-1.wav)"):
        name = os.path.basename(wav)
        match = _FILE_NAME.match(name)
        if not match:
            raise CorpusError(f"{wav}: file name is not <AA>-<E>-<I>-<S>.wav (e.g. 01-C-1-1.wav)")
        actor, letter, intensity, sentence = match.groups()
        if not 1 <= int(actor) <= NUM_ACTORS or intensity not in ("1", "2") or not 1 <= int(sentence) <= 6 \
                or (letter == "N" and intensity != "1"):
            raise CorpusError(f"{wav}: a field is out of range (actors 01-{NUM_ACTORS}, intensity 1 or 2 and 1 for "
                              "neutral, sentences 1-6)")
        folder = os.path.basename(os.path.dirname(wav)).lower()
        if folder in INTENSITY_FOLDERS and INTENSITY_FOLDERS[folder] != intensity:
            raise CorpusError(f"{wav}: intensity {intensity} differs from its folder "
                              f"{os.path.basename(os.path.dirname(wav))}")
        if name in seen:
            raise CorpusError(f"{CORPUS}: {name} occurs twice: {seen[name]} and {wav}; point --corpus-dir at one "
                              "release (CaFE_48k or CaFE_192k)")
        seen[name] = wav
        emotion = map_label(letter, class_map, EMOTIONS, wav)
        if emotion is None:
            continue
        utts.append(Utterance(f"{actor}-{name[:-4]}", actor, os.path.abspath(wav), emotion,
                              "m" if int(actor) % 2 else "f"))
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """EmoBox's grouping: fold 1 tests actors 01 07 08 10, fold 2 02 04 09 12, fold 3 03 05 06 11."""
    fold_of = {actor: fold for fold, actors in EMOBOX_FOLDS.items() for actor in actors}
    return folds_by_group(utts, lambda spk: fold_of[spk], len(EMOBOX_FOLDS), CORPUS)


FOLD_SCHEMES: dict[str, FoldScheme] = {
    "emobox": FoldScheme("EmoBox's folds: 3 folds of 4 actors (01 07 08 10 | 02 04 09 12 | 03 05 06 11), "
                         "the default rule", folds),
}
