"""openSMILE utterance functionals: the classic SER reference features.

Each utterance becomes one vector of statistics (means, percentiles, slopes, ...) of frame-level low-level
descriptors. ``eGeMAPSv02`` (88 values, Eyben et al. 2016) and ``ComParE_2016`` (6373 values, Schuller et al.
2016) are computed with audEERING's ``opensmile`` package, an optional extra (``tools/install.sh --opensmile``):
its wheel carries audEERING's research licence (non-commercial use only).

Audio is read as stage 1 reads it (ser.audio.load_mono: resampled to 16 kHz, down-mixed) and scaled to [-1, 1).
A functionals archive holds a (1, D) float32 matrix per utterance, so kaldiio and the data-dir tools read it as
they read fbank.
"""

from __future__ import annotations

import kaldiio
import numpy as np

from ser.audio import INT16_SCALE
from ser.datadir import DataDirError, read_table
from ser.registry import FUNCTIONALS

FEATURE_SETS = ("eGeMAPSv02", "ComParE_2016")
for _name in ("none",) + FEATURE_SETS:  # the config key functionals: none, or a feature set fused into the model
    FUNCTIONALS.register(_name, None, {}, {})
SAMPLE_RATE = 16000


class FunctionalsUnavailable(RuntimeError):
    pass


def make_extractor(feature_set: str):
    """An opensmile.Smile computing ``feature_set``'s functionals (the package is imported here, lazily)."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown openSMILE feature set {feature_set!r}; choose one of {', '.join(FEATURE_SETS)}")
    try:
        import opensmile
    except ImportError as e:  # not installed, or installed and broken (its native library missing)
        raise FunctionalsUnavailable(
            f"the opensmile package cannot be imported ({e}): run tools/install.sh --opensmile (audEERING's research "
            "licence, non-commercial use)") from None
    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                           feature_level=opensmile.FeatureLevel.Functionals)


def feature_names(extractor) -> list[str]:
    return list(extractor.feature_names)


def compute_functionals(extractor, samples: np.ndarray) -> np.ndarray:
    """(1, D) float32 functionals of 16 kHz samples in the int16 range (as ser.audio gives them)."""
    values = extractor.process_signal(np.asarray(samples, dtype=np.float32) / INT16_SCALE, SAMPLE_RATE)
    row = np.asarray(values, dtype=np.float32).reshape(1, -1)
    if not np.all(np.isfinite(row)):
        row = np.nan_to_num(row, nan=0.0, posinf=0.0, neginf=0.0)
    return row


def read_utterance_features(functionals_scp: str | None, keys: list[str]) -> np.ndarray:
    """(N, F) float32 functionals of ``keys`` from an archive of (1, F) matrices."""
    if not functionals_scp:
        raise ValueError("the config fuses functionals but no functionals archive was given (--functionals-scp)")
    table = read_table(functionals_scp, 2)  # the value is the rest of the line: paths may hold spaces
    rows = []
    for key in keys:
        if key not in table:
            raise DataDirError(f"{functionals_scp}: no functionals for utterance {key}")
        mat = kaldiio.load_mat(table[key])
        if mat.ndim != 2 or mat.shape[0] != 1:
            raise DataDirError(f"{functionals_scp}: functionals of {key} have shape {mat.shape}, expected (1, F)")
        rows.append(mat[0])
    return np.asarray(rows, dtype=np.float32)
