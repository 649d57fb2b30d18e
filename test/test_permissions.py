"""A file or dir the user may not read or write is one line naming it and the cause, without a traceback.

As root, permission bits stop nothing (CAP_DAC_OVERRIDE): the commands then run under setpriv without the capabilities
that bypass them, and the tests skip, saying why, where that is not possible."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest
import yaml

from support import PYTHON, python_env

BYPASS_CAPS = "-dac_override,-dac_read_search"


def _provoking_prefix() -> tuple[list[str] | None, str]:
    """A command prefix under which permission bits apply, or None and why there is none."""
    if os.geteuid() != 0:
        return [], ""
    if shutil.which("setpriv") is None:
        return None, "running as root, where permission bits do not apply, and setpriv (util-linux) is missing"
    prefix = ["setpriv", f"--bounding-set={BYPASS_CAPS}", "--"]
    with tempfile.NamedTemporaryFile() as unreadable:
        os.chmod(unreadable.name, 0)
        probe = subprocess.run([*prefix, "test", "-r", unreadable.name], capture_output=True, text=True)
    if probe.returncode == 0 or probe.stderr:
        return None, f"running as root, and setpriv cannot drop the capabilities {BYPASS_CAPS}: {probe.stderr.strip()}"
    return prefix, ""


PREFIX, WHY_NOT = _provoking_prefix()
pytestmark = pytest.mark.skipif(PREFIX is None, reason=WHY_NOT)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*PREFIX, PYTHON, *args], capture_output=True, text=True, env=python_env())


def assert_one_line(proc: subprocess.CompletedProcess, line: str) -> None:
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == line


@pytest.fixture(scope="module")
def trained(feature_dirs, tmp_path_factory):
    """A trained run (in this process: no start-up cost), the trainer's arguments, and a dir that is not writable."""
    from ser.cli import read_classes
    from ser.config import resolve_config
    from ser.train import train

    root = tmp_path_factory.mktemp("perm")
    settings = {"max_epoch": 1, "batch_size": 8, "num_threads": 1, "log_interval": 0}
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump(settings))
    run_dir = root / "run"
    train(resolve_config(settings), read_classes(str(feature_dirs / "classes.txt")), str(feature_dirs / "train"),
          str(feature_dirs / "valid"), str(feature_dirs / "train" / "cmvn.ark"), str(run_dir))
    args = ["--config", str(config), "--classes", str(feature_dirs / "classes.txt"),
            "--train-dir", str(feature_dirs / "train"), "--valid-dir", str(feature_dirs / "valid"),
            "--cmvn", str(feature_dirs / "train" / "cmvn.ark")]
    read_only = root / "read_only"
    read_only.mkdir(mode=0o555)
    return root, args, run_dir, read_only


def test_train_into_an_exp_dir_that_is_not_writable(trained):
    root, args, _, read_only = trained
    assert_one_line(run("-m", "ser.bin.train", *args, "--outdir", str(read_only / "exp" / "fold1")),
                    f"error: {read_only / 'exp'}: Permission denied")


@pytest.mark.slow
def test_train_on_features_that_cannot_be_read(trained, tmp_path):
    root, args, _, _ = trained
    train_dir = tmp_path / "train"
    shutil.copytree(args[args.index("--train-dir") + 1], train_dir)
    scp = (train_dir / "feats.scp").read_text()
    old_ark = scp.split()[1].rsplit(":", 1)[0]
    (train_dir / "feats.scp").write_text(scp.replace(old_ark, str(train_dir / "feats.ark")))
    (train_dir / "feats.ark").chmod(0)
    args = list(args)
    args[args.index("--train-dir") + 1] = str(train_dir)
    proc = run("-m", "ser.bin.train", *args, "--outdir", str(tmp_path / "run"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {train_dir / 'feats.scp'}:1: cannot read features")
    assert f"Permission denied: '{train_dir / 'feats.ark'}'" in last


@pytest.mark.slow
def test_infer_with_an_unreadable_model_or_an_unwritable_outdir(trained, feature_dirs, tmp_path):
    root, _, run_dir, read_only = trained
    model_dir = tmp_path / "model"
    shutil.copytree(run_dir, model_dir)
    infer = ["-m", "ser.bin.infer", "--model-dir", str(model_dir), "--data-dir", str(feature_dirs / "test")]
    assert_one_line(run(*infer, "--outdir", str(read_only / "decode")),
                    f"error: {read_only / 'decode'}: Permission denied")
    (model_dir / "model.pth").chmod(0)
    assert_one_line(run(*infer, "--outdir", str(tmp_path / "decode2")),
                    f"error: {model_dir / 'model.pth'}: Permission denied")


def test_stage_tools_name_the_file(trained, tmp_path):
    """ser.sh's helpers: a stamp in a dir that is not writable, a wav.scp that cannot be read."""
    root, _, _, read_only = trained
    stamp = read_only / ".stage1.done"
    proc = run("-m", "ser.bin.stamp", "write", str(stamp), str(root / "c.yaml"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {stamp}: Permission denied (cannot create files in {read_only})"
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text("u1 /nowhere/u1.wav\n")
    wav_scp.chmod(0)
    proc = run("-m", "ser.bin.compute_fbank", str(wav_scp), str(tmp_path / "f.ark"), str(tmp_path / "f.scp"),
               str(tmp_path / "n"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"compute_fbank.py: error: {wav_scp}: Permission denied"
