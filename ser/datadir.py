"""Kaldi data directories: reading and writing their tables, and the rules a valid directory obeys.

A table file holds one entry per line, ``<key> <value...>``, keys unique and sorted in the C locale
(byte order), and ends with a newline. Every function here names the file and line of what it rejects.

The validator enforces what Kaldi's ``utils/validate_data_dir.sh --no-text`` (plus ``--no-feats`` unless
features are needed) enforces, and a few rules of ser's own on top (see :func:`validate_data_dir`).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Union

from ser.atomic import umask, write_json, write_text

log = logging.getLogger(__name__)

# awk's and sort's field separators: blanks (space and tab) only.
_BLANKS = re.compile(r"[ \t]+")


class DataDirError(ValueError):
    """A data directory (or one of its files) breaks a rule; the message names the file and line.

    ``errors`` holds every problem found (the message shows the first ones).
    """

    def __init__(self, message: str, errors: Sequence[str] | None = None):
        super().__init__(message)
        self.errors = list(errors) if errors is not None else [message]


def c_sort_key(key: str) -> bytes:
    """Sort key equal to ``LC_ALL=C sort``: plain byte order of the UTF-8 encoding."""
    return key.encode("utf-8")


# ----------------------------------------------------------------------------------------------------------
# Reading and writing tables


@dataclass(frozen=True)
class TableLine:
    """One line of a table file: its number (from 1), key, value (rest of the line) and whole text."""

    lineno: int
    key: str
    value: str
    text: str


def _read_text(path: str) -> str:
    if not os.path.exists(path) or os.path.isdir(path):  # pipes such as <(...) and /dev/stdin are fine
        raise DataDirError(f"{path}: no such file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataDirError(f"{path}: not valid UTF-8 ({e})") from None


def parse_table_lines(text: str, name: str, min_fields: int = 2, max_fields: int | None = None) -> list[TableLine]:
    """Split ``text`` into TableLines, checking each line's format; ``name`` is the file named in errors.

    Fields are separated by blanks (space, tab) as awk splits them; the value is the rest of the line
    after the key, so wav.scp commands keep their inner spaces. Neither order nor uniqueness is checked.
    """
    raw_lines = text.split("\n")
    if raw_lines[-1] == "":
        raw_lines.pop()  # what follows the final newline
    lines = []
    for lineno, line in enumerate(raw_lines, 1):
        if "\r" in line:
            raise DataDirError(f"{name}:{lineno}: carriage return (DOS line ending)")
        if not line.strip():
            raise DataDirError(f"{name}:{lineno}: empty line")
        if line[0] in " \t":
            raise DataDirError(f"{name}:{lineno}: line starts with whitespace")
        fields = _BLANKS.split(line.rstrip(" \t"))
        if len(fields) < min_fields or (max_fields is not None and len(fields) > max_fields):
            if max_fields is None:
                want = f"at least {min_fields}"
            elif max_fields == min_fields:
                want = str(min_fields)
            else:
                want = f"{min_fields} to {max_fields}"
            raise DataDirError(f"{name}:{lineno}: expected {want} fields, found {len(fields)}: {line!r}")
        key = fields[0]
        lines.append(TableLine(lineno, key, line[len(key):].strip(" \t"), line))
    return lines


def read_table_lines(path: str, min_fields: int = 2, max_fields: int | None = None) -> list[TableLine]:
    """Read a table file's lines (format checked as by :func:`parse_table_lines`, and the final newline),
    in file order."""
    text = _read_text(path)
    if text and not text.endswith("\n"):
        raise DataDirError(f"{path}:{text.count(chr(10)) + 1}: the last line does not end with a newline")
    return parse_table_lines(text, path, min_fields, max_fields)


def table_from_lines(lines: list[TableLine], name: str) -> dict[str, str]:
    """{key: value} of the lines; a repeated key is an error naming ``name`` and both lines."""
    table: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line in lines:
        if line.key in table:
            raise DataDirError(f"{name}:{line.lineno}: duplicate key {line.key!r} "
                               f"(first on line {first_line[line.key]})")
        table[line.key] = line.value
        first_line[line.key] = line.lineno
    return table


def read_table(path: str, min_fields: int = 2, max_fields: int | None = None) -> dict[str, str]:
    """Read ``key value...`` lines into {key: value}, keeping the file's order.

    The value is the rest of the line after the first blank run (so wav.scp commands keep their spaces).
    Raises DataDirError naming path:line for a missing file, a missing trailing newline, blank or
    malformed lines, too few/many fields and duplicate keys. Sorting is checked by the validator.
    """
    return table_from_lines(read_table_lines(path, min_fields, max_fields), path)


def format_table(table: dict[str, str] | Iterable[tuple[str, str]], name: str = "table") -> str:
    """The text of a table file: ``key value`` lines in C-locale key order, each ending with a newline."""
    items = [(str(k), str(v)) for k, v in (table.items() if isinstance(table, dict) else table)]
    items.sort(key=lambda kv: c_sort_key(kv[0]))
    out = []
    for i, (key, value) in enumerate(items):
        if not key or any(c.isspace() for c in key):
            raise DataDirError(f"{name}: key {key!r} is empty or contains whitespace")
        if i and key == items[i - 1][0]:
            raise DataDirError(f"{name}: duplicate key {key!r}")
        if "\n" in value or "\r" in value:
            raise DataDirError(f"{name}: the value of {key!r} contains a line break")
        value = value.strip(" \t")
        out.append(f"{key} {value}\n" if value else f"{key}\n")
    return "".join(out)




def write_table(path: str, table: dict[str, str] | list[tuple[str, str]]) -> None:
    """Write {key: value} sorted in the C locale, atomically (temp file + rename), ending with a newline."""
    write_text(path, format_table(table, path))


def utt2spk_to_spk2utt(utt2spk: dict[str, str]) -> dict[str, str]:
    """{utt: spk} -> {spk: "utt1 utt2 ..."} with utterances in C-sorted order."""
    spk2utts: dict[str, list[str]] = {}
    for utt in sorted(utt2spk, key=c_sort_key):
        spk2utts.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in spk2utts.items()}


def spk2utt_to_utt2spk(spk2utt: dict[str, str]) -> dict[str, str]:
    """{spk: "utt1 utt2 ..."} -> {utt: spk}; an utterance listed twice is an error."""
    utt2spk: dict[str, str] = {}
    for spk, utts in spk2utt.items():
        for utt in utts.split():
            if utt in utt2spk:
                raise DataDirError(f"spk2utt: utterance {utt!r} is listed for speakers {utt2spk[utt]!r} and {spk!r}")
            utt2spk[utt] = spk
    return utt2spk


def read_list(path: str) -> list[str]:
    """The first field of every line of a list file (an utterance or speaker list; blank lines skipped)."""
    return [line.split()[0] for line in _read_text(path).splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------------------
# The files of a data directory and the checks of their values

UTT, SPK, RECO = "utterance", "speaker", "recording"


def _positive_number(value: str) -> str | None:
    try:
        ok = math.isfinite(float(value)) and float(value) > 0
    except ValueError:
        ok = False
    return None if ok else f"{value!r} is not a positive number"


def _positive_integer(value: str) -> str | None:
    if not value.isdigit() or int(value) <= 0:
        return f"{value!r} is not a positive integer"
    return None


def _gender(value: str) -> str | None:
    return None if value in ("m", "f") else f"gender {value!r} is not 'm' or 'f'"


def _warp_factor(value: str) -> str | None:
    try:
        ok = 0.5 < float(value) < 1.5
    except ValueError:
        ok = False
    return None if ok else f"warp factor {value!r} is not a number between 0.5 and 1.5"


def _vad(value: str) -> str | None:
    try:
        numbers = [float(x) for x in value.split()]
    except ValueError:
        return f"{value!r} is not three numbers (valence arousal dominance)"
    return None if all(math.isfinite(x) for x in numbers) else f"{value!r} holds a number that is not finite"


def _segment(value: str) -> str | None:
    _, start, end = value.split()
    try:
        start_s, end_s = float(start), float(end)
    except ValueError:
        return f"start {start!r} or end {end!r} is not a number"
    if not (math.isfinite(start_s) and math.isfinite(end_s)):
        return f"start {start!r} or end {end!r} is not finite"
    if start_s < 0:
        return f"start {start!r} is negative"
    if end_s <= start_s:
        return f"end {end!r} is not after start {start!r}"
    return None


def _channel(value: str) -> str | None:
    channel = value.split()[1]
    # Kaldi also lets '1' pass (with a warning that it should be A or B).
    return None if channel in ("A", "B", "1") else f"channel {channel!r} is not 'A' or 'B'"


def _rxfilename(value: str) -> str | None:
    """Kaldi's rules for an input file name ("extended filename"): a path, ``path:offset`` or ``command |``."""
    if value in ("", "-"):
        return "standard input ('-') cannot be an entry's source"
    if value.startswith("|"):
        return f"{value!r} starts with '|' (an output pipe); an input command ends with '|'"
    if value[:2] in ("t,", "b,"):
        return f"{value!r} looks like an rspecifier, not a file name"
    if not value.endswith("|") and "|" in value:
        return f"{value!r} has a '|' that is not at the end (a command must end with '|')"
    return None


def _matrix_rxfilename(value: str) -> str | None:
    """An rxfilename that may end in a Kaldi range spec such as ``[0:99]`` (feats.scp, vad.scp, cmvn.scp)."""
    return _rxfilename(re.sub(r"\[[^\]]*\]$", "", value))


def _wav_entry(value: str) -> str | None:
    # Kaldi rejects a leading tilde: fopen does no tilde expansion.
    if value.startswith("~"):
        return f"{value!r} starts with '~', which is not expanded; write the full path"
    return _rxfilename(value)


@dataclass(frozen=True)
class FileSpec:
    """A table file a data directory may hold.

    ``index`` is what its keys are: utterances, speakers, or recordings (RECO: recordings when the
    directory has ``segments``, utterances otherwise).
    """

    name: str
    index: str
    min_fields: int = 2
    max_fields: Optional[int] = 2
    check_value: Optional[Callable[[str], Optional[str]]] = None


KNOWN_FILES: dict[str, FileSpec] = {spec.name: spec for spec in (
    FileSpec("utt2spk", UTT),
    FileSpec("spk2utt", SPK, max_fields=None),
    FileSpec("utt2emo", UTT),  # ser: the emotion label
    FileSpec("utt2vad", UTT, 4, 4, _vad),  # ser: dimensional labels (valence arousal dominance) where released
    FileSpec("wav.scp", RECO, max_fields=None, check_value=_wav_entry),
    FileSpec("segments", UTT, 4, 4, _segment),
    FileSpec("reco2file_and_channel", RECO, 3, 3, _channel),
    FileSpec("reco2dur", RECO, check_value=_positive_number),
    FileSpec("utt2dur", UTT, check_value=_positive_number),
    FileSpec("feats.scp", UTT, max_fields=None, check_value=_matrix_rxfilename),
    FileSpec("utt2num_frames", UTT, check_value=_positive_integer),
    FileSpec("cmvn.scp", SPK, max_fields=None, check_value=_matrix_rxfilename),
    FileSpec("vad.scp", UTT, max_fields=None, check_value=_matrix_rxfilename),
    FileSpec("text", UTT, min_fields=1, max_fields=None),
    FileSpec("spk2gender", SPK, check_value=_gender),
    FileSpec("spk2warp", SPK, check_value=_warp_factor),
    FileSpec("utt2warp", UTT, check_value=_warp_factor),
    FileSpec("utt2lang", UTT),
    FileSpec("utt2uniq", UTT),
)}


def label_error(label: str, classes: Sequence[str] | None) -> str | None:
    """Why ``label`` is not a label of ``classes`` (None: it is, or there is no class set)."""
    if classes is not None and label not in classes:
        return f"label {label!r} is not in the class set ({' '.join(classes)})"
    return None


def read_utt2emo(data_dir: str, classes: Sequence[str] | None) -> dict[str, str]:
    """{utt: label} of data_dir/utt2emo, in its order; a label outside ``classes`` is an error naming its line."""
    path = os.path.join(data_dir, "utt2emo")
    lines = read_table_lines(path, 2, 2)
    table = table_from_lines(lines, path)
    for line in lines:
        error = label_error(line.value, classes)
        if error:
            raise DataDirError(f"{path}:{line.lineno}: {error} (utterance {line.key!r})")
    return table


def _index_of(spec: FileSpec, has_segments: bool) -> str:
    return UTT if spec.index == RECO and not has_segments else spec.index


# ----------------------------------------------------------------------------------------------------------
# Validation

_MAX_ERRORS_SHOWN = 20


def _order_errors(path: str, lines: list[TableLine]) -> list[str]:
    """Keys strictly increasing in byte order (sorted and unique), as ``awk '{print $1}' | sort -uC``."""
    errors = []
    for prev, line in zip(lines, lines[1:]):
        if c_sort_key(line.key) == c_sort_key(prev.key):
            errors.append(f"{path}:{line.lineno}: duplicate key {line.key!r} (also on line {prev.lineno})")
        elif c_sort_key(line.key) < c_sort_key(prev.key):
            errors.append(f"{path}:{line.lineno}: not sorted: key {line.key!r} comes after {prev.key!r} "
                          f"(line {prev.lineno}) but sorts before it in the C locale")
    return errors


def _speaker_order_errors(path: str, lines: list[TableLine]) -> list[str]:
    """utt2spk must also be sorted by speaker, as Kaldi's ``sort -k2 -C`` checks.

    sort's key 2 runs from the end of the first field (blanks included) to the end of the line, and
    equal keys fall back to comparing whole lines.
    """
    def order(line: TableLine) -> tuple[bytes, bytes]:
        return c_sort_key(line.text[len(line.key):]), c_sort_key(line.text)

    errors = []
    for prev, line in zip(lines, lines[1:]):
        if order(line) < order(prev):
            errors.append(f"{path}:{line.lineno}: utt2spk is not sorted by speaker as well as by utterance: "
                          f"speaker {line.value!r} of {line.key!r} sorts before speaker {prev.value!r} of line "
                          f"{prev.lineno} (make speaker ids prefixes of utterance ids)")
    return errors


def _key_set_errors(path: str, lines: list[TableLine], ref_path: str, ref_keys: dict[str, int], what: str) -> list[str]:
    """The keys of ``lines`` must be exactly ``ref_keys`` ({key: line number in ref_path})."""
    keys = {line.key for line in lines}
    errors = [f"{path}:{line.lineno}: {what} {line.key!r} is not in {ref_path}"
              for line in lines if line.key not in ref_keys]
    errors += [f"{ref_path}:{lineno}: {what} {key!r} is missing from {path}"
               for key, lineno in ref_keys.items() if key not in keys]
    return errors


def _spk2utt_errors(spk2utt_path: str, spk2utt: list[TableLine], utt2spk_path: str,
                    utt2spk: list[TableLine]) -> list[str]:
    """spk2utt, expanded line by line, must give utt2spk exactly, in the same order (as Kaldi compares them)."""
    where = {line.key: line for line in utt2spk}
    listed: dict[str, int] = {}
    errors = []
    for line in spk2utt:
        utts = line.value.split()
        for utt in utts:
            if utt in listed:
                errors.append(f"{spk2utt_path}:{line.lineno}: utterance {utt!r} is listed again "
                              f"(first on line {listed[utt]})")
                continue
            listed[utt] = line.lineno
            if utt not in where:
                errors.append(f"{spk2utt_path}:{line.lineno}: utterance {utt!r} of speaker {line.key!r} "
                              f"is not in {utt2spk_path}")
            elif where[utt].value != line.key:
                errors.append(f"{spk2utt_path}:{line.lineno}: utterance {utt!r} is listed for speaker "
                              f"{line.key!r} but {utt2spk_path}:{where[utt].lineno} gives speaker {where[utt].value!r}")
        if sorted(utts, key=c_sort_key) != utts:
            errors.append(f"{spk2utt_path}:{line.lineno}: the utterances of speaker {line.key!r} are not in "
                          "sorted order")
    errors += [f"{utt2spk_path}:{line.lineno}: utterance {line.key!r} (speaker {line.value!r}) is missing "
               f"from {spk2utt_path}" for line in utt2spk if line.key not in listed]
    return errors


def validate_data_dir(path: str, classes: Sequence[str] | None = None, need_feats: bool = False,
                      need_wav: bool = True) -> None:
    """Check a data directory; raise DataDirError listing every problem (file:line and key) when it has any.

    Kaldi's rules (``utils/validate_data_dir.sh --no-text``, and ``--no-feats`` when ``need_feats`` is
    false), for every file of KNOWN_FILES that is present:

    - utt2spk and spk2utt exist and are not empty; wav.scp exists (unless ``need_wav`` is false),
      feats.scp exists when ``need_feats``; segments needs wav.scp;
    - every file ends with a newline and its keys are unique and sorted in the C locale;
    - utt2spk has two fields a line and is sorted by speaker as well as by utterance;
    - spk2utt expands to utt2spk exactly;
    - per-utterance files (utt2emo utt2dur feats.scp utt2num_frames segments text vad.scp utt2lang
      utt2uniq utt2warp) hold the utterances of utt2spk; per-speaker files (spk2gender cmvn.scp spk2warp)
      the speakers of spk2utt; wav.scp, reco2dur and reco2file_and_channel the recordings of segments
      when it exists, else the utterances;
    - segments lines are ``utt recording start end`` with end > start; durations (utt2dur, reco2dur)
      positive; utt2num_frames positive integers; spk2gender m or f; warp factors in (0.5, 1.5);
      reco2file_and_channel channels A or B; no wav.scp entry starts with '~'.

    ser's rules on top: utt2emo exists (every label in ``classes`` when given); every utterance id
    starts with its speaker id; segments start at or after 0 and hold the utterances of utt2spk (Kaldi
    checks that only when a ``text`` exists); entries of .scp files are valid Kaldi input names (a path,
    ``path:offset`` or a command ending in '|'); a spk2utt line names at least one utterance.
    """
    if isinstance(classes, str):
        raise TypeError("validate_data_dir: classes must be a sequence of class names, not one string")
    if not os.path.isdir(path):
        raise DataDirError(f"{path}: no such directory")
    errors: list[str] = []
    files = {name: os.path.join(path, name) for name in KNOWN_FILES}
    tables: dict[str, list[TableLine]] = {}
    for name, spec in KNOWN_FILES.items():
        if not os.path.isfile(files[name]):
            continue
        try:
            text = _read_text(files[name])
            lines = parse_table_lines(text, files[name], spec.min_fields, spec.max_fields)
        except DataDirError as e:
            errors.append(str(e))
            continue
        if text and not text.endswith("\n"):
            errors.append(f"{files[name]}:{lines[-1].lineno}: the last line does not end with a newline")
        errors += _order_errors(files[name], lines)
        for line in lines:
            error = spec.check_value(line.value) if spec.check_value else None
            if error:
                errors.append(f"{files[name]}:{line.lineno}: {error} (key {line.key!r})")
        tables[name] = lines

    required = ["utt2spk", "spk2utt", "utt2emo"] + ["wav.scp"] * need_wav + ["feats.scp"] * need_feats
    if os.path.isfile(files["segments"]):
        required.append("wav.scp")
    for name in dict.fromkeys(required):
        if not os.path.isfile(files[name]):
            reason = "segments exists but " if name == "wav.scp" and os.path.isfile(files["segments"]) else ""
            errors.append(f"{files[name]}: {reason}no such file")
        elif name in tables and not tables[name] and name in ("utt2spk", "spk2utt"):
            errors.append(f"{files[name]}: empty file")

    utt2spk = tables.get("utt2spk")
    if utt2spk:
        errors += _speaker_order_errors(files["utt2spk"], utt2spk)
        errors += [f"{files['utt2spk']}:{line.lineno}: utterance id {line.key!r} does not start with its speaker "
                   f"id {line.value!r}" for line in utt2spk if not line.key.startswith(line.value)]
        if "spk2utt" in tables:
            errors += _spk2utt_errors(files["spk2utt"], tables["spk2utt"], files["utt2spk"], utt2spk)
        references = {UTT: (files["utt2spk"], {line.key: line.lineno for line in utt2spk})}
        if "spk2utt" in tables:
            references[SPK] = (files["spk2utt"], {line.key: line.lineno for line in tables["spk2utt"]})
        if "segments" in tables:
            first_use: dict[str, int] = {}
            for line in tables["segments"]:
                first_use.setdefault(line.value.split()[0], line.lineno)
            references[RECO] = (files["segments"], first_use)
        for name, lines in tables.items():
            index = _index_of(KNOWN_FILES[name], "segments" in tables)
            if name in ("utt2spk", "spk2utt") or index not in references:
                continue
            ref_path, ref_keys = references[index]
            errors += _key_set_errors(files[name], lines, ref_path, ref_keys, index)

    for line in tables.get("utt2emo", []):
        error = label_error(line.value, classes)
        if error:
            errors.append(f"{files['utt2emo']}:{line.lineno}: {error} (utterance {line.key!r})")

    if errors:
        shown = errors[:_MAX_ERRORS_SHOWN]
        more = f"\n... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        raise DataDirError(f"{path}: invalid data directory:\n" + "\n".join(shown) + more, errors)


# ----------------------------------------------------------------------------------------------------------
# Filtering, fixing, subsetting, combining, splitting

Tables = dict[str, dict[str, str]]  # {file name: {key: value}}


def _present_files(path: str) -> list[str]:
    return [name for name in KNOWN_FILES if os.path.isfile(os.path.join(path, name))]


def _load_dir(path: str) -> Tables:
    """Every known file of a data dir, format-checked with unique keys (order not required)."""
    if not os.path.isdir(path):
        raise DataDirError(f"{path}: no such directory")
    tables = {name: read_table(os.path.join(path, name), KNOWN_FILES[name].min_fields, KNOWN_FILES[name].max_fields)
              for name in _present_files(path)}
    _require_utt2spk(path, tables)
    return tables


def _require_utt2spk(path: str, tables: Tables) -> None:
    if "utt2spk" not in tables:
        raise DataDirError(f"{os.path.join(path, 'utt2spk')}: no such file")
    if "segments" in tables and "wav.scp" not in tables:
        raise DataDirError(f"{os.path.join(path, 'wav.scp')}: segments exists but no such file")


def _restrict(tables: Tables, utts: Iterable[str]) -> Tables:
    """The tables cut down to ``utts``, their speakers and their recordings; spk2utt regenerated."""
    keep_utts = set(utts)
    utt2spk = {u: s for u, s in tables["utt2spk"].items() if u in keep_utts}
    keep = {UTT: keep_utts, SPK: set(utt2spk.values())}
    has_segments = "segments" in tables
    if has_segments:
        keep[RECO] = {value.split()[0] for u, value in tables["segments"].items() if u in keep_utts}
    restricted = {name: {k: v for k, v in table.items() if k in keep[_index_of(KNOWN_FILES[name], has_segments)]}
                  for name, table in tables.items() if name != "spk2utt"}
    restricted["spk2utt"] = utt2spk_to_spk2utt(utt2spk)
    return restricted


def _write_dir(path: str, tables: Tables) -> None:
    """Write the tables as a data dir; known files of an earlier content that are not in ``tables`` go."""
    os.makedirs(path, exist_ok=True)
    for name in KNOWN_FILES:
        file = os.path.join(path, name)
        if name in tables:
            write_table(file, tables[name])
        elif os.path.isfile(file):
            os.remove(file)


def _same_dir(a: str, b: str) -> bool:
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def _free_backup_dir(path: str) -> str:
    """path/.backup, or .backup.1, .backup.2, ... when earlier backups exist (none is ever overwritten)."""
    candidate, n = os.path.join(path, ".backup"), 0
    while os.path.exists(candidate) and os.listdir(candidate):
        n += 1
        candidate = os.path.join(path, f".backup.{n}")
    return candidate


def fix_data_dir(path: str, backup: bool = True) -> dict:
    """Repair a data dir in place, as Kaldi's ``utils/fix_data_dir.sh``: sort every known file, drop
    repeated identical lines, keep only the utterances present in every per-utterance file (and whose
    speaker is in every per-speaker file, whose recording is in wav.scp and every per-recording file),
    drop the speakers and recordings left without utterances, and regenerate spk2utt from utt2spk
    (or utt2spk from spk2utt when only spk2utt exists).

    Keys repeated with different values cannot be repaired and raise DataDirError, as does a result
    without utterances. The original of every rewritten file is kept in path/.backup/ (a
    numbered .backup.N when .backup already holds earlier originals). Returns counts:
    {"utterances_dropped", "speakers_dropped", "recordings_dropped", "duplicate_lines_dropped",
    "utterances_kept", "files_rewritten": [names], "backup_dir": path or None}.
    """
    if not os.path.isdir(path):
        raise DataDirError(f"{path}: no such directory")
    originals: dict[str, str] = {}
    tables: Tables = {}
    duplicates = 0
    for name in _present_files(path):
        file = os.path.join(path, name)
        originals[name] = _read_text(file)
        spec = KNOWN_FILES[name]
        lines = parse_table_lines(originals[name], file, spec.min_fields, spec.max_fields) if originals[name] else []
        table: dict[str, str] = {}
        first_line: dict[str, int] = {}
        for line in lines:
            if line.key not in table:
                table[line.key], first_line[line.key] = line.value, line.lineno
            elif table[line.key] == line.value:
                duplicates += 1
            else:
                raise DataDirError(f"{file}:{line.lineno}: key {line.key!r} repeats line {first_line[line.key]} "
                                   "with a different value; decide which is right and remove the other")
        tables[name] = table
    if "utt2spk" not in tables and "spk2utt" in tables:
        tables["utt2spk"] = spk2utt_to_utt2spk(tables["spk2utt"])
    _require_utt2spk(path, tables)

    has_segments = "segments" in tables
    all_keys = {UTT: set(), SPK: set(), RECO: set()}
    allowed: dict[str, set] = {}
    for name, table in tables.items():
        index = _index_of(KNOWN_FILES[name], has_segments)
        all_keys[index] |= set(table)
        if name != "spk2utt":
            allowed[index] = allowed[index] & set(table) if index in allowed else set(table)
    all_keys[SPK] |= set(tables["utt2spk"].values())
    if has_segments:
        all_keys[RECO] |= {value.split()[0] for value in tables["segments"].values()}

    utt2spk = tables["utt2spk"]
    speakers_ok = allowed.get(SPK)  # None: no per-speaker file besides spk2utt
    kept = [u for u in allowed[UTT] if (speakers_ok is None or utt2spk[u] in speakers_ok)
            and (not has_segments or tables["segments"][u].split()[0] in allowed[RECO])]
    if not kept:
        per_utt = [name for name in tables if _index_of(KNOWN_FILES[name], has_segments) == UTT]
        raise DataDirError(f"{path}: no utterance is in all of {' '.join(per_utt)} (with its speaker and recording "
                           "in the per-speaker and per-recording files); nothing would remain")
    fixed = _restrict(tables, kept)

    rewritten = [name for name, table in fixed.items() if format_table(table) != originals.get(name)]
    backup_dir = None
    if rewritten and backup:
        backup_dir = _free_backup_dir(path)
        os.makedirs(backup_dir, exist_ok=True)
        for name in rewritten:
            if name in originals:
                shutil.copy2(os.path.join(path, name), os.path.join(backup_dir, name))
    for name in rewritten:
        write_table(os.path.join(path, name), fixed[name])
    kept_keys = {index: set() for index in all_keys}
    for name, table in fixed.items():
        kept_keys[_index_of(KNOWN_FILES[name], has_segments)] |= set(table)
    result = {f"{index}s_dropped": len(all_keys[index] - kept_keys[index]) for index in (UTT, SPK, RECO)}
    result.update(duplicate_lines_dropped=duplicates, utterances_kept=len(kept), files_rewritten=sorted(rewritten),
                  backup_dir=backup_dir)
    return result


def _id_list(ids: Union[str, os.PathLike, Iterable[str]]) -> list[str]:
    return read_list(os.fspath(ids)) if isinstance(ids, (str, os.PathLike)) else [str(i) for i in ids]


def subset_data_dir(src: str, dst: str, utt_list: Union[str, os.PathLike, Iterable[str], None] = None,
                    spk_list: Union[str, os.PathLike, Iterable[str], None] = None,
                    num_utts: int | None = None) -> None:
    """Write to ``dst`` the part of ``src`` holding the utterances of ``utt_list``, or of the speakers of
    ``spk_list`` (either a list of ids or a file whose lines start with them), or ``num_utts`` utterances spread
    evenly over src's sorted utterances (Kaldi's ``subset_data_dir.sh SRC N DST``); exactly one of the three.

    Every per-utterance, per-speaker and per-recording file (segments too) is filtered; spk2utt is
    regenerated. An id that ``src`` lacks is an error, as is an empty subset. Known files in ``dst``
    that ``src`` does not have are removed, so ``dst`` never mixes old and new content.
    """
    if sum(x is not None for x in (utt_list, spk_list, num_utts)) != 1:
        raise ValueError("subset_data_dir: give exactly one of utt_list, spk_list and num_utts")
    if _same_dir(src, dst):
        raise DataDirError(f"{dst}: the subset must go to another directory than its source {src}")
    tables = _load_dir(src)
    utt2spk = tables["utt2spk"]
    if num_utts is not None:
        everything = sorted(utt2spk)
        if not 0 < num_utts <= len(everything):
            raise DataDirError(f"{src}: asked for {num_utts} utterances of {len(everything)}")
        step = len(everything) / num_utts
        _write_dir(dst, _restrict(tables, [everything[int(i * step)] for i in range(num_utts)]))
        return
    if utt_list is not None:
        wanted, known, what = _id_list(utt_list), utt2spk, "utterance"
    else:
        wanted, known, what = _id_list(spk_list), set(utt2spk.values()), "speaker"
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise DataDirError(f"{os.path.join(src, 'utt2spk')}: has no {what} {unknown[0]!r}"
                           + (f" (nor {len(unknown) - 1} more of the list)" if len(unknown) > 1 else ""))
    wanted_set = set(wanted)
    utts = [u for u, s in utt2spk.items() if (u if utt_list is not None else s) in wanted_set]
    if not utts:
        raise DataDirError(f"{src}: the {what} list selects no utterance")
    _write_dir(dst, _restrict(tables, utts))


def combine_data_dirs(dst: str, srcs: Sequence[str]) -> None:
    """Write to ``dst`` the union of the data dirs ``srcs``.

    A file must be in every source or in none (segments included); cmvn.scp is not combined (per-speaker
    statistics of different sets cannot be merged: compute them again). A key found in two sources
    must have the same value in both (an utterance may be repeated, not changed); spk2utt is regenerated.
    """
    if not srcs:
        raise ValueError("combine_data_dirs: no source directories")
    for src in srcs:
        if _same_dir(src, dst):
            raise DataDirError(f"{dst}: the destination is also a source")
    for src in srcs:
        if not os.path.isdir(src):
            raise DataDirError(f"{src}: no such directory")
    present = {src: set(_present_files(src)) for src in srcs}
    for src in srcs:
        if "utt2spk" not in present[src]:
            raise DataDirError(f"{os.path.join(src, 'utt2spk')}: no such file")
    names = [name for name in KNOWN_FILES if any(name in files for files in present.values())
             and name not in ("spk2utt", "cmvn.scp")]
    if any("cmvn.scp" in files for files in present.values()):
        log.warning("combine_data_dirs: cmvn.scp is not combined; compute the statistics of %s again", dst)
    for name in names:
        lacking = [src for src in srcs if name not in present[src]]
        if lacking:
            having = next(src for src in srcs if name in present[src])
            raise DataDirError(f"{os.path.join(lacking[0], name)}: no such file, but {os.path.join(having, name)} "
                               "exists; every source must have the same files")
    combined: Tables = {}
    for name in names:
        spec = KNOWN_FILES[name]
        table: dict[str, str] = {}
        origin: dict[str, str] = {}
        for src in srcs:
            file = os.path.join(src, name)
            lines = read_table_lines(file, spec.min_fields, spec.max_fields)
            table_from_lines(lines, file)
            for line in lines:
                if line.key in table and table[line.key] != line.value:
                    raise DataDirError(f"{file}:{line.lineno}: {line.key!r} has value {line.value!r} but "
                                       f"{origin[line.key]} gives {table[line.key]!r}")
                if line.key not in table:
                    table[line.key], origin[line.key] = line.value, f"{file}:{line.lineno}"
        combined[name] = table
    combined["spk2utt"] = utt2spk_to_spk2utt(combined["utt2spk"])
    _write_dir(dst, combined)


def _split_utts(utt2spk: dict[str, str], nj: int, by_speaker: bool) -> list[list[str]]:
    """nj parts of the utterances: contiguous runs of equal size (+-1) in sorted order, or whole speakers
    assigned largest first to the part with the fewest utterances so far."""
    utts = sorted(utt2spk, key=c_sort_key)
    if not by_speaker:
        if nj > len(utts):
            raise DataDirError(f"cannot split {len(utts)} utterances into {nj} non-empty parts")
        return [utts[i * len(utts) // nj:(i + 1) * len(utts) // nj] for i in range(nj)]
    spk2utts: dict[str, list[str]] = {}
    for utt in utts:
        spk2utts.setdefault(utt2spk[utt], []).append(utt)
    if nj > len(spk2utts):
        raise DataDirError(f"cannot split {len(spk2utts)} speakers into {nj} non-empty parts")
    parts: list[list[str]] = [[] for _ in range(nj)]
    loads = [(0, i) for i in range(nj)]
    for spk in sorted(spk2utts, key=lambda s: (-len(spk2utts[s]), c_sort_key(s))):
        load, i = heapq.heappop(loads)
        parts[i] += spk2utts[spk]
        heapq.heappush(loads, (load + len(spk2utts[spk]), i))
    return [sorted(part, key=c_sort_key) for part in parts]


def _split_stamp(src: str, nj: int, by_speaker: bool) -> dict:
    """What a split was made from: mode, nj and a digest of every known source file's content."""
    digests = {}
    for name in _present_files(src):
        with open(os.path.join(src, name), "rb") as f:
            digests[name] = hashlib.sha256(f.read()).hexdigest()
    return {"nj": nj, "by_speaker": by_speaker, "sources": digests}


_STAMP = ".split_stamp.json"


def _split_is_current(split_dir: str, stamp: dict) -> bool:
    try:
        with open(os.path.join(split_dir, _STAMP), encoding="utf-8") as f:
            if json.load(f) != stamp:
                return False
    except (OSError, ValueError):
        return False
    return all(os.path.isfile(os.path.join(split_dir, str(i), "utt2spk")) for i in range(1, stamp["nj"] + 1))


def split_data_dir(src: str, nj: int, by_speaker: bool = False) -> list[str]:
    """Split ``src`` into ``src/split{nj}/{1..nj}``, each a data dir; returns their paths.

    Parts are balanced by utterance count; with ``by_speaker`` every speaker stays whole within one part.
    A split made earlier is reused when the source files' content and the mode are unchanged (a stamp in
    the split dir records them; it is written last, so an interrupted split is never reused). The new
    split is built beside the old one and moved into place.
    """
    if isinstance(nj, bool) or not isinstance(nj, int) or nj < 1:
        raise ValueError(f"split_data_dir: nj must be a positive integer, got {nj!r}")
    split_dir = os.path.join(src, f"split{nj}")
    parts = [os.path.join(split_dir, str(i)) for i in range(1, nj + 1)]
    stamp = _split_stamp(src, nj, by_speaker)
    if _split_is_current(split_dir, stamp):
        return parts
    tables = _load_dir(src)
    part_utts = _split_utts(tables["utt2spk"], nj, by_speaker)
    tmp = tempfile.mkdtemp(dir=src, prefix=f".split{nj}.tmp.")
    try:
        for i, utts in enumerate(part_utts, 1):
            _write_dir(os.path.join(tmp, str(i)), _restrict(tables, utts))
        write_text(os.path.join(tmp, _STAMP), json.dumps(stamp, sort_keys=True) + "\n")
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private
        if os.path.isdir(split_dir):
            shutil.rmtree(split_dir)
        try:
            os.rename(tmp, split_dir)
        except OSError:
            if not _split_is_current(split_dir, stamp):  # another process may have just made the same split
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return parts


FOLD_SETS = ("train", "valid", "test")


def write_fold_dirs(data_dir: str, all_dir: str, out_root: str):
    """For every fold k of data_dir/protocol.json and set in train/valid/test: out_root/fold<k>/<set> = all_dir
    (a data dir with feats.scp) restricted to the utterances of data_dir/fold<k>/<set>, validated. Yields (fold,
    set, utterances, the new dir) after each, so that the caller adds what belongs to it (CMVN, a cache record).
    out_root/protocol.json, a copy, then names the protocol the folds follow (a trained run's model card reads it)."""
    with open(os.path.join(data_dir, "protocol.json")) as f:
        protocol = json.load(f)
    for fold in sorted(protocol["folds"], key=int):
        for part in FOLD_SETS:
            utts = list(read_table(os.path.join(data_dir, f"fold{fold}", part, "utt2spk"), 2, 2))
            out = os.path.join(out_root, f"fold{fold}", part)
            subset_data_dir(all_dir, out, utt_list=utts)
            validate_data_dir(out, classes=protocol["classes"], need_feats=True)
            yield fold, part, utts, out
    write_json(os.path.join(out_root, "protocol.json"), protocol, indent=1)
