"""What every corpus preparation produces: Utterance records, turned into Kaldi data dirs and folds."""

from __future__ import annotations

import glob
import logging
import math
import os
import random
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable

import soundfile

from ser.atomic import write_json
from ser.audio import read_audio
from ser.datadir import utt2spk_to_spk2utt, validate_data_dir, write_table
from ser.speaker_norm import class_coverage
from ser.stamps import STAGE0_DONE


@dataclass(frozen=True)
class Utterance:
    """One labelled utterance of a corpus.

    utt_id must start with spk_id (Kaldi's speaker-prefix rule), e.g. ``Ses01M-Ses01F_impro04_M012``.
    wav is what goes into wav.scp: a path, or a shell command ending in ``|``.
    """

    utt_id: str
    spk_id: str
    wav: str
    emotion: str
    gender: str | None  # "m" or "f"; None where the source does not say (then no spk2gender is written)
    given_fold: int | None = None  # the fold a source assigns (a manifest's fold column), else None
    vad: tuple[float, float, float] | None = None  # dimensional labels (valence, arousal, dominance) where released

    def __post_init__(self):
        if not self.utt_id.startswith(self.spk_id):
            raise ValueError(f"utterance id {self.utt_id!r} does not start with its speaker id {self.spk_id!r}")
        if self.gender not in ("m", "f", None):
            raise ValueError(f"utterance {self.utt_id}: gender must be 'm' or 'f', got {self.gender!r}")
        for field_name in ("utt_id", "spk_id", "emotion"):
            value = getattr(self, field_name)
            if not value or any(c.isspace() for c in value):
                raise ValueError(f"utterance {self.utt_id!r}: {field_name} {value!r} is empty or contains whitespace")


# ---------------------------------------------------------------------------------------------
# Shared by every corpus module: label mapping, checks, folds, data-dir writing, train/valid split.

log = logging.getLogger("ser.corpora")
STAGING_PREFIX = ".tmp-prepare-"  # prepare_recipe_data builds its dirs here, inside the data dir


class CorpusError(ValueError):
    """A corpus release that cannot be prepared; the message names the file (and line) at fault."""


def wav_files_below(corpus_dir: str, corpus: str, expected: str) -> list[str]:
    """Every .wav below corpus_dir, sorted, skipping hidden files and folders and zip tools' __MACOSX; none is a
    CorpusError saying what was ``expected`` (the layout, with an example)."""
    found = []
    for root, dirs, files in os.walk(corpus_dir):
        dirs[:] = sorted(d for d in dirs if d != "__MACOSX" and not d.startswith("."))
        found += [os.path.join(root, name) for name in sorted(files)
                  if name.lower().endswith(".wav") and not name.startswith(".")]
    if not found:
        raise CorpusError(f"{corpus}: no .wav files below {corpus_dir}: expected {expected}")
    return found


def named_folders(corpus_dir: str, names: dict[str, str], corpus: str, expected: str) -> list[tuple[str, str]]:
    """(path, value) of each folder of ``names`` ({folder name: value}) found in corpus_dir or, where a release
    unpacks into a top folder, one level below it; none is a CorpusError saying what was ``expected``."""
    for root in [corpus_dir] + sorted(glob.glob(os.path.join(corpus_dir, "*"))):
        found = [(os.path.join(root, name), value) for name, value in names.items()
                 if os.path.isdir(os.path.join(root, name))]
        if found:
            return found
    raise CorpusError(f"{corpus}: no folder {' or '.join(names)} in {corpus_dir} or one level below it: "
                      f"expected {expected}")


def class_list(class_map: dict[str, str]) -> list[str]:
    """The classes of a {raw label: class} map, in the order they first appear (the fixed class order)."""
    return list(dict.fromkeys(class_map.values()))


def resolve_class_set(class_sets: dict[str, dict[str, str]], class_set: str, corpus: str) -> dict[str, str]:
    if class_set not in class_sets:
        raise CorpusError(f"{corpus}: unknown class set {class_set!r}; choose one of {sorted(class_sets)}")
    return class_sets[class_set]


def map_label(raw: str, class_map: dict[str, str], known_labels: Iterable[str], where: str) -> str | None:
    """Class of a raw corpus label; None for a documented label outside the class set.

    A label the corpus does not document is an error naming ``where`` (file:line or file).
    """
    if raw in class_map:
        return class_map[raw]
    if raw in known_labels:
        return None
    raise CorpusError(f"{where}: unknown label {raw!r} (known: {' '.join(sorted(known_labels))})")


def report_missing_audio(missing: list[str], strict: bool, corpus: str) -> None:
    """Labels whose audio file is absent: strict -> CorpusError listing them; lenient -> warning, skipped."""
    if not missing:
        return
    listing = "\n  ".join(missing[:50]) + (f"\n  ... and {len(missing) - 50} more" if len(missing) > 50 else "")
    message = f"{corpus}: {len(missing)} labelled utterance(s) have no audio file:\n  {listing}"
    if strict:
        raise CorpusError(message)
    log.warning("%s\n(skipped: --strict-counts false)", message)


def check_unique(utts: list[Utterance]) -> None:
    """Every utterance id once; a duplicate is an error naming both audio sources."""
    seen: dict[str, Utterance] = {}
    for utt in utts:
        if utt.utt_id in seen:
            raise CorpusError(f"utterance id {utt.utt_id} occurs twice: {seen[utt.utt_id].wav} and {utt.wav}")
        seen[utt.utt_id] = utt


def count_classes(utts: Iterable[Utterance]) -> dict[str, int]:
    return dict(sorted(Counter(utt.emotion for utt in utts).items()))


def check_counts(utts: list[Utterance], expected: dict[str, int], strict: bool, corpus: str,
                 num_speakers: int | None = None) -> None:
    """Compare per-class counts (and the number of speakers, where given) with the published ones; strict ->
    CorpusError, lenient -> warning."""
    found = count_classes(utts)
    classes = list(expected) + sorted(set(found) - set(expected))
    speakers = len({u.spk_id for u in utts})
    if all(found.get(c, 0) == expected.get(c, 0) for c in classes) and num_speakers in (None, speakers):
        return
    rows = [f"  {c:<12} found {found.get(c, 0):>6}  expected {expected.get(c, 0):>6}" for c in classes]
    rows.append(f"  {'total':<12} found {sum(found.values()):>6}  expected {sum(expected.values()):>6}")
    if num_speakers is not None:
        rows.append(f"  {'speakers':<12} found {speakers:>6}  expected {num_speakers:>6}")
    message = f"{corpus}: utterance counts differ from the published ones:\n" + "\n".join(rows)
    if strict:
        raise CorpusError(message + "\n(use --strict-counts false to go on with these counts)")
    log.warning("%s", message)


def folds_by_group(utts: list[Utterance], fold_of_speaker: Callable[[str], int], num_folds: int,
                   corpus: str) -> dict[int, list[str]]:
    """{fold (1..num_folds): sorted test speakers}, each speaker placed by fold_of_speaker.

    Every fold must receive at least one speaker of the prepared utterances.
    """
    folds: dict[int, list[str]] = {k: [] for k in range(1, num_folds + 1)}
    for spk in sorted({utt.spk_id for utt in utts}):
        fold = fold_of_speaker(spk)
        if fold not in folds:
            raise CorpusError(f"{corpus}: speaker {spk} maps to fold {fold}, outside 1..{num_folds}")
        folds[fold].append(spk)
    empty = [k for k, speakers in folds.items() if not speakers]
    if empty:
        raise CorpusError(f"{corpus}: no utterances for the test speakers of fold(s) {empty}; "
                          f"the {num_folds}-fold protocol needs every fold")
    return folds


@dataclass(frozen=True)
class FoldScheme:
    """A named rule that splits a corpus into test folds.

    ``assign(utts)`` -> {fold (from 1): test speakers} when ``unit`` is "speaker" (speaker-independent: a speaker is
    tested in one fold only), or {fold: test utterance ids} when ``unit`` is "utterance" (a speaker-dependent split,
    recorded as such in protocol.json).
    """

    description: str
    assign: Callable[[list[Utterance]], dict[int, list[str]]]
    unit: str = "speaker"

    def __post_init__(self):
        if self.unit not in ("speaker", "utterance"):
            raise ValueError(f"fold scheme unit must be 'speaker' or 'utterance', got {self.unit!r}")


def folds_from_column(utts: list[Utterance], corpus: str) -> dict[int, list[str]]:
    """{fold: test speakers} from each utterance's given fold; a speaker given two folds is an error naming both."""
    fold_of: dict[str, int] = {}
    for u in utts:
        if u.given_fold is None:
            raise CorpusError(f"{corpus}: utterance {u.utt_id} has no fold, and others have one")
        if fold_of.setdefault(u.spk_id, u.given_fold) != u.given_fold:
            raise CorpusError(f"{corpus}: speaker {u.spk_id} is in folds {fold_of[u.spk_id]} and {u.given_fold} "
                              f"(e.g. {u.utt_id}); folds must keep speakers apart")
    return {f: sorted(s for s, g in fold_of.items() if g == f) for f in sorted(set(fold_of.values()))}


def leave_one_speaker_out(utts: list[Utterance], corpus: str) -> dict[int, list[str]]:
    """One fold per speaker, in sorted speaker order: fold 1 tests the first speaker, and so on."""
    speakers = sorted({u.spk_id for u in utts})
    if len(speakers) < 2:
        raise CorpusError(f"{corpus}: leave-one-speaker-out needs at least 2 speakers, found {len(speakers)}")
    return {k: [spk] for k, spk in enumerate(speakers, start=1)}


def speaker_kfold(utts: list[Utterance], num_folds: int, corpus: str, seed: int = 0) -> dict[int, list[str]]:
    """Speaker-grouped, class-stratified k-fold: {fold: sorted test speakers}, deterministic for a seed.

    Speakers are placed one at a time, the largest first (ties in a seeded random order), each into the fold that
    keeps each class's share of the folds, and the folds' sizes, most even (the summed variance over folds of those
    shares); a fold with no speaker yet is taken while as many speakers remain as folds are empty, so every fold
    gets one. Every speaker's utterances stay in one fold.
    """
    speakers = sorted({u.spk_id for u in utts})
    if num_folds < 2:
        raise CorpusError(f"{corpus}: --num-folds must be at least 2, got {num_folds}")
    if len(speakers) < num_folds:
        raise CorpusError(f"{corpus}: {num_folds} speaker-grouped folds need at least {num_folds} speakers, "
                          f"found {len(speakers)}")
    classes = sorted({u.emotion for u in utts})
    counts = {spk: [0] * len(classes) for spk in speakers}
    for u in utts:
        counts[u.spk_id][classes.index(u.emotion)] += 1
    totals = [sum(counts[spk][c] for spk in speakers) for c in range(len(classes))]
    rng = random.Random(seed)
    order = speakers[:]
    rng.shuffle(order)

    order.sort(key=lambda spk: -sum(counts[spk]))  # stable: the seeded order breaks ties
    # The classes' counts, and the total as one more column, so that fold sizes are evened out too.
    for spk in speakers:
        counts[spk].append(sum(counts[spk]))
    totals.append(len(utts))
    fold_counts = [[0] * len(totals) for _ in range(num_folds)]
    members: list[list[str]] = [[] for _ in range(num_folds)]

    def spread(fold: int, spk: str) -> float:
        """Summed variance over classes (and the total) of each fold's share of it, were spk placed in fold."""
        total = 0.0
        for c in range(len(totals)):
            shares = [(fold_counts[f][c] + (counts[spk][c] if f == fold else 0)) / totals[c] for f in range(num_folds)]
            mean = sum(shares) / num_folds
            total += sum((x - mean) ** 2 for x in shares)
        return total

    for i, spk in enumerate(order):
        empty = [f for f in range(num_folds) if not members[f]]
        candidates = empty if len(order) - i <= len(empty) else range(num_folds)
        best = min(candidates, key=lambda f: (spread(f, spk), sum(fold_counts[f]), f))
        members[best].append(spk)
        fold_counts[best] = [a + b for a, b in zip(fold_counts[best], counts[spk])]
    return {f + 1: sorted(members[f]) for f in range(num_folds)}


def stratified_quarter(utts: list[Utterance], seed: int = 0) -> dict[int, list[str]]:
    """EmoBox's rule for a corpus it does not split by speaker: one fold testing ``int(0.25 * n)`` utterances of
    each class of n, drawn at random (seeded; a speaker-dependent split: {1: test utterance ids})."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for utt in sorted(utts, key=lambda u: u.utt_id):
        by_class[utt.emotion].append(utt.utt_id)
    rng = random.Random(seed)
    test: list[str] = []
    for emotion in sorted(by_class):
        test += rng.sample(by_class[emotion], int(len(by_class[emotion]) * 0.25))
    if not test:
        raise CorpusError("a quarter of every class is no utterance: too few utterances for a test fold")
    return {1: sorted(test)}


EMOBOX_QUARTER = FoldScheme("EmoBox's single speaker-dependent fold: a random quarter of each class (int(0.25 n)) "
                            "tested, the rest trained; the same rule and sizes as EmoBox's fold_1, not the same "
                            "utterances", stratified_quarter, unit="utterance")


def _check_wav_value(utt: Utterance) -> None:
    """A wav.scp value is the rest of its line: a path may hold spaces inside, but not at its ends, and must not
    end in '|' (that would make it a command)."""
    if utt.wav != utt.wav.strip() or "\n" in utt.wav or (os.path.isabs(utt.wav) and utt.wav.endswith("|")):
        raise CorpusError(f"utterance {utt.utt_id}: audio path {utt.wav!r} cannot be a wav.scp value (whitespace "
                          "at an end, a line break, or a final '|'); link the corpus to a plainer path")


def write_data_dir(path: str, utts: list[Utterance], utt2dur: dict[str, float] | None = None) -> None:
    """Write a Kaldi data dir: wav.scp utt2spk spk2utt utt2emo (+ spk2gender where every speaker's is known,
    utt2vad where the corpus releases dimensional labels, utt2dur)."""
    check_unique(utts)
    genders: dict[str, str] = {}
    for utt in utts:
        _check_wav_value(utt)
        if genders.setdefault(utt.spk_id, utt.gender) != utt.gender:
            raise CorpusError(f"speaker {utt.spk_id} has utterances of both genders (e.g. {utt.utt_id})")
    utt2spk = {utt.utt_id: utt.spk_id for utt in utts}
    os.makedirs(path, exist_ok=True)
    write_table(os.path.join(path, "wav.scp"), {utt.utt_id: utt.wav for utt in utts})
    write_table(os.path.join(path, "utt2spk"), utt2spk)
    write_table(os.path.join(path, "spk2utt"), utt2spk_to_spk2utt(utt2spk))
    write_table(os.path.join(path, "utt2emo"), {utt.utt_id: utt.emotion for utt in utts})
    if None not in genders.values():  # a partial spk2gender would be an inconsistent data dir
        write_table(os.path.join(path, "spk2gender"), genders)
    if utts and all(utt.vad is not None for utt in utts):  # utt2vad: "<utt> <valence> <arousal> <dominance>"
        write_table(os.path.join(path, "utt2vad"), {u.utt_id: " ".join(f"{x:g}" for x in u.vad) for u in utts})
    if utt2dur is not None:
        missing = [utt.utt_id for utt in utts if utt.utt_id not in utt2dur]
        if missing:
            raise CorpusError(f"{path}: no duration for utterance(s) {missing[:10]}")
        write_table(os.path.join(path, "utt2dur"), {u.utt_id: f"{utt2dur[u.utt_id]:.6f}" for u in utts})


def utterance_durations(utts: list[Utterance]) -> dict[str, float]:
    """{utt_id: seconds}: soundfile's header for paths, the decoded output for ``cmd |`` entries."""
    durations: dict[str, float] = {}
    for utt in utts:
        if utt.wav.endswith("|"):
            try:
                samples, rate = read_audio(utt.wav, command_allowed=True)
            except ValueError as err:
                raise CorpusError(f"utterance {utt.utt_id}: {err}") from err
            frames = samples.shape[0]
        else:
            if not os.path.isfile(utt.wav):
                raise CorpusError(f"utterance {utt.utt_id}: audio file not found: {utt.wav}")
            try:
                info = soundfile.info(utt.wav)
            except (RuntimeError, soundfile.SoundFileError) as err:
                raise CorpusError(f"utterance {utt.utt_id}: cannot read audio file {utt.wav}: {err}") from err
            frames, rate = info.frames, info.samplerate
        if frames <= 0:
            raise CorpusError(f"utterance {utt.utt_id}: audio has no samples: {utt.wav}")
        durations[utt.utt_id] = frames / rate
    return durations


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


# Speaker-held-out validation ("auto") needs at least this many speakers in a fold's training part: it holds out
# two or more of them (one of each gender where known) and leaves six or more to train on. With fewer (SAVEE's 3,
# synth's 6) validation comes from utterances instead.
MIN_SPEAKERS_FOR_SPK_VALID = 8
# Bumped whenever split_train_valid's draw changes, so that a stage-0 mark of an older split is not up to date.
VALID_SPLIT_VERSION = 3


def _largest_remainder(total: int, sizes: dict, rng: random.Random) -> dict:
    """total shared over keys in proportion to sizes, in integers: floors, then the rest by largest remainder
    (ties broken by rng). Deterministic for a given rng state and sizes."""
    whole = sum(sizes.values())
    keys = sorted(sizes)
    share = {k: total * sizes[k] // whole for k in keys}
    tie_break = {k: rng.random() for k in keys}
    by_remainder = sorted(keys, key=lambda k: (-(total * sizes[k] % whole), tie_break[k]))
    for k in by_remainder[: total - sum(share.values())]:
        share[k] += 1
    return share


def valid_mode_of_fold(mode: str, num_train_speakers: int, fold_unit: str = "speaker") -> str:
    """The validation mode a fold uses: "auto" is whole held-out speakers where the fold's training part has at
    least MIN_SPEAKERS_FOR_SPK_VALID of them and its test speakers are unseen, else utterances."""
    if mode != "auto":
        return mode
    return "spk" if fold_unit == "speaker" and num_train_speakers >= MIN_SPEAKERS_FOR_SPK_VALID else "utt"


def split_train_valid(train_utts: list[Utterance], valid_fraction: float = 0.1, mode: str = "utt",
                      seed: int = 0) -> tuple[list[Utterance], list[Utterance]]:
    """Hold out validation data from the training-fold utterances given; returns (train, valid).

    mode "utt": round(fraction * N) utterances, shared over the classes first (largest remainders, and at least one
    of every class with two or more), then each class's share over its speakers in proportion; never all of a class.
    mode "spk": whole speakers, round(fraction * speakers) of them (at least two from MIN_SPEAKERS_FOR_SPK_VALID
    speakers up, else at least one; never all), half of each gender where every speaker's is known; of the seeded
    draws, the first whose validation holds every class that two or more speakers hold, and whose training part
    keeps every class.
    Deterministic for a given seed and set of utterances (whatever their input order).
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must lie strictly between 0 and 1, got {valid_fraction}")
    utts = sorted(train_utts, key=lambda u: u.utt_id)
    rng = random.Random(seed)
    if mode == "spk":
        valid_speakers = _draw_valid_speakers(utts, valid_fraction, rng)
        return ([u for u in utts if u.spk_id not in valid_speakers],
                [u for u in utts if u.spk_id in valid_speakers])
    if mode != "utt":
        raise ValueError(f"valid mode must be 'utt' or 'spk', got {mode!r}")
    if len(utts) < 2:
        raise ValueError(f"cannot split {len(utts)} training utterance(s) into train and valid")
    total = min(max(_round_half_up(valid_fraction * len(utts)), 1), len(utts) - 1)
    by_class: dict[str, list[Utterance]] = defaultdict(list)
    for utt in utts:
        by_class[utt.emotion].append(utt)
    class_share = _largest_remainder(total, {c: len(v) for c, v in by_class.items()}, rng)
    for emotion, members in by_class.items():  # at least one of a class that can spare one, never all of it
        class_share[emotion] = min(max(class_share[emotion], 1 if len(members) >= 2 else 0), len(members) - 1)
    valid_ids = set()
    for emotion in sorted(by_class):
        by_speaker: dict[str, list[Utterance]] = defaultdict(list)
        for utt in by_class[emotion]:
            by_speaker[utt.spk_id].append(utt)
        for spk, quota in _largest_remainder(class_share[emotion], {s: len(v) for s, v in by_speaker.items()},
                                             rng).items():
            members = by_speaker[spk]
            rng.shuffle(members)
            valid_ids.update(u.utt_id for u in members[:quota])
    return [u for u in utts if u.utt_id not in valid_ids], [u for u in utts if u.utt_id in valid_ids]


SPK_VALID_DRAWS = 200  # seeded draws of validation speakers tried for one that holds every class


def _draw_valid_speakers(utts: list[Utterance], valid_fraction: float, rng: random.Random) -> set[str]:
    speakers = sorted({u.spk_id for u in utts})
    if len(speakers) < 2:
        raise ValueError(f"valid mode 'spk' needs at least 2 training speakers, found {speakers}")
    at_least = 2 if len(speakers) >= MIN_SPEAKERS_FOR_SPK_VALID else 1  # one speaker is thin evidence of one gender
    num_valid = min(max(_round_half_up(valid_fraction * len(speakers)), at_least), len(speakers) - 1)
    classes_of: dict[str, set[str]] = defaultdict(set)
    gender_of: dict[str, str | None] = {}
    for u in utts:
        classes_of[u.spk_id].add(u.emotion)
        gender_of[u.spk_id] = u.gender
    all_classes = set().union(*classes_of.values())
    shared = {c for c in all_classes if sum(c in held for held in classes_of.values()) >= 2}
    by_gender = {g: [s for s in speakers if gender_of[s] == g] for g in ("f", "m")}
    balanced = all(gender_of[s] is not None for s in speakers)

    def draw() -> set[str]:
        if not balanced:
            return set(rng.sample(speakers, num_valid))
        first, second = sorted(by_gender, key=lambda g: rng.random())  # the first takes an odd one
        num_second = min(len(by_gender[second]), num_valid // 2)  # short of one gender: the other fills in
        num_first = min(len(by_gender[first]), num_valid - num_second)
        num_second = num_valid - num_first
        return set(rng.sample(by_gender[first], num_first)) | set(rng.sample(by_gender[second], num_second))

    best, best_covered = None, -1
    for _ in range(SPK_VALID_DRAWS):
        valid = draw()
        covered = len(shared & set().union(*(classes_of[s] for s in valid)))
        keeps_all = set().union(*(classes_of[s] for s in speakers if s not in valid)) == all_classes
        if keeps_all and covered == len(shared):
            return valid
        if keeps_all and covered > best_covered:
            best, best_covered = valid, covered
    if best is None:  # no draw kept every class in training: the plain draw, as before
        best = draw()
    return best


def _check_folds(utts: list[Utterance], folds: dict[int, list[str]], unit: str = "speaker") -> None:
    """Every speaker is tested in exactly one fold; in a speaker-dependent split, an utterance in one at most."""
    names = {u.spk_id for u in utts} if unit == "speaker" else {u.utt_id for u in utts}
    what = "speaker" if unit == "speaker" else "utterance"
    fold_of: dict[str, int] = {}
    for fold, tested in folds.items():
        if not tested:
            raise CorpusError(f"fold {fold} has no test {what}s")
        for name in tested:
            if name not in names:
                raise CorpusError(f"fold {fold}: test {what} {name} is not among the prepared utterances")
            if name in fold_of:
                raise CorpusError(f"{what} {name} is tested in folds {fold_of[name]} and {fold}")
            fold_of[name] = fold
    untested = sorted(names - set(fold_of))
    if untested and unit == "speaker":  # a speaker-dependent split may hold some utterances out of every test
        raise CorpusError(f"{what}(s) {untested[:10]} are in no fold's test set")


def warn_missing_classes(folds_train: dict[int, list[Utterance]], classes: list[str], corpus: str) -> None:
    """A class absent from a fold's training set cannot be learnt for that fold: a console warning per fold."""
    for fold, train in sorted(folds_train.items()):
        missing = sorted(set(classes) - {u.emotion for u in train})
        if missing:
            log.warning("%s: fold %d: class(es) %s have no training utterance (the fold's test set cannot be "
                        "learnt for them)", corpus, fold, " ".join(missing))




def remove_done_marker(data_dir: str, name: str) -> None:
    """Delete data_dir/<name> (the mark of a complete stage 0) before anything else."""
    if os.path.lexists(os.path.join(data_dir, name)):
        os.remove(os.path.join(data_dir, name))


def prepare_recipe_data(utts: list[Utterance], folds: dict[int, list[str]], data_dir: str, *, corpus: str,
                        class_set: str, classes: list[str], fold_scheme: str, valid_fraction: float = 0.1,
                        valid_mode: str = "auto", seed: int = 0, command: str = "",
                        done_marker: str = STAGE0_DONE, fold_unit: str = "speaker") -> None:
    """Write data_dir/all and data_dir/fold<k>/{train,valid,test}, classes.txt and protocol.json.

    ``folds`` maps each fold to its test speakers, or with ``fold_unit="utterance"`` (a speaker-dependent split) to
    its test utterance ids. Validation utterances come from each fold's training part only. Every dir is validated.
    ``data_dir/<done_marker>`` is removed first (the caller writes it when everything succeeded), so an
    interrupted run never looks complete; the new dirs are built in a temporary dir and moved into place.
    protocol.json, written last, records ``command`` as prepare_command.
    """
    remove_done_marker(data_dir, done_marker)
    if not utts:
        raise CorpusError(f"{corpus}: no utterances to prepare")
    check_unique(utts)
    unknown = sorted({u.emotion for u in utts} - set(classes))
    if unknown:
        raise CorpusError(f"{corpus}: labels {unknown} are not among the classes {classes}")
    _check_folds(utts, folds, fold_unit)
    durations = utterance_durations(utts)

    os.makedirs(data_dir, exist_ok=True)
    for name in os.listdir(data_dir):  # left behind by a killed run
        if name.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(data_dir, name))
    staging = tempfile.mkdtemp(dir=data_dir, prefix=STAGING_PREFIX)
    try:
        protocol_folds = {}
        fold_train: dict[int, list[Utterance]] = {}
        write_data_dir(os.path.join(staging, "all"), utts, durations)
        with open(os.path.join(staging, "all", "classes.txt"), "w", encoding="utf-8") as f:
            f.write("".join(c + "\n" for c in classes))
        subdirs = ["all"]
        for fold in sorted(folds):
            tested = set(folds[fold])
            test = [u for u in utts if (u.spk_id if fold_unit == "speaker" else u.utt_id) in tested]
            test_ids = {u.utt_id for u in test}
            train_part = [u for u in utts if u.utt_id not in test_ids]
            fold_valid_mode = valid_mode_of_fold(valid_mode, len({u.spk_id for u in train_part}), fold_unit)
            train, valid = split_train_valid(train_part, valid_fraction, fold_valid_mode, seed)
            fold_train[fold] = train
            splits = {"train": train, "valid": valid, "test": test}
            for name, split_utts in splits.items():
                write_data_dir(os.path.join(staging, f"fold{fold}", name), split_utts, durations)
                subdirs.append(f"fold{fold}/{name}")
            protocol_folds[str(fold)] = {
                "test_speakers": sorted({u.spk_id for u in test}),
                "valid_speakers": sorted({u.spk_id for u in valid}),
                "valid_mode": fold_valid_mode,
                "counts": {name: count_classes(s) for name, s in splits.items()},
            }
        utt_valid_folds = [k for k, f in protocol_folds.items() if f["valid_mode"] == "utt"]
        if valid_mode == "auto" and utt_valid_folds:
            log.info("%s: fold(s) %s: validation from utterances of every training speaker (utt): holding out "
                     "whole speakers needs %d or more training speakers and unseen test speakers", corpus,
                     " ".join(utt_valid_folds), MIN_SPEAKERS_FOR_SPK_VALID)
        warn_missing_classes(fold_train, classes, corpus)
        for subdir in subdirs:
            validate_data_dir(os.path.join(staging, subdir), classes=classes, need_feats=False)

        # Move into place: replace all/ and every fold<k>/ (stale folds of an earlier run included).
        for name in os.listdir(data_dir):
            if name == "all" or (name.startswith("fold") and name[4:].isdigit()):
                shutil.rmtree(os.path.join(data_dir, name))
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name), os.path.join(data_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    protocol = {
        "corpus": corpus,
        "class_set": class_set,
        "classes": classes,
        "fold_scheme": fold_scheme,
        "num_folds": len(folds),
        "speaker_independent": fold_unit == "speaker",
        "folds": protocol_folds,
        "valid_source": "training-fold speakers" if fold_unit == "speaker" else "training part of each fold",
        "valid_mode": "+".join(sorted({f["valid_mode"] for f in protocol_folds.values()})),
        "valid_mode_requested": valid_mode,
        "valid_fraction": valid_fraction,
        "valid_seed": seed,
        "counts": count_classes(utts),
        "num_utterances": len(utts),
        "num_speakers": len({u.spk_id for u in utts}),
        "speaker_class_coverage": class_coverage(((u.spk_id, u.emotion) for u in utts), classes),
        "prepare_command": command,
    }
    write_json(os.path.join(data_dir, "protocol.json"), protocol)
