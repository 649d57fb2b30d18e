"""Using trained models from Python: ``EmotionRecognizer``.

    from ser import EmotionRecognizer
    recognizer = EmotionRecognizer.from_dir("egs/ravdess/exp/train_fusion")   # every fold and seed: an ensemble
    recognizer.classify_file("some.wav")          # Prediction(label='hap', posteriors={'ang': 0.01, ...}, ...)
    recognizer.classify_batch([wave1, wave2], sample_rate=16000)

``from_dir`` takes one training run (``exp/<tag>/seed<s>/fold<k>``, or a model dir packed by ``ser.bin.pack_model``)
or a whole experiment (``exp/<tag>``): then every fold and seed is a member and their posteriors are averaged.
Each fold's model never saw its own test speakers, and none of them saw the audio given here, so the ensemble is
the recipe's best use of what it trained (the folds differ only in which speakers they held out).

Audio is read as stage 1 reads it: any sample rate and channel count (resampled, channels averaged). In-memory
waveforms are float arrays in [-1, 1] (as soundfile and torchaudio give them) or int16 arrays, mono (N,) or
(N, C).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ser.infer import TrainedModel, load_trained
from ser.inputs import standardise_utterance, uses_functionals
from ser.rundir import model_dirs  # noqa: F401 (re-exported)

MIN_SECONDS = 0.1


@dataclass
class Prediction:
    label: str
    posteriors: dict[str, float]
    models: int  # how many models' posteriors were averaged
    source: str | None = None  # the file, where one was given


@dataclass
class EmotionRecognizer:
    members: list[TrainedModel]
    source: str
    classes: list[str] = field(init=False)

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

    @classmethod
    def from_dir(cls, path: str, device: str = "cpu") -> "EmotionRecognizer":
        """A run, an experiment, or a model archive (.tar.gz written by ``python -m ser.bin.pack_model``)."""
        if os.path.isfile(path) and path.endswith((".tar.gz", ".tgz")):
            import tempfile

            from ser.packing import unpack

            # Unpacked into a temporary dir that lives as long as the recognizer (its runs' files are read there);
            # the runs are those the manifest names.
            unpacked = tempfile.TemporaryDirectory(prefix="ser-model-")
            recognizer = cls([load_trained(d, device) for d in unpack(path, unpacked.name)], path)
            recognizer._unpacked = unpacked
            return recognizer
        return cls([load_trained(d, device) for d in model_dirs(path)], path)

    @property
    def description(self) -> str:
        if len(self.members) == 1:
            return f"one model: {self.members[0].model_dir}"
        return (f"an ensemble of {len(self.members)} models (every fold and seed of {self.source}; their posteriors "
                "are averaged)")

    def classify_file(self, path: str) -> Prediction:
        from ser.audio import load_mono

        frames_of = lambda m: m.frontend.inputs_of_wav(path, m.model_dir, m.normaliser)  # noqa: E731
        return self._classify(frames_of, lambda rate: load_mono(path, rate, None, MIN_SECONDS), path)

    def classify_files(self, paths: list[str]) -> list[Prediction]:
        return [self.classify_file(p) for p in paths]

    def classify_batch(self, waveforms, sample_rate: int) -> list[Prediction]:
        from ser.audio import AudioError, resample

        predictions = []
        for index, wave in enumerate(waveforms):
            mono = int16_range_mono(wave, f"waveform {index}")
            if mono.shape[0] < MIN_SECONDS * sample_rate:
                raise AudioError(f"waveform {index}: {mono.shape[0]} samples, shorter than {MIN_SECONDS} s")
            posteriors = self.posteriors_of_samples(lambda rate, mono=mono: resample(mono, sample_rate, rate))
            predictions.append(self._prediction(posteriors, None))
        return predictions

    def _classify(self, frames_of, samples_at, source: str | None) -> Prediction:
        return self._prediction(self.member_posteriors(frames_of, samples_at), source)

    def _prediction(self, member_posteriors: np.ndarray, source: str | None) -> Prediction:
        mean = member_posteriors.mean(axis=0)
        return Prediction(self.classes[int(mean.argmax())], {c: float(p) for c, p in zip(self.classes, mean)},
                          len(self.members), source)

    def posteriors_of_samples(self, samples_at, log: bool = False) -> np.ndarray:
        """(members, classes) posteriors (or with ``log`` their float64 logarithms) of one utterance; samples_at(rate)
        gives its mono samples at a rate."""
        return self.member_posteriors(lambda m: m.frontend.inputs_of_samples(
            samples_at(m.frontend.audio_rate(m.model_dir)), m.model_dir, m.normaliser), samples_at, log)

    @torch.no_grad()
    def member_posteriors(self, frames_of, samples_at, log: bool = False) -> np.ndarray:
        """(members, classes): frames_of(member) -> its model input; samples_at(rate) -> mono samples (for the
        functionals, computed once for all members)."""
        functionals: dict[str, np.ndarray] = {}  # raw functionals per feature set, computed once for all members
        posteriors = []
        for m in self.members:
            frames = torch.from_numpy(np.ascontiguousarray(frames_of(m)))[None]
            utterance = None
            if uses_functionals(m.config):
                feature_set = m.config["functionals"]
                if feature_set not in functionals:
                    from ser.functionals import SAMPLE_RATE, compute_functionals, make_extractor

                    functionals[feature_set] = compute_functionals(make_extractor(feature_set), samples_at(SAMPLE_RATE))
                utterance = torch.from_numpy(standardise_utterance(m.model_dir, functionals[feature_set]))
            device = next(m.model.parameters()).device
            out = m.model(frames.to(device), torch.tensor([frames.shape[1]], device=device),
                          None if utterance is None else utterance.to(device))
            if log:  # log posteriors in float64: a subset of classes renormalises without underflow
                posteriors.append(torch.log_softmax(out.logits.double(), -1)[0].cpu().numpy())
            else:
                posteriors.append(torch.softmax(out.logits.float(), -1)[0].cpu().numpy())
        return np.stack(posteriors)


def int16_range_mono(wave, name: str) -> np.ndarray:
    """(N,) or (N, C) float in [-1, 1] or int16 -> (N,) float32 in the int16 range (ser's audio convention)."""
    from ser.audio import INT16_SCALE, AudioError, to_mono

    x = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    integer = np.issubdtype(x.dtype, np.integer)
    if x.ndim == 2:
        x = to_mono(x, None)  # channels averaged, as stage 1 does
    if x.ndim != 1 or x.shape[0] == 0:
        raise AudioError(f"{name}: expected samples of shape (N,) or (N, C), got {x.shape}")
    if integer:
        return x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{name}: samples are not finite")
    if np.abs(x).max() > 1.0 + 1e-6:
        raise AudioError(f"{name}: float samples must lie in [-1, 1] (got a peak of {np.abs(x).max():.3g}); "
                         "pass int16 arrays for the int16 range")
    return (x * INT16_SCALE).astype(np.float32)
