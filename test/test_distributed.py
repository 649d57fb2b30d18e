"""Data-parallel training (torchrun, gloo backend on CPU, two processes) against one process with the same seed.

With dropout off, splitting each batch over two ranks and averaging their gradients is the same computation as one
process on the whole batch, up to float summation order: the per-sample-mean terms (KL, focal, centre) by the
averaging, the supervised contrastive term because every rank computes it over the whole batch.
Stated tolerance: per-epoch training loss terms within 1e-4 relative, validation UA/WA within 1.5 points
(one of the 24 validation utterances may flip on a near tie), selected epochs equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from support import python_env, train_command

CONFIG = {
    "encoder": "flam",
    "encoder_conf": {"d_model": 32, "num_heads": 4, "conv_channels": 8, "embed_dim": 16, "dropout": 0.0},
    "augment": "eam",
    "loss_conf": {"kl": 1.0, "focal": 1.0, "center": 0.002, "supcon": 0.1},
    "optim_conf": {"lr": 3.0e-3},
    "max_epoch": 3,
    "batch_size": 8,  # 96 training utterances: 12 full batches, 4 utterances per rank
    "num_threads": 1,
    "log_interval": 0,
}


@pytest.mark.slow
def test_two_ranks_match_one_process(feature_dirs, tmp_path):
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    single = subprocess.run(train_command(feature_dirs, str(config), tmp_path / "one"), env=python_env(),
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = train_command(feature_dirs, str(config), tmp_path / "two")
    ddp = subprocess.run(launcher + command[1:], env=python_env(), capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-5000:]
    with open(tmp_path / "two" / "run.json") as f:
        assert json.load(f)["world_size"] == 2
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(one) == len(two) == CONFIG["max_epoch"]
    for a, b in zip(one, two):
        assert set(a["train"]) == set(b["train"]) == {"kl", "focal", "center", "supcon", "total"}
        for term in a["train"]:
            assert b["train"][term] == pytest.approx(a["train"][term], rel=1e-4)
        assert abs(a["valid"]["ua"] - b["valid"]["ua"]) <= 1.5 and abs(a["valid"]["wa"] - b["valid"]["wa"]) <= 1.5
    sel_one = json.loads((tmp_path / "one" / "selection.json").read_text())
    sel_two = json.loads((tmp_path / "two" / "selection.json").read_text())
    assert sel_one["epoch"] == sel_two["epoch"]
    # Only rank 0 writes: one log file, one set of checkpoints.
    assert sorted(os.listdir(tmp_path / "two" / "tensorboard")) and (tmp_path / "two" / "model.pth").exists()


@pytest.mark.slow
def test_uneven_batches_give_one_process_gradients(tmp_path):
    """A 7-utterance batch over two ranks (4 + 3) and a 1-utterance remainder (one rank holds a stand-in) give the
    gradients of one process on the whole batch (the model's, and the centres' after averaging), and the same loss
    values: each per-example term is the mean over the whole batch. Tolerance: float summation order (1e-5)."""
    worker = os.path.join(os.path.dirname(__file__), "ddp_uneven_step.py")
    single = subprocess.run([sys.executable, worker, str(tmp_path / "one.pt")], env=python_env(),
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    ddp = subprocess.run(launcher + [worker, str(tmp_path / "two.pt")], env=python_env(), capture_output=True,
                         text=True)
    assert ddp.returncode == 0, ddp.stderr[-5000:]
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert sorted(one) == sorted(two) == [1, 7]  # the remainder trained too
    for size in one:
        assert set(one[size]) == set(two[size])
        for term, value in one[size]["values"].items():
            assert two[size]["values"][term] == pytest.approx(value, rel=1e-5, abs=1e-7), (size, term)
        for name in one[size]:
            if name != "values":
                torch.testing.assert_close(two[size][name], one[size][name], rtol=1e-5, atol=1e-7,
                                           msg=lambda m, name=name, size=size: f"batch of {size}, {name}: {m}")
