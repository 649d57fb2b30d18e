"""Checks shared by the tests of the waveform encoders (test_wavlm.py, test_whisper.py)."""

from __future__ import annotations

import torch


def make_wave(lengths, seed=0, scale=3000.0):
    """int16-range noise padded to the longest length with random garbage (which must not leak)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(len(lengths), max(lengths), generator=gen) * scale, torch.tensor(lengths)


def assert_alone_equals_batched(model, layer, lengths, seed, tol):
    """Each utterance encoded alone gives the frames of its row in the padded batch (for "weighted", with
    unequal layer weights)."""
    if layer == "weighted":
        with torch.no_grad():
            model.layer_weights.copy_(torch.tensor([0.3, -1.0, 0.8]))
    wave, wave_lengths = make_wave(lengths, seed=seed)
    with torch.no_grad():
        frames, frame_lengths = model(wave, wave_lengths)
        for row, length in enumerate(lengths):
            alone, alone_lengths = model(wave[row:row + 1, :length], wave_lengths[row:row + 1])
            assert alone_lengths.item() == frame_lengths[row].item() == alone.size(1)
            torch.testing.assert_close(frames[row, :alone.size(1)], alone[0], atol=tol, rtol=tol)
