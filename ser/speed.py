"""Speed perturbation (Ko et al., Interspeech 2015), config key ``speed_perturb``: a list of factors such as
[0.9, 1.0, 1.1]; empty (the default) is off.

In every epoch each training utterance plays at one factor drawn uniformly from the list: its waveform resampled so
that it lasts 1/factor as long, tempo and pitch changed together, as Kaldi's ``sox speed``. The draw comes from a
generator of its own seeded by (seed, epoch, utterance), so an epoch's data are the same in a resumed run and in
DataLoader workers, and the other draws (crops, mixup) are those of a run without it.

- fbank: the perturbed fbank of every training utterance and factor is computed once, when training starts, from
  the training dir's audio (wav.scp) with the model's fbank.conf: the features stage 1 would give the perturbed
  audio. The fold's CMVN stays that of the unperturbed training features, what the model meets at test time:
  no statistics but the training fold's enter, and validation and test are never perturbed.
- waveform front-ends: each drawn example is resampled when it is made.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

from ser.audio import AudioError, load_mono, resample
from ser.datadir import DataDirError, read_table
from ser.features import compute_fbank, read_fbank_conf


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """samples played ``factor`` times as fast: polyphase resampling to about len / factor samples (the factor as
    a ratio of small integers, e.g. 0.9 = 9/10)."""
    if factor == 1.0:
        return samples
    ratio = Fraction(factor).limit_denominator(100)
    return resample(samples, ratio.numerator, ratio.denominator)


class SpeedPerturbation:
    """The example of utterance ``index`` at the factor drawn for it; ``tables``: {factor: the perturbed inputs of
    every utterance} where they are precomputed (fbank), else each waveform is resampled when drawn."""

    def __init__(self, factors: list[float], tables: dict[float, list[np.ndarray]] | None = None):
        self.factors, self.tables = [float(f) for f in factors], tables

    def factor(self, seed: int, epoch: int, index: int) -> float:
        rng = np.random.default_rng([seed, epoch, 2, int(index)])
        return self.factors[int(rng.integers(0, len(self.factors)))]

    def __call__(self, inputs: np.ndarray, index: int, seed: int, epoch: int) -> np.ndarray:
        factor = self.factor(seed, epoch, index)
        if factor == 1.0:
            return inputs
        if self.tables is not None:
            return self.tables[factor][index]
        return change_speed(inputs, factor)


def fbank_tables(train_dir: str, keys: list[str], factors: list[float], fbank_conf: str) -> dict:
    """{factor: [fbank of each utterance of ``keys`` played at factor]} for every factor but 1, from train_dir's
    wav.scp and the fbank.conf of stage 1; an unreadable audio file is a DataDirError naming wav.scp's line."""
    opts = read_fbank_conf(fbank_conf)
    scp = os.path.join(train_dir, "wav.scp")
    if os.path.isfile(os.path.join(train_dir, "segments")):
        raise DataDirError(f"{train_dir}: speed_perturb reads whole recordings of wav.scp; this dir has segments")
    entries = read_table(scp, min_fields=2)
    lines = {utt: lineno for lineno, utt in enumerate(entries, 1)}
    channel = opts.get("channel", -1)
    tables: dict[float, list[np.ndarray]] = {f: [] for f in factors if f != 1.0}
    for key in keys:
        if key not in entries:
            raise DataDirError(f"{scp}: no audio for {key} (speed_perturb reads the training utterances' audio)")
        try:
            samples = load_mono(entries[key], int(opts["sample-frequency"]), None if channel < 0 else channel,
                                command_allowed=True)
        except AudioError as e:
            raise DataDirError(f"{scp}:{lines[key]}: {e}") from None
        for factor, table in tables.items():
            table.append(compute_fbank(change_speed(samples, factor), opts))
    return tables
