"""JL-Corpus (James, Tian & Watson, Interspeech 2018), New Zealand English, as released on Kaggle.

Layout read (the Kaggle archive; the corpus dir may also be either folder below, or any folder holding the wavs)::

    Raw JL corpus (unchecked and unannotated)/JL(wav+txt)/<speaker>_<emotion>_<sentence><a|b>_<session>.wav

e.g. ``female1_angry_1a_1.wav``. Four speakers, female1 female2 male1 male2 (the gender is in the name);
ten emotions, five primary (angry, sad, neutral, happy, excited) and five secondary (anxious, apologetic,
assertive, concerned, encouraging); sentence 1-15 with text variant a or b; session 1 or 2. Each speaker
has 60 files per emotion: 2400 mono 44.1 kHz files (the .txt transcripts beside them are not read).
Other folders of the Kaggle archive (if unpacked too) are not read, so no file is counted twice.

Default folds are EmoBox's four speaker-independent folds (leave one speaker out, in EmoBox's order,
read from its data/jlcorpus/fold_<k>/jlcorpus_test_fold_<k>.jsonl), so results compare with EmoBox's.
"""

from __future__ import annotations

import glob
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
)

CORPUS = "jlcorpus"
LICENCE = "the licence shown on its Kaggle page (tli725/jl-corpus)"

PRIMARY = ("angry", "sad", "neutral", "happy", "excited")
SECONDARY = ("anxious", "apologetic", "assertive", "concerned", "encouraging")
EMOTIONS = PRIMARY + SECONDARY  # raw labels as in the file names; the class names are the same words

CLASS_SETS: dict[str, dict[str, str]] = {
    "10class": {label: label for label in EMOTIONS},  # = EmoBox's data/jlcorpus/label_map.json
    "5class_primary": {label: label for label in PRIMARY},
}
DEFAULT_CLASS_SET = "10class"

# EmoBox's data/jlcorpus/jlcorpus.jsonl: 2400 files, 4 speakers x 60 per emotion (15 sentences x a/b x 2 sessions).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "10class": {label: 240 for label in EMOTIONS},  # 2400
    "5class_primary": {label: 240 for label in PRIMARY},  # 1200
}

SPEAKERS = {"female1": "f", "female2": "f", "male1": "m", "male2": "m"}
NUM_SPEAKERS = 4

# EmoBox's test speaker of each fold (data/jlcorpus/fold_<k>/jlcorpus_test_fold_<k>.jsonl).
EMOBOX_FOLDS = {1: "male2", 2: "female1", 3: "male1", 4: "female2"}
FOLD_SCHEME = "leave one speaker out in EmoBox's order (4 folds: 1 male2, 2 female1, 3 male1, 4 female2)"

OBTAIN = ("https://www.kaggle.com/datasets/tli725/jl-corpus (Kaggle account needed; the licence is the one shown "
          "on that page); paper: https://doi.org/10.21437/Interspeech.2018-1349")

WAV_DIR = os.path.join("Raw JL corpus (unchecked and unannotated)", "JL(wav+txt)")
_FILE_NAME = re.compile(r"^((?:fe)?male[12])_([a-z]+)_(\d{1,2})([ab])_([12])\.wav$")


def _wav_dir(corpus_dir: str) -> str:
    for candidate in (os.path.join(corpus_dir, WAV_DIR), os.path.join(corpus_dir, "JL(wav+txt)"), corpus_dir):
        if glob.glob(os.path.join(glob.escape(candidate), "*.wav")):
            return candidate
    raise CorpusError(f"{CORPUS}: no audio in {corpus_dir}: expected {WAV_DIR}/female1_angry_1a_1.wav ... "
                      "(or the corpus dir pointing at the folder of the wavs)")


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from the folder of the wavs.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the
    interface every corpus shares. Raises CorpusError naming the file for a name that does not parse,
    an unknown emotion or a sentence number out of range (1-15).
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    wav_dir = _wav_dir(corpus_dir)
    utts = []
    for wav in sorted(glob.glob(os.path.join(glob.escape(wav_dir), "*.wav"))):
        name = os.path.basename(wav)
        match = _FILE_NAME.match(name)
        if not match:
            raise CorpusError(f"{wav}: file name is not <female|male><1|2>_<emotion>_<sentence><a|b>_<session>.wav")
        spk, raw, sentence, _variant, _session = match.groups()
        if not 1 <= int(sentence) <= 15:
            raise CorpusError(f"{wav}: sentence {sentence} out of range (1-15)")
        emotion = map_label(raw, class_map, EMOTIONS, wav)
        if emotion is None:
            continue
        utts.append(Utterance(f"{spk}-{name[:-4]}", spk, os.path.abspath(wav), emotion, SPEAKERS[spk]))
    check_unique(utts)
    return utts


def _emobox_fold(spk: str) -> int:
    for fold, test_speaker in EMOBOX_FOLDS.items():
        if spk == test_speaker:
            return fold
    raise CorpusError(f"{CORPUS}: speaker {spk} is in none of EmoBox's folds")


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one speaker out, numbered as EmoBox's folds (EMOBOX_FOLDS)."""
    return folds_by_group(utts, _emobox_fold, len(EMOBOX_FOLDS), CORPUS)


FOLD_SCHEMES: dict[str, FoldScheme] = {"emobox": FoldScheme(FOLD_SCHEME, folds)}
