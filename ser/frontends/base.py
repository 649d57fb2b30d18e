"""The front-end interface: everything the trainer, inference and plotting need to know about what a model reads.

A front-end turns a stored utterance into the input of a model. One subclass per front-end owns:
- its options (``defaults``, ``rules``, ``check``), which ser.frontends.FRONTENDS resolves;
- how its inputs are loaded from a data dir (``load``) and their digest (``digest``), which names a run's data;
- inputs per second (``inputs_per_second``: crops are given in seconds) and the augmentation domain;
- normalisation: the training fold's statistics (``fold_normaliser``) or per-speaker ones (``speaker_normaliser``);
- how it wraps an encoder into a model (``wrap``) and the encoder input layer it suits (``default_input_layer``);
- the model input for one audio file (``inputs_of_wav``) and a picture of it (``picture_of_wav``);
- what the recipe does for it: fold CMVN statistics (``uses_fold_cmvn``), a preparation step before training
  (``caches_frames``: ser.bin.cache_ssl caches its frames once) and export (``exportable``: ONNX or TorchScript,
  ser.export).
Callers ask the front-end and never compare its name.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np
from torch import nn

from ser.dataset import LabelledSet
from ser.speaker_norm import SpeakerNormaliser, speaker_statistics


class Frontend:
    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]
    rules: ClassVar[dict[str, tuple[Callable[[Any], bool], str]]]  # key -> (is valid, what is expected)
    inputs_per_second: ClassVar[int]  # frames (fbank) or samples (waveforms) per second of audio
    augment_domain: ClassVar[str]  # what the mixup acts on: "fbank", "wave" or "frames" (ser.augment)
    default_input_layer: ClassVar[str]  # what encoder_conf.input_layer "auto" means (ser.models.subsampling)
    uses_fold_cmvn: ClassVar[bool] = False  # normalised with the training fold's global CMVN statistics
    supports_speaker_norm: ClassVar[bool] = False  # its inputs are frames that per-speaker CMVN can normalise
    # A preparation step: its frames of data/all are computed once (ser.bin.cache_ssl) before training, and stages
    # 2, 3 and 5 of ser.sh read the cache's data dirs instead of the fbank dump's.
    caches_frames: ClassVar[bool] = False
    exportable: ClassVar[bool] = False  # ser.export writes its model as ONNX (waveform in) or TorchScript (fbank in)

    def __init__(self, conf: dict):
        """conf: a frontend_conf resolved by FRONTENDS (ser.frontends), trusted as it is."""
        self.conf = conf

    @classmethod
    def from_conf(cls, **conf) -> "Frontend":
        return cls(conf)

    @staticmethod
    def check(conf: dict) -> None:
        """Checks across values of a frontend_conf, after each value passed its rule (may normalise in place)."""

    def load(self, data_dir: str, classes: list[str], lazy: bool = False) -> LabelledSet:
        """The labelled inputs of a data dir. lazy: a front-end that reads audio may read each utterance when it
        is used (training's DataLoader workers) instead of now; others load everything."""
        raise NotImplementedError

    def digest(self, data_dir: str) -> str:
        """A short digest of what training reads from a data dir."""
        raise NotImplementedError

    def fold_normaliser(self, cmvn_path: str | None):
        """The normaliser built from the training fold's statistics (None when the inputs need none)."""
        return None

    def speaker_normaliser(self, sets: list[LabelledSet]) -> SpeakerNormaliser:
        """Per-speaker statistics over every frame of ``sets`` (each speaker's own utterances only)."""
        if not self.supports_speaker_norm:
            raise ValueError(f"speaker_norm needs a front-end with frame features; {self.name} has none")
        return SpeakerNormaliser(speaker_statistics([f for s in sets for f in s.feats],
                                                    [spk for s in sets for spk in s.speakers]))

    def wrap(self, make_encoder: Callable[[int], nn.Module], feat_dim: int | None) -> nn.Module:
        """The model: the encoder that ``make_encoder(frame_dim)`` builds, behind this front-end. ``feat_dim`` is
        the stored features' dimension (None where the front-end computes its own frames)."""
        raise NotImplementedError

    def inputs_of_wav(self, wav: str, model_dir: str, normaliser) -> np.ndarray:
        """What the model of ``model_dir`` reads for one audio file, computed as stage 1 did for its data."""
        raise NotImplementedError

    def audio_rate(self, model_dir: str) -> int:
        """The sample rate (Hz) the model of ``model_dir`` reads audio at."""
        raise NotImplementedError

    def inputs_of_samples(self, samples: np.ndarray, model_dir: str, normaliser) -> np.ndarray:
        """What the model reads for mono samples at ``audio_rate``, in the int16 range."""
        raise NotImplementedError

    def picture_of_wav(self, wav: str, model_dir: str) -> tuple[np.ndarray, float]:
        """(T, D) features to draw for one audio file, and their frame shift in seconds."""
        raise ValueError(f"the {self.name} front-end has no spectrogram to draw; pictures are drawn for fbank models")
