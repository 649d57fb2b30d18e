"""SUBESCO, the SUST Bangla Emotional Speech Corpus (Sultana et al., PLOS ONE 2021), as released.

Layout read (any folder depth below the corpus dir, so with or without the top ``SUBESCO/`` folder)::

    <G>_<NN>_<NAME>_S_<sentence>_<EMOTION>_<take>.wav      e.g. F_01_OISHI_S_1_ANGRY_1.wav

G is the gender (F, M), NN the speaker number within the gender (01-10), NAME the speaker's first name
(checked against the published list below), sentence 1-10, EMOTION one of ANGRY DISGUST FEAR HAPPY
NEUTRAL SAD SURPRISE, take 1-5. 20 speakers (10 female, 10 male) x 10 sentences x 7 emotions x 5 takes =
7000 mono files; the release holds both 44.1 kHz and 48 kHz files (EmoBox's metadata lists 4555 and 2445).
One released file carries a stray bracket, ``F_02_MONIKA_S_2_SURPRISE_3].wav``: it is read as take 3.

Speakers are ``F01``..``F10`` and ``M01``..``M10`` (F_01 and M_01 are different people).
Default folds are EmoBox's five speaker-independent folds (4 speakers each, read from its fold files
data/subesco/fold_<k>/subesco_test_fold_<k>.jsonl), so results compare with EmoBox's.
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

CORPUS = "subesco"
LICENCE = "Creative Commons Attribution 4.0 (CC BY 4.0)"

EMOTIONS = {"ANGRY": "angry", "DISGUST": "disgust", "FEAR": "fear", "HAPPY": "happy",
            "NEUTRAL": "neutral", "SAD": "sad", "SURPRISE": "surprise"}
CLASS_SETS: dict[str, dict[str, str]] = {"7class": dict(EMOTIONS)}  # = EmoBox's label_map.json (7 classes)
DEFAULT_CLASS_SET = "7class"

# Sultana et al. 2021 and EmoBox's data/subesco/subesco.jsonl: 1000 per emotion (20 speakers x 10 sentences x 5 takes).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {"7class": {name: 1000 for name in EMOTIONS.values()}}  # 7000

# Published speaker list (speaker id -> first name as in the file names); F = female, M = male.
SPEAKERS = {
    "F01": "OISHI", "F02": "MONIKA", "F03": "SMITA", "F04": "SWARNALI", "F05": "MOUNI",
    "F06": "SIMI", "F07": "TITHI", "F08": "JOYEETA", "F09": "CHAITY", "F10": "FAHMEE",
    "M01": "BASHIR", "M02": "NIPUN", "M03": "ILIAS", "M04": "BIBHAS", "M05": "DURANTO",
    "M06": "SHUKANTO", "M07": "SIBLY", "M08": "PRASUN", "M09": "SHUMANTA", "M10": "EVAN",
}
NUM_SPEAKERS = 20

# EmoBox's test speakers per fold (its speakers "Female-03" etc. are our F03 ...).
EMOBOX_FOLDS = {
    1: ("F03", "M03", "M08", "M09"),
    2: ("F01", "F04", "F10", "M07"),
    3: ("F06", "F08", "M05", "M06"),
    4: ("F05", "F07", "F09", "M04"),
    5: ("F02", "M01", "M02", "M10"),
}
FOLD_SCHEME = ("EmoBox's 5 folds of 4 speakers: 1 F03 M03 M08 M09; 2 F01 F04 F10 M07; 3 F06 F08 M05 M06; "
               "4 F05 F07 F09 M04; 5 F02 M01 M02 M10")

_FILE_NAME = re.compile(r"^([FM])_(\d{2})_([A-Z]+)_S_(\d{1,2})_([A-Z]+)_(\d)\]?\.wav$")


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from every wav below corpus_dir.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the
    interface every corpus shares. Raises CorpusError naming the file for a name that does not parse, a
    speaker, sentence or take out of range, or a speaker name that differs from the published one.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    wavs = wav_files_below(corpus_dir, CORPUS, "<G>_<NN>_<NAME>_S_<sentence>_<EMOTION>_<take>.wav, "
                           "e.g. F_01_OISHI_S_1_ANGRY_1.wav")
    utts = []
    for wav in wavs:
        match = _FILE_NAME.match(os.path.basename(wav))
        if not match:
            raise CorpusError(f"{wav}: file name is not <G>_<NN>_<NAME>_S_<sentence>_<EMOTION>_<take>.wav")
        gender, number, name, sentence, emotion_raw, take = match.groups()
        spk = f"{gender}{number}"
        if spk not in SPEAKERS:
            raise CorpusError(f"{wav}: speaker {gender}_{number} is not one of F_01..F_10, M_01..M_10")
        if name != SPEAKERS[spk]:
            raise CorpusError(f"{wav}: speaker {gender}_{number} is {SPEAKERS[spk]} in the release, not {name}")
        if not 1 <= int(sentence) <= 10 or not 1 <= int(take) <= 5:
            raise CorpusError(f"{wav}: sentence {sentence} or take {take} out of range (1-10, 1-5)")
        emotion = map_label(emotion_raw, class_map, EMOTIONS, wav)
        if emotion is None:
            continue
        stem = f"{gender}_{number}_{name}_S_{int(sentence)}_{emotion_raw}_{take}"
        utts.append(Utterance(f"{spk}-{stem}", spk, os.path.abspath(wav), emotion, gender.lower()))
    check_unique(utts)
    return utts


def _emobox_fold(spk: str) -> int:
    for fold, speakers in EMOBOX_FOLDS.items():
        if spk in speakers:
            return fold
    raise CorpusError(f"{CORPUS}: speaker {spk} is in none of EmoBox's folds")


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """EmoBox's five folds of four speakers (EMOBOX_FOLDS)."""
    return folds_by_group(utts, _emobox_fold, len(EMOBOX_FOLDS), CORPUS)


FOLD_SCHEMES: dict[str, FoldScheme] = {
    "emobox": FoldScheme(FOLD_SCHEME, folds),
}

OBTAIN = ("the Zenodo record named in the data-availability statement of https://doi.org/10.1371/journal.pone.0250173 "
          "(copy: https://huggingface.co/datasets/sustcsenlp/bn_emotion_speech_corpus); CC BY 4.0")
