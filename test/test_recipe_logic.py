"""ser.bin.recipe, the logic of egs/TEMPLATE/ser.sh: stamps named as the shell named them, option lists split."""

from __future__ import annotations

import argparse
import os

import pytest

from ser.bin import recipe
from ser.stamps import write_stamp


def _args(**given):
    names = ("exp_dir", "seed", "folds", "feats_dir", "dump_dir", "data_dir", "fbank_conf", "out_dir", "feature_set",
             "config", "extra", "functionals_scp", "model_file", "set", "system")
    return argparse.Namespace(**{name: given.get(name, "") for name in names})


def test_stamps_name_the_inputs_as_the_stage_script_did(tmp_path):
    a = _args(exp_dir="exp/t", seed="0", feats_dir="dump", config="c.yaml", extra="--set x=1 ",
              functionals_scp="f/feats.scp", model_file="model.pth", set="test", data_dir="data")
    assert recipe.stamp_of("train", a, "2") == (
        "exp/t/seed0/fold2/.stage2.done", ["c.yaml", "dump/fold2/train", "dump/fold2/valid", "f/feats.scp"],
        "--set x=1 ")
    assert recipe.stamp_of("decode", a, "2") == (
        "exp/t/seed0/fold2/decode_test/.stage3.done", ["exp/t/seed0/fold2/model.pth", "dump/fold2/test"], "")
    assert recipe.stamp_of("score", a)[1] == ["data/protocol.json"]


def test_todo_and_done_of_folds(tmp_path, capsys):
    for fold in ("1", "2"):
        (tmp_path / "feats" / f"fold{fold}" / "train").mkdir(parents=True)
        (tmp_path / "feats" / f"fold{fold}" / "valid").mkdir(parents=True)
    (tmp_path / "c.yaml").write_text("x: 1\n")
    a = _args(exp_dir=str(tmp_path / "exp"), seed="0", feats_dir=str(tmp_path / "feats"),
              config=str(tmp_path / "c.yaml"), folds="1,2")
    assert recipe.todo("train", a) == ["1", "2"]
    recipe.done("train", a)
    (tmp_path / "exp" / "seed0" / "fold1" / "selection.json").write_text("{}")
    assert recipe.todo("train", a) == ["2"]
    assert "fold1 is trained and up to date; nothing to do" in capsys.readouterr().err
    a.extra = "--set other=1 "
    assert recipe.todo("train", a) == ["1", "2"]
    assert "WARNING: " in capsys.readouterr().err


@pytest.mark.parametrize("value, entries", [
    ("a.yaml b.yaml", ["a.yaml", "b.yaml"]),
    (" my confs/a.yaml , b.yaml", ["my confs/a.yaml", "b.yaml"]),
    ("one path.yaml,", ["one path.yaml"]),
    ("", []),
])
def test_classic_configs_lists(value, entries):
    assert recipe._classic_list(value) == entries


def test_a_stamp_of_the_shell_script_is_current(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "fbank.conf").write_text("--num-mel-bins=80\n")
    a = _args(dump_dir=str(tmp_path / "dump"), data_dir=str(tmp_path / "data"), fbank_conf=str(tmp_path / "fbank.conf"))
    (tmp_path / "data" / ".stage0.done").write_text("x\n")
    write_stamp(f"{a.dump_dir}/.stage1.done", [a.data_dir, a.fbank_conf], "nj-independent")
    assert recipe.todo("fbank", a) == []


def test_a_later_stage_before_stage_0_fails_and_creates_nothing(tmp_path):
    from support import run_recipe

    proc = run_recipe(tmp_path, "--stage", "1", check=False)
    assert proc.returncode != 0 and f"{tmp_path / 'data'} is not prepared; run stage 0 first" in proc.stderr
    assert os.listdir(tmp_path) == []  # no data, dump or exp dir, no lock file
