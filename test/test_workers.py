"""num_workers: training batches made in DataLoader workers (audio read, resampled, cropped and mixed there) equal
the training process's own bit for bit, and a run stopped after epoch 1 and resumed with workers on equals an
uninterrupted run without them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from ser.augment import build_augment  # noqa: E402
from ser.config import ConfigError, config_hash, resolve_config  # noqa: E402
from ser.dataset import LazyWaves, TrainBatches, batch_loader, load_wave_set  # noqa: E402

from support import WAVE_CLASSES as CLASSES  # noqa: E402
from support import train_stopped_after_epoch_1, write_wave_dir  # noqa: E402


@pytest.fixture(scope="module")
def wave_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("waves")
    rng = np.random.default_rng(0)
    write_wave_dir(root / "train", rng, n_per_class=8)  # 22.05 kHz: resampled; paths and `cat |` commands
    write_wave_dir(root / "valid", rng, n_per_class=3)
    return root


@pytest.mark.parametrize("persistent", [False, True])
def test_workers_give_the_batches_of_the_training_process(wave_dirs, persistent):
    eager = load_wave_set(str(wave_dirs / "train"), CLASSES, 16000)
    lazy = load_wave_set(str(wave_dirs / "train"), CLASSES, 16000, lazy=True)
    assert isinstance(lazy.feats, LazyWaves) and lazy.keys == eager.keys
    assert np.array_equal(lazy.lengths, eager.lengths)  # from the headers, resampled length included

    def batches(data):
        return TrainBatches(data, 2, None, batch_size=3, max_frames=8000, bucketing=True,
                            mixup=build_augment("eam", {"prob": 1.0}, "wave"), seed=3)

    reference, in_workers = batches(eager), batches(lazy)
    loader = batch_loader(in_workers, num_workers=2, persistent_workers=persistent)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    for epoch in (1, 2):
        reference.set_epoch(epoch)
        in_workers.set_epoch(epoch)
        expected = [reference[i] for i in range(len(reference))]
        got = list(loader)
        assert len(got) == len(expected) == 6
        for a, b in zip(expected, got):
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a)
            assert a["feats"].dtype == b["feats"].dtype
        assert any(float(b["targets"].max()) < 1.0 for b in got)  # EAM mixed some (soft targets)
    assert torch.equal(torch.get_rng_state(), before)  # the loader draws nothing from torch's global RNG


def test_speed_only_keys_keep_the_config_hash():
    base = resolve_config({})
    assert config_hash(resolve_config({"num_workers": 2, "persistent_workers": True})) == config_hash(base)
    with pytest.raises(ConfigError, match="num_workers: must be >= 0"):
        resolve_config({"num_workers": -1})


def test_resume_with_workers_equals_an_uninterrupted_run(wave_dirs, tmp_path, monkeypatch):
    import ser.train
    from ser.models.ssl import build_tiny_ssl

    checkpoint = build_tiny_ssl(str(tmp_path / "tiny"))

    def config(workers):
        return resolve_config({
            "frontend": "wavlm", "frontend_conf": {"path": checkpoint, "freeze": "feature_encoder"},
            "encoder": "flam", "encoder_conf": {"d_model": 32, "num_heads": 4, "embed_dim": 16},
            "augment": "eam", "augment_conf": {"prob": 0.5}, "optim_conf": {"lr": 2.0e-3}, "max_epoch": 3,
            "batch_size": 4, "crop_seconds": 0.5, "num_threads": 1, "log_interval": 0, "num_workers": workers})

    train_dir, valid_dir = str(wave_dirs / "train"), str(wave_dirs / "valid")
    ser.train.train(config(0), CLASSES, train_dir, valid_dir, None, str(tmp_path / "plain"))

    train_stopped_after_epoch_1(monkeypatch, config(0), CLASSES, train_dir, valid_dir, None, str(tmp_path / "resumed"))
    assert len(json.loads((tmp_path / "resumed" / "history.json").read_text())) == 1
    ser.train.train(config(2), CLASSES, train_dir, valid_dir, None, str(tmp_path / "resumed"))  # workers on

    plain, resumed = (json.loads((tmp_path / d / "history.json").read_text()) for d in ("plain", "resumed"))
    assert [h["train"] for h in resumed] == [h["train"] for h in plain]
    assert [h["valid"] for h in resumed] == [h["valid"] for h in plain]
    a, b = torch.load(tmp_path / "plain" / "last.pth"), torch.load(tmp_path / "resumed" / "last.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["num_workers"] == 2


def test_lazy_waves_refuse_a_cut_short_wav_naming_its_line(tmp_path):
    """Read lazily, a wav cut short is still an error naming wav.scp's line (as when read up front)."""
    import shutil

    from ser.datadir import DataDirError

    rng = np.random.default_rng(1)
    data_dir = tmp_path / "train"
    write_wave_dir(data_dir, rng, n_per_class=2)
    lines = (data_dir / "wav.scp").read_text().splitlines()
    lineno, line = next((n, line) for n, line in enumerate(lines, 1) if not line.endswith("|"))
    wav = line.split(maxsplit=1)[1]
    shutil.copy(wav, tmp_path / "whole.wav")
    data = (tmp_path / "whole.wav").read_bytes()
    with open(wav, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DataDirError, match=rf"wav.scp:{lineno}: .*cut short"):
        load_wave_set(str(data_dir), CLASSES, 16000, lazy=True)
