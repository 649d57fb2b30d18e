"""EMOVO (Costantini et al., LREC 2014), the Italian emotional speech corpus, as released.

Layout read (48 kHz)::

    <actor>/<emotion>-<actor>-<sentence>.wav      e.g. f1/dis-f1-b1.wav (also under EMOVO/)

Six actors, f1 f2 f3 (female) and m1 m2 m3 (male); emotions neu (neutral), dis (disgusto), gio (gioia, joy),
pau (paura, fear), rab (rabbia, anger), sor (sorpresa, surprise), tri (tristezza, sadness); 14 sentences b1-b3,
l1-l4, n1-n5, d1-d2. The actor field must match its folder.

Folds: the default is leave one speaker out in sorted order (f1 f2 f3 m1 m2 m3). EmoBox's 6 folds
(data/emovo/fold_<k>) are also leave one speaker out, numbered in another order: ``--fold-scheme emobox`` tests
f2, m3, m2, f3, f1, m1 in folds 1-6, so per-fold numbers line up with EmoBox's.
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
    leave_one_speaker_out,
    map_label,
    resolve_class_set,
)

CORPUS = "emovo"
LICENCE = "free for research on request from Fondazione Ugo Bordoni (cite Costantini et al., LREC 2014)"
OBTAIN = ("http://voice.fub.it/activities/corpora/emovo/index.html (Fondazione Ugo Bordoni; "
          "free for research on request, cite Costantini et al., LREC 2014)")

SPEAKERS = ("f1", "f2", "f3", "m1", "m2", "m3")
EMOTIONS = ("neu", "dis", "gio", "pau", "rab", "sor", "tri")
SENTENCES = ("b1", "b2", "b3", "l1", "l2", "l3", "l4", "n1", "n2", "n3", "n4", "n5", "d1", "d2")

CLASS_SETS: dict[str, dict[str, str]] = {
    # EmoBox's class set (data/emovo/label_dict.json): all seven.
    "7class": {"neu": "neutral", "dis": "disgust", "gio": "happy", "pau": "fear", "rab": "angry",
               "sor": "surprise", "tri": "sad"},
}
DEFAULT_CLASS_SET = "7class"

# 588 = 6 actors x 7 emotions x 14 sentences (Costantini et al., 2014; EmoBox's data/emovo/emovo.jsonl: 84 per
# emotion, 98 per actor).
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "7class": {"neutral": 84, "disgust": 84, "happy": 84, "fear": 84, "angry": 84, "surprise": 84, "sad": 84},
}
NUM_SPEAKERS = 6  # 3 female, 3 male

FOLD_SCHEME = "leave one speaker out (6 folds: f1 f2 f3 m1 m2 m3)"
EMOBOX_ORDER = ("f2", "m3", "m2", "f3", "f1", "m1")  # the test speaker of EmoBox's fold_1 .. fold_6

_FILE_NAME = re.compile(r"^([a-z]{3})-([fm]\d)-([a-z]\d)\.wav$")


def _speaker_dirs(corpus_dir: str) -> list[str]:
    for root in (corpus_dir, os.path.join(corpus_dir, "EMOVO")):
        dirs = [os.path.join(root, spk) for spk in SPEAKERS if os.path.isdir(os.path.join(root, spk))]
        if dirs:
            return dirs
    raise CorpusError(f"{CORPUS}: no actor folders in {corpus_dir}: expected <actor>/<emotion>-<actor>-"
                      f"<sentence>.wav with actor one of {' '.join(SPEAKERS)} (e.g. f1/dis-f1-b1.wav)")


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set from every actor folder.

    Labels come from the file names, so no label can lack its audio; ``strict`` is accepted for the interface
    every corpus shares. Raises CorpusError naming the file for a name that does not parse, an unknown emotion or
    sentence, or an actor field that differs from its folder.
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts: list[Utterance] = []
    for spk_dir in _speaker_dirs(corpus_dir):
        spk = os.path.basename(spk_dir)
        for wav in sorted(glob.glob(os.path.join(spk_dir, "*.wav"))):
            name = os.path.basename(wav)
            match = _FILE_NAME.match(name)
            if not match:
                raise CorpusError(f"{wav}: file name is not <emotion>-<actor>-<sentence>.wav (e.g. dis-f1-b1.wav)")
            code, actor, sentence = match.groups()
            if actor != spk:
                raise CorpusError(f"{wav}: actor field {actor} differs from its folder {spk}")
            if sentence not in SENTENCES:
                raise CorpusError(f"{wav}: sentence {sentence} is not one of {' '.join(SENTENCES)}")
            emotion = map_label(code, class_map, EMOTIONS, wav)
            if emotion is None:
                continue
            utts.append(Utterance(f"{spk}-{name[:-4]}", spk, os.path.abspath(wav), emotion, spk[0]))
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one speaker out, in sorted order: fold 1 tests f1, ..., fold 6 m3."""
    return leave_one_speaker_out(utts, CORPUS)


def emobox_folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """EmoBox's leave-one-speaker-out numbering: folds 1-6 test f2, m3, m2, f3, f1, m1."""
    return folds_by_group(utts, lambda spk: EMOBOX_ORDER.index(spk) + 1, len(EMOBOX_ORDER), CORPUS)


FOLD_SCHEMES: dict[str, FoldScheme] = {
    "emobox": FoldScheme("EmoBox's folds: leave one speaker out, folds 1-6 testing f2 m3 m2 f3 f1 m1",
                         emobox_folds),
}
