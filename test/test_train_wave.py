"""The waveform path end to end: wav.scp -> 16 kHz waveforms -> waveform EAM -> tiny WavLM + FLAM -> inference."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

from ser.config import resolve_config
from ser.infer import classify_data_dir, load_trained
from ser.models.ssl import build_tiny_ssl
from ser.train import train

from support import WAVE_CLASSES as CLASSES
from support import write_wave_dir


@pytest.mark.parametrize("frontend, model_type, n_per_class, epochs", [
    ("wavlm", "wavlm", 10, 8), ("ssl", "wav2vec2", 10, 8), ("ssl", "hubert", 10, 8), ("ssl", "data2vec-audio", 10, 8),
    ("whisper", "whisper", 6, 6)])  # Whisper encodes a 30 s window per utterance: fewer utterances and epochs
def test_ssl_model_trains_on_waveforms_and_classifies(tmp_path, frontend, model_type, n_per_class, epochs):
    rng = np.random.default_rng(0)
    write_wave_dir(tmp_path / "train", rng, n_per_class=n_per_class)
    write_wave_dir(tmp_path / "valid", rng, n_per_class=5)
    checkpoint = tmp_path / f"tiny_{model_type}"
    build_tiny_ssl(str(checkpoint), model_type)
    config = resolve_config({
        "frontend": frontend,
        "frontend_conf": {"path": str(checkpoint), "freeze": "feature_encoder", "layer": "weighted"},
        "encoder": "flam", "encoder_conf": {"d_model": 32, "num_heads": 4, "embed_dim": 16},
        "augment": "eam", "augment_conf": {"prob": 0.5}, "optim_conf": {"lr": 2.0e-3},
        "max_epoch": epochs, "batch_size": 4, "crop_seconds": 0.5, "num_threads": 1, "log_interval": 0})
    outdir = tmp_path / "exp"
    selection = train(config, CLASSES, str(tmp_path / "train"), str(tmp_path / "valid"), None, str(outdir))
    assert selection["epochs_trained"] == epochs
    import json

    history = json.loads((outdir / "history.json").read_text())
    first, last = (np.mean([h["train"]["total"] for h in part]) for part in (history[:2], history[-2:]))
    assert last < first
    trained = load_trained(str(outdir))
    assert trained.normaliser is None
    data, posteriors = classify_data_dir(trained, str(tmp_path / "valid"))
    assert posteriors.shape == (10, 2) and np.allclose(posteriors.sum(1), 1, atol=1e-5)
    assert data.keys == sorted(data.keys) and data.feat_dim is None  # waveforms, in wav.scp order
