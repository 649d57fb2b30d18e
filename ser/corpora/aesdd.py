"""AESDD, the Acted Emotional Speech Dynamic Database (Vryzas et al., 2018), Greek, as released.

Layout read (the five emotion folders in the corpus dir, or one folder below it)::

    anger/a03 (3).wav   disgust/d01 (5)b.wav   fear/f10 (01).wav   happiness/h12 (2).wav   sadness/s01 (5)a.wav

The name is <x><AA> (<B>)[a|b].wav: x the emotion's first letter (a d f h s, which must match the folder), AA the
utterance (01-20: 19 scripted sentences and one improvised), B the speaker (the release also writes 1 as "01")
and an optional a/b for a further take. Mono, 44.1 kHz. The release README describes 5 actors (3 female, 2 male)
for v1 and says more were added since; the release EmoBox read holds 604 files of 6 speakers (1-6).

Speaker genders: the release does not say which speaker number is which actor, so gender is unknown (None) and
no spk2gender is written.

EmoBox tests one speaker-DEPENDENT fold (25% of each class drawn at random by its write_folds, seeded over its
file order); that draw cannot be re-derived, so no "emobox" scheme is offered. Default: leave one speaker out.
"""

from __future__ import annotations

import glob
import os
import re

from ser.corpora.common import (
    CorpusError,
    Utterance,
    check_unique,
    leave_one_speaker_out,
    map_label,
    named_folders,
    resolve_class_set,
)

CORPUS = "aesdd"
LICENCE = "free for research (request form at m3c.web.auth.gr); the Hugging Face copy is CC BY 4.0"

FOLDERS = {"anger": "a", "disgust": "d", "fear": "f", "happiness": "h", "sadness": "s"}
EMOTION_CODES = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "s": "sad"}
CLASS_SETS: dict[str, dict[str, str]] = {"5class": dict(EMOTION_CODES)}  # = EmoBox's label_map.json
DEFAULT_CLASS_SET = "5class"

# EmoBox's data/aesdd/aesdd.jsonl (the release as downloaded): 604 utterances.
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "5class": {"angry": 121, "disgust": 122, "fear": 120, "happy": 119, "sad": 122},
}
NUM_SPEAKERS = 6  # speaker numbers 1-6 in the release (the v1 README: 5 actors, more added later)
GENDER_UNKNOWN = None  # not published per speaker; see the module docstring
FOLD_SCHEME = "leave one speaker out (6 folds: speakers 1-6)"

_FILE_NAME = re.compile(r"^([a-z])(\d{2}) \((\d{1,2})\)([ab]?)\.wav$")


def speaker_id(number: int) -> str:
    return f"spk{number}"


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from the emotion folders.

    Labels come from the file names (checked against their folder), so no label can lack its audio; ``strict``
    is accepted for the interface every corpus shares. Raises CorpusError naming the file for a name that does
    not parse, an unknown emotion letter, one that differs from its folder, or an utterance number outside 1-20.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts = []
    for folder, folder_code in named_folders(corpus_dir, FOLDERS, CORPUS, "e.g. anger/a01 (1).wav"):
        for wav in sorted(glob.glob(os.path.join(folder, "*.wav"))):
            name = os.path.basename(wav)
            match = _FILE_NAME.match(name)
            if not match:
                raise CorpusError(f"{wav}: file name is not <emotion letter><NN> (<speaker>)[a|b].wav")
            code, sentence, speaker, take = match.groups()
            emotion = map_label(code, class_map, EMOTION_CODES, wav)
            if code != folder_code:
                raise CorpusError(f"{wav}: emotion letter {code} differs from its folder {os.path.basename(folder)}/")
            if not 1 <= int(sentence) <= 20 or int(speaker) < 1:
                raise CorpusError(f"{wav}: utterance {sentence} (1-20) or speaker {speaker} out of range")
            if emotion is None:
                continue
            spk = speaker_id(int(speaker))
            # the speaker field is kept as written: "d03 (01).wav" and "d03 (1).wav" are different files
            utts.append(Utterance(f"{spk}-{code}{sentence}_{speaker}{take}", spk, os.path.abspath(wav), emotion,
                                  GENDER_UNKNOWN))
    if not utts:
        raise CorpusError(f"{CORPUS}: no utterances of the class set in {corpus_dir}")
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one speaker out, in speaker order (spk1 .. spk6)."""
    return leave_one_speaker_out(utts, CORPUS)


OBTAIN = ("http://m3c.web.auth.gr/research/aesdd-speech-emotion-recognition/ (request form); free for research; "
          "a CC BY 4.0 copy: https://huggingface.co/datasets/EdwardLin2023/AESDD")
