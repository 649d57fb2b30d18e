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

import os

import numpy as np
import torch
from torch import Tensor, nn

from ser.atomic import write_json
from ser.models.ssl import WAVE_SAMPLE_RATE, make_ssl_encoder
from ser.ssl_cache import (
    CACHE_RECORD,
    cache_key,
    cache_settings,
    checkpoint_files,
    normalize_wave_of,
    wav_scp_digest,
)


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


def write_cache(src_dir: str, out_dir: str, conf: dict, model_types: tuple[str, ...], device: str = "cpu",
                log_every: int = 500) -> dict:
    """Run the frozen encoder once on every utterance of src_dir/wav.scp (each alone, at 16 kHz as training reads
    it) and write out_dir/{feats.ark, feats.scp, utt2num_frames, ssl_cache.json} (ser.bin.compute_fbank's
    write_feature_archive: its completion protocol and errors). The record is written last, so a cache without it
    is unfinished. Returns the record."""
    from ser.bin.compute_fbank import write_feature_archive

    settings = cache_settings(conf)
    extractor = StateExtractor(conf, model_types).to(device).eval()
    os.makedirs(out_dir, exist_ok=True)
    record_path = os.path.join(out_dir, CACHE_RECORD)
    if os.path.exists(record_path):
        os.remove(record_path)
    dtype = np.dtype(conf["dtype"])

    def frames_of(samples: np.ndarray) -> np.ndarray:
        wave = torch.from_numpy(samples)[None].to(device)
        frames, _ = extractor(wave, torch.tensor([wave.size(1)], device=device))
        return frames[0].float().cpu().numpy().astype(dtype)

    utterances, frames_total, _ = write_feature_archive(
        os.path.join(src_dir, "wav.scp"), os.path.join(out_dir, "feats.ark"), os.path.join(out_dir, "feats.scp"),
        os.path.join(out_dir, "utt2num_frames"), frames_of, WAVE_SAMPLE_RATE, None, 0.1, False, log_every,
        "cache_ssl", write_function="numpy" if dtype == np.float16 else None)
    record = {"key": cache_key(settings), "settings": settings, "checkpoint_path": os.path.abspath(conf["path"]),
              "checkpoint_files": checkpoint_files(conf["path"]),
              "model_type": extractor.config.model_type, "hidden_size": extractor.hidden_size,
              "num_states": extractor.num_states, "frames_per_second": extractor.frames_per_second,
              "utterances": utterances, "frames": frames_total, "wav_scp": wav_scp_digest(src_dir)}
    write_json(record_path, record)
    return record
