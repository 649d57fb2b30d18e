"""Models: `build_model(encoder, encoder_conf, input_dim, num_classes, frontend, frontend_conf)`.

frontend "fbank": the encoder itself, mapping (feats (B, T, input_dim) float, lengths (B,) long) to a
ModelOutput. Utterances of any length >= 1 frame are accepted (the conv subsampling pads short ones with
its convolution padding).
frontend "wavlm": a WaveModel (ser.models.wavlm), WavLM followed by the encoder on its frames, mapping
(wave (B, N) float in the int16 range, lengths (B,) long in samples) to a ModelOutput. Utterances need
>= 400 samples (one WavLM frame).

encoder_conf.input_layer: "conv2d" (2-layer conv subsampling, time / 4, conv_channels channels),
"linear" (Linear to d_model + dropout, frame rate kept) or "auto": the front-end's default_input_layer (conv2d
for fbank, linear for wavlm).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from torch import nn

from ser.config import resolve_component_conf
from ser.frontends import Frontend, make_frontend
from ser.models.baseline import BaselineModel
from ser.models.flam import POOLING_NAMES, FLAMModel
from ser.models.output import ModelOutput  # noqa: F401 (re-exported)
from ser.models.subsampling import INPUT_LAYERS

ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {
    "baseline": {"d_model": 128, "conv_channels": 32, "embed_dim": 64, "dropout": 0.1, "input_layer": "auto",
                 "fusion_dim": 128, "fusion_dropout": 0.5},
    "flam": {"d_model": 256, "num_heads": 16, "conv_channels": 32, "embed_dim": 64,
             "dropout": 0.1, "pooling": "flam", "context_broadcasting": True, "input_layer": "auto",
             "fusion_dim": 128, "fusion_dropout": 0.5},
}

_ENCODER_CLASSES = {"baseline": BaselineModel, "flam": FLAMModel}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


_VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "d_model": (_positive_int, "a positive integer"),
    "num_heads": (_positive_int, "a positive integer"),
    "conv_channels": (_positive_int, "a positive integer"),
    "embed_dim": (_positive_int, "a positive integer"),
    "dropout": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
                "a number in [0, 1)"),
    "pooling": (lambda v: v in POOLING_NAMES, "one of " + ", ".join(POOLING_NAMES)),
    "context_broadcasting": (lambda v: isinstance(v, bool), "true or false"),
    "input_layer": (lambda v: v in ("auto",) + INPUT_LAYERS, "one of auto, " + ", ".join(INPUT_LAYERS)),
    "fusion_dim": (_positive_int, "a positive integer"),
    "fusion_dropout": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
                       "a number in [0, 1)"),
}


def resolve_encoder_conf(encoder: str, encoder_conf: dict) -> dict[str, Any]:
    """The encoder's defaults overridden by encoder_conf, every key and value checked."""
    conf = resolve_component_conf("encoder", encoder, encoder_conf, ENCODER_DEFAULTS, _VALUE_RULES)
    if "num_heads" in conf and conf["d_model"] % conf["num_heads"]:
        raise ValueError(f"encoder_conf.d_model ({conf['d_model']}) must be divisible by "
                         f"encoder_conf.num_heads ({conf['num_heads']})")
    return conf


def build_model(encoder: str, encoder_conf: dict, input_dim: Optional[int], num_classes: int,
                frontend: str | Frontend = "fbank", frontend_conf: Optional[dict] = None,
                utterance_dim: int = 0) -> nn.Module:
    """The encoder named `encoder` (its defaults overridden by `encoder_conf`) behind `frontend` (a name with its
    `frontend_conf`, or a Frontend).

    input_dim: the stored features' dimension (fbank), None for front-ends that compute their own frames (wavlm:
    the frame dimension is the checkpoint's hidden_size; the pretrained weights named by frontend_conf are
    loaded). utterance_dim > 0: the head fuses an utterance-level feature vector of that size (the config's
    ``functionals``), given to forward as ``utterance``.
    """
    conf = resolve_encoder_conf(encoder, encoder_conf)
    if isinstance(frontend, str):
        frontend = make_frontend(frontend, frontend_conf)
    if not _positive_int(num_classes):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if conf["input_layer"] == "auto":
        conf["input_layer"] = frontend.default_input_layer
    return frontend.wrap(lambda dim: _ENCODER_CLASSES[encoder](input_dim=dim, num_classes=num_classes,
                                                               utterance_dim=utterance_dim, **conf), input_dim)
