"""What the self-supervised encoders (ser.models.ssl) and Whisper's (ser.models.whisper) share: waveform
normalisation, the choice and weighted combination of hidden states, and ``LayeredEncoder``, their common base."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ser.audio import INT16_SCALE
from ser.models.subsampling import check_lengths, valid_mask

NORMALIZE_VARIANCE_FLOOR = 1e-7  # added to the variance of the [-1, 1] samples, as Hugging Face's feature extractors


def normalize_waveform(wave: Tensor, lengths: Tensor, per_utterance: bool) -> Tensor:
    """wave (int16 range) / 32768, then (per_utterance) zero-mean unit-variance over each row's valid samples with
    the variance floor on that [-1, 1] scale; padding zeroed."""
    mask = valid_mask(lengths, wave.size(1)).to(wave.dtype)
    wave = wave / INT16_SCALE
    if not per_utterance:
        return wave * mask
    counts = lengths.to(wave.dtype).unsqueeze(1)
    mean = (wave * mask).sum(1, keepdim=True) / counts
    centred = (wave - mean) * mask
    variance = centred.pow(2).sum(1, keepdim=True) / counts
    return centred / torch.sqrt(variance + NORMALIZE_VARIANCE_FLOOR)


def select_states(states: list[Tensor], layer) -> list[Tensor]:
    """The hidden states that frontend_conf.layer selects of ``states``: every one for "weighted" (or "last", whose
    one state the encoder gives), else [state k]."""
    return states if layer in ("weighted", "last") else [states[layer]]


def combine_states(states: list[Tensor], probs: Optional[Tensor]) -> Tensor:
    """The softmax-weighted sum of the states with weights ``probs`` (layer "weighted"), else the one state."""
    if probs is None:
        return states[0]
    return torch.einsum("k,k...->...", probs, torch.stack(states))


def _keep_layer_io(layer: nn.Module, args: tuple, output) -> None:
    """Forward hook on a transformer layer: keep its input and output hidden states for this forward."""
    layer.kept_io = (args[0], output[0] if isinstance(output, tuple) else output)


class LayeredEncoder(nn.Module):
    """What the waveform encoders share: the options (freeze, layer, normalize_wave), the learnable layer weights,
    eval mode when frozen, the input check, and forward = encode with the selected states combined. A subclass
    sets ``self.ssl`` and calls ``_choose_layers``; it defines ``encode``, ``frame_lengths`` and
    ``min_samples``."""

    min_samples_reason = "one frame"

    def _choose_layers(self, conf: dict, num_layers: int) -> None:
        """Take the options of a resolved frontend_conf; check an integer layer against the checkpoint's
        ``num_layers`` transformer layers; for "weighted", weights over states 0..num_layers (equal at start)."""
        self.freeze = conf["freeze"]
        self.layer = conf["layer"]
        self.normalize_wave = conf["normalize_wave"]
        if isinstance(self.layer, int) and self.layer > num_layers:
            raise ValueError(f"frontend_conf.layer is {self.layer}, but the checkpoint has {num_layers} "
                             f"transformer layers (valid indices 0..{num_layers})")
        if self.layer == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(num_layers + 1))  # softmax: equal at start

    def train(self, mode: bool = True) -> "LayeredEncoder":
        """An encoder frozen with freeze "all" stays in eval mode (no dropout, LayerDrop or masking)."""
        super().train(mode)
        if self.freeze == "all":
            self.ssl.eval()
        return self

    def layer_weight_probs(self) -> Tensor:
        """The softmax-normalised weights of the hidden states (layer "weighted" only)."""
        return torch.softmax(self.layer_weights, dim=0)

    def forward(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(wave, lengths, self.combine_states)

    def combine_states(self, states: list[Tensor]) -> Tensor:
        """The frames of the selected hidden states (``select_states``): their weighted sum for layer "weighted",
        else the one state."""
        return combine_states(states, self.layer_weight_probs() if self.layer == "weighted" else None)

    def _check_inputs(self, wave: Tensor, lengths: Tensor) -> None:
        if wave.dim() != 2 or not wave.is_floating_point():
            raise ValueError(f"wave must be a float tensor of shape (batch, samples), got {wave.dtype} "
                             f"{tuple(wave.shape)}")
        check_lengths(lengths, wave.size(0), wave.size(1), self.min_samples, "samples",
                      f"the encoder needs at least {self.min_samples} ({self.min_samples_reason})")
