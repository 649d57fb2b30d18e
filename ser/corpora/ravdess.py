"""RAVDESS (Livingstone & Russo, 2018), speech part, as released (Audio_Speech_Actors_01-24).

Layout read::

    Actor_{01..24}/MM-CC-EE-II-SS-RR-AA.wav

Seven two-digit fields: modality (01 audio-video, 02 video, 03 audio), vocal channel (01 speech,
02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
08 surprised), intensity (01 normal, 02 strong; neutral has only 01), statement (01, 02),
repetition (01, 02) and actor (01-24, odd = male). Only audio-only speech (03-01) is used, so song
files placed in the same folders are skipped. The originals are 48 kHz and five are stereo; they
are listed as they are (the feature stage resamples and downmixes).
"""

from __future__ import annotations

import glob
import os
import re

from ser.corpora.common import CorpusError, Utterance, check_unique, folds_by_group, map_label, resolve_class_set

CORPUS = "ravdess"
LICENCE = "CC BY-NC-SA 4.0 (Zenodo record 1188976): non-commercial, share alike"
OBTAIN = ("https://zenodo.org/records/1188976 (Audio_Speech_Actors_01-24.zip; CC BY-NC-SA 4.0; cite Livingstone & "
          "Russo, PLoS ONE 2018)")
DOWNLOADS = [{"url": "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip", "sha256": None,
              "name": "Audio_Speech_Actors_01-24.zip"}]

EMOTION_CODES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
                 "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised"}

CLASS_SETS: dict[str, dict[str, str]] = {
    "8class": dict(EMOTION_CODES),
    "7class_no_calm": {code: name for code, name in EMOTION_CODES.items() if name != "calm"},
}
DEFAULT_CLASS_SET = "8class"

_EIGHT = {"neutral": 96, "calm": 192, "happy": 192, "sad": 192,
          "angry": 192, "fearful": 192, "disgust": 192, "surprised": 192}
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "8class": _EIGHT,  # 1440
    "7class_no_calm": {name: n for name, n in _EIGHT.items() if name != "calm"},  # 1248
}

NUM_ACTORS = 24
NUM_SPEAKERS = NUM_ACTORS
ACTORS_PER_FOLD = 4
SPEECH = ("03", "01")  # audio-only modality, speech channel
FOLD_SCHEME = "6 folds of 4 actors (1-4, 5-8, ..., 21-24)"

_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")
_FILE_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.wav$")


def speaker_id(actor: int) -> str:
    return f"Actor{actor:02d}"


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Speech utterances of the class set from every Actor_NN folder.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the
    interface every corpus shares. Raises CorpusError naming the file for a name that does not parse,
    a field out of range, or an actor field that differs from its folder.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    actor_dirs = sorted(d for d in glob.glob(os.path.join(corpus_dir, "Actor_*")) if os.path.isdir(d))
    if not actor_dirs:
        raise CorpusError(f"{CORPUS}: no Actor_NN directories in {corpus_dir}")
    utts: list[Utterance] = []
    for actor_dir in actor_dirs:
        dir_match = _ACTOR_DIR.match(os.path.basename(actor_dir))
        if not dir_match or not 1 <= int(dir_match.group(1)) <= NUM_ACTORS:
            raise CorpusError(f"{actor_dir}: not an actor directory Actor_01..Actor_{NUM_ACTORS}")
        actor = int(dir_match.group(1))
        for wav in sorted(glob.glob(os.path.join(actor_dir, "*.wav"))):
            name = os.path.basename(wav)
            match = _FILE_NAME.match(name)
            if not match:
                raise CorpusError(f"{wav}: file name is not MM-CC-EE-II-SS-RR-AA.wav")
            modality, channel, emotion_code, intensity, statement, repetition, file_actor = match.groups()
            if int(file_actor) != actor:
                raise CorpusError(f"{wav}: actor field {file_actor} differs from its folder Actor_{actor:02d}")
            if modality not in ("01", "02", "03") or channel not in ("01", "02") or \
                    intensity not in ("01", "02") or statement not in ("01", "02") or repetition not in ("01", "02"):
                raise CorpusError(f"{wav}: a field of the file name is out of range")
            if (modality, channel) != SPEECH:
                continue
            emotion = map_label(emotion_code, class_map, EMOTION_CODES, wav)
            if emotion is None:
                continue
            spk = speaker_id(actor)
            utts.append(Utterance(f"{spk}-{name[:-4]}", spk, os.path.abspath(wav), emotion,
                                  "m" if actor % 2 else "f"))
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Six folds of four actors each: fold 1 tests actors 1-4, fold 2 actors 5-8, ..., fold 6 actors 21-24."""
    return folds_by_group(utts, lambda spk: (int(spk[len("Actor"):]) - 1) // ACTORS_PER_FOLD + 1,
                          NUM_ACTORS // ACTORS_PER_FOLD, CORPUS)
