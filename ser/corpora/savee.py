"""SAVEE (Haq & Jackson, 2009), audio, in either layout that circulates.

Layouts read (44.1 kHz)::

    AudioData/<SPK>/<code><NN>.wav     the original release (also <SPK>/... when pointed at AudioData)
    <SPK>_<code><NN>.wav               the flat copy (also under ALL/)

Four male speakers DC JE JK KL; codes a (anger), d (disgust), f (fear), h (happiness), n (neutral),
sa (sadness), su (surprise): the whole letter run before the number is the code, so ``sa01`` is
sadness, never anger.
"""

from __future__ import annotations

import glob
import os
import re

from ser.corpora.common import CorpusError, Utterance, check_unique, folds_by_group, map_label, resolve_class_set

CORPUS = "savee"
LICENCE = "research use after registration with the University of Surrey"
OBTAIN = "http://kahlan.eps.surrey.ac.uk/savee/ (University of Surrey: registration; research use)"

SPEAKERS = ("DC", "JE", "JK", "KL")
NUM_SPEAKERS = len(SPEAKERS)
FOLD_SCHEME = "leave one speaker out (4 folds: DC, JE, JK, KL)"
CODES = ("a", "d", "f", "h", "n", "sa", "su")

CLASS_SETS: dict[str, dict[str, str]] = {"7class": {code: code for code in CODES}}
DEFAULT_CLASS_SET = "7class"

EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "7class": {"a": 60, "d": 60, "f": 60, "h": 60, "n": 120, "sa": 60, "su": 60},  # 480
}

_NESTED_NAME = re.compile(r"^([a-z]+)(\d{2})\.wav$")
_FLAT_NAME = re.compile(r"^([A-Z]{2})_([a-z]+)(\d{2})\.wav$")


def _audio_files(corpus_dir: str) -> list[tuple[str, str, str, str]]:
    """(path, speaker, code, number) for every wav of either layout."""
    found = []
    for root in (os.path.join(corpus_dir, "AudioData"), corpus_dir):
        for spk in SPEAKERS:
            for wav in sorted(glob.glob(os.path.join(root, spk, "*.wav"))):
                match = _NESTED_NAME.match(os.path.basename(wav))
                if not match:
                    raise CorpusError(f"{wav}: file name is not <code><NN>.wav")
                found.append((wav, spk, match.group(1), match.group(2)))
    for root in (corpus_dir, os.path.join(corpus_dir, "ALL")):
        for wav in sorted(glob.glob(os.path.join(root, "*.wav"))):
            match = _FLAT_NAME.match(os.path.basename(wav))
            if not match or match.group(1) not in SPEAKERS:
                raise CorpusError(f"{wav}: file name is not <SPK>_<code><NN>.wav with SPK one of {' '.join(SPEAKERS)}")
            found.append((wav, match.group(1), match.group(2), match.group(3)))
    if not found:
        raise CorpusError(f"{CORPUS}: no audio in {corpus_dir}: expected AudioData/<SPK>/<code><NN>.wav "
                          "or <SPK>_<code><NN>.wav")
    return found


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from whichever layout is present.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the
    interface every corpus shares. Raises CorpusError naming the file for a name that does not parse
    or an unknown code, and naming both files when one utterance occurs in both layouts.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts = []
    for wav, spk, code, number in _audio_files(corpus_dir):
        emotion = map_label(code, class_map, CODES, wav)
        if emotion is not None:
            utts.append(Utterance(f"{spk}-{code}{number}", spk, os.path.abspath(wav), emotion, "m"))
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one speaker out: fold 1 tests DC, 2 JE, 3 JK, 4 KL."""
    return folds_by_group(utts, lambda spk: SPEAKERS.index(spk) + 1, len(SPEAKERS), CORPUS)
