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

from typing import TYPE_CHECKING, Any, Optional

from torch import nn

from ser.models.baseline import BaselineModel
from ser.models.flam import POOLING_NAMES, FLAMModel
from ser.models.output import ModelOutput  # noqa: F401 (re-exported)
from ser.models.subsampling import INPUT_LAYERS
from ser.registry import ENCODERS, FRONTENDS, ConfigError, is_bool, number_in, one_of, positive_int

if TYPE_CHECKING:
    from ser.frontends import Frontend

_POSITIVE = (positive_int, "a positive integer")
_RULES = {
    "d_model": _POSITIVE, "num_heads": _POSITIVE, "conv_channels": _POSITIVE, "embed_dim": _POSITIVE,
    "dropout": number_in(0.0, 1.0, high_open=True),
    "pooling": one_of(*POOLING_NAMES),
    "context_broadcasting": (is_bool, "true or false"),
    "input_layer": one_of("auto", *INPUT_LAYERS),  # auto: the front-end's default_input_layer
    "fusion_dim": _POSITIVE,  # width of the projection of fused utterance features (config key functionals)
    "fusion_dropout": number_in(0.0, 1.0, high_open=True),
    "utterance_mean_norm": (is_bool, "true or false"),  # subtract each utterance's own mean input frame
    "branch_dropout": number_in(0.0, 1.0, high_open=True),  # drop the frame or the functionals branch in training
}


def _check_heads(conf: dict) -> None:
    if conf["d_model"] % conf["num_heads"]:
        raise ConfigError(f"encoder_conf.d_model ({conf['d_model']}) must be divisible by "
                          f"encoder_conf.num_heads ({conf['num_heads']})")


ENCODERS.register("baseline", BaselineModel,
                  {"d_model": 128, "conv_channels": 32, "embed_dim": 64, "dropout": 0.1, "input_layer": "auto",
                   "fusion_dim": 128, "fusion_dropout": 0.5}, _RULES)
ENCODERS.register("flam", FLAMModel,
                  {"d_model": 256, "num_heads": 16, "conv_channels": 32, "embed_dim": 64, "dropout": 0.1,
                   "pooling": "flam", "context_broadcasting": True, "input_layer": "auto", "fusion_dim": 128,
                   "fusion_dropout": 0.5, "utterance_mean_norm": False, "branch_dropout": 0.0}, _RULES,
                  check=_check_heads)


def resolve_encoder_conf(encoder: str, encoder_conf: dict | None) -> dict[str, Any]:
    """The encoder's defaults overridden by encoder_conf, every key and value checked."""
    return ENCODERS.resolve(encoder, encoder_conf)


def model_of(config: dict, feat_dim: Optional[int], num_classes: int, utterance_dim: int = 0) -> nn.Module:
    """The model of a resolved config (trusted as it is): its encoder behind its front-end."""
    frontend = FRONTENDS.build(config["frontend"], config["frontend_conf"])
    return _assemble(config["encoder"], config["encoder_conf"], frontend, feat_dim, num_classes, utterance_dim)


def _assemble(encoder: str, conf: dict, frontend: "Frontend", feat_dim, num_classes: int, utterance_dim: int):
    if not positive_int(num_classes):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    conf = dict(conf)
    if conf["input_layer"] == "auto":
        conf["input_layer"] = frontend.default_input_layer
    return frontend.wrap(lambda dim: ENCODERS.build(encoder, conf, input_dim=dim, num_classes=num_classes,
                                                    utterance_dim=utterance_dim), feat_dim)


def build_model(encoder: str, encoder_conf: dict, input_dim: Optional[int], num_classes: int,
                frontend: "str | Frontend" = "fbank", frontend_conf: Optional[dict] = None,
                utterance_dim: int = 0) -> nn.Module:
    """The encoder named `encoder` (its defaults overridden by `encoder_conf`) behind `frontend` (a name with its
    `frontend_conf`, or a Frontend).

    input_dim: the stored features' dimension (fbank), None for front-ends that compute their own frames (wavlm:
    the frame dimension is the checkpoint's hidden_size; the pretrained weights named by frontend_conf are
    loaded). utterance_dim > 0: the head fuses an utterance-level feature vector of that size (the config's
    ``functionals``), given to forward as ``utterance``.
    """
    if isinstance(frontend, str):
        frontend = FRONTENDS.build(frontend, FRONTENDS.resolve(frontend, frontend_conf))
    return _assemble(encoder, resolve_encoder_conf(encoder, encoder_conf), frontend, input_dim, num_classes,
                     utterance_dim)
