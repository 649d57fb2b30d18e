"""egs/ravdess/local/gpu_check.sh's helper (ser.bin.gpu_check): --tiny end to end on the CPU, on copies of the config
and docs/gpu.md whose marked blocks it rewrites."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from support import REPO, recipe_env

pytest.importorskip("transformers")
from ser.bin.gpu_check import README_MARKERS, YAML_MARKERS, replace_block  # noqa: E402

CONFIG = os.path.join(REPO, "egs", "TEMPLATE", "conf", "train_wavlm.yaml")
README = os.path.join(REPO, "docs", "gpu.md")  # the page whose gpu_check block is rewritten


def outside_block(text, markers):
    begin, end = text.index(markers[0]), text.index(markers[1])
    return text[:text.index("\n", begin)], text[end:]


@pytest.mark.slow
def test_tiny_run_measures_and_writes_the_blocks(tmp_path):
    config, readme = tmp_path / "train_wavlm.yaml", tmp_path / "README.md"
    shutil.copy(CONFIG, config)
    shutil.copy(README, readme)
    env = recipe_env()
    proc = subprocess.run([sys.executable, "-m", "ser.bin.gpu_check", "--tiny", "--work-dir", str(tmp_path / "work"),
                           "--config-file", str(config), "--readme", str(readme)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "work" / "gpu_check.json").read_text())
    for mode in ("fp32", "bf16"):
        bench = result["benchmark"][mode]
        assert bench["step_s"] > 0 and bench["loader_wait_s"] >= 0 and bench["peak_gib"] is None  # CPU
    recipe = result["recipe"]
    assert len(recipe["epoch_s"]) == 2 and recipe["test_utts"] == 16 and 0 <= recipe["ua"] <= 100

    new_config, new_readme = config.read_text(), readme.read_text()
    for new, old, markers, prefix in ((new_config, open(CONFIG).read(), YAML_MARKERS, "# "),
                                      (new_readme, open(README).read(), README_MARKERS, "  ")):
        assert outside_block(new, markers) == outside_block(old, markers)  # only the block changed
        block = new[new.index(markers[0]):new.index(markers[1])].splitlines()[1:]
        assert block[0].startswith(prefix + "gpu_check (tiny) on CPU")
        assert any(line.startswith(prefix + "- bf16: ") and "loader wait" in line for line in block)
        assert any(f"UA {recipe['ua']:.2f}" in line for line in block)
    import yaml

    assert yaml.safe_load(new_config) == yaml.safe_load(open(CONFIG))  # the settings themselves are untouched


def test_replace_block_replaces_and_names_missing_markers(tmp_path):
    path = tmp_path / "f.md"
    path.write_text("a\n  <!-- gpu_check begin -->\n  old\n  <!-- gpu_check end -->\nb\n")
    replace_block(str(path), README_MARKERS, ["  one", "  two"])
    replace_block(str(path), README_MARKERS, ["  three"])
    assert path.read_text() == "a\n  <!-- gpu_check begin -->\n  three\n  <!-- gpu_check end -->\nb\n"
    link = tmp_path / "link.md"
    link.symlink_to(path)
    replace_block(str(link), README_MARKERS, ["  four"])
    assert link.is_symlink() and "  four\n" in path.read_text()
    path.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no block between"):
        replace_block(str(path), YAML_MARKERS, ["x"])
