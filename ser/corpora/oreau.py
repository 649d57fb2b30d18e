"""Oréau, the French emotional speech database (release OréauFR_02 on Zenodo, record 4405783).

Layout read (the corpus dir is the OréauFR_02 folder or the folder that holds it, whatever its spelling)::

    OréauFR_02/<f|m>/sess<c|d|j|n|p|s|t>/<PP><T><NN><E><v>.wav        e.g. OréauFR_02/f/sessj/10a02Ja.wav

An EmoDB-style name: speaker PP (two digits), text T NN (``a01``...; a few ``z``), emotion letter E (French
initials: C colère angry, T tristesse sad, J joie happy, P peur fear, D dégoût disgust, S surprise,
N neutre neutral) and version v. The gender is the top folder (f, m); the session folder must agree with E.
434 files of 32 speakers (7 female, 25 male), mono 44.1 kHz, per EmoBox's data/oreau metadata.

EmoBox's one published fold (data/oreau/fold_1) is not speaker-grouped: it is a class-stratified random quarter
of each class (``int(0.25 * n)`` per class), which ``--fold-scheme emobox`` follows as a rule (same sizes per
class, not the same utterances). The default folds are speaker-independent: 5 speaker-grouped,
class-stratified folds (``speaker_kfold``).
"""

from __future__ import annotations

import glob
import os
import re

from ser.corpora.common import (
    EMOBOX_QUARTER,
    CorpusError,
    FoldScheme,
    Utterance,
    check_unique,
    map_label,
    resolve_class_set,
    speaker_kfold,
)

CORPUS = "oreau"
LICENCE = "the licence shown on Zenodo record 4405783"

EMOTIONS = {"C": "angry", "T": "sad", "J": "happy", "P": "fear", "D": "disgust", "S": "surprise", "N": "neutral"}
CLASS_SETS: dict[str, dict[str, str]] = {"7class": dict(EMOTIONS)}  # = EmoBox's data/oreau/label_map.json
DEFAULT_CLASS_SET = "7class"

# EmoBox's data/oreau/oreau.jsonl (434 files).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "7class": {"angry": 67, "sad": 55, "happy": 62, "fear": 51, "disgust": 67, "surprise": 62, "neutral": 70},
}

NUM_SPEAKERS = 32
NUM_FOLDS = 5
FOLD_SCHEME = "5 speaker-grouped, class-stratified folds (speaker_kfold, seed 0)"

OBTAIN = "https://zenodo.org/records/4405783 (the licence is the one shown on that record)"

_FILE_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])\.wav$")
_GENDERS = ("f", "m")


def _release_root(corpus_dir: str) -> str:
    """corpus_dir itself when it holds f/ or m/, else its one sub-folder that does."""
    def holds(path: str) -> bool:
        return any(os.path.isdir(os.path.join(path, g)) for g in _GENDERS)
    if holds(corpus_dir):
        return corpus_dir
    subdirs = [os.path.join(corpus_dir, d) for d in sorted(os.listdir(corpus_dir))] if os.path.isdir(corpus_dir) else []
    roots = [d for d in subdirs if os.path.isdir(d) and holds(d)]
    if len(roots) != 1:
        raise CorpusError(f"{CORPUS}: expected OréauFR_02/<f|m>/sess<x>/<PP><T><NN><E><v>.wav (e.g. "
                          f"OréauFR_02/f/sessj/10a02Ja.wav) in {corpus_dir}; found "
                          f"{'no' if not roots else len(roots)} folder(s) with f/ or m/ in it")
    return roots[0]


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from <root>/<f|m>/sess<x>/.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the
    interface every corpus shares. Raises CorpusError naming the file for a name that does not parse, an
    unknown emotion letter, or a letter that differs from its session folder.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    root = _release_root(corpus_dir)
    utts = []
    for gender in _GENDERS:
        for wav in sorted(glob.glob(os.path.join(glob.escape(root), gender, "*", "*.wav"))):
            name = os.path.basename(wav)
            match = _FILE_NAME.match(name)
            if not match:
                raise CorpusError(f"{wav}: file name is not <speaker><text><emotion><version>.wav (e.g. 10a02Ja.wav)")
            spk, _text, raw, _version = match.groups()
            emotion = map_label(raw, class_map, EMOTIONS, wav)
            session = os.path.basename(os.path.dirname(wav))
            if session != "sess" + raw.lower():
                raise CorpusError(f"{wav}: emotion {raw} differs from its session folder {session}")
            if emotion is None:
                continue
            utts.append(Utterance(f"{spk}-{name[:-4]}", spk, os.path.abspath(wav), emotion, gender))
    if not utts and not any(glob.glob(os.path.join(glob.escape(root), g, "*", "*.wav")) for g in _GENDERS):
        raise CorpusError(f"{CORPUS}: no audio in {root}: expected <f|m>/sess<x>/<PP><T><NN><E><v>.wav")
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Five speaker-grouped, class-stratified folds."""
    return speaker_kfold(utts, NUM_FOLDS, CORPUS)


FOLD_SCHEMES: dict[str, FoldScheme] = {"emobox": EMOBOX_QUARTER}
