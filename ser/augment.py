"""Training-time mixup of one utterance with a partner (docs/method.md section 2).

The mixups act on CPU numpy arrays before CMVN, in one of three domains (the front-end's ``augment_domain``):

- ``wave``: ``x`` is 1-D float samples; the power of a segment is ``mean(x**2)`` and the
  overlay adds ``scale * x_j`` to ``x_i``.
- ``fbank``: ``x`` is a (T, D) Kaldi log-mel fbank; frames play the role of samples, the power
  of a frame is the sum of its mel energies ``exp(F[t])`` and the overlay is the power-additive
  ``log(exp(F_i[t]) + scale**2 * exp(F_j[t']))``.
- ``frames``: ``x`` is (T, D) frame features without an energy meaning (cached self-supervised features,
  ser.frontends.ssl_cached). Only ``featmix`` acts on them: the segment becomes the convex combination
  ``(1 - w) x_i + w x_j`` with the partner share ``w = 1 / (1 + 10**(snr / 10))`` of an snr drawn as EAM draws
  it, and lam = (l / L_i) w, EAM's label weight. ``eam`` and ``lam`` act on the waveform or on log-mel fbank
  only (AUGMENT_DOMAINS); asking for them on cached features is a ConfigError.

Every random draw comes from the ``rng`` the caller passes; the caller also picks the partner.
A draw is a :class:`MixDraw` returned by ``sample()``, so tests and callers can inspect it and
``apply()`` it; ``__call__`` is ``sample`` followed by ``apply``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from ser.registry import AUGMENTS, ConfigError, number_in

DOMAINS = ("wave", "fbank", "frames")

# A partner segment whose power is below this fraction of the target segment's power is silent.
SILENCE_RATIO = 1e-10


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


class Mixup:
    """Segment mixup shared by both methods; subclasses define the scale and the label weight."""

    def __init__(self, domain: str, prob: float, max_segment_ratio: float):
        """Values as resolved by AUGMENTS (build_augment): checked there."""
        if domain not in DOMAINS:
            raise ConfigError(f"augment domain must be one of {DOMAINS}, got {domain!r}")
        self.domain = domain
        self.prob = float(prob)
        self.max_segment_ratio = float(max_segment_ratio)

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
        mixed = x_i.copy()
        mixed[draw.start_i:draw.start_i + draw.length] = self.combine(seg_i.astype(np.float64),
                                                                      seg_j.astype(np.float64), scale)
        return mixed, self.label_weight(draw, x_i.shape[0])

    def combine(self, seg_i: np.ndarray, seg_j: np.ndarray, scale: float) -> np.ndarray:
        """The mixed segment: the partner overlaid with amplitude ``scale`` (power-additive for fbank)."""
        if self.domain == "wave":
            return seg_i + scale * seg_j
        return np.logaddexp(seg_i, seg_j + 2.0 * math.log(scale))

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

    def __init__(self, domain: str, prob: float, snr_range, max_segment_ratio: float):
        super().__init__(domain, prob, max_segment_ratio)
        self.snr_range = (float(snr_range[0]), float(snr_range[1]))

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


class FeatureMixup(EnergyAdaptiveMixup):
    """``featmix``: EAM's draws (segment, snr) on frame features, mixed as the convex combination
    ``(1 - w) x_i + w x_j`` over the segment with w = 1 / (1 + 10**(snr / 10)); lam = (l / L_i) w."""

    def segment_scale(self, x_i: np.ndarray, x_j: np.ndarray, draw: MixDraw) -> float:
        return 1.0 / (1.0 + 10.0 ** (draw.snr_db / 10.0))

    def combine(self, seg_i: np.ndarray, seg_j: np.ndarray, scale: float) -> np.ndarray:
        return (1.0 - scale) * seg_i + scale * seg_j


def _is_snr_range(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(not isinstance(v, bool) and isinstance(v, Real) and math.isfinite(v) for v in value)
            and value[0] < value[1])


_PROB = number_in(0.0, 1.0)
_SEGMENT_RATIO = number_in(0.0, 1.0, low_open=True)
# The domains each mixup acts on (ser.frontends: a front-end's augment_domain).
AUGMENT_DOMAINS = {"eam": ("wave", "fbank"), "lam": ("wave", "fbank"), "featmix": ("frames",),
                   "none": DOMAINS}
DOMAIN_NAMES = {"wave": "the waveform", "fbank": "log-mel fbank", "frames": "cached frame features"}


def check_augment_domain(name: str, domain: str) -> None:
    """A ConfigError naming the key when mixup ``name`` cannot act on the front-end's ``domain``."""
    allowed = AUGMENT_DOMAINS[name]
    if domain not in allowed:
        fits = [n for n, domains in AUGMENT_DOMAINS.items() if domain in domains]
        why = " (EAM and LAM mix audio or its energies: cached encoder frames have neither)" \
            if domain == "frames" else ""
        raise ConfigError(f"augment: {name} acts on {' or '.join(DOMAIN_NAMES[d] for d in allowed)}, and this "
                          f"front-end gives {DOMAIN_NAMES[domain]}{why}; choose one of {', '.join(fits)}")

def _fits(config: dict, frontend) -> None:
    check_augment_domain(config["augment"], frontend.augment_domain)


AUGMENTS.register("eam", EnergyAdaptiveMixup, {"prob": 0.5, "snr_range": [-5.0, 10.0], "max_segment_ratio": 0.5},
                  {"prob": _PROB, "snr_range": (_is_snr_range, "[low, high] in dB, finite, low < high"),
                   "max_segment_ratio": _SEGMENT_RATIO}, fits=_fits)
AUGMENTS.register("lam", LengthMixup, {"prob": 0.5, "max_segment_ratio": 0.5},
                  {"prob": _PROB, "max_segment_ratio": _SEGMENT_RATIO}, fits=_fits)
AUGMENTS.register("featmix", FeatureMixup,
                  {"prob": 0.5, "snr_range": [-5.0, 10.0], "max_segment_ratio": 0.5},
                  {"prob": _PROB, "snr_range": (_is_snr_range, "[low, high] in dB, finite, low < high"),
                   "max_segment_ratio": _SEGMENT_RATIO}, fits=_fits)
AUGMENTS.register("none", lambda domain: None, {}, {}, fits=_fits)




def mixup_record(name: str, domain: str) -> str:
    """Which mixup a run used, in words, as run.json and results.json record it."""
    return "none" if name == "none" else f"{name} on {DOMAIN_NAMES[domain]}"


def build_augment(name: str, conf: dict | None, domain: str) -> Mixup | None:
    """The mixup named ``name`` (eam | lam | none) acting on ``domain``, with ``conf`` over its defaults."""
    return AUGMENTS.build(name, AUGMENTS.resolve(name, conf), domain)
