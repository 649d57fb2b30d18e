"""A user's own data from one CSV file (``./run.sh --corpus-manifest FILE.csv``): no corpus module to write.

Columns (a header line names them, in any order; other columns are ignored and named once in the log)::

    path,label,speaker            required: the audio file, its emotion label, its speaker
    fold                          optional: the test fold (1, 2, ...) of the row's speaker: a given split
    gender                        optional: m or f (also male / female, any case); empty = not known
    start,end                     optional, together: a segment of a longer recording, in seconds

A relative path is read against the manifest's folder. Every row is checked before anything is written, and an
error names ``FILE:LINE``: a missing or unreadable audio file, an empty label or speaker, whitespace inside one, a
bad time range (not numbers, start < 0, end <= start, end beyond the recording), the same audio (or segment) twice,
a speaker given two folds or two genders. Segments become wav.scp commands (``python -m ser.bin.cut_audio FILE
START END |``), which every stage reads as it reads any wav.scp command.

Classes: ``--class-set all`` (default) takes every label, sorted; ``--class-set "angry,happy,sad"`` keeps those, in
that order, and leaves the other rows out (counted in the log). Folds: the fold column when there is one, else
``--num-folds`` speaker-grouped, class-stratified folds (``--fold-scheme kfold``), or ``--fold-scheme loso``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import Counter

import soundfile

from ser.audio import segment_command
from ser.corpora.common import CorpusError, Utterance, check_unique

CORPUS = "manifest"
LICENCE = "your own data: its licence is the one you hold (not known to ser)"
OBTAIN = "your own CSV file (columns path,label,speaker; see ser/corpora/manifest.py)"
CLASS_SETS: dict[str, dict[str, str]] = {}  # the classes come from the manifest (class_list_of)
DEFAULT_CLASS_SET = "all"
FOLD_SCHEME = None  # no fixed rule: the fold column when given, else speaker-grouped k-fold

REQUIRED = ("path", "label", "speaker")
OPTIONAL = ("fold", "gender", "start", "end")
GENDERS = {"m": "m", "male": "m", "f": "f", "female": "f", "": None}
END_TOLERANCE_S = 0.01  # an end this far past the recording is taken as its end (rounding in a label tool)

log = logging.getLogger("ser.corpora.manifest")


def corpus_name(manifest: str) -> str:
    """The name results record for a manifest's corpus: its file name without the extension."""
    return os.path.splitext(os.path.basename(manifest))[0]


def _classes_wanted(class_set: str) -> list[str] | None:
    if class_set == "all":
        return None
    wanted = [c.strip() for c in class_set.split(",") if c.strip()]
    if not wanted or len(set(wanted)) != len(wanted):
        raise CorpusError(f"--class-set {class_set!r}: give 'all' or distinct labels separated by commas")
    return wanted


def class_list_of(utts: list[Utterance], class_set: str) -> list[str]:
    return _classes_wanted(class_set) or sorted({u.emotion for u in utts})


def _seconds(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CorpusError(f"{where}: {column} {text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise CorpusError(f"{where}: {column} {text!r} is not a finite number")
    return value


def _token(row: dict, column: str, where: str) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise CorpusError(f"{where}: empty {column}")
    if any(c.isspace() for c in value):
        raise CorpusError(f"{where}: {column} {value!r} contains whitespace")
    return value


def _utt_name(relpath: str) -> str:
    """A whitespace-free name from the path relative to the manifest (folders joined with '-')."""
    parts = [p for p in os.path.normpath(relpath).split(os.sep) if p not in ("..", ".")]
    stem = os.path.splitext("/".join(parts))[0]
    return "".join("_" if c.isspace() else c for c in stem.replace("/", "-"))


def prepare(manifest: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    """Utterances of the manifest's rows (of the wanted classes). ``strict`` is accepted for the interface every
    corpus shares: every problem of a row is an error."""
    if not os.path.isfile(manifest):
        raise CorpusError(f"manifest {manifest} does not exist")
    wanted = _classes_wanted(class_set)
    root = os.path.dirname(os.path.abspath(manifest))
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise CorpusError(f"{manifest}:1: the header lacks column(s) {', '.join(missing)} "
                              f"(required: {','.join(REQUIRED)}; optional: {','.join(OPTIONAL)})")
        if ("start" in header) != ("end" in header):
            raise CorpusError(f"{manifest}:1: columns start and end go together")
        ignored = [h for h in header if h not in REQUIRED + OPTIONAL]
        if ignored:
            log.info("%s: column(s) %s are not read", manifest, ", ".join(ignored))
        rows = list(reader)
    utts, seen, speaker_fold, speaker_gender, left_out = [], {}, {}, {}, Counter()
    durations: dict[str, float] = {}
    for number, row in enumerate(rows, start=2):
        where = f"{manifest}:{number}"
        if None in row:
            raise CorpusError(f"{where}: more fields than the header has columns")
        path_text = (row.get("path") or "").strip()
        if not path_text:
            raise CorpusError(f"{where}: empty path")
        path = os.path.normpath(os.path.join(root, path_text))
        label = _token(row, "label", where)
        spk = _token(row, "speaker", where)
        gender_text = (row.get("gender") or "").strip().lower()
        if gender_text not in GENDERS:
            raise CorpusError(f"{where}: gender {row.get('gender')!r} is not m, f, male, female or empty")
        gender = GENDERS[gender_text]
        if speaker_gender.setdefault(spk, gender) != gender:
            raise CorpusError(f"{where}: speaker {spk} was given gender {speaker_gender[spk]} on an earlier line")
        fold = None
        if (row.get("fold") or "").strip():
            text = row["fold"].strip()
            if not text.isdigit() or int(text) < 1:
                raise CorpusError(f"{where}: fold {text!r} is not a fold number (1, 2, ...)")
            fold = int(text)
        elif "fold" in header:
            raise CorpusError(f"{where}: empty fold (a fold column gives every row its fold)")
        if fold is not None and speaker_fold.setdefault(spk, (fold, number))[0] != fold:
            raise CorpusError(f"{where}: speaker {spk} is in fold {fold} here and in fold {speaker_fold[spk][0]} on "
                              f"line {speaker_fold[spk][1]}; folds must keep speakers apart")
        if not os.path.isfile(path):
            raise CorpusError(f"{where}: audio file not found: {path}")
        if path not in durations:
            try:
                info = soundfile.info(path)
            except (RuntimeError, soundfile.SoundFileError) as err:
                raise CorpusError(f"{where}: cannot read audio file {path}: {err}") from None
            if info.frames <= 0:
                raise CorpusError(f"{where}: audio file {path} has no samples")
            durations[path] = info.frames / info.samplerate
        name = _utt_name(os.path.relpath(path, root))
        wav = path
        segment = None
        if "start" in header:
            start = _seconds((row.get("start") or "").strip(), where, "start")
            end = _seconds((row.get("end") or "").strip(), where, "end")
            if start < 0 or end <= start:
                raise CorpusError(f"{where}: time range {start:g}-{end:g} s is empty or negative")
            if end > durations[path] + END_TOLERANCE_S:
                raise CorpusError(f"{where}: end {end:g} s is beyond the recording ({durations[path]:.3f} s): {path}")
            end = min(end, durations[path])
            segment = (start, end)
            name += f"-{round(start * 1000):08d}-{round(end * 1000):08d}"
            wav = segment_command(path, start, end)
        key = (path, segment)
        if key in seen:
            what = f"segment {segment[0]:g}-{segment[1]:g} s of {path}" if segment else path
            raise CorpusError(f"{where}: {what} is listed twice (also on line {seen[key]})")
        seen[key] = number
        if wanted is not None and label not in wanted:
            left_out[label] += 1
            continue
        utts.append(Utterance(f"{spk}-{name}", spk, wav, label, gender, fold))
    if left_out:
        log.info("%s: rows of labels outside --class-set left out: %s", manifest,
                 ", ".join(f"{label} {n}" for label, n in sorted(left_out.items())))
    if not utts:
        raise CorpusError(f"{manifest}: no rows of the wanted classes")
    check_unique(utts)
    return utts

