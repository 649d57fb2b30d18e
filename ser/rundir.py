"""Run dirs shared by every trainer (neural, classic) and their readers: a run's identity, never overwriting another
run's files, the git revision a run was trained with, the trained runs of an experiment."""

from __future__ import annotations

import glob
import json
import logging
import os
import subprocess

from ser.atomic import write_json, write_text

log = logging.getLogger("ser.train")


def git_revision() -> str:
    """The git revision of the ser checkout (with -dirty when modified), or 'unknown'."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _move_aside(outdir: str, reason: str) -> None:
    aside = free_name(f"{outdir}.bak")
    log.warning("%s: %s; moving the old run to %s", outdir, reason, aside)
    os.rename(outdir, aside)
    parent = os.path.dirname(os.path.abspath(outdir))  # exp/<tag>/fold<k> or exp/<tag>/seed<s>/fold<k>
    for exp_dir in (parent, os.path.dirname(parent)):
        mark_results_stale(exp_dir, f"{os.path.relpath(outdir, exp_dir)}, which it scored, was moved aside to "
                                    f"{os.path.basename(aside)}")


RESULTS_JSON, RESULTS_MD = "results.json", "RESULTS.md"


def mark_results_stale(exp_dir: str, reason: str) -> bool:
    """Mark an experiment's results.json (``"stale": reason``) and RESULTS.md (a first line saying so) as no
    longer describing its runs; utils/compare_results.py leaves such results out. False where there are none."""
    path = os.path.join(exp_dir, RESULTS_JSON)
    if not os.path.isfile(path):
        return False
    try:
        with open(path) as f:
            results = json.load(f)
    except ValueError:  # not ser's results
        return False
    if not isinstance(results, dict) or "protocol" not in results:
        return False
    if results.get("stale"):
        return True
    write_json(path, {"stale": reason, **results}, indent=1)
    markdown = os.path.join(exp_dir, RESULTS_MD)
    if os.path.isfile(markdown):
        with open(markdown, encoding="utf-8") as f:
            text = f.read()
        write_text(markdown, f"> **Stale**: these results no longer describe the runs of this experiment: {reason}. "
                             "Stage 4 writes them again.\n\n" + text)
    log.warning("%s: marked stale (%s)", path, reason)
    return True


def claim_run_dir(outdir: str, identity: dict) -> None:
    """Move a run dir aside (``<dir>.bak<N>``) when it holds a run of another identity; never overwrite it."""
    run_json = os.path.join(outdir, "run.json")
    if os.path.isdir(outdir) and os.listdir(outdir):
        previous = None
        if os.path.isfile(run_json):
            with open(run_json) as f:
                previous = json.load(f).get("identity")
        if previous != identity:
            _move_aside(outdir, "it holds a run with another config, class set or data")


def free_name(stem: str) -> str:
    n = 1
    while os.path.exists(f"{stem}{n}"):
        n += 1
    return f"{stem}{n}"


def model_dirs(path: str) -> list[str]:
    """The trained runs under ``path``: the run itself, or every ``seed*/fold*`` (or ``fold*``) run of an
    experiment. Classic references (logistic regression) are not classifiers of audio and are left out."""
    if os.path.isfile(os.path.join(path, "model.pth")):
        return [path]
    found = sorted(glob.glob(os.path.join(path, "seed*", "fold*", "model.pth")) +
                   glob.glob(os.path.join(path, "fold*", "model.pth")))
    if not found:
        raise FileNotFoundError(f"{path}: neither a trained run (model.pth) nor an experiment with "
                                "seed<s>/fold<k>/model.pth runs")
    return [os.path.dirname(f) for f in found]
