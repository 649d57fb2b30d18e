"""Frozen self-supervised features computed once (ser.ssl_cache) and the model that reads them back.

``StateExtractor``: the frozen encoder that ``ssl`` builds for the checkpoint (ser.models.ssl.make_ssl_encoder:
``SSLEncoder``, or ``WhisperSSLEncoder`` with its 30 s windows; freeze "all", eval mode) giving the frames a cache
stores for its ``layer``: the last hidden state ("last"), hidden state k (an integer), or for "weighted" every
hidden state 0..L concatenated along the feature axis, state-major ((T, S * H): state s is columns
[s H, (s + 1) H)), so the learnable layer weights still train on the cache.

``CachedLayers``: the trainable part of the SSL front-end on such frames: for S > 1 stored states the
softmax-weighted sum with learnable ``layer_weights`` (equal at start), exactly as the encoders with layer
"weighted"; for one stored state the frames themselves. Wrapped with the encoder in ``WaveModel``, so a cached
model's weights have the names of the on-the-fly model's (``frontend.layer_weights``, ``encoder.*``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ser.models.ssl import make_ssl_encoder
from ser.ssl_cache import normalize_wave_of


def stored_states(config, layer) -> int:
    """Hidden states a cache stores per frame for ``layer``: every one (0..L) for "weighted", else one."""
    return config.num_hidden_layers + 1 if layer == "weighted" else 1


class StateExtractor(nn.Module):
    """(wave (B, N) in the int16 range, lengths (B,)) -> (stored frames (B, T, S * H), frame_lengths (B,))."""

    def __init__(self, conf: dict, model_types: tuple[str, ...]):
        """conf: an ssl_cached frontend_conf (path, layer, normalize_wave); the encoder is always frozen."""
        super().__init__()
        self.encoder = make_ssl_encoder({**conf, "normalize_wave": normalize_wave_of(conf), "download": False,
                                         "model_id": "", "freeze": "all"}, model_types)
        self.encoder.eval()
        self.config = self.encoder.ssl.config
        self.hidden_size, self.frames_per_second = self.encoder.output_dim, self.encoder.frames_per_second
        self.num_states = stored_states(self.config, conf["layer"])

    @torch.no_grad()
    def forward(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder.encode(wave, lengths, lambda states: torch.cat(states, dim=-1))


class CachedLayers(nn.Module):
    """(stored frames (B, T, S * H), lengths (B,)) -> (frames (B, T, H), lengths)."""

    def __init__(self, num_states: int, hidden_size: int):
        super().__init__()
        self.num_states, self.output_dim = num_states, hidden_size
        if num_states > 1:
            self.layer_weights = nn.Parameter(torch.zeros(num_states))  # softmax: equal at start

    def layer_weight_probs(self) -> Tensor:
        return torch.softmax(self.layer_weights, dim=0)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if feats.size(-1) != self.num_states * self.output_dim:
            raise ValueError(f"cached frames have dimension {feats.size(-1)}; this model reads {self.num_states} "
                             f"hidden state(s) of {self.output_dim} ({self.num_states * self.output_dim})")
        if self.num_states == 1:
            return feats, lengths
        states = feats.view(*feats.shape[:-1], self.num_states, self.output_dim)
        return torch.einsum("k,btkh->bth", self.layer_weight_probs().to(states.dtype), states), lengths
