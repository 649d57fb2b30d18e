"""Shared fixtures (built on test/support.py, which holds the helpers shared by the test modules) and the `slow`
marker."""

from __future__ import annotations

import os

# One OpenMP/BLAS thread per test process (and the recipes it starts): `pytest -n auto` already runs a process per
# core, and more threads oversubscribe them (the suite took 13 minutes on 2 cores with the default, 11 with one).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import kaldiio  # noqa: E402  (after the thread setting: torch reads it when first imported)
import pytest

import ser.components  # noqa: F401 (fills the registries, as the entry points do)

from support import CLASSES, write_feature_dir


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
    config.addinivalue_line("markers", "slow: end-to-end recipe runs and other tests over ~10 s; "
                                       "pytest -m 'not slow' leaves them out")
