"""Architecture: ser's import graph has no circle; shipped configs keep their hash; a loss term is one class and
one registry line (docs/extending.md "Adding a loss", followed step by step on a made-up term)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import pytest
import torch
import yaml
from torch import nn

from support import FAST_CONFIG, PYTHON, REPO

# The config hash of every shipped config (ser.config.config_hash of the resolved config). A finished run is
# recognised by it: a change here retrains every user's finished runs. A config key added with a default that
# trains as before leaves it alone by construction (ser.config.HASHED_KEYS_V1).
SHIPPED_CONFIG_HASHES = {
    "classic/compare.yaml": "d636b80c570f",  # changed on purpose: newton-cg to tol 1e-6 (a converged fit)
    "classic/egemaps.yaml": "a202f0a27d65",  # the same
    "train.yaml": "2f09f8142747",
    "train_fusion.yaml": "758c2a923813",
    "train_fusion_adv.yaml": "4ea2ebe98923",
    "train_fusion_speed.yaml": "b4d95ab56715",
    "train_fusion_stack.yaml": "17447329c604",
    "train_ssl_frozen.yaml": "33082ac81f6d",
    "train_wavlm.yaml": "61ef336db2c8",
    "tuning/01_baseline.yaml": "ec81aaf6234e",
    "tuning/02_mixup_lam.yaml": "37b00c9b1903",
    "tuning/03_mixup_eam.yaml": "96ad08488c39",
    "tuning/04_pool_mean.yaml": "9ed28b2aaa26",
    "tuning/05_pool_max.yaml": "c83453b69f12",
    "tuning/06_pool_flam.yaml": "57e4dfd6eb5f",
    "tuning/06b_pool_flam_hard_label.yaml": "c97fbbc5758d",
    "tuning/07_loss_kl.yaml": "8e291a335e10",
    "tuning/08_loss_kl_focal.yaml": "e8ad90ab1074",
    "tuning/09_loss_kl_focal_center.yaml": "d999a4812c90",
    "tuning/10_mll.yaml": "2f09f8142747",
    "tuning_fusion/fusion_01_baseline.yaml": "c46d8ce0f157",
    "tuning_fusion/fusion_02_mixup_lam.yaml": "5d784980b305",
    "tuning_fusion/fusion_03_mixup_eam.yaml": "6621bfb29ef5",
    "tuning_fusion/fusion_04_pool_mean.yaml": "99262f2f2fcc",
    "tuning_fusion/fusion_05_pool_max.yaml": "6111e4a6e58e",
    "tuning_fusion/fusion_06_pool_flam.yaml": "06ffcbe3ddfd",
    "tuning_fusion/fusion_06b_pool_flam_hard_label.yaml": "8b460355649f",
    "tuning_fusion/fusion_07_loss_kl.yaml": "aeb45c105cbd",
    "tuning_fusion/fusion_08_loss_kl_focal.yaml": "66b64c56038b",
    "tuning_fusion/fusion_09_loss_kl_focal_center.yaml": "8013173773f7",
    "tuning_fusion/fusion_10_mll.yaml": "758c2a923813",
}


def test_import_graph_has_no_cycle():
    proc = subprocess.run([PYTHON, os.path.join(REPO, "utils", "import_graph.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no cycles" in proc.stdout
    assert "ser.config -> ser.atomic, ser.registry\n" in proc.stdout  # the config module imports no component
    assert "ser.registry -> (nothing of ser)\n" in proc.stdout


def test_import_graph_names_a_cycle_even_through_a_function_level_import(tmp_path):
    (tmp_path / "ser" / "sub").mkdir(parents=True)
    (tmp_path / "ser" / "__init__.py").write_text("")
    (tmp_path / "ser" / "a.py").write_text("from ser.sub import b\n")
    (tmp_path / "ser" / "sub" / "__init__.py").write_text("")
    (tmp_path / "ser" / "sub" / "b.py").write_text("def f():\n    from ser import a\n")
    (tmp_path / "ser" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ser.a\n")
    proc = subprocess.run([PYTHON, os.path.join(REPO, "utils", "import_graph.py"), "--root", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "cycle: ser.a -> ser.sub.b -> ser.a" in proc.stdout
    assert "ser.c -> (nothing of ser)" in proc.stdout  # TYPE_CHECKING imports never run


@pytest.mark.parametrize("name", sorted(SHIPPED_CONFIG_HASHES))
def test_shipped_config_hash_is_pinned(name):
    from ser.config import config_hash, load_any_config

    assert config_hash(load_any_config(os.path.join(REPO, "egs", "TEMPLATE", "conf", name))) == \
        SHIPPED_CONFIG_HASHES[name]


def test_config_resolution_without_the_components_says_what_to_import():
    code = ("from ser.config import ConfigError, resolve_config\n"
            "try:\n    resolve_config({})\nexcept ConfigError as e:\n    print(e)\n")
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert "import ser.components" in proc.stdout, proc.stdout + proc.stderr


# docs/extending.md "Adding a loss", step by step, on a made-up term: a squared logit norm scaled by a parameter of
# its own.

# Step 1: one class, a LossTerm: forward(LossInputs) -> the unweighted term; its own parameters declared.
from ser.losses import LossTerm  # noqa: E402


class LogitNorm(LossTerm):
    def __init__(self, num_classes: int, embed_dim: int, logit_norm: float, logit_norm_power: float):
        super().__init__()
        self.power = logit_norm_power
        self.scale = nn.Parameter(torch.ones(()))

    def own_parameters(self):
        return [self.scale]

    def forward(self, x):
        return (self.scale * x.logits).abs().pow(self.power).mean()


def test_adding_a_loss_term_as_the_readme_says(feature_dirs, tmp_path, monkeypatch):
    from ser.config import config_hash, resolve_config
    from ser.registry import LOSS_TERMS, finite_number_at_least
    from ser.train import train

    before = config_hash(resolve_config({}))
    monkeypatch.setattr(LOSS_TERMS, "_entries", dict(LOSS_TERMS._entries))  # registered for this test only
    # Step 2: one registry line: builder, defaults (the weight under the term's name, then its options), a rule per
    # key, and, since it has parameters of its own, the config keys of their optimizer.
    LOSS_TERMS.register("logit_norm", LogitNorm, {"logit_norm": 0.0, "logit_norm_power": 2.0},
                        {"logit_norm": finite_number_at_least(0.0), "logit_norm_power": finite_number_at_least(1.0)},
                        own_optimizer=("center_optim", "center_lr"))
    # Step 3: nothing: keys added at defaults that train as before change no hash (ser.config.HASHED_KEYS_V1);
    # a value away from the default names another run.
    assert config_hash(resolve_config({})) == before
    assert config_hash(resolve_config({"loss_conf": {"logit_norm": 0.5}})) != before
    # Its keys are checked by its rules, once, at config load.
    from ser.config import ConfigError

    with pytest.raises(ConfigError, match="logit_norm_power"):
        resolve_config({"loss_conf": {"logit_norm_power": 0.5}})
    # Step 4: it trains: its value is in the history, its parameter moved with its own optimizer and is saved.

    config = resolve_config({**FAST_CONFIG, "max_epoch": 1, "loss_conf": {"logit_norm": 0.01}})
    classes = [c.strip() for c in open(feature_dirs / "classes.txt") if c.strip()]
    outdir = tmp_path / "run"
    train(config, classes, str(feature_dirs / "train"), str(feature_dirs / "valid"),
          str(feature_dirs / "train" / "cmvn.ark"), str(outdir))
    history = json.loads((outdir / "history.json").read_text())
    assert history[0]["train"]["logit_norm"] > 0
    checkpoint = torch.load(outdir / "checkpoint.pt", weights_only=True)
    assert checkpoint["criterion"]["logit_norm.scale"] != 1.0
    assert set(checkpoint["criterion_optimizer"]) == {"center", "logit_norm"}
    assert yaml.safe_load((outdir / "config.yaml").read_text())["loss_conf"]["logit_norm"] == 0.01


def test_every_entry_point_that_resolves_a_config_fills_the_registries_first():
    """A ser.bin command that loads a config or builds a model imports ser.components (directly, or through
    ser.infer, ser.train or ser.recognizer, which import it); one that forgot stopped with "no frontend is
    registered" (ser.bin.gpu_check did)."""
    uses = ("load_config", "load_any_config", "build_model(", "make_frontend", "frontend_of", "resolve_config",
            "config_hash", "score_experiment")  # a config's hash reads the registries' defaults
    fills = ("ser.components", "from ser.infer", "from ser.train", "from ser.recognizer", "from ser.bin.train")
    bins = os.path.join(REPO, "ser", "bin")
    forgot = []
    for name in sorted(os.listdir(bins)):
        text = open(os.path.join(bins, name)).read() if name.endswith(".py") else ""
        if any(u in text for u in uses) and not any(f in text for f in fills):
            forgot.append(name)
    assert not forgot, f"ser/bin modules that resolve configs without importing ser.components: {forgot}"


def test_a_key_added_at_its_default_keeps_finished_runs(feature_dirs, tmp_path, monkeypatch):
    """A toolkit upgrade that adds keys (top level, in a component's conf) with defaults that train as before
    changes no hash: a finished run is reused, not moved aside and trained again."""
    from ser.config import TRAINER_DEFAULTS, config_hash, resolve_config
    from ser.registry import ENCODERS, anything
    from ser.train import train

    def train_once():
        return train(resolve_config({**FAST_CONFIG, "max_epoch": 1}), [c.strip() for c in
                     open(feature_dirs / "classes.txt") if c.strip()], str(feature_dirs / "train"),
                     str(feature_dirs / "valid"), str(feature_dirs / "train" / "cmvn.ark"), str(tmp_path / "run"))

    train_once()
    shipped = {name: config_hash(load(name)) for name in ("train.yaml", "classic/egemaps.yaml")}
    finished = (tmp_path / "run" / "model.pth").stat().st_mtime_ns
    monkeypatch.setitem(TRAINER_DEFAULTS, "new_knob", 0.0)
    assert resolve_config({})["new_knob"] == 0.0
    train_once()
    assert (tmp_path / "run" / "model.pth").stat().st_mtime_ns == finished
    assert not list(tmp_path.glob("run.bak*"))
    flam = ENCODERS._entries["flam"]  # a key inside a component's conf (its model would read it)
    monkeypatch.setitem(ENCODERS._entries, "flam", dataclasses.replace(
        flam, defaults={**flam.defaults, "new_option": False}, rules={**flam.rules, "new_option": anything()}))
    assert resolve_config({})["encoder_conf"]["new_option"] is False
    assert {name: config_hash(load(name)) for name in shipped} == shipped
    assert config_hash(resolve_config({"new_knob": 1.0})) != config_hash(resolve_config({}))
    assert config_hash(resolve_config({"encoder_conf": {"new_option": True}})) != config_hash(resolve_config({}))


def load(name):
    from ser.config import load_any_config

    return load_any_config(os.path.join(REPO, "egs", "TEMPLATE", "conf", name))


def _branch_formula(branch: nn.Sequential, argument: str) -> str:
    """The functionals branch written as its header writes it: Dropout_<p>(...), Linear(...), ReLU(...)."""
    for layer in branch:
        name = f"Dropout_{layer.p:g}" if isinstance(layer, nn.Dropout) else type(layer).__name__
        argument = f"{name}({argument})"
    return argument


def test_train_fusion_header_names_every_layer_of_the_functionals_branch():
    """conf/train_fusion.yaml's header states the fused embedding; every dropout the built model applies to the
    functionals is in it, with its rate."""
    import ser.components  # noqa: F401  fills the registries
    from ser.config import load_config
    from ser.models import model_of

    path = os.path.join(REPO, "egs", "TEMPLATE", "conf", "train_fusion.yaml")
    model = model_of(load_config(path), 80, 8, utterance_dim=10)
    formula = _branch_formula(model.head.utterance, "functionals")
    with open(path) as f:
        header = " ".join(line.lstrip("# ").strip() for line in f if line.startswith("#"))
    assert f"Linear([attention-pooled frames; {formula}])" in header, formula
