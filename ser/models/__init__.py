"""Encoders: `build_model(encoder, encoder_conf, input_dim, num_classes)`.

Every model maps (feats (B, T, D) float, lengths (B,) long) to a ModelOutput. Utterances of any
length >= 1 frame are accepted (the subsampling pads short ones with its convolution padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from torch import Tensor, nn


@dataclass
class ModelOutput:
    logits: Tensor  # (B, C)
    embedding: Tensor  # (B, E), for the center loss
    contrastive_embedding: Tensor  # (B, E), for the supervised contrastive loss
    attention: Optional[Tensor]  # (B, T') pooling weights, zero on padding; None unless flam pooling
    frame_lengths: Tensor  # (B,) valid subsampled frames


# The model modules import ModelOutput from this package, so they are imported after its definition.
from ser.models.baseline import BaselineModel  # noqa: E402
from ser.models.flam import POOLING_NAMES, FLAMModel  # noqa: E402

ENCODER_DEFAULTS: dict[str, dict[str, Any]] = {
    "baseline": {"d_model": 128, "conv_channels": 32, "embed_dim": 64, "dropout": 0.1},
    "flam": {"d_model": 256, "num_heads": 16, "conv_channels": 32, "embed_dim": 64,
             "dropout": 0.1, "pooling": "flam", "context_broadcasting": True},
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
}


def resolve_encoder_conf(encoder: str, encoder_conf: dict) -> dict[str, Any]:
    """The encoder's defaults overridden by encoder_conf, every key and value checked."""
    if encoder not in ENCODER_DEFAULTS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODER_DEFAULTS)}")
    if not isinstance(encoder_conf, dict):
        raise ValueError(f"encoder_conf must be a mapping, got {type(encoder_conf).__name__}")
    defaults = ENCODER_DEFAULTS[encoder]
    for key in encoder_conf:
        if key not in defaults:
            raise ValueError(f"unknown key encoder_conf.{key} for encoder {encoder!r}; "
                             f"valid keys: {', '.join(defaults)}")
    conf = {**defaults, **encoder_conf}
    for key, value in conf.items():
        is_valid, expected = _VALUE_RULES[key]
        if not is_valid(value):
            raise ValueError(f"encoder_conf.{key} must be {expected}, got {value!r}")
    if "num_heads" in conf and conf["d_model"] % conf["num_heads"]:
        raise ValueError(f"encoder_conf.d_model ({conf['d_model']}) must be divisible by "
                         f"encoder_conf.num_heads ({conf['num_heads']})")
    return conf


def build_model(encoder: str, encoder_conf: dict, input_dim: int, num_classes: int) -> nn.Module:
    """The encoder named `encoder`, configured by its defaults overridden by `encoder_conf`."""
    conf = resolve_encoder_conf(encoder, encoder_conf)
    for name, value in (("input_dim", input_dim), ("num_classes", num_classes)):
        if not _positive_int(value):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return _ENCODER_CLASSES[encoder](input_dim=input_dim, num_classes=num_classes, **conf)
