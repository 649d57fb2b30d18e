"""Tests of ser.specaug: frequency warp, time stretch and masks of training fbank, against scipy's interpolation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d

from ser.config import ConfigError, config_hash, resolve_config
from ser.specaug import SPECAUGS, freq_warp, time_stretch


def features(rng, frames=50, dim=80):
    return rng.standard_normal((frames, dim)).astype(np.float32) * 3.0 - 5.0


@pytest.mark.parametrize("alpha", [0.9, 1.07, 1.15])
def test_freq_warp_is_the_mel_axis_sampled_at_k_over_alpha(alpha):
    x = features(np.random.default_rng(0))
    positions = np.minimum(np.arange(80) / alpha, 79)
    reference = interp1d(np.arange(80), x, axis=1)(positions)
    np.testing.assert_allclose(freq_warp(x, alpha), reference, rtol=1e-5, atol=1e-5)
    # A spectral peak moves up by alpha (a shorter vocal tract) and down for alpha < 1.
    peak = np.full((1, 80), -10.0, dtype=np.float32)
    peak[0, 40] = 0.0
    assert int(np.argmax(freq_warp(peak, alpha)[0])) == round(40 * alpha)


@pytest.mark.parametrize("beta", [0.85, 1.0, 1.2])
def test_time_stretch_resamples_frames(beta):
    x = features(np.random.default_rng(1), frames=37)
    out = time_stretch(x, beta)
    assert out.shape == (round(37 * beta), 80)
    reference = interp1d(np.arange(37), x, axis=0)(np.minimum(np.arange(out.shape[0]) / beta, 36))
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5)


def test_masks_zero_bands_within_their_widths_and_draws_repeat_with_the_generator():
    conf = SPECAUGS.resolve("specaug", {"num_freq_mask": 2, "freq_mask_width_range": [3, 8], "num_time_mask": 1,
                                        "time_mask_width_ratio_range": [0.1, 0.2]})
    augment = SPECAUGS.build("specaug", conf)
    x = features(np.random.default_rng(2), frames=100) + 20.0  # no value is 0 before masking
    out = augment.mask(x, np.random.default_rng(7))
    zero_columns = np.all(out == 0.0, axis=0).sum()
    zero_rows = np.all(out == 0.0, axis=1).sum()
    assert 3 <= zero_columns <= 16 and 10 <= zero_rows <= 20
    kept = ~((out == 0.0).all(axis=0)[None, :] | (out == 0.0).all(axis=1)[:, None])
    np.testing.assert_array_equal(out[kept], x[kept])
    np.testing.assert_array_equal(out, augment.mask(x, np.random.default_rng(7)))
    assert not np.array_equal(out, augment.mask(x, np.random.default_rng(8)))


def test_specaug_config_is_checked_by_key_and_none_keeps_the_hash():
    base = {"encoder": "flam"}
    assert config_hash(resolve_config(base)) == config_hash(resolve_config({**base, "specaug": "none"}))
    assert config_hash(resolve_config(base)) != config_hash(resolve_config({**base, "specaug": "specaug"}))
    with pytest.raises(ConfigError, match="specaug_conf.freq_warp_range"):
        resolve_config({"specaug": "specaug", "specaug_conf": {"freq_warp_range": [1.1, 0.9]}})
    with pytest.raises(ConfigError, match="specaug_conf.num_masks"):
        resolve_config({"specaug": "specaug", "specaug_conf": {"num_masks": 2}})
    with pytest.raises(ConfigError, match="specaug: specaug acts on frame features"):
        resolve_config({"frontend": "wavlm", "specaug": "specaug"})
