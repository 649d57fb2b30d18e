"""Kaldi-compatible log-mel filterbank features and global CMVN statistics.

Options use Kaldi's names (``--num-mel-bins=80`` in a conf file, ``opts["num-mel-bins"]`` here).
Features are computed with kaldi-native-fbank, which implements Kaldi's ``compute-fbank-feats``;
every one of its options is set explicitly, because its own defaults (dither 3e-5, 23 bins) are
not ours. Input samples are expected in the int16 range (see ser.audio).

CMVN statistics follow Kaldi's layout, a (2, D+1) float64 matrix: row 0 holds the per-dimension
sums and, in its last column, the frame count; row 1 holds the per-dimension sums of squares
(last column 0).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import kaldi_native_fbank as knf
import kaldiio
import numpy as np

from ser.cli import parse_bool

WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "sine", "blackman")
# Kaldi's ApplyCmvn floors the variance at this value.
CMVN_VAR_FLOOR = 1.0e-20


def _parse_window(text: str) -> str:
    if text not in WINDOW_TYPES:
        raise ValueError(f"expected one of {', '.join(WINDOW_TYPES)}, got '{text}'")
    return text


def _parse_sample_rate(text: str) -> int:
    rate = float(text)
    if rate <= 0 or rate != int(rate):
        raise ValueError(f"expected a positive whole number of Hz, got '{text}'")
    return int(rate)


def _parse_channel(text: str) -> int:
    channel = int(text)
    if channel < -1:
        raise ValueError(f"expected -1 (down-mix) or a channel index >= 0, got '{text}'")
    return channel


def _parse_min_duration(text: str) -> float:
    seconds = float(text)
    if seconds < 0:
        raise ValueError(f"expected seconds >= 0, got '{text}'")
    return seconds


# name -> (default, parser of the conf-file text). Kaldi's compute-fbank-feats defaults differ in
# dither (1.0) and num-mel-bins (23); channel -1 means "expect mono" in Kaldi but down-mix here.
_OPTION_SPECS: dict[str, tuple[object, Callable[[str], object]]] = {
    "sample-frequency": (16000, _parse_sample_rate),
    "frame-length": (25.0, float),  # ms
    "frame-shift": (10.0, float),  # ms
    "dither": (0.0, float),
    "preemphasis-coefficient": (0.97, float),
    "remove-dc-offset": (True, parse_bool),
    "window-type": ("povey", _parse_window),
    "blackman-coeff": (0.42, float),
    "round-to-power-of-two": (True, parse_bool),
    "snip-edges": (True, parse_bool),
    "num-mel-bins": (80, int),
    "low-freq": (20.0, float),
    "high-freq": (0.0, float),  # <= 0: offset from the Nyquist frequency
    "use-energy": (False, parse_bool),
    "energy-floor": (0.0, float),
    "raw-energy": (True, parse_bool),
    "htk-compat": (False, parse_bool),
    "use-log-fbank": (True, parse_bool),
    "use-power": (True, parse_bool),
    # ser's audio reading (Kaldi's compute-fbank-feats has options of the same names).
    "channel": (-1, _parse_channel),
    "min-duration": (0.0, _parse_min_duration),
}
FBANK_DEFAULTS: dict[str, object] = {name: spec[0] for name, spec in _OPTION_SPECS.items()}


def read_fbank_conf(path: str) -> dict:
    """Read a Kaldi conf file (``--name=value`` lines, ``#`` comments) into a full option dict.

    Options not in the file keep FBANK_DEFAULTS; a later line overrides an earlier one; a boolean
    option may be given bare (``--snip-edges``). Errors name the file and line.
    """
    opts = dict(FBANK_DEFAULTS)
    with open(path, encoding="utf-8") as conf:
        for lineno, raw in enumerate(conf, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{path}:{lineno}"
            if not line.startswith("--"):
                raise ValueError(f"{where}: expected '--name=value', got '{line}'")
            name, has_value, text = line[2:].partition("=")
            name = name.strip()
            if name not in _OPTION_SPECS:
                raise ValueError(
                    f"{where}: unknown option --{name} (known: {', '.join(_OPTION_SPECS)})"
                )
            default, parse = _OPTION_SPECS[name]
            if not has_value:
                if not isinstance(default, bool):
                    raise ValueError(f"{where}: option --{name} needs a value")
                text = "true"
            try:
                opts[name] = parse(text.strip())
            except ValueError as err:
                raise ValueError(f"{where}: bad value for --{name}: {err}") from err
    return opts


def _resolve(opts: dict) -> dict:
    """FBANK_DEFAULTS overridden by ``opts``; unknown names are an error."""
    unknown = sorted(set(opts) - set(FBANK_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown fbank option(s): {', '.join(unknown)}")
    return {**FBANK_DEFAULTS, **opts}


def _knf_options(opts: dict) -> knf.FbankOptions:
    """kaldi-native-fbank options with every field set from ``opts`` (Kaldi names)."""
    knf_opts = knf.FbankOptions()
    frame = knf_opts.frame_opts
    frame.samp_freq = float(opts["sample-frequency"])
    frame.frame_length_ms = float(opts["frame-length"])
    frame.frame_shift_ms = float(opts["frame-shift"])
    frame.dither = float(opts["dither"])
    frame.preemph_coeff = float(opts["preemphasis-coefficient"])
    frame.remove_dc_offset = bool(opts["remove-dc-offset"])
    frame.window_type = str(opts["window-type"])
    frame.blackman_coeff = float(opts["blackman-coeff"])
    frame.round_to_power_of_two = bool(opts["round-to-power-of-two"])
    frame.snip_edges = bool(opts["snip-edges"])
    mel = knf_opts.mel_opts
    mel.num_bins = int(opts["num-mel-bins"])
    mel.low_freq = float(opts["low-freq"])
    mel.high_freq = float(opts["high-freq"])
    # Kaldi's mel scale and triangular bins, not the librosa/HTK/Slaney variants.
    mel.is_librosa = False
    mel.htk_mode = False
    mel.use_slaney_mel_scale = False
    mel.floor_to_int_bin = False
    mel.debug_mel = False
    # VTLN is not used (warp factor 1); these are Kaldi's defaults.
    mel.vtln_low = 100.0
    mel.vtln_high = -500.0
    knf_opts.use_energy = bool(opts["use-energy"])
    knf_opts.energy_floor = float(opts["energy-floor"])
    knf_opts.raw_energy = bool(opts["raw-energy"])
    knf_opts.htk_compat = bool(opts["htk-compat"])
    knf_opts.use_log_fbank = bool(opts["use-log-fbank"])
    knf_opts.use_power = bool(opts["use-power"])
    # Kaldi takes log(max(x, FLT_EPSILON)).
    knf_opts.use_log_floor = True
    knf_opts.eps = float(np.finfo(np.float32).eps)
    return knf_opts


def check_fbank_options(opts: dict) -> dict:
    """Resolve ``opts`` against the defaults and let kaldi-native-fbank validate the values
    (e.g. low-freq below high-freq below Nyquist). Returns the resolved options."""
    resolved = _resolve(opts)
    _make_extractor(resolved)
    return resolved


def _make_extractor(resolved_opts: dict) -> knf.OnlineFbank:
    try:
        return knf.OnlineFbank(_knf_options(resolved_opts))
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"invalid fbank options: {err}") from err


def compute_fbank(samples: np.ndarray, opts: dict) -> np.ndarray:
    """Log-mel filterbank of 1-D samples (int16 range) at ``opts['sample-frequency']``.

    Returns float32 (num_frames, num-mel-bins [+1 with use-energy]); zero rows when the signal is
    shorter than one frame (with snip-edges).
    """
    opts = _resolve(opts)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"compute_fbank expects 1-D samples, got shape {samples.shape}")
    extractor = _make_extractor(opts)
    extractor.accept_waveform(float(opts["sample-frequency"]), samples)
    extractor.input_finished()
    feats = np.empty((extractor.num_frames_ready, extractor.dim), dtype=np.float32)
    for frame in range(feats.shape[0]):
        feats[frame] = extractor.get_frame(frame)  # copies out of the extractor's buffer
    return feats


def _ms_to_samples(opts: dict, milliseconds_key: str) -> int:
    # Kaldi computes this in double from its float options and truncates.
    rate = float(np.float32(opts["sample-frequency"]))
    return int(rate * 0.001 * float(np.float32(opts[milliseconds_key])))


def frame_samples(opts: dict) -> tuple[int, int]:
    """(frame length, frame shift) in samples, as Kaldi rounds them."""
    opts = _resolve(opts)
    return _ms_to_samples(opts, "frame-length"), _ms_to_samples(opts, "frame-shift")


def num_frames(num_samples: int, opts: dict) -> int:
    """Number of frames Kaldi's fbank yields for ``num_samples`` samples."""
    length, shift = frame_samples(opts)
    if _resolve(opts)["snip-edges"]:
        return 0 if num_samples < length else 1 + (num_samples - length) // shift
    return (num_samples + shift // 2) // shift


def utterance_cmvn_stats(feats: np.ndarray) -> np.ndarray:
    """The (2, D+1) CMVN statistics of one feature matrix (T, D): sums, frame count, sums of squares."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"features must be a (frames, dim) matrix, got shape {feats.shape}")
    stats = np.zeros((2, feats.shape[1] + 1), dtype=np.float64)
    stats[0, :-1] = feats.sum(axis=0)
    stats[0, -1] = feats.shape[0]
    stats[1, :-1] = np.square(feats).sum(axis=0)
    return stats


class CmvnAccumulator:
    """Accumulates global CMVN statistics in Kaldi's (2, D+1) layout, utterance by utterance."""

    def __init__(self) -> None:
        self.stats: np.ndarray | None = None

    def add(self, feats: np.ndarray) -> None:
        self.add_stats(utterance_cmvn_stats(feats))

    def add_stats(self, stats: np.ndarray) -> None:
        """Add statistics accumulated elsewhere (e.g. one utterance's utterance_cmvn_stats)."""
        if self.stats is None:
            self.stats = np.zeros_like(stats)
        elif self.stats.shape != stats.shape:
            raise ValueError(f"feature dimension {stats.shape[1] - 1} differs from the earlier "
                             f"{self.stats.shape[1] - 1}")
        self.stats += stats

    def result(self) -> np.ndarray:
        if self.stats is None:
            raise ValueError("no features to accumulate CMVN statistics from")
        return self.stats


def accumulate_cmvn(feats_iter: Iterable[np.ndarray]) -> np.ndarray:
    """Global CMVN statistics (2, D+1) over all feature matrices of ``feats_iter``."""
    accumulator = CmvnAccumulator()
    for feats in feats_iter:
        accumulator.add(feats)
    return accumulator.result()


def _check_cmvn_stats(stats: np.ndarray, where: str) -> None:
    if stats.ndim != 2 or stats.shape[0] != 2 or stats.shape[1] < 2:
        raise ValueError(f"{where}: CMVN stats must have shape (2, D+1), got {stats.shape}")
    if stats[0, -1] < 1.0:
        raise ValueError(f"{where}: CMVN stats count {stats[0, -1]} is below 1")


class CmvnNormaliser:
    """Mean (and variance) normalisation by Kaldi CMVN stats, with the statistics resolved once."""

    def __init__(self, stats: np.ndarray, norm_vars: bool = True):
        stats = np.asarray(stats, dtype=np.float64)
        _check_cmvn_stats(stats, "CMVN")
        self.dim = stats.shape[1] - 1
        count = stats[0, self.dim]
        mean = stats[0, :self.dim] / count
        self.mean = mean.astype(np.float32)
        if norm_vars:
            variance = np.maximum(stats[1, :self.dim] / count - np.square(mean), CMVN_VAR_FLOOR)
            self.inv_std = (1.0 / np.sqrt(variance)).astype(np.float32)
        else:
            self.inv_std = np.ones(self.dim, dtype=np.float32)

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"CMVN: features of shape {feats.shape} do not match {self.dim}-dim stats")
        return ((feats - self.mean) * self.inv_std).astype(np.float32)


CMVN_ARK_KEY = "global"


def write_cmvn_stats(path: str, stats: np.ndarray) -> None:
    """Write stats as ``.npy`` or, for any other name, a Kaldi ark holding one matrix keyed
    "global" (readable by Kaldi's copy-matrix). Written to a temporary name, then renamed."""
    from ser.atomic import atomic_path

    with atomic_path(path) as tmp_path:
        if path.endswith(".npy"):
            with open(tmp_path, "wb") as out:
                np.save(out, np.asarray(stats, dtype=np.float64))
        else:
            kaldiio.save_ark(tmp_path, {CMVN_ARK_KEY: np.asarray(stats, dtype=np.float64)})


def read_cmvn_stats(path: str) -> np.ndarray:
    """Read stats written by write_cmvn_stats (``.npy``, or a Kaldi ark with key "global")."""
    if path.endswith(".npy"):
        stats = np.load(path)
    else:
        try:
            matrices = dict(kaldiio.load_ark(path))
        except OSError:
            raise
        except Exception as err:  # kaldiio raises assorted types (RuntimeError, AssertionError) for malformed arks
            raise ValueError(f"{path}: not a Kaldi ark of CMVN statistics ({' '.join(str(err).split())})") from None
        if CMVN_ARK_KEY not in matrices:
            keys = ", ".join(repr(k) for k in matrices) or "none"
            raise ValueError(f"{path}: no '{CMVN_ARK_KEY}' matrix (keys: {keys})")
        stats = matrices[CMVN_ARK_KEY]
    stats = np.asarray(stats, dtype=np.float64)
    _check_cmvn_stats(stats, path)
    return stats


def iter_feats_scp(path: str) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (key, matrix) for each ``key ark_path:offset`` line of a feats.scp, in order.
    Errors name the file and line."""
    open_arks: dict = {}
    try:
        with open(path, encoding="utf-8") as scp:
            for lineno, line in enumerate(scp, 1):
                fields = line.split(maxsplit=1)
                if len(fields) != 2:
                    raise ValueError(f"{path}:{lineno}: expected '<key> <ark:offset>', got '{line.rstrip()}'")
                key, location = fields[0], fields[1].strip()
                try:
                    feats = kaldiio.load_mat(location, fd_dict=open_arks)
                except Exception as err:  # kaldiio raises assorted types for bad locations
                    raise ValueError(f"{path}:{lineno}: cannot read '{location}' for {key}: {err}") from err
                yield key, feats
    finally:
        for ark in open_arks.values():
            ark.close()
