"""Kaldi's fbank (ser.features.compute_fbank) as a torch module of plain tensor operations, so that it exports to
ONNX and runs batched: waveforms in, log-mel frames out.

Per frame, as Kaldi's compute-fbank-feats: cut (snip-edges, or centred frames with reflected edges), remove the DC
offset, log the raw energy, pre-emphasise, window, zero-pad to the FFT size, power (or magnitude) spectrum, Kaldi's
triangular mel bins over the FFT bins below Nyquist, log floored at float epsilon, and the energy column when asked
for. Pre-emphasis, window and the DFT are linear, so they are one (frame length, 2 x FFT bins) matrix computed in
float64 from the options; the mel bins are another. Tested against kaldi-native-fbank (test/test_export_onnx.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ser.audio import INT16_SCALE
from ser.features import check_fbank_options, frame_samples

FLOAT_EPSILON = float(np.finfo(np.float32).eps)  # Kaldi floors logs at FLT_EPSILON


def mel_scale(freq: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + freq / 700.0)


def kaldi_mel_banks(opts: dict, fft_size: int) -> np.ndarray:
    """(fft_size // 2, num-mel-bins) triangular weights of Kaldi's MelBanks (no VTLN warping)."""
    rate = float(opts["sample-frequency"])
    num_bins = int(opts["num-mel-bins"])
    high = float(opts["high-freq"]) if opts["high-freq"] > 0 else 0.5 * rate + float(opts["high-freq"])
    mel_low, mel_high = mel_scale(np.float64(opts["low-freq"])), mel_scale(np.float64(high))
    delta = (mel_high - mel_low) / (num_bins + 1)
    mel = mel_scale(np.arange(fft_size // 2) * (rate / fft_size))[:, None]
    left = mel_low + np.arange(num_bins)[None, :] * delta
    centre, right = left + delta, left + 2 * delta
    rising, falling = (mel - left) / (centre - left), (right - mel) / (right - centre)
    return np.where((mel > left) & (mel < right), np.where(mel <= centre, rising, falling), 0.0)


def kaldi_window(opts: dict, length: int) -> np.ndarray:
    a = 2 * math.pi / (length - 1)
    i = np.arange(length, dtype=np.float64)
    kind = opts["window-type"]
    if kind == "hanning":
        return 0.5 - 0.5 * np.cos(a * i)
    if kind == "sine":
        return np.sin(0.5 * a * i)
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(a * i)
    if kind == "povey":
        return np.power(0.5 - 0.5 * np.cos(a * i), 0.85)
    if kind == "rectangular":
        return np.ones(length)
    coeff = float(opts["blackman-coeff"])  # blackman
    return coeff - 0.5 * np.cos(a * i) + (0.5 - coeff) * np.cos(2 * a * i)


class KaldiFbank(nn.Module):
    """forward(waveform (B, N) float in [-1, 1], lengths (B,) samples) -> (feats (B, T, D), frame lengths (B,)).

    Samples are scaled to the int16 range as ser.audio reads them. Rows are zero-padded past their length; a row's
    frames beyond its frame length are to be ignored (the models mask them). Frames never read past a row's own
    length, so each row's valid frames equal those of the row computed alone."""

    def __init__(self, opts: dict):
        super().__init__()
        opts = check_fbank_options(opts)
        if float(opts["dither"]) != 0:
            raise ValueError(f"a graph computes deterministic fbank only: --dither={opts['dither']} must be 0")
        self.length, self.shift = frame_samples(opts)
        self.snip_edges = bool(opts["snip-edges"])
        self.remove_dc = bool(opts["remove-dc-offset"])
        self.use_energy, self.raw_energy = bool(opts["use-energy"]), bool(opts["raw-energy"])
        self.energy_last = bool(opts["htk-compat"])
        self.log_energy_floor = math.log(opts["energy-floor"]) if opts["energy-floor"] > 0 else None
        self.use_log, self.use_power = bool(opts["use-log-fbank"]), bool(opts["use-power"])
        fft_size = 1 << (self.length - 1).bit_length() if opts["round-to-power-of-two"] else self.length
        coeff = float(opts["preemphasis-coefficient"])
        preemphasis = np.eye(self.length) - coeff * np.eye(self.length, k=1)  # row vectors: y = x @ P
        preemphasis[0, 0] = 1.0 - coeff  # Kaldi: x[0] - coeff * x[0]
        windowing = preemphasis * kaldi_window(opts, self.length)[None, :]
        angle = 2 * math.pi * np.outer(np.arange(self.length), np.arange(fft_size // 2)) / fft_size
        dft = windowing @ np.concatenate([np.cos(angle), np.sin(angle)], axis=1)
        self.register_buffer("windowing", torch.from_numpy(windowing.astype(np.float32)), persistent=False)
        self.register_buffer("dft", torch.from_numpy(dft.astype(np.float32)), persistent=False)
        self.register_buffer("mel_banks", torch.from_numpy(kaldi_mel_banks(opts, fft_size).astype(np.float32)),
                             persistent=False)
        self.offsets = torch.arange(self.length)

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.snip_edges:
            return torch.where(lengths >= self.length, (lengths - self.length) // self.shift + 1, 0)
        return (lengths + self.shift // 2) // self.shift

    def frames(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, frame length) samples of each frame, T from the padded width."""
        num_samples = x.shape[1]
        if self.snip_edges:
            index = (torch.arange((num_samples - self.length) // self.shift + 1) * self.shift)[:, None] \
                + self.offsets[None, :]
            return x[:, index]
        index = (torch.arange((num_samples + self.shift // 2) // self.shift) * self.shift
                 + (self.shift // 2 - self.length // 2))[:, None] + self.offsets[None, :]
        own = lengths[:, None, None]  # reflect at each row's own ends, as Kaldi does at the signal's
        index = torch.where(index < 0, -index - 1, index)
        index = torch.where(index >= own, 2 * own - 1 - index, index).clamp(0, num_samples - 1)
        return torch.gather(x, 1, index.reshape(x.shape[0], -1)).reshape(x.shape[0], -1, self.length)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.frames(waveform * INT16_SCALE, lengths)
        if self.remove_dc:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        spectrum = frames @ self.dft
        real, imag = spectrum.chunk(2, dim=-1)
        power = real * real + imag * imag
        mel = (power if self.use_power else power.sqrt()) @ self.mel_banks
        if self.use_log:
            mel = mel.clamp(min=FLOAT_EPSILON).log()
        if self.use_energy:
            signal = frames if self.raw_energy else frames @ self.windowing
            energy = (signal * signal).sum(dim=-1, keepdim=True).clamp(min=FLOAT_EPSILON).log()
            if self.log_energy_floor is not None:
                energy = energy.clamp(min=self.log_energy_floor)
            mel = torch.cat([mel, energy] if self.energy_last else [energy, mel], dim=-1)
        return mel, self.frame_lengths(lengths)
