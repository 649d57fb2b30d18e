"""The synth recipe's stages 2-4 with each self-supervised front-end (tiny random checkpoints, no download): one
fold, one seed, one epoch on a small generated corpus (2 utterances per class and speaker) whose stages 0-1 run once
for all. Each case costs four heavy Python start-ups (config check, training, decoding, scoring). The WavLM case runs
the shipped conf/train_wavlm.yaml (waveform EAM, WavLM, FLAM) at a CPU's sizes."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from support import REPO, run_recipe

pytest.importorskip("transformers")
from ser.corpora.synth import generate_synth_corpus  # noqa: E402
from ser.models.ssl import build_tiny_ssl  # noqa: E402

CONFIG = """frontend: {frontend}
frontend_conf: {{path: {path}, freeze: feature_encoder, layer: weighted}}
encoder: flam
encoder_conf: {{d_model: 32, num_heads: 4, embed_dim: 16}}
augment: eam
optim_conf: {{lr: 2.0e-3}}
max_epoch: 1
batch_size: 8
crop_seconds: 1.0
"""


@pytest.fixture(scope="module")
def small_recipe(tmp_path_factory):
    """The recipe's stages 0-1 on a 64-utterance corpus."""
    tmp = tmp_path_factory.mktemp("synth_ssl")
    generate_synth_corpus(str(tmp / "corpus"), utts_per_class=2)
    run_recipe(tmp, "--stop-stage", "1")
    return tmp


@pytest.mark.slow
@pytest.mark.parametrize("frontend, model_type", [("wavlm", "wavlm"), ("ssl", "wav2vec2"), ("ssl", "hubert"),
                                                   ("ssl", "data2vec-audio"), ("whisper", "whisper")])
def test_recipe_trains_decodes_and_scores_each_ssl_architecture(small_recipe, frontend, model_type):
    tmp = small_recipe
    # Whisper with 1 s windows (instead of 30 s): cheaper, and the utterances span several windows.
    overrides = {"max_source_positions": 50} if model_type == "whisper" else {}
    checkpoint = build_tiny_ssl(str(tmp / f"tiny_{model_type}"), model_type, **overrides)
    config = tmp / f"{model_type}.yaml"
    if model_type == "wavlm":
        with open(os.path.join(REPO, "egs", "TEMPLATE", "conf", "train_wavlm.yaml")) as f:
            shipped = yaml.safe_load(f)
        shipped["frontend_conf"]["path"] = checkpoint
        shipped["encoder_conf"].update(d_model=32, num_heads=4, embed_dim=16)
        shipped.update(max_epoch=1, batch_size=8, crop_seconds=1.0)
        config.write_text(yaml.safe_dump(shipped))
    else:
        config.write_text(CONFIG.format(frontend=frontend, path=json.dumps(checkpoint)))
    run_recipe(tmp, "--stage", "2", "--folds", "1", "--seeds", "0", "--train-config", str(config), "--tag",
               model_type, "--train-args", "--set max_epoch=1")
    exp = tmp / "exp" / model_type
    results = json.loads((exp / "results.json").read_text())
    assert results["protocol"]["folds_scored"] == [1]
    run = results["runs"]["0"]["1"]
    assert run["num_utts"] == 16 and sum(map(sum, run["confusion"])) == 16
    assert 0.0 <= run["ua"] <= 100.0 and "ua" in results["summary"]
    assert results["config"]["frontend"] == frontend and results["config"]["frontend_conf"]["path"] == checkpoint
    assert f"front-end `{frontend}` ({model_type})" in (exp / "RESULTS.md").read_text()
