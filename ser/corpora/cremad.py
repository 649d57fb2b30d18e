"""CREMA-D (Cao et al., 2014), audio, as released in github.com/CheyneyComputerScience/CREMA-D.

Layout read (16 kHz mono)::

    AudioWAV/<ActorID>_<Sentence>_<Emotion>_<Level>.wav     e.g. AudioWAV/1001_DFA_ANG_XX.wav
    VideoDemographics.csv                                    ActorID,Age,Sex,Race,Ethnicity (read when present)

``--corpus-dir`` is the release's top folder (holding AudioWAV/) or AudioWAV itself. Actors 1001-1091 (48 male,
43 female); sentences IEO TIE IOM IWW TAI MTI IWL ITH DFA ITS TSI WSI; emotions ANG DIS FEA HAP NEU SAD; levels
LO MD HI XX (XX: unspecified). The AudioMP3/ and video folders are not read. Genders come from
VideoDemographics.csv (its Sex column) when the file is found beside AudioWAV/, otherwise from the same table as
published in the release (``FEMALE_ACTORS``).

Folds: EmoBox's CREMA-D split is one speaker-dependent fold (a random, class-stratified 25% of the utterances
tested, the same actors in train and test); a random draw states no rule, and a single fold that leaves 75% of the
utterances untested is not a fold protocol of this toolkit, so there is no "emobox" scheme here. The default rule
is speaker-independent: 5 folds by actor number.
"""

from __future__ import annotations

import csv
import glob
import os
import re

from ser.corpora.common import CorpusError, Utterance, check_unique, folds_by_group, map_label, resolve_class_set

CORPUS = "cremad"
LICENCE = "Open Database License (ODbL) v1.0; contents under the Database Contents License (DbCL) v1.0"
OBTAIN = ("https://github.com/CheyneyComputerScience/CREMA-D (git lfs; AudioWAV/ and VideoDemographics.csv); "
          "Open Database License (ODbL) v1.0, contents under the Database Contents License")

EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = ("LO", "MD", "HI", "XX")
FIRST_ACTOR, LAST_ACTOR = 1001, 1091
# Sex "Female" in the release's VideoDemographics.csv; every other actor of 1001-1091 is "Male".
FEMALE_ACTORS = frozenset({
    1002, 1003, 1004, 1006, 1007, 1008, 1009, 1010, 1012, 1013, 1018, 1020, 1021, 1024, 1025, 1028, 1029, 1030,
    1037, 1043, 1046, 1047, 1049, 1052, 1053, 1054, 1055, 1056, 1058, 1060, 1061, 1063, 1072, 1073, 1074, 1075,
    1076, 1078, 1079, 1082, 1084, 1089, 1091})

CLASS_SETS: dict[str, dict[str, str]] = {
    # EmoBox's class set (data/cremad/label_map.json): all six emotions.
    "6class": {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"},
    "4class": {"ANG": "angry", "HAP": "happy", "NEU": "neutral", "SAD": "sad"},
}
DEFAULT_CLASS_SET = "6class"

# 7442 clips of 91 actors (Cao et al., 2014; the release's AudioWAV/); per class as counted in EmoBox's
# data/cremad/cremad.jsonl (7442 entries): 1271 of each emotion, 1087 neutral.
_SIX = {"angry": 1271, "disgust": 1271, "fear": 1271, "happy": 1271, "neutral": 1087, "sad": 1271}
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "6class": _SIX,  # 7442
    "4class": {c: n for c, n in _SIX.items() if c in ("angry", "happy", "neutral", "sad")},  # 4900
}
NUM_SPEAKERS = 91  # 48 male, 43 female (VideoDemographics.csv)

NUM_FOLDS = 5
FOLD_SCHEME = "5 folds by actor: fold k tests actors with (ActorID - 1001) mod 5 = k - 1 (19/18/18/18/18 actors)"

_FILE_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.wav$")
DEMOGRAPHICS = "VideoDemographics.csv"


def _read_demographics(path: str) -> dict[int, str]:
    """{actor: "m"/"f"} from VideoDemographics.csv; a row that does not parse is an error naming its line."""
    genders: dict[int, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "ActorID" not in reader.fieldnames or "Sex" not in reader.fieldnames:
            raise CorpusError(f"{path}:1: expected a header with ActorID and Sex columns")
        for row in reader:
            sex = (row.get("Sex") or "").strip().lower()
            actor = (row.get("ActorID") or "").strip()
            if not actor.isdigit() or sex not in ("male", "female"):
                raise CorpusError(f"{path}:{reader.line_num}: cannot read ActorID {actor!r} / Sex {sex!r}")
            genders[int(actor)] = "m" if sex == "male" else "f"
    return genders


def _audio_dir(corpus_dir: str) -> str:
    nested = os.path.join(corpus_dir, "AudioWAV")
    if os.path.isdir(nested):
        return nested
    if glob.glob(os.path.join(corpus_dir, "*.wav")):
        return corpus_dir
    raise CorpusError(f"{CORPUS}: no audio in {corpus_dir}: expected AudioWAV/<ActorID>_<Sentence>_<Emotion>_"
                      "<Level>.wav (e.g. AudioWAV/1001_DFA_ANG_XX.wav)")


def speaker_id(actor: int) -> str:
    return str(actor)


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from AudioWAV/, genders from VideoDemographics.csv when present.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the interface
    every corpus shares. Raises CorpusError naming the file for a name that does not parse or a field out of range.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    audio_dir = _audio_dir(corpus_dir)
    genders = {actor: ("f" if actor in FEMALE_ACTORS else "m") for actor in range(FIRST_ACTOR, LAST_ACTOR + 1)}
    demographics = None
    for candidate in (os.path.join(corpus_dir, DEMOGRAPHICS), os.path.join(os.path.dirname(audio_dir), DEMOGRAPHICS)):
        if os.path.isfile(candidate):
            demographics = candidate
            genders = _read_demographics(candidate)
            break
    wavs = sorted(glob.glob(os.path.join(audio_dir, "*.wav")))
    if not wavs:
        raise CorpusError(f"{CORPUS}: no .wav files in {audio_dir}: expected <ActorID>_<Sentence>_<Emotion>_"
                          "<Level>.wav")
    utts: list[Utterance] = []
    for wav in wavs:
        name = os.path.basename(wav)
        match = _FILE_NAME.match(name)
        if not match:
            raise CorpusError(f"{wav}: file name is not <ActorID>_<Sentence>_<Emotion>_<Level>.wav")
        actor_text, sentence, emotion_code, level = match.groups()
        actor = int(actor_text)
        if not FIRST_ACTOR <= actor <= LAST_ACTOR or sentence not in SENTENCES or level not in LEVELS:
            raise CorpusError(f"{wav}: actor, sentence or level out of range (actors {FIRST_ACTOR}-{LAST_ACTOR}, "
                              f"sentences {' '.join(SENTENCES)}, levels {' '.join(LEVELS)})")
        emotion = map_label(emotion_code, class_map, EMOTIONS, wav)
        if emotion is None:
            continue
        if actor not in genders:
            raise CorpusError(f"{wav}: actor {actor} is not listed in {demographics}")
        spk = speaker_id(actor)
        utts.append(Utterance(f"{spk}-{name[:-4]}", spk, os.path.abspath(wav), emotion, genders[actor]))
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Five folds by actor number: fold 1 tests 1001, 1006, ..., 1091; fold 2 tests 1002, 1007, ...; and so on."""
    return folds_by_group(utts, lambda spk: (int(spk) - FIRST_ACTOR) % NUM_FOLDS + 1, NUM_FOLDS, CORPUS)
