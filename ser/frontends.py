"""Front-ends: what turns a stored utterance into the frame sequence the encoder reads.

``fbank``: precomputed Kaldi fbank (stage 1) normalised with the training fold's global CMVN statistics.

``wavlm``: a pretrained WavLM encoder (ser.models.wavlm) on the raw 16 kHz waveform, 50 frames/s. Its keys:
- path: a local Hugging Face checkpoint directory (config.json + weights). Required unless download is true.
- download: with an empty path, fetch ``model_id`` from the Hugging Face hub (needs internet).
- model_id: the hub name used by download.
- freeze: "all" (WavLM frozen and run in eval mode, only what follows it learns), "feature_encoder" (the
  convolutional feature encoder frozen, the transformer fine-tuned) or "none" (everything fine-tuned).
- layer: "last" (the model's last hidden state), "weighted" (a learnable softmax-weighted sum of the input
  of the first transformer layer and every layer's output, weights initialised equal) or an integer k
  (0 = input of the first transformer layer, k = output of transformer layer k). YAML may give k as a
  string ("12").
- normalize_wave: normalise each utterance to zero mean and unit variance over its valid samples (as WavLM
  Large was trained); when false the samples, which the data path gives in the int16 range, are divided by
  32768.
"""

from __future__ import annotations

from typing import Any, Callable

FBANK_FRAMES_PER_SECOND = 100  # the fbank's 10 ms frame shift
WAVE_SAMPLE_RATE = 16000  # what WavLM was trained on; waveform front-ends read audio at this rate

FRONTEND_DEFAULTS: dict[str, dict[str, Any]] = {
    "fbank": {"norm_vars": True},  # CMVN: subtract the global mean; divide by the global std when norm_vars
    "wavlm": {"path": "", "download": False, "model_id": "microsoft/wavlm-large",
              "freeze": "feature_encoder", "layer": "weighted", "normalize_wave": True},
}

WAVLM_FREEZE_MODES = ("all", "feature_encoder", "none")
WAVLM_LAYER_NAMES = ("last", "weighted")


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_layer(value: Any) -> bool:
    """"last", "weighted", or a layer index >= 0 as an int or a decimal string."""
    if isinstance(value, str):
        return value in WAVLM_LAYER_NAMES or value.isdigit()
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "norm_vars": (_is_bool, "true or false"),
    "path": (_is_str, "a directory path (a string)"),
    "download": (_is_bool, "true or false"),
    "model_id": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "freeze": (lambda v: v in WAVLM_FREEZE_MODES, "one of " + ", ".join(WAVLM_FREEZE_MODES)),
    "layer": (_is_layer, "one of " + ", ".join(WAVLM_LAYER_NAMES) + " or a layer index >= 0"),
    "normalize_wave": (_is_bool, "true or false"),
}


def resolve_component_conf(component: str, name: str, given: dict | None, table: dict[str, dict[str, Any]],
                           rules: dict[str, tuple[Callable[[Any], bool], str]]) -> dict[str, Any]:
    """table[name] overridden by given (the ``<component>_conf`` mapping), every key and value checked
    against ``rules`` (key -> (is_valid, what is expected)); errors name the key."""
    if name not in table:
        raise ValueError(f"unknown {component} {name!r}; choose one of {', '.join(table)}")
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise ValueError(f"{component}_conf must be a mapping, got {type(given).__name__}")
    defaults = table[name]
    for key in given:
        if key not in defaults:
            raise ValueError(f"unknown key {component}_conf.{key} for {component} {name!r}; "
                             f"valid keys: {', '.join(defaults)}")
    conf = {**defaults, **given}
    for key, value in conf.items():
        is_valid, expected = rules[key]
        if not is_valid(value):
            raise ValueError(f"{component}_conf.{key} must be {expected}, got {value!r}")
    return conf


def resolve_frontend_conf(frontend: str, frontend_conf: dict | None) -> dict[str, Any]:
    """The front-end's defaults overridden by frontend_conf, every key and value checked.

    A ``layer`` given as a decimal string comes back as an int.
    """
    conf = resolve_component_conf("frontend", frontend, frontend_conf, FRONTEND_DEFAULTS, _VALUE_RULES)
    if "layer" in conf and conf["layer"] not in WAVLM_LAYER_NAMES:
        conf["layer"] = int(conf["layer"])
    return conf
