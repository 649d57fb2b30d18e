"""utils/parse_options.sh, sourced by a run script under set -euo pipefail, driven through bash."""

from __future__ import annotations

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """#!/usr/bin/env bash
# Trains a model on the folds given.
#   ./run.sh [options] <data-dir> [<more>...]
set -euo pipefail
stage=0
train_config=conf/train.yaml
use_gpu=false
tag=
name=default
arg=default
readonly command_line="$0 $*"
. "{utils}/parse_options.sh"
printf 'stage=%s\\n' "$stage"
printf 'train_config=%s\\n' "$train_config"
printf 'use_gpu=%s\\n' "$use_gpu"
printf 'tag=%s\\n' "$tag"
printf 'name=%s\\n' "$name"
printf 'arg=%s\\n' "$arg"
printf 'nargs=%s\\n' "$#"
for a in "$@"; do printf 'pos=%s\\n' "$a"; done
"""


@pytest.fixture
def run_script(tmp_path):
    path = tmp_path / "run.sh"
    path.write_text(SCRIPT.format(utils=os.path.join(REPO, "utils")))
    path.chmod(0o755)

    def run(*args):
        result = subprocess.run(["bash", str(path), *args], capture_output=True, text=True)
        values = {}
        positional = []
        for line in result.stdout.splitlines():
            key, _, value = line.partition("=")
            if key == "pos":
                positional.append(value)
            else:
                values[key] = value
        return result, values, positional

    return run


def test_defaults_without_options(run_script):
    result, values, positional = run_script()
    assert result.returncode == 0, result.stderr
    assert values == {"stage": "0", "train_config": "conf/train.yaml", "use_gpu": "false", "tag": "",
                      "name": "default", "arg": "default", "nargs": "0"}


def test_both_syntaxes_dashes_spaces_and_positionals(run_script):
    result, values, positional = run_script("--stage", "3", "--train-config=conf/tuning/a b.yaml", "--use-gpu", "true",
                                            "--tag=", "data/train", "two words", "--stage", "9")
    assert result.returncode == 0, result.stderr
    assert values["stage"] == "3" and values["train_config"] == "conf/tuning/a b.yaml"
    assert values["use_gpu"] == "true" and values["tag"] == ""
    # parsing stops at the first positional argument; the rest stays in "$@" untouched
    assert positional == ["data/train", "two words", "--stage", "9"]


def test_values_with_special_characters(run_script):
    value = "queue.pl --mem 4G -l 'a=b' $HOME \"q\" ; echo x"
    result, values, _ = run_script("--tag", value, "--train-config=x=y")
    assert result.returncode == 0, result.stderr
    assert values["tag"] == value and values["train_config"] == "x=y"


def test_variables_named_like_the_parser_internals(run_script):
    # the parser's own locals must not shadow the script's variables
    result, values, _ = run_script("--name", "n1", "--arg", "a1")
    assert result.returncode == 0, result.stderr
    assert values["name"] == "n1" and values["arg"] == "a1"


def test_double_dash_ends_options(run_script):
    result, values, positional = run_script("--stage", "2", "--", "--stage", "x")
    assert result.returncode == 0, result.stderr
    assert values["stage"] == "2" and positional == ["--stage", "x"]


@pytest.mark.parametrize("args, message", [
    (["--foo", "1"], "--foo: unknown option"),
    (["--foo=1"], "--foo: unknown option"),
    (["--stage"], "option --stage: missing value"),
    (["--bogus"], "--bogus: unknown option"),
    (["--use-gpu", "yes"], "option --use-gpu takes true or false, not 'yes'"),
    (["--use-gpu=1"], "option --use-gpu takes true or false, not '1'"),
    (["--bad.name", "1"], "--bad.name: unknown option"),
    # variables that are not the script's options: one it sets otherwise, one from the environment
    (["--command-line", "x"], "--command-line: unknown option"),
    (["--PATH", "/x"], "--PATH: unknown option"),
])
def test_errors_name_the_option(run_script, args, message):
    result, values, _ = run_script(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "stage" not in values  # the script stopped before its own commands


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_header_and_options(run_script, flag):
    result, _, _ = run_script("--stage", "4", flag)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Trains a model on the folds given."
    assert "  ./run.sh [options] <data-dir> [<more>...]" in lines
    assert "set -euo pipefail" not in result.stdout
    for option in ("  --stage 4", "  --train-config conf/train.yaml", "  --use-gpu false", "  --name default"):
        assert option in lines
    assert "command-line" not in result.stdout  # not an option


def test_help_message_variable_wins(tmp_path):
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/bash\n# header\nset -eu\nhelp_message='Usage: s.sh <dir>'\nx=1\n"
                      f". {REPO}/utils/parse_options.sh\necho ran\n")
    result = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "Usage: s.sh <dir>" and "header" not in result.stdout
    assert "  --x 1" in result.stdout.splitlines() and "ran" not in result.stdout
