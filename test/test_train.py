"""The trainer: it learns, resumes exactly after a kill, refuses to mix runs, and stops on non-finite losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch
import yaml

from support import FAST_CONFIG, python_env, train_command


def write_config(path, **overrides) -> str:
    config = {**FAST_CONFIG, **overrides}
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return str(path)


def run_training(feature_dirs, config, outdir):
    proc = subprocess.run(train_command(feature_dirs, config, outdir), env=python_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def load_history(outdir):
    with open(os.path.join(outdir, "history.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def uninterrupted(feature_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    config = write_config(root / "train.yaml")
    run_training(feature_dirs, config, root / "run")
    return root, config


def test_training_learns_and_selects_on_validation(uninterrupted):
    root, _ = uninterrupted
    history = load_history(root / "run")
    assert len(history) == FAST_CONFIG["max_epoch"]
    assert history[-1]["train"]["total"] < 0.7 * history[0]["train"]["total"]
    assert max(h["valid"]["ua"] for h in history) > 50.0  # 4 classes: chance is 25
    # each epoch records the rate it trained with: the configured rate, then the exponential decay
    gamma = 0.875
    assert [h["lr"] for h in history] == pytest.approx([3.0e-3 * gamma ** (h["epoch"] - 1) for h in history])
    with open(root / "run" / "selection.json") as f:
        selection = json.load(f)
    best = max(history, key=lambda h: h["valid"]["ua"])
    assert selection["epoch"] == best["epoch"] and selection["rule"] == "valid_ua"
    chosen = torch.load(root / "run" / "model.pth")
    best_weights = torch.load(root / "run" / "best.pth")
    assert all(torch.equal(chosen[k], best_weights[k]) for k in chosen)
    for name in ("config.yaml", "run.json", "checkpoint.pt", "last.pth", "tensorboard"):
        assert (root / "run" / name).exists(), name


def test_rerun_of_finished_training_does_nothing(uninterrupted, feature_dirs):
    root, config = uninterrupted
    before = os.path.getmtime(root / "run" / "model.pth")
    proc = run_training(feature_dirs, config, root / "run")
    assert "already trained" in proc.stderr
    assert os.path.getmtime(root / "run" / "model.pth") == before


# One case in the fast subset (pytest -m "not slow"), all three in the whole suite.
@pytest.mark.parametrize("kill_after_checkpoints", [pytest.param(0, marks=pytest.mark.slow), 1,
                                                    pytest.param(5, marks=pytest.mark.slow)])
def test_resume_after_kill_matches_uninterrupted_run(uninterrupted, feature_dirs, tmp_path, kill_after_checkpoints):
    root, config = uninterrupted
    outdir = tmp_path / "run"
    proc = subprocess.Popen(train_command(feature_dirs, config, outdir), env=python_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Kill during the epoch that follows the n-th checkpoint (n = 0: while the run is starting).
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        started = os.path.exists(outdir / "run.json")
        if started and (kill_after_checkpoints == 0 or (os.path.exists(outdir / "history.json")
                                                        and len(load_history(outdir)) >= kill_after_checkpoints)):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (outdir / "selection.json").exists()
    resumed = run_training(feature_dirs, config, outdir)
    assert kill_after_checkpoints == 0 or "resuming after epoch" in resumed.stderr
    reference, history = load_history(root / "run"), load_history(outdir)
    assert [h["train"] for h in history] == [h["train"] for h in reference]
    assert [h["valid"] for h in history] == [h["valid"] for h in reference]
    a, b = torch.load(outdir / "model.pth"), torch.load(root / "run" / "model.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_changed_config_moves_the_old_run_aside(feature_dirs, tmp_path):
    config = write_config(tmp_path / "a.yaml", max_epoch=1)
    run_training(feature_dirs, config, tmp_path / "run")
    changed = write_config(tmp_path / "b.yaml", max_epoch=2)
    proc = run_training(feature_dirs, changed, tmp_path / "run")
    assert "moving the old run" in proc.stderr
    assert len(load_history(tmp_path / "run.bak1")) == 1  # the first run is kept, untouched
    assert len(load_history(tmp_path / "run")) == 2


def test_bad_config_key_is_named(feature_dirs, tmp_path):
    config = write_config(tmp_path / "bad.yaml", encoder_conf={"d_modell": 32})
    proc = subprocess.run(train_command(feature_dirs, config, tmp_path / "run"), env=python_env(),
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "d_modell" in proc.stderr and "bad.yaml" in proc.stderr
    assert not (tmp_path / "run" / "selection.json").exists()


def test_non_finite_loss_names_term_and_batch(feature_dirs, tmp_path):
    # An absurd learning rate makes the logits explode; the error must name the term and the batch.
    config = write_config(tmp_path / "nan.yaml", optim_conf={"lr": 1.0e30}, augment="none", max_epoch=3)
    proc = subprocess.run(train_command(feature_dirs, config, tmp_path / "run"), env=python_env(),
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "is not finite" in proc.stderr and "batch" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run" / "selection.json").exists()


def test_kl_rung_trains_exactly_like_soft_label_cross_entropy(feature_dirs, tmp_path):
    """KL(y || p) = CE(y, p) - H(y): the same gradient, so ladder rung 07 (KL) gives the weights of rung 06 (CE)
    bit for bit, with EAM soft labels; only the logged loss differs, by the entropy of the targets."""
    runs = {}
    for term in ("ce", "kl"):
        loss_conf = {"ce": 0.0, "kl": 0.0, "focal": 0.0, "center": 0.0, "supcon": 0.0, term: 1.0}
        config = write_config(tmp_path / f"{term}.yaml", max_epoch=3, loss_conf=loss_conf,
                              encoder_conf={**FAST_CONFIG["encoder_conf"], "context_broadcasting": False})
        run_training(feature_dirs, config, tmp_path / term)
        runs[term] = (load_history(tmp_path / term), torch.load(tmp_path / term / "last.pth"))
    (ce_history, ce_weights), (kl_history, kl_weights) = runs["ce"], runs["kl"]
    assert all(torch.equal(ce_weights[k], kl_weights[k]) for k in ce_weights)
    assert [h["valid"] for h in ce_history] == [h["valid"] for h in kl_history]
    assert all(c["train"]["ce"] > k["train"]["kl"] for c, k in zip(ce_history, kl_history))  # mixed targets: H(y) > 0


def test_bf16_autocast_trains_and_fp16_needs_a_gpu(feature_dirs, tmp_path):
    config = write_config(tmp_path / "bf16.yaml", amp="bf16", max_epoch=4)
    run_training(feature_dirs, config, tmp_path / "bf16")
    history = load_history(tmp_path / "bf16")
    assert history[-1]["train"]["total"] < history[0]["train"]["total"]
    if not torch.cuda.is_available():
        config = write_config(tmp_path / "fp16.yaml", amp="fp16")
        proc = subprocess.run(train_command(feature_dirs, config, tmp_path / "fp16"), env=python_env(),
                              capture_output=True, text=True)
        assert proc.returncode != 0 and "fp16" in proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch here)")
def test_checkpoint_from_gpu_resumes_on_cpu(feature_dirs, tmp_path):
    config = write_config(tmp_path / "gpu.yaml", max_epoch=8)
    outdir = tmp_path / "run"
    proc = subprocess.Popen(train_command(feature_dirs, config, outdir) + ["--ngpu", "1"], env=python_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(outdir / "history.json") and len(load_history(outdir)) >= 1:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (outdir / "selection.json").exists():
        pytest.skip("the GPU run finished before it could be interrupted")
    resumed = run_training(feature_dirs, config, outdir)  # on the CPU
    assert "resuming after epoch" in resumed.stderr
    assert len(load_history(outdir)) == 8


def test_center_optimizer_is_a_config_choice(feature_dirs, tmp_path):
    """center_optim: adam gives the centres Adam's moments (saved in the checkpoint); sgd has none; an unknown
    optimizer is a config error naming the key."""
    states = {}
    for name in ("sgd", "adam"):
        config = write_config(tmp_path / f"{name}.yaml", center_optim=name, max_epoch=1)
        run_training(feature_dirs, config, tmp_path / name)
        checkpoint = torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)
        states[name] = checkpoint["criterion_optimizer"]["center"]["optimizer"]["state"]  # per term owning parameters
    assert "exp_avg" in states["adam"][0] and "exp_avg" not in states["sgd"].get(0, {})
    bad = write_config(tmp_path / "bad.yaml", center_optim="rmsprop")
    proc = subprocess.run(train_command(feature_dirs, bad, tmp_path / "bad"), env=python_env(), capture_output=True,
                          text=True)
    assert proc.returncode != 0 and "center_optim" in proc.stderr and "rmsprop" in proc.stderr


def test_a_frontend_is_one_class_and_one_registry_line(feature_dirs, tmp_path, monkeypatch):
    """A front-end registered under a new name trains and classifies exactly as the one it copies: the trainer and
    inference ask the front-end object and never compare its name."""
    from ser.config import resolve_config
    from ser.frontends import FRONTENDS
    from ser.frontends.fbank import Fbank
    from ser.infer import classify_data_dir, load_trained
    from ser.train import train

    class RenamedFbank(Fbank):
        name = "renamed_fbank"

    monkeypatch.setattr(FRONTENDS, "_entries", dict(FRONTENDS._entries))  # registered for this test only
    FRONTENDS.register(RenamedFbank.name, RenamedFbank.from_conf, RenamedFbank.defaults, RenamedFbank.rules)
    classes = [c.strip() for c in open(feature_dirs / "classes.txt") if c.strip()]
    posteriors = {}
    for name in ("fbank", "renamed_fbank"):
        config = resolve_config({**FAST_CONFIG, "max_epoch": 2, "frontend": name})
        outdir = str(tmp_path / name)
        train(config, classes, str(feature_dirs / "train"), str(feature_dirs / "valid"),
              str(feature_dirs / "train" / "cmvn.ark"), outdir)
        trained = load_trained(outdir)
        assert type(trained.frontend) is {"fbank": Fbank, "renamed_fbank": RenamedFbank}[name]
        posteriors[name] = classify_data_dir(trained, str(feature_dirs / "valid"))[1]
    fbank = torch.load(tmp_path / "fbank" / "model.pth")
    renamed = torch.load(tmp_path / "renamed_fbank" / "model.pth")
    assert all(torch.equal(fbank[k], renamed[k]) for k in fbank)
    assert (posteriors["fbank"] == posteriors["renamed_fbank"]).all()


class _RunsOnLoad:
    """Unpickling this object would create the file named by ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.slow
def test_checkpoints_are_loaded_weights_only_and_a_corrupt_one_restarts(feature_dirs, tmp_path):
    """A checkpoint holding other objects is refused, naming the file, and nothing in it runs; a truncated one is
    moved aside and training starts from scratch, saying so; a corrupt model file is an error naming it."""
    config = write_config(tmp_path / "c.yaml", max_epoch=2)
    outdir = tmp_path / "run"
    run_training(feature_dirs, config, outdir)
    checkpoint = outdir / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)  # ser's own checkpoints load weights-only
    good = checkpoint.read_bytes()
    marker = tmp_path / "executed"
    torch.save({**state, "extra": _RunsOnLoad(str(marker))}, checkpoint)
    (outdir / "selection.json").unlink()  # as if the run had been killed before it finished
    proc = subprocess.run(train_command(feature_dirs, config, outdir), env=python_env(), capture_output=True,
                          text=True)
    assert proc.returncode != 0 and not marker.exists()
    assert f"{checkpoint}: refusing to load it" in proc.stderr and "Traceback" not in proc.stderr
    checkpoint.write_bytes(good[: len(good) // 2])
    proc = run_training(feature_dirs, config, outdir)
    assert "cannot be read" in proc.stderr and "training starts from scratch" in proc.stderr
    assert (outdir / "checkpoint.pt.corrupt1").exists() and len(load_history(outdir)) == 2
    model = outdir / "model.pth"
    model.write_bytes(model.read_bytes()[:100])
    from ser.infer import load_trained

    with pytest.raises(ValueError, match=f"{model}: cannot read the model weights"):
        load_trained(str(outdir))


def test_a_full_disk_is_named_and_leaves_no_partial_file(feature_dirs, tmp_path, monkeypatch):
    """torch.save on a full disk says only "iostream error": the trainer names the file and the cause, and the
    partial temporary file is removed."""
    import shutil
    from collections import namedtuple

    from ser.config import resolve_config
    from ser.train import train

    def failing_save(obj, path):
        open(path, "wb").write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . basic_ios::clear: iostream error")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, 10 << 30, 0))
    classes = [c.strip() for c in open(feature_dirs / "classes.txt") if c.strip()]
    outdir = tmp_path / "run"
    with pytest.raises(OSError, match=r"No space left on device while writing .*(best|last)\.pth"):
        train(resolve_config({**FAST_CONFIG, "max_epoch": 1}), classes, str(feature_dirs / "train"),
              str(feature_dirs / "valid"), str(feature_dirs / "train" / "cmvn.ark"), str(outdir))
    assert not [name for name in os.listdir(outdir) if ".tmp" in name]


def test_errors_are_one_line_and_ser_verbose_keeps_the_traceback(feature_dirs, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_epochs: 3\n")
    for verbose, traceback in (("", False), ("1", True)):
        proc = subprocess.run(train_command(feature_dirs, str(bad), tmp_path / "run"), capture_output=True, text=True,
                              env={**python_env(), "SER_VERBOSE": verbose})
        assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
        assert "max_epochs" in proc.stderr.strip().splitlines()[-1] and ("Traceback" in proc.stderr) == traceback
