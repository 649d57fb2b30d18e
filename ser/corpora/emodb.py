"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., 2005), as released (download.zip).

Layout read (16 kHz mono)::

    wav/<SS><TTT><E><V>.wav      e.g. wav/03a01Fa.wav (also accepted: the wav folder itself as --corpus-dir)

SS speaker (03 08 09 10 11 12 13 14 15 16), TTT text (a01 a02 a04 a05 a07 b01 b02 b03 b09 b10), E emotion as a
German letter (W Wut/anger, L Langeweile/boredom, E Ekel/disgust, A Angst/fear, F Freude/happiness,
T Trauer/sadness, N neutral) and V the version (a, b, c, ...). Speakers 03 10 11 12 15 are male, 08 09 13 14 16
female (the release's documentation). The other folders of the zip (silb, lablaut, labsilb, ...) are not read.

Folds: EmoBox's 5 EmoDB folds come from cv_k_fold lists of its own (not in the release): 107 utterances each,
every speaker in every fold's test set, in no order that a rule states, so there is no "emobox" scheme here.
The default rule is speaker-independent: leave one speaker out (10 folds).
"""

from __future__ import annotations

import glob
import os
import re

from ser.corpora.common import CorpusError, Utterance, check_unique, leave_one_speaker_out, map_label, resolve_class_set

CORPUS = "emodb"
LICENCE = "free of charge for research (cite Burkhardt et al., Interspeech 2005)"
OBTAIN = ("http://emodb.bilderbar.info/download/ (download.zip; free of charge for research, "
          "cite Burkhardt et al., Interspeech 2005)")
# Free for research: fetched by --download-dir (its digest, unknown here, is recorded at the first download and
# checked on every later use).
DOWNLOADS = [{"url": "http://emodb.bilderbar.info/download/download.zip", "sha256": None, "name": "download.zip"}]

SPEAKER_GENDERS = {"03": "m", "08": "f", "09": "f", "10": "m", "11": "m", "12": "m", "13": "f", "14": "f",
                   "15": "m", "16": "f"}
TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")
EMOTIONS = ("W", "L", "E", "A", "F", "T", "N")

CLASS_SETS: dict[str, dict[str, str]] = {
    # EmoBox's class set (data/emodb/label_map.json): all seven.
    "7class": {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad",
               "N": "neutral"},
}
DEFAULT_CLASS_SET = "7class"

# 535 utterances (Burkhardt et al., 2005: those recognised by >= 80% of listeners and natural by >= 60%);
# per class as in EmoBox's data/emodb/emodb.jsonl (535 entries).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "7class": {"angry": 127, "boredom": 81, "disgust": 46, "fear": 69, "happy": 71, "sad": 62, "neutral": 79},
}
NUM_SPEAKERS = 10  # 5 male, 5 female

FOLD_SCHEME = "leave one speaker out (10 folds: 03 08 09 10 11 12 13 14 15 16)"

_FILE_NAME = re.compile(r"^(\d{2})([ab]\d{2})([A-Z])([a-z])\.wav$")


def _audio_dir(corpus_dir: str) -> str:
    nested = os.path.join(corpus_dir, "wav")
    if os.path.isdir(nested):
        return nested
    if glob.glob(os.path.join(corpus_dir, "*.wav")):
        return corpus_dir
    raise CorpusError(f"{CORPUS}: no audio in {corpus_dir}: expected wav/<SS><TTT><E><V>.wav (e.g. wav/03a01Fa.wav)")


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from wav/.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the interface
    every corpus shares. Raises CorpusError naming the file for a name that does not parse, an unknown speaker,
    text or emotion letter.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts: list[Utterance] = []
    for wav in sorted(glob.glob(os.path.join(_audio_dir(corpus_dir), "*.wav"))):
        name = os.path.basename(wav)
        match = _FILE_NAME.match(name)
        if not match:
            raise CorpusError(f"{wav}: file name is not <SS><TTT><E><V>.wav (e.g. 03a01Fa.wav)")
        spk, text, letter, _version = match.groups()
        if spk not in SPEAKER_GENDERS or text not in TEXTS:
            raise CorpusError(f"{wav}: speaker {spk} or text {text} out of range (speakers "
                              f"{' '.join(SPEAKER_GENDERS)}; texts {' '.join(TEXTS)})")
        emotion = map_label(letter, class_map, EMOTIONS, wav)
        if emotion is None:
            continue
        utts.append(Utterance(f"{spk}-{name[:-4]}", spk, os.path.abspath(wav), emotion, SPEAKER_GENDERS[spk]))
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one speaker out, in speaker order: fold 1 tests 03, fold 2 08, ..., fold 10 16."""
    return leave_one_speaker_out(utts, CORPUS)
