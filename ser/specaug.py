"""Feature-domain augmentation of training fbank (``specaug: specaug``), applied after mixup, per utterance.

- ``freq_warp_range`` [a, b]: the mel axis is stretched by a factor alpha ~ U(a, b), F'[:, k] = F[:, k / alpha]
  (linear interpolation; bins past the top take the top bin). On raw log-mel, before CMVN. alpha > 1 moves
  spectral structure up, as a shorter vocal tract does: a mel-scale form of vocal tract length perturbation
  (VTLP, Jaitly & Hinton 2013) that changes the speaker, not the emotion.
- ``time_stretch_range`` [a, b]: the utterance is resampled in time by beta ~ U(a, b) (beta > 1 is slower:
  round(T * beta) frames, linear interpolation between frames). The tempo half of speed perturbation.
- ``num_freq_mask`` masks of ``freq_mask_width_range`` bins and ``num_time_mask`` masks of
  ``time_mask_width_ratio_range`` times the length (SpecAugment, Park et al. 2019). Masks are applied after
  CMVN and set to 0, the normalised mean.

Every draw comes from the caller's generator, so an epoch's data stays a function of (seed, epoch).
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from ser.registry import SPECAUGS, ConfigError, is_bool


def interpolate(x: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """x sampled at fractional ``positions`` (in [0, len - 1]) along ``axis``, linear between neighbours."""
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, x.shape[axis] - 1)
    frac = (positions - low).astype(np.float32)
    shape = [1, 1]
    shape[axis] = -1
    frac = frac.reshape(shape)
    return np.take(x, low, axis=axis) * (1.0 - frac) + np.take(x, high, axis=axis) * frac


def freq_warp(feats: np.ndarray, alpha: float) -> np.ndarray:
    """F'[:, k] = F[:, k / alpha] over the mel bins of (T, D) features."""
    dim = feats.shape[1]
    return interpolate(feats, np.minimum(np.arange(dim) / alpha, dim - 1), axis=1).astype(np.float32)


def time_stretch(feats: np.ndarray, beta: float) -> np.ndarray:
    """(T, D) -> (max(1, round(T * beta)), D), frame t' taken at t' / beta."""
    frames = feats.shape[0]
    length = max(1, int(round(frames * beta)))
    return interpolate(feats, np.minimum(np.arange(length) / beta, frames - 1), axis=0).astype(np.float32)


class SpecAugment:
    def __init__(self, freq_warp_range, time_stretch_range, num_freq_mask: int, freq_mask_width_range,
                 num_time_mask: int, time_mask_width_ratio_range, apply_masks: bool):
        """Values as resolved by SPECAUGS (checked there)."""
        self.freq_warp_range = tuple(float(v) for v in freq_warp_range)
        self.time_stretch_range = tuple(float(v) for v in time_stretch_range)
        self.num_freq_mask, self.num_time_mask = num_freq_mask, num_time_mask
        self.freq_mask_width_range = tuple(int(v) for v in freq_mask_width_range)
        self.time_mask_width_ratio_range = tuple(float(v) for v in time_mask_width_ratio_range)
        self.apply_masks = apply_masks

    @staticmethod
    def _factor(bounds: tuple[float, float], rng: np.random.Generator) -> float:
        return bounds[0] if bounds[0] == bounds[1] else float(rng.uniform(*bounds))

    def warp(self, feats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Frequency warp and time stretch of raw log-mel (before CMVN); no draw where a range is [1, 1]."""
        alpha = self._factor(self.freq_warp_range, rng)
        if alpha != 1.0:
            feats = freq_warp(feats, alpha)
        beta = self._factor(self.time_stretch_range, rng)
        if beta != 1.0:
            feats = time_stretch(feats, beta)
        return feats

    def mask(self, feats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Frequency and time masks on normalised features (set to 0)."""
        if not self.apply_masks:
            return feats
        feats = feats.copy()
        frames, dim = feats.shape
        for _ in range(self.num_freq_mask):
            width = min(int(rng.integers(self.freq_mask_width_range[0], self.freq_mask_width_range[1] + 1)), dim)
            start = int(rng.integers(0, dim - width + 1))
            feats[:, start:start + width] = 0.0
        low, high = self.time_mask_width_ratio_range
        for _ in range(self.num_time_mask):
            width = min(int(math.floor(frames * rng.uniform(low, high))), frames)
            start = int(rng.integers(0, frames - width + 1))
            feats[start:start + width] = 0.0
        return feats


def _is_range(low_limit: float, high_limit: float, integers: bool = False):
    def is_valid(value) -> bool:
        kind = int if integers else Real
        return (isinstance(value, (list, tuple)) and len(value) == 2
                and all(isinstance(v, kind) and not isinstance(v, bool) and math.isfinite(v) for v in value)
                and low_limit <= value[0] <= value[1] <= high_limit)

    kind = "integers" if integers else "numbers"
    return is_valid, f"[low, high], {kind} with {low_limit} <= low <= high <= {high_limit}"


def _non_negative_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0




def _fits(config: dict, frontend) -> None:
    if frontend.augment_domain != "fbank":
        raise ConfigError(f"specaug: {config['specaug']} acts on frame features such as fbank, not on the "
                          f"{config['frontend']} front-end's waveforms")


SPECAUGS.register("specaug", SpecAugment,
                  {"freq_warp_range": [1.0, 1.0], "time_stretch_range": [1.0, 1.0],
                   "num_freq_mask": 2, "freq_mask_width_range": [0, 10],
                   "num_time_mask": 2, "time_mask_width_ratio_range": [0.0, 0.05], "apply_masks": True},
                  {"freq_warp_range": _is_range(0.5, 2.0), "time_stretch_range": _is_range(0.5, 2.0),
                   "num_freq_mask": (_non_negative_int, "an integer >= 0"),
                   "freq_mask_width_range": _is_range(0, 1000, integers=True),
                   "num_time_mask": (_non_negative_int, "an integer >= 0"),
                   "time_mask_width_ratio_range": _is_range(0.0, 1.0),
                   "apply_masks": (is_bool, "true or false")}, fits=_fits)
SPECAUGS.register("none", lambda: None, {}, {})
