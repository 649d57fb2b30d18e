"""Training-time mixup of one utterance with a partner (docs/method.md section 2).

Both mixups act on CPU numpy arrays before CMVN, in one of two domains:

- ``wave``: ``x`` is 1-D float samples; the power of a segment is ``mean(x**2)`` and the
  overlay adds ``scale * x_j`` to ``x_i``.
- ``fbank``: ``x`` is a (T, D) Kaldi log-mel fbank; frames play the role of samples, the power
  of a frame is the sum of its mel energies ``exp(F[t])`` and the overlay is the power-additive
  ``log(exp(F_i[t]) + scale**2 * exp(F_j[t']))``.

Every random draw comes from the ``rng`` the caller passes; the caller also picks the partner.
A draw is a :class:`MixDraw` returned by ``sample()``, so tests and callers can inspect it and
``apply()`` it; ``__call__`` is ``sample`` followed by ``apply``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

AUGMENT_DEFAULTS = {
    "eam": {"prob": 0.5, "snr_range": [-5.0, 10.0], "max_segment_ratio": 0.5},
    "lam": {"prob": 0.5, "max_segment_ratio": 0.5},
    "none": {},
}
DOMAINS = ("wave", "fbank")

# A partner segment whose power is below this fraction of the target segment's power is silent.
SILENCE_RATIO = 1e-10


class AugmentConfigError(ValueError):
    """An augment name, key or value is invalid; the message names it."""


@dataclass(frozen=True)
class MixDraw:
    """One mixing decision: partner segment x_j[start_j:start_j+length] goes onto
    x_i[start_i:start_i+length] (samples or frames); ``snr_db`` only for energy-adaptive mixup."""

    start_i: int
    start_j: int
    length: int
    snr_db: float | None = None


def segment_power(segment: np.ndarray, domain: str) -> float:
    """Mean power per sample (wave) or per frame, summed over mel bins (fbank), in float64."""
    seg = np.asarray(segment, dtype=np.float64)
    if domain == "wave":
        return float(np.mean(seg ** 2))
    return float(np.mean(np.sum(np.exp(seg), axis=1)))


def soft_label(y_i: int, y_j: int, lam: float, num_classes: int) -> np.ndarray:
    """(1 - lam) * onehot(y_i) + lam * onehot(y_j) as float32."""
    for name, y in (("y_i", y_i), ("y_j", y_j)):
        if not 0 <= y < num_classes:
            raise ValueError(f"{name}={y} is outside [0, {num_classes})")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam={lam} is outside [0, 1]")
    target = np.zeros(num_classes, dtype=np.float32)
    target[y_i] += 1.0 - lam
    target[y_j] += lam
    return target


def _check_number(key: str, value, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise AugmentConfigError(f"augment key '{key}' must be a finite number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise AugmentConfigError(f"augment key '{key}' must be in {bracket}{low}, {high}], got {value}")
    return float(value)


class Mixup:
    """Segment mixup shared by both methods; subclasses define the scale and the label weight."""

    def __init__(self, domain: str, prob: float = 0.5, max_segment_ratio: float = 0.5):
        if domain not in DOMAINS:
            raise AugmentConfigError(f"augment domain must be one of {DOMAINS}, got {domain!r}")
        self.domain = domain
        self.prob = _check_number("prob", prob, 0.0, 1.0)
        self.max_segment_ratio = _check_number("max_segment_ratio", max_segment_ratio, 0.0, 1.0,
                                               low_open=True)

    def _draw_snr(self, rng: np.random.Generator) -> float | None:
        return None

    def sample(self, len_i: int, len_j: int, rng: np.random.Generator) -> MixDraw | None:
        """Draw whether to mix (probability ``prob``) and where; None means no mix.

        Segment length is uniform in [1, max(1, floor(len_i * max_segment_ratio))], then clipped
        to len_j; starts are uniform. Utterances shorter than 2 (nothing left unmixed) and empty
        partners are never mixed.
        """
        if rng.random() >= self.prob or len_i < 2 or len_j < 1:
            return None
        max_length = max(1, int(math.floor(len_i * self.max_segment_ratio)))
        length = min(int(rng.integers(1, max_length + 1)), len_j)
        start_i = int(rng.integers(0, len_i - length + 1))
        start_j = int(rng.integers(0, len_j - length + 1))
        return MixDraw(start_i, start_j, length, self._draw_snr(rng))

    def segment_scale(self, x_i: np.ndarray, x_j: np.ndarray, draw: MixDraw) -> float | None:
        """Amplitude factor applied to the partner segment; None when the mix must be skipped."""
        raise NotImplementedError

    def label_weight(self, draw: MixDraw, len_i: int) -> float:
        """Weight of the partner's label in the soft target."""
        raise NotImplementedError

    def _segments(self, x_i: np.ndarray, x_j: np.ndarray, draw: MixDraw):
        return (x_i[draw.start_i:draw.start_i + draw.length],
                x_j[draw.start_j:draw.start_j + draw.length])

    def _segment_powers(self, x_i: np.ndarray, x_j: np.ndarray, draw: MixDraw) -> tuple[float, float]:
        seg_i, seg_j = self._segments(x_i, x_j, draw)
        power_i = segment_power(seg_i, self.domain)
        power_j = segment_power(seg_j, self.domain)
        if not (math.isfinite(power_i) and math.isfinite(power_j)):
            raise ValueError(f"non-finite segment power (P_i={power_i}, P_j={power_j}); "
                             "fbank input must be log-mel before CMVN, wave input finite samples")
        return power_i, power_j

    def _partner_silent(self, power_i: float, power_j: float) -> bool:
        return not (power_j > 0.0 and power_j > SILENCE_RATIO * power_i)

    def apply(self, x_i: np.ndarray, x_j: np.ndarray, draw: MixDraw | None) -> tuple[np.ndarray, float]:
        """Mix according to ``draw``: (new array shaped like x_i, lam); (x_i itself, 0.0) if no mix."""
        if draw is None:
            return x_i, 0.0
        scale = self.segment_scale(x_i, x_j, draw)
        if scale is None:
            return x_i, 0.0
        seg_i, seg_j = self._segments(x_i, x_j, draw)
        seg_i = seg_i.astype(np.float64)
        seg_j = seg_j.astype(np.float64)
        if self.domain == "wave":
            mixed_seg = seg_i + scale * seg_j
        else:
            mixed_seg = np.logaddexp(seg_i, seg_j + 2.0 * math.log(scale))
        mixed = x_i.copy()
        mixed[draw.start_i:draw.start_i + draw.length] = mixed_seg
        return mixed, self.label_weight(draw, x_i.shape[0])

    def _check_inputs(self, x_i: np.ndarray, x_j: np.ndarray) -> None:
        ndim = 1 if self.domain == "wave" else 2
        for name, x in (("x_i", x_i), ("x_j", x_j)):
            if not isinstance(x, np.ndarray) or x.ndim != ndim or not np.issubdtype(x.dtype, np.floating):
                raise ValueError(f"{self.domain}-domain mixup needs {name} as a {ndim}-D float numpy array, "
                                 f"got {type(x).__name__} {getattr(x, 'dtype', '')} "
                                 f"with shape {getattr(x, 'shape', None)}")
        if ndim == 2 and x_i.shape[1] != x_j.shape[1]:
            raise ValueError(f"feature dims differ: x_i {x_i.shape}, x_j {x_j.shape}")

    def __call__(self, x_i: np.ndarray, x_j: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Mix x_j into x_i with probability ``prob``: (mixed array, weight of y_j's label)."""
        self._check_inputs(x_i, x_j)
        return self.apply(x_i, x_j, self.sample(x_i.shape[0], x_j.shape[0], rng))


class EnergyAdaptiveMixup(Mixup):
    """Energy-Adaptive Mixup (docs/method.md section 2, steps 1-7).

    The partner segment is scaled so that target-to-partner power ratio over the segment equals
    an snr drawn uniformly from ``snr_range`` dB; lam = (l / L_i) / (1 + 10**(snr / 10)).
    A silent partner segment, or a silent target segment (scale 0), skips the mix.
    """

    def __init__(self, domain: str, prob: float = 0.5, snr_range=(-5.0, 10.0),
                 max_segment_ratio: float = 0.5):
        super().__init__(domain, prob, max_segment_ratio)
        if isinstance(snr_range, (str, bytes)) or not hasattr(snr_range, "__len__") or len(snr_range) != 2:
            raise AugmentConfigError(f"augment key 'snr_range' must be [low, high] in dB, got {snr_range!r}")
        low, high = (_check_number("snr_range", v, -math.inf, math.inf) for v in snr_range)
        if not low < high:
            raise AugmentConfigError(f"augment key 'snr_range' must be increasing, got {list(snr_range)}")
        self.snr_range = (low, high)

    def _draw_snr(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(*self.snr_range))

    def segment_scale(self, x_i: np.ndarray, x_j: np.ndarray, draw: MixDraw) -> float | None:
        power_i, power_j = self._segment_powers(x_i, x_j, draw)
        if power_i <= 0.0 or self._partner_silent(power_i, power_j):
            return None
        return math.sqrt(power_i / (10.0 ** (draw.snr_db / 10.0) * power_j))

    def label_weight(self, draw: MixDraw, len_i: int) -> float:
        return (draw.length / len_i) / (1.0 + 10.0 ** (draw.snr_db / 10.0))


class LengthMixup(Mixup):
    """LAM's mixup: the same segment choice, overlaid unscaled (scale 1); lam = l / L_i.
    A silent partner segment skips the mix, as in EAM."""

    def segment_scale(self, x_i: np.ndarray, x_j: np.ndarray, draw: MixDraw) -> float | None:
        power_i, power_j = self._segment_powers(x_i, x_j, draw)
        return None if self._partner_silent(power_i, power_j) else 1.0

    def label_weight(self, draw: MixDraw, len_i: int) -> float:
        return draw.length / len_i


_CLASSES = {"eam": EnergyAdaptiveMixup, "lam": LengthMixup}


def build_augment(name: str, conf: dict | None, domain: str) -> Mixup | None:
    """The mixup named ``name`` (eam | lam | none) with ``conf`` over AUGMENT_DEFAULTS[name]."""
    if name not in AUGMENT_DEFAULTS:
        raise AugmentConfigError(f"unknown augment '{name}', expected one of {sorted(AUGMENT_DEFAULTS)}")
    conf = dict(conf or {})
    unknown = sorted(set(conf) - set(AUGMENT_DEFAULTS[name]))
    if unknown:
        raise AugmentConfigError(f"unknown augment_conf key(s) {unknown} for augment '{name}', "
                                 f"expected {sorted(AUGMENT_DEFAULTS[name])}")
    if domain not in DOMAINS:
        raise AugmentConfigError(f"augment domain must be one of {DOMAINS}, got {domain!r}")
    if name == "none":
        return None
    return _CLASSES[name](domain, **{**AUGMENT_DEFAULTS[name], **conf})
