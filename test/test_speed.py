"""Speed perturbation (ser.speed, config speed_perturb): the resampling against an FFT resampler, the per-epoch
draws, the config key, and training with it (fbank from the perturbed audio) on a tiny task."""

from __future__ import annotations

import json
import os
import shutil

import kaldiio
import numpy as np
import pytest
import scipy.signal
import torch

import ser.components  # noqa: F401  fills the registries
from ser.config import ConfigError, config_hash, resolve_config
from ser.dataset import LabelledSet, TrainBatches, load_wave_set
from ser.features import accumulate_cmvn, compute_fbank, read_fbank_conf, write_cmvn_stats
from ser.speed import SpeedPerturbation, change_speed, fbank_tables
from ser.train import TrainingError, train

from support import FAST_CONFIG, REPO, WAVE_CLASSES, train_stopped_after_epoch_1, write_wave_dir

FBANK_CONF = os.path.join(REPO, "egs", "TEMPLATE", "conf", "fbank.conf")


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_change_speed_matches_fft_resampling_and_scales_length_and_pitch(factor):
    # n makes n / factor whole, and both tones whole numbers of cycles (what the FFT reference assumes).
    rate, n = 16000, 9 * 11 * 160
    t = np.arange(n) / rate
    tone = 435 * rate / n  # about 439 Hz
    x = (3000 * np.sin(2 * np.pi * tone * t) + 2000 * np.sin(2 * np.pi * (1238 * rate / n) * t)).astype(np.float32)
    y = change_speed(x, factor)
    assert len(y) == round(n / factor)
    # An independent resampler (FFT, scipy.signal.resample) to the same length agrees away from the edges.
    reference = scipy.signal.resample(x.astype(np.float64), len(y))
    inner = slice(400, len(y) - 400)
    assert np.max(np.abs(y[inner] - reference[inner])) < 0.01 * np.max(np.abs(x))
    # Played at the original rate, the tones move by the factor.
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak = np.fft.rfftfreq(len(y), 1 / rate)[np.argmax(spectrum)]
    assert peak == pytest.approx(tone * factor, abs=2.0)


def test_factor_draws_are_a_function_of_seed_epoch_and_utterance():
    speed = SpeedPerturbation([0.9, 1.0, 1.1])
    draws = [[speed.factor(0, epoch, i) for i in range(60)] for epoch in (1, 2)]
    assert draws[0] == [speed.factor(0, 1, i) for i in range(60)]  # a resumed epoch draws the same
    assert draws[0] != draws[1] and set(draws[0]) == {0.9, 1.0, 1.1}
    # In TrainBatches the draw uses its own generator: crops and mixup draw as without speed perturbation.
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 1000, int(n)).astype(np.float32) for n in rng.integers(3000, 6000, 12)]
    data = LabelledSet([f"u{i}" for i in range(12)], np.arange(12) % 2, waves)
    plain = TrainBatches(data, 2, None, 4, 0, False, None, seed=5)
    perturbed = TrainBatches(data, 2, None, 4, 0, False, None, seed=5, speed=speed)
    for step in range(len(plain)):
        a, b = plain[step], perturbed[step]
        assert np.array_equal(a["indices"], b["indices"])
        for row, index in enumerate(a["indices"].tolist()):
            factor = speed.factor(5, 1, index)
            assert int(b["lengths"][row]) == len(change_speed(waves[index], factor))


def test_speed_perturb_key_is_checked_and_off_keeps_the_hash():
    assert config_hash(resolve_config({"speed_perturb": []})) == config_hash(resolve_config({}))
    assert config_hash(resolve_config({"speed_perturb": [0.9, 1.0, 1.1]})) != config_hash(resolve_config({}))
    for bad in ([0.2], [1.0, 1.0], ["fast"], [True]):
        with pytest.raises(ConfigError, match="speed_perturb"):
            resolve_config({"speed_perturb": bad})


def _fbank_dir(path, rng, n_per_class):
    """A wave dir (two tone classes) with its fbank (feats.scp) as stage 1 computes it, and utt2spk (3 speakers)."""
    write_wave_dir(path, rng, n_per_class=n_per_class)
    opts = read_fbank_conf(FBANK_CONF)
    waves = load_wave_set(str(path), WAVE_CLASSES, 16000)
    with kaldiio.WriteHelper(f"ark,scp:{path}/feats.ark,{path}/feats.scp") as w:
        for key, wave in zip(waves.keys, waves.feats):
            w(key, compute_fbank(wave, opts))
    with open(path / "utt2spk", "w") as f:
        f.writelines(f"{key} spk{i % 3}\n" for i, key in enumerate(waves.keys))
    return waves


def test_fbank_tables_are_the_fbank_of_the_perturbed_audio(tmp_path):
    waves = _fbank_dir(tmp_path / "train", np.random.default_rng(1), n_per_class=2)
    tables = fbank_tables(str(tmp_path / "train"), waves.keys, [0.9, 1.0, 1.1], FBANK_CONF)
    assert sorted(tables) == [0.9, 1.1]
    opts = read_fbank_conf(FBANK_CONF)
    for factor, table in tables.items():
        for wave, feats in zip(waves.feats, table):
            np.testing.assert_array_equal(feats, compute_fbank(change_speed(wave, factor), opts))


def _train_valid(tmp_path):
    rng = np.random.default_rng(0)
    _fbank_dir(tmp_path / "train", rng, n_per_class=12)
    _fbank_dir(tmp_path / "valid", rng, n_per_class=4)
    stats = accumulate_cmvn(m for _, m in kaldiio.load_scp_sequential(str(tmp_path / "train" / "feats.scp")))
    write_cmvn_stats(str(tmp_path / "train" / "cmvn.ark"), stats)


def test_training_with_speed_perturbation_learns(tmp_path):
    _train_valid(tmp_path)
    config = resolve_config({**FAST_CONFIG, "max_epoch": 6, "speed_perturb": [0.9, 1.0, 1.1]})
    args = (config, WAVE_CLASSES, str(tmp_path / "train"), str(tmp_path / "valid"),
            str(tmp_path / "train" / "cmvn.ark"))
    with pytest.raises(TrainingError, match="--fbank-conf"):
        train(*args, str(tmp_path / "no_conf"))
    assert not os.path.exists(tmp_path / "no_conf")
    selection = train(*args, str(tmp_path / "run"), extra_files={"fbank.conf": FBANK_CONF})
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["train"]["total"] < history[0]["train"]["total"]
    assert selection["valid"]["ua"] >= 90.0  # two tone classes (chance 50)
    shutil.rmtree(tmp_path / "run")


def test_resume_with_both_levers_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    """Speed perturbation and the speaker adversary on, interrupted after epoch 1 and resumed with workers: the
    history and the weights of an uninterrupted run, bit for bit (the draws depend on (seed, epoch, utterance); the
    adversary's head and its optimizer are in the checkpoint)."""
    _train_valid(tmp_path)

    def config(workers):
        return resolve_config({**FAST_CONFIG, "max_epoch": 3, "speed_perturb": [0.9, 1.0, 1.1],
                               "loss_conf": {"speaker_adv": 0.2}, "num_workers": workers})

    args = (WAVE_CLASSES, str(tmp_path / "train"), str(tmp_path / "valid"), str(tmp_path / "train" / "cmvn.ark"))
    extra = {"fbank.conf": FBANK_CONF}
    train(config(0), *args, str(tmp_path / "plain"), extra_files=extra)

    train_stopped_after_epoch_1(monkeypatch, config(0), *args, str(tmp_path / "resumed"), extra_files=extra)
    train(config(2), *args, str(tmp_path / "resumed"), extra_files=extra)
    plain, resumed = (json.loads((tmp_path / d / "history.json").read_text()) for d in ("plain", "resumed"))
    assert [h["train"] for h in resumed] == [h["train"] for h in plain]
    assert all(h["train"]["speaker_adv"] > 0 for h in plain)
    a, b = torch.load(tmp_path / "plain" / "last.pth"), torch.load(tmp_path / "resumed" / "last.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)
