"""Using trained models from Python: ``EmotionRecognizer``.

    from ser import EmotionRecognizer
    recognizer = EmotionRecognizer.from_dir("egs/ravdess/exp/train_fusion")   # every fold and seed: an ensemble
    recognizer.classify_file("some.wav")          # Prediction(label='hap', posteriors={'ang': 0.01, ...}, ...)
    recognizer.classify_batch([wave1, wave2], sample_rate=16000)   # a Prediction or a Failure per item
    recognizer.classify_files(paths)              # the same per file: a bad file does not stop the others
    recognizer.timeline("long.wav", 4.0, 2.0)     # Timeline: windows of 4 s every 2 s, each classified alone

``from_dir`` takes one training run (``exp/<tag>/seed<s>/fold<k>``, or a model dir packed by ``ser.bin.pack_model``)
or a whole experiment (``exp/<tag>``): then every fold and seed is a member and their posteriors are averaged.
Each fold's model never saw its own test speakers, and none of them saw the audio given here, so the ensemble is
the recipe's best use of what it trained (the folds differ only in which speakers they held out).

Audio is read as stage 1 reads it: any sample rate and channel count (resampled, channels averaged). In-memory
waveforms are float arrays in [-1, 1] (as soundfile and torchaudio give them) or int16 arrays, mono (N,) or
(N, C). Audio is read a window at a time (see WHOLE_FILE_MAX_SECONDS) and classified in batches, so memory does
not grow with a recording's length.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ser.audio import INT16_SCALE, AudioProblem, Recording, array_recording, open_recording, resample, to_mono
from ser.card import read_card, synthetic_warning
from ser.dataset import pad_batch
from ser.infer import TrainedModel, load_trained
from ser.inputs import standardise_utterance, uses_functionals
from ser.rundir import model_dirs  # noqa: F401 (re-exported)

log = logging.getLogger("ser")

MIN_SECONDS = 0.1
# A whole-file decision over audio longer than this is the duration-weighted mean of the posteriors of consecutive
# windows of this length: memory stays bounded whatever the length (attention never spans more than a window).
WHOLE_FILE_MAX_SECONDS = 30.0
BATCH_SIZE = 16  # windows (utterances) per forward pass
BATCH_SECONDS = 60.0  # and at most this much audio in one pass (two windows of WHOLE_FILE_MAX_SECONDS)


@dataclass
class Prediction:
    label: str
    posteriors: dict[str, float]
    models: int  # how many models' posteriors were averaged
    source: str | None = None  # the file, where one was given
    windows: int = 1  # audio over WHOLE_FILE_MAX_SECONDS: the windows pooled
    ok = True


@dataclass
class Failure:
    """An input that could not be classified: ``reason`` in a few words (see ser.audio.AudioProblem)."""
    source: str
    reason: str
    message: str
    ok = False

    def __str__(self) -> str:
        return self.message


@dataclass
class Window:
    start: float  # seconds
    end: float
    label: str
    posteriors: dict[str, float]


@dataclass
class Timeline:
    source: str
    segment: float
    hop: float
    windows: list[Window]
    models: int
    ok = True


def windows_of(frames: int, rate: int, segment: float, hop: float) -> list[tuple[int, int]]:
    """Sample ranges [first, last) of windows of ``segment`` s every ``hop`` s until one reaches the end (the last
    may be shorter); windows under MIN_SECONDS are left out unless the audio has no other."""
    if not (segment > 0 and hop > 0):
        raise ValueError(f"segment and hop must be positive seconds, got {segment} and {hop}")
    length = max(1, round(segment * rate))
    ranges = []
    k = 0
    while True:
        first = round(k * hop * rate)
        if first >= frames:
            break
        last = min(first + length, frames)
        if not ranges or last - first >= MIN_SECONDS * rate:
            ranges.append((first, last))
        if last >= frames:
            break
        k += 1
    return ranges


@dataclass
class EmotionRecognizer:
    members: list[TrainedModel]
    source: str
    classes: list[str] = field(init=False)
    batch_size: int = BATCH_SIZE
    card: dict = field(default_factory=dict)  # the model card (ser.card), read by from_dir

    def __post_init__(self):
        if not self.members:
            raise ValueError(f"{self.source}: no trained models")
        self.classes = self.members[0].classes
        for m in self.members[1:]:
            if m.classes != self.classes:
                raise ValueError(f"{m.model_dir}: classes {m.classes} differ from {self.members[0].model_dir}'s "
                                 f"{self.classes}; an ensemble needs one class set")
        for m in self.members:
            if m.config["speaker_norm"] != "none":
                raise ValueError(f"{m.model_dir}: the model was trained with per-speaker normalisation, which needs "
                                 "all of a speaker's utterances: classify a data dir with utt2spk "
                                 "(python -m ser.bin.infer)")

    def __repr__(self) -> str:
        m = self.members[0]
        return (f"EmotionRecognizer({self.source!r}: {len(self.members)} model(s), frontend {m.config['frontend']}, "
                f"encoder {m.config['encoder']}, functionals {m.config['functionals']},\n"
                f"  classes {' '.join(self.classes)}; card: {self.card.get('summary', 'none')})")

    @classmethod
    def from_dir(cls, path: str, device: str = "cpu") -> "EmotionRecognizer":
        """A run, an experiment, or a model archive (.tar.gz written by ``python -m ser.bin.pack_model``)."""
        unpacked = None
        model_path = path
        if os.path.isfile(path) and path.endswith((".tar.gz", ".tgz")):
            import tempfile

            from ser.packing import ROOT as ARCHIVE_ROOT
            from ser.packing import unpack

            # Unpacked into a temporary dir that lives as long as the recognizer (its runs' files are read there);
            # the runs are those the manifest names.
            unpacked = tempfile.TemporaryDirectory(prefix="ser-model-")
            runs = unpack(path, unpacked.name)
            model_path = os.path.join(unpacked.name, ARCHIVE_ROOT)
        else:
            runs = model_dirs(path)
        recognizer = cls([load_trained(d, device) for d in runs], path)
        recognizer._unpacked = unpacked
        recognizer.card = read_card(model_path)
        warning = synthetic_warning(recognizer.card, path)
        if warning:
            log.warning(warning)
        return recognizer

    @property
    def description(self) -> str:
        if len(self.members) == 1:
            return f"one model: {self.members[0].model_dir}"
        return (f"an ensemble of {len(self.members)} models (every fold and seed of {self.source}; their posteriors "
                "are averaged)")

    # -------------------------------------------------------------------------------- whole-file decisions

    def classify_file(self, path: str) -> Prediction:
        """One file's prediction; a file that cannot be classified is an AudioError naming it."""
        result = self.classify_files([path])[0]
        if not result.ok:
            raise AudioProblem(result.reason, result.message)
        return result

    def classify_files(self, paths: list[str]) -> list[Prediction | Failure]:
        """A prediction per file, in order; a file that cannot be classified is a Failure (the rest go on)."""
        return self._classify([_opened(p) for p in paths])

    def classify_batch(self, waveforms, sample_rate: int) -> list[Prediction | Failure]:
        """A prediction per in-memory waveform (``waveform <i>``), in order; a bad one is a Failure."""
        return self._classify([_in_memory(f"waveform {i}", w, sample_rate) for i, w in enumerate(waveforms)])

    def _classify(self, recordings: list[Recording | Failure]) -> list[Prediction | Failure]:
        plans = [r if isinstance(r, Failure) else
                 _plan(r, WHOLE_FILE_MAX_SECONDS, WHOLE_FILE_MAX_SECONDS) for r in recordings]
        results = self._run(plans)
        out = []
        for recording, plan, result in zip(recordings, plans, results):
            if isinstance(result, Failure):
                out.append(result)
                continue
            weights = np.array([last - first for first, last in plan[1]], dtype=np.float64)
            mean = (result.mean(axis=1) * weights[:, None]).sum(axis=0) / weights.sum()
            out.append(Prediction(self.classes[int(mean.argmax())], self._named(mean), len(self.members),
                                  recording.name, len(weights)))
        return out

    # -------------------------------------------------------------------------------- timelines

    def timeline(self, path: str, segment: float, hop: float | None = None) -> Timeline | Failure:
        """Windows of ``segment`` s every ``hop`` s (default: segment) of one file, each classified on its own."""
        return self.timelines([path], segment, hop)[0]

    def timelines(self, paths: list[str], segment: float, hop: float | None = None) -> list[Timeline | Failure]:
        return self._timelines([_opened(p) for p in paths], segment, hop or segment)

    def timeline_of_waveform(self, wave, sample_rate: int, segment: float, hop: float | None = None
                             ) -> Timeline | Failure:
        return self._timelines([_in_memory("waveform 0", wave, sample_rate)], segment, hop or segment)[0]

    def _timelines(self, recordings, segment: float, hop: float) -> list[Timeline | Failure]:
        windows_of(1, 1, segment, hop)  # the values checked before any audio is read
        plans = [r if isinstance(r, Failure) else _plan(r, segment, hop) for r in recordings]
        out = []
        for plan, result in zip(plans, self._run(plans)):
            if isinstance(result, Failure):
                out.append(result)
                continue
            recording, ranges = plan
            means = result.mean(axis=1)
            out.append(Timeline(recording.name, segment, hop, [
                Window(first / recording.rate, last / recording.rate, self.classes[int(p.argmax())], self._named(p))
                for (first, last), p in zip(ranges, means)], len(self.members)))
        return out

    # -------------------------------------------------------------------------------- the batched core

    def _named(self, posteriors: np.ndarray) -> dict[str, float]:
        return {c: float(p) for c, p in zip(self.classes, posteriors)}

    def _run(self, plans) -> list[np.ndarray | Failure]:
        """Per plan (recording, window ranges) or Failure: (windows, members, classes) posteriors or a Failure.
        Windows of every recording go through the models in batches of ``batch_size`` (and BATCH_SECONDS)."""
        results: list = [p if isinstance(p, Failure) else [None] * len(p[1]) for p in plans]
        pending: list[tuple[int, int, Recording, int, int]] = []
        seconds = 0.0

        def flush():
            for (plan_index, window, *_), got in zip(pending, self._windows_posteriors(
                    [(recording, first, last) for _, _, recording, first, last in pending])):
                if isinstance(results[plan_index], Failure):
                    continue
                if isinstance(got, Failure):
                    results[plan_index] = got
                else:
                    results[plan_index][window] = got
            pending.clear()

        for plan_index, plan in enumerate(plans):
            if isinstance(plan, Failure):
                continue
            recording, ranges = plan
            for window, (first, last) in enumerate(ranges):
                length = (last - first) / recording.rate
                if pending and (len(pending) >= self.batch_size or seconds + length > BATCH_SECONDS):
                    flush()
                    seconds = 0.0
                pending.append((plan_index, window, recording, first, last))
                seconds += length
        if pending:
            flush()
        return [r if isinstance(r, Failure) else np.stack(r) for r in results]

    def _windows_posteriors(self, windows: list[tuple[Recording, int, int]]) -> list[np.ndarray | Failure]:
        """(members, classes) posteriors of each window [first, last) of a recording, or a Failure."""
        samples: list[dict[int, np.ndarray] | Failure] = []
        rates = {m.frontend.audio_rate(m.model_dir) for m in self.members}
        if any(uses_functionals(m.config) for m in self.members):
            from ser.functionals import SAMPLE_RATE

            rates.add(SAMPLE_RATE)
        for recording, first, last in windows:
            try:
                native = recording.read(first, last)
                samples.append({rate: resample(native, recording.rate, rate) for rate in rates})
            except AudioProblem as e:
                samples.append(Failure(recording.name, e.reason, str(e)))
        good = [i for i, s in enumerate(samples) if not isinstance(s, Failure)]
        out: list = list(samples)
        if good:
            posteriors = self._posteriors([samples[i] for i in good])
            for k, i in enumerate(good):
                out[i] = posteriors[k]
        return out

    def posteriors_of_samples(self, samples_at, log: bool = False) -> np.ndarray:
        """(members, classes) posteriors (or with ``log`` their float64 logarithms) of one utterance; samples_at(rate)
        gives its mono samples at a rate."""
        return self._posteriors([_Lazy(samples_at)], log)[0]

    @torch.no_grad()
    def _posteriors(self, batch: list, log: bool = False) -> np.ndarray:
        """(B, members, classes): ``batch`` items map a sample rate to mono samples at that rate."""
        functionals: dict[str, np.ndarray] = {}  # raw functionals per feature set, computed once for all members
        posteriors = []
        for m in self.members:
            rate = m.frontend.audio_rate(m.model_dir)
            frames, lengths = pad_batch([np.ascontiguousarray(
                m.frontend.inputs_of_samples(item[rate], m.model_dir, m.normaliser)) for item in batch])
            utterance = None
            if uses_functionals(m.config):
                feature_set = m.config["functionals"]
                if feature_set not in functionals:
                    from ser.functionals import SAMPLE_RATE, compute_functionals, make_extractor

                    extractor = make_extractor(feature_set)
                    functionals[feature_set] = np.concatenate(
                        [compute_functionals(extractor, item[SAMPLE_RATE]) for item in batch])
                utterance = torch.from_numpy(standardise_utterance(m.model_dir, functionals[feature_set]))
            device = next(m.model.parameters()).device
            out = m.model(frames.to(device), lengths.to(device), None if utterance is None else utterance.to(device))
            if log:  # log posteriors in float64: a subset of classes renormalises without underflow
                posteriors.append(torch.log_softmax(out.logits.double(), -1).cpu().numpy())
            else:
                posteriors.append(torch.softmax(out.logits.float(), -1).cpu().numpy())
        return np.stack(posteriors, axis=1)


class _Lazy:
    """samples_at(rate) as a mapping from rate to samples (computed when first asked)."""

    def __init__(self, samples_at):
        self.samples_at, self.cache = samples_at, {}

    def __getitem__(self, rate: int) -> np.ndarray:
        if rate not in self.cache:
            self.cache[rate] = self.samples_at(rate)
        return self.cache[rate]


def _opened(path: str) -> Recording | Failure:
    try:
        return open_recording(path)
    except AudioProblem as e:
        return Failure(path, e.reason, str(e))


def _in_memory(name: str, wave, rate: int) -> Recording | Failure:
    try:
        return array_recording(name, int16_range_mono(wave, name), rate)
    except AudioProblem as e:
        return Failure(name, e.reason, str(e))


def _plan(recording: Recording, segment: float, hop: float):
    """(recording, window ranges), or a Failure when the audio is shorter than MIN_SECONDS."""
    if recording.seconds < MIN_SECONDS:
        return Failure(recording.name, "too short", f"{recording.name}: too short ({recording.seconds:.3f} s, "
                                                   f"under {MIN_SECONDS} s)")
    return recording, windows_of(recording.frames, recording.rate, segment, hop)


def int16_range_mono(wave, name: str) -> np.ndarray:
    """(N,) or (N, C) float in [-1, 1] or int16 -> (N,) float32 in the int16 range (ser's audio convention)."""
    x = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    integer = np.issubdtype(x.dtype, np.integer)
    if x.ndim == 2:
        x = to_mono(x, None)  # channels averaged, as stage 1 does
    if x.ndim != 1:
        raise AudioProblem("not audio", f"{name}: not audio (expected samples of shape (N,) or (N, C), got "
                                        f"{np.shape(wave)})")
    if x.shape[0] == 0:
        raise AudioProblem("no samples", f"{name}: no samples")
    if integer:
        return x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise AudioProblem("not finite", f"{name}: NaN or infinite samples")
    if np.abs(x).max() > 1.0 + 1e-6:
        raise AudioProblem("out of range", f"{name}: float samples must lie in [-1, 1] (got a peak of "
                                           f"{np.abs(x).max():.3g}); pass int16 arrays for the int16 range")
    return (x * INT16_SCALE).astype(np.float32)
