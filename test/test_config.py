"""Configs: defaults fill every key, unknown keys and bad values are errors naming the key."""

from __future__ import annotations

import glob
import os

import pytest
import yaml

from ser.config import ConfigError, config_hash, load_any_config, load_config, resolve_config
from ser.losses import LOSS_DEFAULTS
from ser.models import ENCODERS

from support import REPO, recipe_env


def test_defaults_are_the_method_defaults():
    config = resolve_config({})
    assert config["encoder"] == "flam" and config["augment"] == "eam"
    assert config["encoder_conf"] == ENCODERS.defaults("flam")
    assert config["loss_conf"] == LOSS_DEFAULTS
    assert config["optim_conf"] == {"lr": 1.0e-4, "betas": [0.9, 0.98], "eps": 1.0e-9, "weight_decay": 0.0}
    assert config["center_lr"] == 5.0e-3 and config["scheduler_conf"]["gamma"] == 0.875
    assert (config["max_epoch"], config["batch_size"], config["crop_seconds"]) == (20, 16, 6.0)


@pytest.mark.parametrize("given, key", [
    ({"max_epochs": 3}, "max_epochs"),
    ({"encoder_conf": {"dmodel": 3}}, "dmodel"),
    ({"loss_conf": {"focal_gama": 2}}, "focal_gama"),
    ({"augment_conf": {"snr": [0, 1]}}, "snr"),
    ({"optim_conf": {"momentum": 0.9}}, "momentum"),
    ({"encoder": "lstm"}, "encoder"),
    ({"augment": "specaug"}, "augment"),
    ({"batch_size": "16"}, "batch_size"),
    ({"batch_size": 0}, "batch_size"),
    ({"model_selection": "test_ua"}, "model_selection"),
])
def test_bad_keys_and_values_are_named(given, key):
    with pytest.raises((ConfigError, ValueError), match=key):
        resolve_config(given, source="my.yaml")


def test_unknown_key_error_names_the_file(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("max_epoch: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"train.yaml.*learning_rate"):
        load_config(str(path))


def test_hash_ignores_key_order_and_tracks_values():
    a = resolve_config({"max_epoch": 3, "seed": 1})
    b = resolve_config({"seed": 1, "max_epoch": 3})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(resolve_config({"max_epoch": 4, "seed": 1}))


def test_hash_ignores_int_float_spelling_but_not_types_that_matter():
    ints = resolve_config({"augment_conf": {"snr_range": [-5, 10]}, "encoder_conf": {"dropout": 0}})
    floats = resolve_config({"augment_conf": {"snr_range": [-5.0, 10.0]}, "encoder_conf": {"dropout": 0.0}})
    assert config_hash(ints) == config_hash(floats)
    assert config_hash(ints) != config_hash(resolve_config({"augment_conf": {"snr_range": [-5, 11]}}))
    assert config_hash(resolve_config({"bucketing": True})) != config_hash(resolve_config({"bucketing": False}))


def test_full_mll_rung_is_the_main_config():
    """conf/train.yaml and the ladder's last rung, 10_mll, are one experiment: the same resolved config and hash."""
    conf = os.path.join(REPO, "egs", "TEMPLATE", "conf")
    main = load_config(os.path.join(conf, "train.yaml"))
    rung = load_config(os.path.join(conf, "tuning", "10_mll.yaml"))
    assert config_hash(main) == config_hash(rung)


def test_every_shipped_config_loads():
    configs = glob.glob(os.path.join(REPO, "egs", "*", "conf", "**", "*.yaml"), recursive=True)
    assert configs
    for path in configs:
        load_any_config(path)
        with open(path) as f:
            assert isinstance(yaml.safe_load(f), dict)


def test_nested_overrides_are_checked_like_a_config_file(tmp_path):
    from ser.config import parse_overrides

    path = tmp_path / "c.yaml"
    path.write_text("encoder: flam\noptim_conf: {lr: 1.0e-3}\n")
    config = load_config(str(path), parse_overrides(["optim_conf.lr=3e-4", "encoder_conf.d_model=64",
                                                      "augment_conf.prob=0.25", "max_epoch=4"]))
    assert config["optim_conf"]["lr"] == pytest.approx(3e-4) and isinstance(config["optim_conf"]["lr"], float)
    assert config["encoder_conf"]["d_model"] == 64 and config["augment_conf"]["prob"] == 0.25
    assert config["max_epoch"] == 4 and config["optim_conf"]["betas"] == [0.9, 0.98]  # the rest stays
    with pytest.raises(ConfigError, match="optim_conf: unknown key.*lrr"):
        load_config(str(path), parse_overrides(["optim_conf.lrr=1e-4"]))
    with pytest.raises(ConfigError, match="encoder_conf.dmodel"):
        load_config(str(path), parse_overrides(["encoder_conf.dmodel=64"]))
    with pytest.raises(ConfigError, match="--set max_epoch.x: max_epoch is 20, not a mapping"):
        load_config(str(path), parse_overrides(["max_epoch=20", "max_epoch.x=1"]))


def test_print_config_shows_the_resolved_config_with_overrides():
    import subprocess

    recipe = os.path.join(REPO, "egs", "synth")
    env = recipe_env()
    proc = subprocess.run(["./run.sh", "--print-config", "true", "--train-args", "--set optim_conf.lr=3e-4"],
                          cwd=recipe, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    expected = load_config(os.path.join(recipe, "conf", "train.yaml"), {"optim_conf.lr": 3e-4})
    assert printed == expected and "stage" not in proc.stderr


def test_config_info_answers_several_fields_in_one_call(tmp_path, capsys):
    from ser.bin.config_info import main as config_info

    path = tmp_path / "c.yaml"
    path.write_text("frontend: ssl_cached\nfrontend_conf: {path: /ckpt}\naugment: featmix\nseed: 3\n")
    config_info([str(path), "model_file", "frontend", "seed", "system", "functionals", "--set", "seed=5"])
    assert capsys.readouterr().out.splitlines() == ["model.pth", "ssl_cached", "5", "neural", "none"]
    with pytest.raises(SystemExit):
        config_info([str(path), "seed", "resolved"])
    assert "resolved is asked for alone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        config_info([str(path), "system", "--set", "max_epochs=2"])
    assert "max_epochs" in capsys.readouterr().err
