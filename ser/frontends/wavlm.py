"""``wavlm``: a pretrained WavLM encoder (ser.models.ssl) on the raw 16 kHz waveform (wav.scp), 50 frames/s.
``ssl``: the same for any self-supervised encoder of SSL_MODEL_TYPES (WavLM, wav2vec 2.0, HuBERT, data2vec-audio)
or Whisper's encoder (ser.models.whisper: log-mel of 30 s windows), the type read from the checkpoint's config.json.
``whisper``: Whisper's encoder only, normalize_wave false by default.

Options:
- path: a local Hugging Face checkpoint directory (config.json + weights; for Whisper also
  preprocessor_config.json). Required unless download is true. With ``wavlm`` it must hold a WavLM model.
- download: with an empty path, fetch ``model_id`` from the Hugging Face hub (needs internet).
- model_id: the hub name used by download.
- freeze: "all" (WavLM frozen and run in eval mode, only what follows it learns), "feature_encoder" (the
  convolutional feature encoder frozen, the transformer fine-tuned; Whisper: its two input convolutions) or
  "none" (everything fine-tuned).
- layer: "last" (the model's last hidden state), "weighted" (a learnable softmax-weighted sum of the input
  of the first transformer layer and every layer's output, weights initialised equal) or an integer k
  (0 = input of the first transformer layer, k = output of transformer layer k; for Whisper the last index is
  after the final LayerNorm, see ser.models.whisper). YAML may give k as a string ("12").
- normalize_wave: normalise each utterance to zero mean and unit variance over its valid samples (as WavLM
  Large was trained); when false the samples, which the data path gives in the int16 range, are divided by
  32768.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from torch import nn

from ser.dataset import LabelledSet, load_wave_set
from ser.frontends.base import Frontend
from ser.models.ssl import SSL_MODEL_TYPES, WAVE_SAMPLE_RATE, WHISPER_MODEL_TYPES  # noqa: F401 (re-exported)
from ser.registry import is_bool
from ser.stamps import inputs_digest

WAVLM_FREEZE_MODES = ("all", "feature_encoder", "none")
WAVLM_LAYER_NAMES = ("last", "weighted")


def _is_layer(value: Any) -> bool:
    """"last", "weighted", or a layer index >= 0 as an int or a decimal string."""
    if isinstance(value, str):
        return value in WAVLM_LAYER_NAMES or value.isdigit()
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class WavLM(Frontend):
    name = "wavlm"
    defaults = {"path": "", "download": False, "model_id": "microsoft/wavlm-large", "freeze": "feature_encoder",
                "layer": "weighted", "normalize_wave": True}
    rules = {
        "path": (lambda v: isinstance(v, str), "a directory path (a string)"),
        "download": (is_bool, "true or false"),
        "model_id": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
        "freeze": (lambda v: v in WAVLM_FREEZE_MODES, "one of " + ", ".join(WAVLM_FREEZE_MODES)),
        "layer": (_is_layer, "one of " + ", ".join(WAVLM_LAYER_NAMES) + " or a layer index >= 0"),
        "normalize_wave": (is_bool, "true or false"),
    }
    inputs_per_second = WAVE_SAMPLE_RATE
    augment_domain = "wave"
    default_input_layer = "linear"
    model_types: tuple[str, ...] = ("wavlm",)  # the config.model_type a checkpoint must have

    @staticmethod
    def check(conf: dict) -> None:
        """A ``layer`` given as a decimal string becomes an int."""
        if conf["layer"] not in WAVLM_LAYER_NAMES:
            conf["layer"] = int(conf["layer"])

    def load(self, data_dir: str, classes: list[str], lazy: bool = False) -> LabelledSet:
        return load_wave_set(data_dir, classes, WAVE_SAMPLE_RATE, lazy=lazy)

    def digest(self, data_dir: str) -> str:
        return inputs_digest([os.path.join(data_dir, "wav.scp"), os.path.join(data_dir, "utt2emo")])[:12]

    def wrap(self, make_encoder, feat_dim: int | None) -> nn.Module:
        if feat_dim is not None:
            raise ValueError(f"input_dim must be None for frontend {self.name!r} (its frame dimension comes "
                             f"from the checkpoint), got {feat_dim!r}")
        from ser.models.ssl import WaveModel, make_ssl_encoder

        ssl = make_ssl_encoder(self.conf, self.model_types)
        return WaveModel(ssl, make_encoder(ssl.output_dim))

    def inputs_of_wav(self, wav: str, model_dir: str, normaliser) -> np.ndarray:
        from ser.audio import load_mono

        return load_mono(wav, WAVE_SAMPLE_RATE, None, min_duration=0.1)

    def audio_rate(self, model_dir: str) -> int:
        return WAVE_SAMPLE_RATE

    def inputs_of_samples(self, samples: np.ndarray, model_dir: str, normaliser) -> np.ndarray:
        return np.asarray(samples, dtype=np.float32)


class SSL(WavLM):
    """Any encoder of SSL_MODEL_TYPES or Whisper's, with the options of ``wavlm``."""

    name = "ssl"
    model_types = SSL_MODEL_TYPES + WHISPER_MODEL_TYPES


class Whisper(WavLM):
    """Whisper's encoder (ser.models.whisper), with the options of ``wavlm``; by default the samples are only
    scaled (/ 32768), as Whisper was trained."""

    name = "whisper"
    defaults = {**WavLM.defaults, "model_id": "openai/whisper-large-v3", "normalize_wave": False}
    model_types = WHISPER_MODEL_TYPES
