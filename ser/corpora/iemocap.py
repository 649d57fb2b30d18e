"""IEMOCAP (Busso et al., 2008), as released (IEMOCAP_full_release).

Layout read::

    Session{1..5}/dialog/EmoEvaluation/<dialog>.txt     labels, one file per dialog
    Session{1..5}/sentences/wav/<dialog>/<turn>.wav     16 kHz audio, one file per turn

A label line is ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``;
every line starting with ``[`` must parse as one. Other lines (the ``%`` header, annotator lines
``C-E1:``/``A-E2:``, blank lines) are not labels. The speaker of a turn is its session plus the
gender letter of the turn's LAST field: ``Ses01F_impro04_M012`` is spoken by Ses01M in a dialog
whose prefix is Ses01F. Dialog names include ``impro05a`` and ``script01_1b``. The dimensional labels [V, A, D] of
each line are kept in the data dirs' utt2vad.
"""

from __future__ import annotations

import glob
import os
import re

from ser.corpora.common import (
    CorpusError,
    Utterance,
    check_unique,
    folds_by_group,
    map_label,
    report_missing_audio,
    resolve_class_set,
)

CORPUS = "iemocap"
LICENCE = "research use under USC SAIL's signed release form; no redistribution"
OBTAIN = "https://sail.usc.edu/iemocap/ (USC SAIL lab: a signed release form; research use)"

# Every categorical label of the release: neutral, happiness, excitement, anger, sadness, frustration,
# surprise, fear, disgust, other, and xxx (no majority among the evaluators).
RAW_LABELS = ("neu", "hap", "exc", "ang", "sad", "fru", "sur", "fea", "dis", "oth", "xxx")

CLASS_SETS: dict[str, dict[str, str]] = {
    "4class_exc_merged": {"ang": "ang", "hap": "hap", "exc": "hap", "neu": "neu", "sad": "sad"},
    "4class": {"ang": "ang", "hap": "hap", "neu": "neu", "sad": "sad"},
}
DEFAULT_CLASS_SET = "4class_exc_merged"

NUM_SPEAKERS = 10  # two per session (Busso et al. 2008)
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "4class_exc_merged": {"ang": 1103, "hap": 1636, "neu": 1708, "sad": 1084},  # 5531
    "4class": {"ang": 1103, "hap": 595, "neu": 1708, "sad": 1084},  # 4490
}

NUM_SESSIONS = 5
FOLD_SCHEME = "leave one session out (5 folds, both speakers of a session)"

_LABEL_LINE = re.compile(r"^\[\s*\d+(?:\.\d+)?\s*-\s*\d+(?:\.\d+)?\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]\s*$")
_TURN_ID = re.compile(r"^(Ses(\d{2})[FM]_[A-Za-z0-9_]+)_([FM])\d+$")


def _sessions(corpus_dir: str) -> list[tuple[int, str]]:
    found = []
    for session in range(1, NUM_SESSIONS + 1):
        path = os.path.join(corpus_dir, f"Session{session}")
        if os.path.isdir(path):
            found.append((session, path))
    if not found:
        raise CorpusError(f"{CORPUS}: no Session1..Session{NUM_SESSIONS} directories in {corpus_dir} "
                          "(expected the IEMOCAP_full_release directory)")
    return found


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set, read from the label files of every session present.

    Raises CorpusError naming file:line for a malformed label line, an unknown label, a turn id that
    does not belong to its file's dialog or session, or a duplicate turn; labelled turns without
    audio are an error (strict) or skipped with a warning (lenient).
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    utts: list[Utterance] = []
    missing: list[str] = []
    where_seen: dict[str, str] = {}
    for session, session_dir in _sessions(corpus_dir):
        label_dir = os.path.join(session_dir, "dialog", "EmoEvaluation")
        label_files = sorted(glob.glob(os.path.join(label_dir, "Ses*.txt")))
        if not label_files:
            raise CorpusError(f"{CORPUS}: no label files Ses*.txt in {label_dir}")
        for label_file in label_files:
            dialog = os.path.splitext(os.path.basename(label_file))[0]
            with open(label_file, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
            for lineno, line in enumerate(lines, 1):
                if not line.startswith("["):
                    continue
                where = f"{label_file}:{lineno}"
                match = _LABEL_LINE.match(line)
                if not match:
                    raise CorpusError(f"{where}: malformed label line {line!r}")
                turn, raw_label, vad_text = match.groups()
                try:
                    vad = tuple(float(x) for x in vad_text.split(","))
                except ValueError:
                    vad = ()
                if len(vad) != 3:
                    raise CorpusError(f"{where}: dimensional labels [{vad_text}] are not [V, A, D]")
                turn_match = _TURN_ID.match(turn)
                if not turn_match:
                    raise CorpusError(f"{where}: malformed turn id {turn!r}")
                turn_dialog, turn_session, gender_letter = turn_match.groups()
                if turn_dialog != dialog or int(turn_session) != session:
                    raise CorpusError(f"{where}: turn {turn} does not belong to dialog {dialog} of Session{session}")
                if turn in where_seen:
                    raise CorpusError(f"{where}: turn {turn} already labelled at {where_seen[turn]}")
                where_seen[turn] = where
                emotion = map_label(raw_label, class_map, RAW_LABELS, where)
                if emotion is None:
                    continue
                wav = os.path.join(os.path.abspath(session_dir), "sentences", "wav", dialog, turn + ".wav")
                if not os.path.isfile(wav):
                    missing.append(f"{where}: {turn} -> {wav}")
                    continue
                spk = f"Ses{turn_session}{gender_letter}"
                utts.append(Utterance(f"{spk}-{turn}", spk, wav, emotion, gender_letter.lower(), vad=vad))
    report_missing_audio(missing, strict, CORPUS)
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one session out: fold k tests both speakers of session k (Ses0kF, Ses0kM)."""
    return folds_by_group(utts, lambda spk: int(spk[3:5]), NUM_SESSIONS, CORPUS)
