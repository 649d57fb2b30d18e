"""Per-speaker normalisation: a protocol choice, ``none`` (the default) or ``cmvn``.

``cmvn`` standardises every feature dimension with the mean and standard deviation of all of one speaker's
feature rows (fbank frames, or one functionals vector per utterance), as Kaldi's per-speaker CMVN does. It uses
no labels, but it does use the audio of the test speakers at test time: the statistics of a test speaker come
from that speaker's test utterances, those of a training speaker from the training fold's own utterances. It is
therefore a transductive protocol, reported apart from ``none`` (results.json carries it in its protocol).

It assumes that each speaker covers the classes about evenly (RAVDESS's actors do): a speaker who holds one emotion
loses it with the normalisation (URDU, per-speaker z-normalised ComParE + LR: 23.7 UA against 48.7 without, below
chance). Stage 0 records how evenly the speakers cover the classes (``class_coverage``, protocol.json's
``speaker_class_coverage``) and ``--speaker-norm`` warns where it is below COVERAGE_THRESHOLD.
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from typing import Iterable

import numpy as np

from ser.datadir import DataDirError, read_table
from ser.registry import SPEAKER_NORMS as REGISTRY
from ser.registry import ConfigError

SPEAKER_NORMS = ("none", "cmvn")


def _fits(config: dict, frontend) -> None:
    if not frontend.supports_speaker_norm:
        raise ConfigError(f"speaker_norm: {config['speaker_norm']} needs a front-end with frame features such as "
                          f"fbank ({config['frontend']} normalises each utterance itself)")


REGISTRY.register("none", None, {}, {})
REGISTRY.register("cmvn", None, {}, {}, fits=_fits)
STD_FLOOR = 1.0e-5
# Coverage below this warns under --speaker-norm. Measured: RAVDESS 0.99 (every actor holds all 8 classes), URDU 0.04
# (26 of 29 speakers hold one emotion); a speaker spread evenly over half of K classes scores log(K/2)/log(K), 0.5
# for 4 classes.
COVERAGE_THRESHOLD = 0.5
COVERAGE_RULE = ("mean over speakers of the normalised entropy of the speaker's class distribution, "
                 "-sum_k p_k log p_k / log K over the K classes (1: every class equally often; 0: one class)")


def class_coverage(speaker_labels: Iterable[tuple[str, str]], classes: list[str]) -> dict:
    """How evenly the speakers cover the classes, from (speaker, class) pairs: the mean over speakers of their
    normalised class entropy (COVERAGE_RULE), and the share of speakers holding every class."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for speaker, label in speaker_labels:
        counts[speaker][label] += 1
    entropies = []
    for per_class in counts.values():
        n = sum(per_class.values())
        entropy = -sum(c / n * math.log(c / n) for c in per_class.values())
        entropies.append(entropy / math.log(len(classes)) if len(classes) > 1 else 1.0)
    every = sum(1 for per_class in counts.values() if set(classes) <= set(per_class))
    return {"mean_normalised_entropy": round(sum(entropies) / max(len(entropies), 1), 4),
            "speakers_with_every_class": round(every / max(len(counts), 1), 4),
            "num_speakers": len(counts), "rule": COVERAGE_RULE, "warn_below": COVERAGE_THRESHOLD}


def coverage_warning(coverage: dict, corpus: str) -> str | None:
    """The warning --speaker-norm gives for a corpus whose speakers cover the classes poorly, else None."""
    value = coverage["mean_normalised_entropy"]
    if value >= COVERAGE_THRESHOLD:
        return None
    return (f"warning: --speaker-norm on {corpus}: its speakers cover the classes poorly (class coverage {value:.2f} "
            f"< {COVERAGE_THRESHOLD}; {100 * coverage['speakers_with_every_class']:.0f}% of its "
            f"{coverage['num_speakers']} speakers hold every class): per-speaker normalisation removes the emotion "
            "with the speaker (protocol.json: speaker_class_coverage)")


def read_speakers(data_dir: str, keys: list[str]) -> list[str]:
    """The speaker of each utterance in ``keys``, from the data dir's utt2spk."""
    path = os.path.join(data_dir, "utt2spk")
    utt2spk = read_table(path, min_fields=2, max_fields=2)
    missing = [k for k in keys if k not in utt2spk]
    if missing:
        raise DataDirError(f"{path}: no speaker for {missing[0]} (and {len(missing) - 1} more)")
    return [utt2spk[k] for k in keys]


def speaker_statistics(rows: list[np.ndarray], speakers: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{speaker: (mean, std)} over every row (frame or vector) of that speaker's (T_i, D) matrices; float64
    accumulation, std floored at STD_FLOOR."""
    sums: dict[str, list] = {}
    for mat, spk in zip(rows, speakers):
        mat = np.asarray(mat, dtype=np.float64)
        acc = sums.setdefault(spk, [0, np.zeros(mat.shape[1]), np.zeros(mat.shape[1])])
        acc[0] += mat.shape[0]
        acc[1] += mat.sum(0)
        acc[2] += (mat * mat).sum(0)
    stats = {}
    for spk, (n, s1, s2) in sums.items():
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
        stats[spk] = (mean, np.maximum(np.sqrt(var), STD_FLOOR))
    return stats


class SpeakerNormaliser:
    """x -> (x - mean_spk) / std_spk with the statistics of the utterance's speaker."""

    def __init__(self, stats: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.stats = {spk: (m.astype(np.float32), (1.0 / s).astype(np.float32)) for spk, (m, s) in stats.items()}

    @property
    def speakers(self) -> list[str]:
        return sorted(self.stats)

    def __call__(self, x: np.ndarray, speaker: str) -> np.ndarray:
        if speaker not in self.stats:
            raise KeyError(f"no normalisation statistics for speaker {speaker!r}")
        mean, inv_std = self.stats[speaker]
        return ((x - mean) * inv_std).astype(np.float32)


def speaker_normalise_rows(x: np.ndarray, speakers: list[str]) -> np.ndarray:
    """Every row of x (N, F) z-normalised with the statistics of its speaker's rows in x (and nothing else)."""
    norm = SpeakerNormaliser(speaker_statistics(list(x[:, None, :]), speakers))
    return np.concatenate([norm(row[None], spk) for row, spk in zip(x, speakers)])
