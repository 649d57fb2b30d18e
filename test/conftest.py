"""Shared fixtures: tiny feature data dirs with class-dependent features (no audio needed)."""

from __future__ import annotations

import os
import sys

import kaldiio
import numpy as np
import pytest

import ser.components  # noqa: F401 (fills the registries, as the entry points do)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_CORPORA = os.path.join(os.path.dirname(REPO), "shared", "corpora")
CLASSES = ["ang", "hap", "neu", "sad"]


def write_feature_dir(path: str, speakers: list[str], per_class: int, seed: int, dim: int = 20) -> None:
    """A data dir whose fbank-like features carry the class in their mean over a few bins (learnable, noisy)."""
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    feats, utt2emo, utt2spk = {}, {}, {}
    for spk in speakers:
        for c, emo in enumerate(CLASSES):
            for n in range(per_class):
                utt = f"{spk}-{emo}{n:03d}"
                frames = int(rng.integers(30, 120))
                x = rng.normal(0.0, 1.0, size=(frames, dim)).astype(np.float32) + 5.0
                x[:, 2 * c:2 * c + 3] += 1.0  # class-dependent band
                feats[utt], utt2emo[utt], utt2spk[utt] = x, emo, spk
    keys = sorted(feats)
    with kaldiio.WriteHelper(f"ark,scp:{path}/feats.ark,{path}/feats.scp") as w:
        for k in keys:
            w(k, feats[k])
    for name, table in (("utt2emo", utt2emo), ("utt2spk", utt2spk)):
        with open(os.path.join(path, name), "w") as f:
            f.writelines(f"{k} {table[k]}\n" for k in keys)
    with open(os.path.join(path, "utt2num_frames"), "w") as f:
        f.writelines(f"{k} {feats[k].shape[0]}\n" for k in keys)


@pytest.fixture(scope="session")
def feature_dirs(tmp_path_factory):
    """train/valid/test feature dirs, cmvn.ark of train and classes.txt."""
    from ser.features import accumulate_cmvn, write_cmvn_stats

    root = tmp_path_factory.mktemp("featdirs")
    write_feature_dir(str(root / "train"), ["spk1", "spk2", "spk3"], per_class=8, seed=1)
    write_feature_dir(str(root / "valid"), ["spk1", "spk2", "spk3"], per_class=2, seed=2)
    write_feature_dir(str(root / "test"), ["spk4"], per_class=6, seed=3)
    stats = accumulate_cmvn(m for _, m in kaldiio.load_scp_sequential(str(root / "train" / "feats.scp")))
    write_cmvn_stats(str(root / "train" / "cmvn.ark"), stats)
    with open(root / "classes.txt", "w") as f:
        f.write("".join(c + "\n" for c in CLASSES))
    return root


def python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable


def overfit_losses(model, inputs, lengths, labels, steps: int, lr: float = 3e-3) -> list[float]:
    """Cross-entropy losses of `steps` Adam updates on one batch (a model that learns drives them down)."""
    import torch

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(inputs, lengths).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# Fake Slurm commands (utils/slurm.py without a cluster).
FAKE_SLURM = {
    # Each submission gets the next id and stays queued (RUNNING) until scancel; every call is logged.
    "sbatch": 'n=$(( $(cat "$FAKE_SLURM/next" 2>/dev/null || echo 100) + 1 )); echo $n > "$FAKE_SLURM/next"\n'
              'echo $n >> "$FAKE_SLURM/queue"; echo "sbatch $*" >> "$FAKE_SLURM/calls"; echo $n\n',
    "squeue": 'echo "squeue $*" >> "$FAKE_SLURM/calls"\n'
              'ids=$(printf "%s\\n" "$@" | sed -n "s/^--jobs=//p" | tr , " ")\n'
              'found=0; for i in $ids; do grep -qx "$i" "$FAKE_SLURM/queue" 2>/dev/null && '
              '{ echo "$i RUNNING"; found=1; }; done\n'
              '[ $found = 1 ] || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }\n',
    "scancel": 'echo "scancel $*" >> "$FAKE_SLURM/calls"\n'
               'for i in "$@"; do sed -i "/^$i\\$/d" "$FAKE_SLURM/queue"; done\n',
}


@pytest.fixture
def fake_slurm(tmp_path):
    """A PATH whose sbatch, squeue and scancel are fakes recording their calls in FAKE_SLURM/calls."""
    state, fake_bin = tmp_path / "fake_slurm", tmp_path / "fake_bin"
    state.mkdir()
    fake_bin.mkdir()
    for name, body in FAKE_SLURM.items():
        (fake_bin / name).write_text("#!/bin/bash\n" + body)
        (fake_bin / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{fake_bin}:{os.environ['PATH']}", FAKE_SLURM=str(state))
    env.pop("SER_SLURM_RECORD_DIR", None)

    def calls(command: str) -> list[str]:
        path = state / "calls"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if line.startswith(command + " ")]

    return env, calls


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end recipe runs (minutes); pytest -m 'not slow' leaves them out")
