"""The embedded recipe end to end at a small scale, re-runs that do nothing, partial re-runs, bad options."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from ser.stamps import STAGE0_DONE

from support import RECIPE, RECIPE_TRAIN_ARGS, REPO, SMALL_ENCODER, recipe_command, run_recipe


@pytest.fixture(scope="module")
def finished_recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synth")
    proc = run_recipe(tmp)
    return tmp, proc


@pytest.mark.slow
def test_all_stages_produce_scored_results(finished_recipe):
    tmp, _ = finished_recipe
    with open(tmp / "exp" / "train" / "results.json") as f:
        results = json.load(f)
    protocol = results["protocol"]
    assert protocol["corpus"] == "synth" and protocol["classes"] == ["ang", "hap", "neu", "sad"]
    assert protocol["folds_scored"] == [1, 2, 3, 4] and protocol["complete"]
    assert results["summary"]["ua"]["mean"] > 40.0  # chance is 25; 3 epochs of the MLL model (EAM, FLAM, every loss)
    for fold in range(1, 5):
        run = results["runs"]["0"][str(fold)]
        assert run["num_utts"] == 96 and sum(map(sum, run["confusion"])) == 96
        decode = tmp / "exp" / "train" / "seed0" / f"fold{fold}" / "decode_test"
        assert (decode / "confusion.png").stat().st_size > 1000
        posteriors = (decode / "posteriors").read_text().splitlines()
        assert len(posteriors) == 96 and abs(sum(map(float, posteriors[0].split()[1:])) - 1.0) < 1e-3
    assert "| UA |" in (tmp / "exp" / "train" / "RESULTS.md").read_text()
    card = json.loads((tmp / "exp" / "train" / "model_card.json").read_text())  # stage 4 wrote the cards
    assert card["corpus"] == "synth" and card["synthetic_training_audio"] and card["protocol"]["folds"] == 4
    assert card["test_metrics"]["experiment"]["ua"]["mean"] == results["summary"]["ua"]["mean"]
    assert card["config_hash"] == results["config_hash"] and card["git_revision"] == results["git_revision"]
    fold2 = json.loads((tmp / "exp" / "train" / "seed0" / "fold2" / "model_card.json").read_text())
    assert fold2["test_metrics"]["this_fold"]["ua"] == results["runs"]["0"]["2"]["ua"]


@pytest.mark.slow
def test_test_speakers_never_reach_training(finished_recipe):
    tmp, _ = finished_recipe
    for fold in range(1, 5):
        def spk(part, fold=fold):
            return {line.split()[1] for line in (tmp / "dump" / f"fold{fold}" / part / "utt2spk").open()}

        assert not spk("test") & (spk("train") | spk("valid"))
        held_out = json.loads((tmp / "data" / "protocol.json").read_text())["folds"][str(fold)]["valid_mode"] == "spk"
        assert not spk("valid") & spk("train") if held_out else spk("valid") <= spk("train")


@pytest.mark.slow
def test_rerun_does_nothing_and_says_so(finished_recipe):
    tmp, _ = finished_recipe
    model = tmp / "exp" / "train" / "seed0" / "fold1" / "model.pth"
    feats = tmp / "dump" / "all" / "feats.scp"
    before = (model.stat().st_mtime_ns, feats.stat().st_mtime_ns)
    proc = run_recipe(tmp)
    for stage in ("stage 0", "stage 1", "stage 2", "stage 3", "stage 4"):
        assert f"{stage}: " in proc.stderr and "nothing to do" in proc.stderr
    assert proc.stderr.count("nothing to do") == 1 + 1 + 4 + 4 + 1
    assert (model.stat().st_mtime_ns, feats.stat().st_mtime_ns) == before


@pytest.mark.slow
def test_retraining_one_fold_keeps_the_others(finished_recipe):
    tmp, _ = finished_recipe
    fold1 = tmp / "exp" / "train" / "seed0" / "fold1" / "model.pth"
    fold2 = tmp / "exp" / "train" / "seed0" / "fold2" / "model.pth"
    (tmp / "exp" / "train" / "seed0" / "fold2" / "selection.json").unlink()  # as if fold 2 had been killed
    before1 = fold1.stat().st_mtime_ns
    proc = run_recipe(tmp, "--stage", "2", "--stop-stage", "2", "--folds", "1 2")
    assert "folds 2 " in proc.stderr or "folds 2\n" in proc.stderr or "folds 2 ->" in proc.stderr
    assert fold1.stat().st_mtime_ns == before1 and fold2.exists()


@pytest.mark.slow
def test_a_finished_run_is_never_displaced_without_a_console_warning(finished_recipe):
    tmp, _ = finished_recipe
    common = ("--stage", "2", "--stop-stage", "2", "--folds", "1", "--tag", "displaced")
    run_recipe(tmp, *common, "--train-args", f"--set max_epoch=1 {SMALL_ENCODER}")
    proc = run_recipe(tmp, *common, "--train-args", f"--set max_epoch=2 {SMALL_ENCODER}")
    run = tmp / "exp" / "displaced" / "seed0" / "fold1"
    warning = [line for line in proc.stderr.splitlines() if "WARNING:" in line]
    assert len(warning) == 1 and "fold1 holds a finished run of other settings" in warning[0]
    assert "moved aside" in warning[0] and (run.parent / "fold1.bak1" / "selection.json").exists()
    assert len(json.loads((run / "history.json").read_text())) == 2


@pytest.mark.slow
def test_recomputed_identical_features_do_not_retrain(finished_recipe):
    """Stage 1 run again computes new archives with the same content: ser.sh's up-to-date check and the trainer's
    own run identity agree that every finished fold stays finished."""
    tmp, _ = finished_recipe
    runs = tmp / "exp" / "train" / "seed0"
    models = {fold: (runs / f"fold{fold}" / "model.pth").stat().st_mtime_ns for fold in range(1, 5)}
    arks = sorted((tmp / "dump").glob("*.ark"))
    ark_times = [ark.stat().st_mtime_ns for ark in arks]
    (tmp / "dump" / ".stage1.done").unlink()  # forces the features to be computed again
    proc = run_recipe(tmp, "--stage", "1", "--stop-stage", "2")
    assert [ark.stat().st_mtime_ns for ark in arks] != ark_times  # new archives
    assert proc.stderr.count("is trained and up to date; nothing to do") == 4
    assert {fold: (runs / f"fold{fold}" / "model.pth").stat().st_mtime_ns for fold in range(1, 5)} == models
    assert not list(runs.glob("*.bak*"))
    dump = tmp / "dump" / "fold1"
    direct = subprocess.run(
        [sys.executable, "-m", "ser.bin.train", "--config", str(tmp / "exp" / "train" / "train_config.yaml"),
         "--classes", str(tmp / "dump" / "all" / "classes.txt"), "--train-dir", str(dump / "train"),
         "--valid-dir", str(dump / "valid"), "--cmvn", str(dump / "train" / "cmvn.ark"),
         "--outdir", str(runs / "fold1"), "--seed", "0", *shlex.split(RECIPE_TRAIN_ARGS)], capture_output=True,
        text=True)
    assert direct.returncode == 0, direct.stderr[-3000:]
    assert "already trained; nothing to do" in direct.stderr and not list(runs.glob("*.bak*"))


@pytest.mark.slow
def test_a_failing_run_leaves_an_existing_experiment_as_it_was(finished_recipe, tmp_path):
    """A run aimed at a finished experiment that fails before training (fp16 on a CPU) moves no run aside and
    changes none of its files (only the failing job's log is new)."""
    tmp, _ = finished_recipe
    exp = tmp / "exp" / "train"

    def files():
        return {p: p.stat().st_mtime_ns for p in exp.rglob("*") if p.is_file() and p.parent.name != "log"}

    before = files()
    config = tmp_path / "fp16.yaml"
    config.write_text(open(os.path.join(RECIPE, "conf", "train.yaml")).read() + "\namp: fp16\n")
    proc = run_recipe(tmp, "--stage", "2", "--stop-stage", "2", "--train-config", str(config), "--tag", "train",
                      "--folds", "1", check=False)
    assert proc.returncode != 0 and "fp16 needs a GPU" in (exp / "seed0" / "log" / "train.1.log").read_text()
    assert files() == before and not list(exp.rglob("*.bak*"))


def _wait_for(condition, what, seconds=120):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_one_run_per_workspace_and_a_killed_run_resumes_to_the_same_result(finished_recipe):
    """A second run in a busy workspace is refused, naming the first. kill -9 of the first run's process group
    in stage 2 stops its jobs; an immediate re-run takes the lock over and ends with the result of an
    uninterrupted run (tag train: the same config and data)."""
    tmp, _ = finished_recipe
    cmd, env = recipe_command(tmp, "--stage", "2", "--stop-stage", "3", "--tag", "killed", "--folds", "1")
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    lock = tmp / "exp" / ".ser.lock"
    _wait_for(lambda: lock.exists() and "--tag killed" in lock.read_text(), "the first run's lock")
    second = run_recipe(tmp, "--stage", "4", check=False)
    assert second.returncode == 1 and "another run is using" in second.stderr
    assert "--tag killed" in second.stderr and re.search(r"pid \d+, started \d{4}-\d\d-\d\d", second.stderr)
    run = tmp / "exp" / "killed" / "seed0" / "fold1"
    _wait_for(lambda: (run / "history.json").exists(), "an epoch of training")  # killed mid-training
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    run_recipe(tmp, "--stage", "2", "--stop-stage", "3", "--tag", "killed", "--folds", "1")
    uninterrupted = tmp / "exp" / "train" / "seed0" / "fold1"
    a, b = torch.load(run / "model.pth"), torch.load(uninterrupted / "model.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (run / "decode_test" / "posteriors").read_text() == \
        (uninterrupted / "decode_test" / "posteriors").read_text()


@pytest.mark.slow
def test_a_new_run_cancels_the_slurm_jobs_a_killed_run_left(tmp_path, fake_slurm):
    """utils/slurm.py records its job ids under exp/.ser.slurm; a run killed with SIGKILL leaves that record, and
    the next run, once it holds the workspace, cancels the recorded jobs still queued, saying so."""
    env, calls = fake_slurm
    records = tmp_path / "exp" / ".ser.slurm"
    records.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (records / f"slurm_jobs.{dead.pid}").write_text(f"{dead.pid} 1\n301\n302\n")
    (tmp_path / "fake_slurm" / "queue").write_text("302\n")  # 301 has ended
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / STAGE0_DONE).write_text("")  # a prepared workspace: stage 4 gets as far as its lock
    path = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    proc = run_recipe(tmp_path, "--stage", "4", check=False, env_extra={"PATH": path, "FAKE_SLURM": env["FAKE_SLURM"]})
    assert f"cancelled 1 Slurm job(s) of an earlier run that was killed (runner pid {dead.pid}" in proc.stderr
    assert calls("scancel") == ["scancel 302"]
    assert list(records.iterdir()) == []
    assert proc.returncode == 1 and "has no test predictions" in proc.stderr  # the run itself goes on as usual


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 3])
def test_a_run_killed_in_stage_1_or_3_reruns_to_the_uninterrupted_result(finished_recipe, stage):
    """kill -9 of the run's process group while its stage-1 (features) or stage-3 (decoding) jobs run, then an
    immediate re-run: it succeeds, and its outputs equal the uninterrupted run's."""
    import kaldiio

    tmp, _ = finished_recipe
    if stage == 1:
        def outputs():
            return {k: v.copy() for k, v in kaldiio.load_scp(str(tmp / "dump" / "all" / "feats.scp")).items()}

        stamp, log = tmp / "dump" / ".stage1.done", tmp / "dump" / "log" / "fbank.1.log"
        args = ("--stage", "1", "--stop-stage", "1")
    else:
        decode = tmp / "exp" / "train" / "seed0" / "fold1" / "decode_test"

        def outputs():
            return {"posteriors": (decode / "posteriors").read_text()}

        stamp, log = decode / ".stage3.done", tmp / "exp" / "train" / "seed0" / "log" / "decode_test.1.log"
        args = ("--stage", "3", "--stop-stage", "3", "--folds", "1")
    uninterrupted = outputs()
    stamp.unlink()
    log.unlink()
    cmd, env = recipe_command(tmp, *args)
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    _wait_for(log.exists, f"the stage-{stage} jobs")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    run_recipe(tmp, *args)
    again = outputs()
    assert again.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert np.array_equal(again[key], value) if stage == 1 else again[key] == value


@pytest.mark.slow
def test_a_workspace_whose_path_holds_spaces_and_shell_characters(tmp_path):
    """Corpus, data, dump and exp under a path holding spaces, &, ;, $( ) and backticks: every stage works, and
    nothing in the path runs."""
    odd = tmp_path / "R&D; $(touch ran1) `touch ran2` a  b"
    odd.mkdir()
    run_recipe(odd, "--train-args", f"--set max_epoch=1 {SMALL_ENCODER}", "--stop-stage", "3", "--folds", "1")
    assert (odd / "dump" / "fold4" / "test" / "feats.scp").exists()  # stages 0-1 for every fold
    assert (odd / "exp" / "train" / "seed0" / "fold1" / "decode_test" / "predictions").exists()
    assert not [p for d in (tmp_path, odd, odd / "exp", RECIPE) for p in os.listdir(d) if p.startswith("ran")]


def test_unknown_option_is_named(tmp_path):
    proc = run_recipe(tmp_path, "--stgae", "2", check=False)
    assert proc.returncode != 0 and "--stgae" in proc.stderr


def test_train_args_are_split_as_shell_words(tmp_path):
    """--train-args is split as the shell splits words: a quoted override value may hold spaces; bad quotes are
    named."""
    wavlm = os.path.join(REPO, "egs", "TEMPLATE", "conf", "train_wavlm.yaml")
    proc = run_recipe(tmp_path, "--print-config", "true", "--train-config", wavlm,
                      "--train-args", "--set max_epoch=2  --set 'frontend_conf.path=/my models/wav  lm'")
    config = yaml.safe_load(proc.stdout)
    assert config["max_epoch"] == 2 and config["frontend_conf"]["path"] == "/my models/wav  lm"
    proc = run_recipe(tmp_path, "--print-config", "true", "--train-args", "--set 'max_epoch=2", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: --train-args: cannot split \"--set 'max_epoch=2\" into words: "
                                   "No closing quotation")


@pytest.mark.slow
def test_classic_configs_separated_by_commas_may_hold_spaces(finished_recipe):
    """--classic-configs holding a comma is a comma-separated list (entries trimmed), so a path may hold spaces.
    Each entry reaches stage 4 as an experiment of its own (there it stops: it never trained), in the order given."""
    tmp, _ = finished_recipe
    spaced = tmp / "my classic confs"
    spaced.mkdir(exist_ok=True)
    shutil.copy(os.path.join(REPO, "egs", "TEMPLATE", "conf", "classic", "egemaps.yaml"), spaced / "ege maps.yaml")
    proc = run_recipe(tmp, "--stage", "4", "--classic-configs", f" {spaced}/ege maps.yaml , conf/classic/compare.yaml",
                      check=False)
    assert f"{tmp / 'exp' / 'train' / 'results.json'} is up to date" in proc.stderr
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].endswith(
        f"error: {tmp / 'exp' / 'ege maps'} has no test predictions; run stage 3 first")
    missing = run_recipe(tmp, "--stage", "4", "--classic-configs", f"conf/classic/compare.yaml,{spaced}/none.yaml",
                         check=False)
    assert missing.returncode == 1 and f"error: config {spaced}/none.yaml does not exist" in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--stage", "6"], "--stage must be a stage from 0 to 5, got '6'"),
    (["--stage", "3", "--stop-stage", "1"], "--stage 3 is after --stop-stage 1: nothing would run"),
    (["--seeds", "0;1"], "--seeds takes numbers separated by spaces, got '0;1'"),
    (["--stage", "2", "--folds", "7"], "has no fold 7 (its folds: 1 2 3 4)"),
])
def test_stage_fold_and_seed_options_are_checked_before_any_work(finished_recipe, args, message):
    tmp, _ = finished_recipe
    before = sorted(str(p) for p in (tmp / "exp").rglob("*"))
    proc = run_recipe(tmp, *args, check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
    assert "stage 2:" not in proc.stderr and sorted(str(p) for p in (tmp / "exp").rglob("*")) == before


@pytest.mark.slow
def test_folds_may_be_separated_by_commas(finished_recipe):
    tmp, _ = finished_recipe
    proc = run_recipe(tmp, "--stage", "2", "--folds", "1,2")
    assert "stage 2: exp/" not in proc.stderr and "folds 1,2" not in proc.stderr
    assert proc.stderr.count("is trained and up to date; nothing to do") == 2


@pytest.mark.slow
def test_classify_wav_and_attention_picture(finished_recipe, tmp_path):
    import soundfile as sf
    from scipy.signal import resample_poly

    tmp, _ = finished_recipe
    model_dir = tmp / "exp" / "train" / "seed0" / "fold1"
    wav = sorted((tmp / "corpus").glob("spk01/*.wav"))[0]
    # The same utterance as a 48 kHz stereo file must give (almost) the same posteriors: it is resampled/down-mixed.
    x, sr = sf.read(wav, dtype="float32")
    stereo = tmp_path / "stereo48k.wav"
    sf.write(stereo, np.stack([resample_poly(x, 3, 1)] * 2, axis=1), 3 * sr, subtype="PCM_16")
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-m", "ser.bin.classify_wav", "--model-dir", str(model_dir), str(wav),
                           str(stereo)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    header, line16, line48 = proc.stdout.splitlines()
    assert header.split()[1:5] == ["ang", "hap", "neu", "sad"]
    p16, p48 = (np.array(line.split()[1:5], dtype=float) for line in (line16, line48))
    assert abs(p16.sum() - 1) < 1e-3 and np.abs(p16 - p48).max() < 0.1
    png = tmp_path / "attention.png"
    proc = subprocess.run([sys.executable, "-m", "ser.bin.plot_attention", "--model-dir", str(model_dir), str(wav),
                           str(png)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert png.stat().st_size > 5000
    missing = subprocess.run([sys.executable, "-m", "ser.bin.classify_wav", "--model-dir", str(model_dir),
                              str(tmp_path / "nope.wav")], capture_output=True, text=True, env=env)
    assert missing.returncode != 0 and "nope.wav" in missing.stderr


def slurm_available() -> bool:
    import shutil

    if not shutil.which("sbatch"):
        return False
    return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=20).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not slurm_available(), reason="no running Slurm (sbatch missing or `scontrol ping` fails); "
                                                    ".ci/slurm.sh start sets one up as root")
def test_training_on_slurm_resubmits_only_unfinished_folds(finished_recipe):
    tmp, _ = finished_recipe
    env_cmd = {"train_cmd": "utils/slurm.py --mem 2G", "decode_cmd": "utils/slurm.py --mem 2G"}
    args = ["--exp-root", str(tmp / "exp_slurm"), "--stage", "2", "--stop-stage", "3", "--folds", "1 2"]
    proc = run_recipe(tmp, *args, env_extra=env_cmd)
    run = tmp / "exp_slurm" / "train" / "seed0"
    for fold in (1, 2):
        assert (run / f"fold{fold}" / "decode_test" / "predictions").exists()
        assert (run / "log" / "q" / f"train.{fold}.sh").read_text().startswith("#!")  # submitted with sbatch
    # Fold 2 "failed" (no selection.json): only fold 2 is resubmitted.
    (run / "fold2" / "selection.json").unlink()
    proc = run_recipe(tmp, *args, env_extra=env_cmd)
    assert "training seed 0, folds 2 ->" in proc.stderr
    assert "fold1 is trained and up to date" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["corrupt", "too_short"])
def test_bad_audio_stops_the_recipe_naming_the_file_and_leaves_nothing_complete(tmp_path, damage):
    import soundfile as sf

    from ser.corpora.synth import generate_synth_corpus

    generate_synth_corpus(str(tmp_path / "corpus"), num_speakers=4, utts_per_class=2)
    victim = sorted((tmp_path / "corpus").glob("spk02/*.wav"))[1]
    if damage == "corrupt":  # unreadable: stage 0 (durations) stops
        victim.write_bytes(os.urandom(2000))
    else:  # 10 ms: readable, but shorter than one 25 ms frame: stage 1 stops
        sf.write(victim, np.zeros(160, dtype=np.float32), 16000, subtype="PCM_16")
    proc = run_recipe(tmp_path, "--stop-stage", "1", check=False)
    assert proc.returncode != 0
    assert victim.stem in proc.stderr + "".join(p.read_text() for p in (tmp_path / "dump").glob("log/*.log"))
    assert not (tmp_path / "dump" / ".stage1.done").exists()
    assert not (tmp_path / "dump" / "all" / "feats.scp").exists()
    if damage == "corrupt":
        assert not (tmp_path / "data" / ".stage0.done").exists()


@pytest.mark.slow
def test_with_truncated_audio_warn_a_cut_short_wav_is_named_and_counted(tmp_path):
    """(The default, an error naming the wav, is tested on compute_fbank in test_features.py.)"""
    from ser.corpora.synth import generate_synth_corpus

    assert run_recipe(tmp_path, "--truncated-audio", "maybe", check=False).stderr.strip().endswith(
        "--truncated-audio must be error or warn, got 'maybe'")
    generate_synth_corpus(str(tmp_path / "corpus"), num_speakers=4, utts_per_class=2)
    victim = sorted((tmp_path / "corpus").glob("spk02/*.wav"))[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    warned = run_recipe(tmp_path, "--stop-stage", "1", "--truncated-audio", "warn")
    assert (f"stage 1: WARNING: 1 wav(s) were cut short and read as far as they go: see "
            f"{tmp_path / 'dump' / 'log' / 'fbank'}.*.log") in warned.stderr
    logs = "".join(p.read_text() for p in (tmp_path / "dump").glob("log/fbank.*.log"))
    assert logs.count(": warning: ") == 1 and f"audio file {victim} is cut short" in logs
    assert (tmp_path / "dump" / ".stage1.done").exists()


@pytest.mark.slow
def test_frozen_encoder_config_caches_its_frames_once_through_the_recipe(finished_recipe, tmp_path):
    """conf/train_ssl_frozen.yaml (frontend ssl_cached, featmix) with a tiny random WavLM: stage 2 first caches the
    frozen frames of data/all, stages 2-3 read them, results record the mixup; a second run finds the cache up to
    date and trains nothing."""
    pytest.importorskip("transformers")
    from ser.models.ssl import build_tiny_ssl

    tmp, _ = finished_recipe
    checkpoint = build_tiny_ssl(str(tmp_path / "tiny wavlm"))  # a path with a space
    args = ("--exp-root", str(tmp_path / "exp"), "--stage", "2", "--folds", "1",
            "--train-config", os.path.join(REPO, "egs", "TEMPLATE", "conf", "train_ssl_frozen.yaml"),
            "--train-args", f"--set max_epoch=1 --set encoder_conf.d_model=32 --set encoder_conf.num_heads=4 "
                            f"--set 'frontend_conf.path={checkpoint}'")
    first = run_recipe(tmp, *args)
    assert "frozen SSL frames of" in first.stderr
    results = json.loads((tmp_path / "exp" / "train_ssl_frozen" / "results.json").read_text())
    assert results["config"]["frontend"] == "ssl_cached" and results["protocol"]["mixup"].startswith("featmix")
    assert results["runs"]["0"]["1"]["num_utts"] == 96
    caches = list((tmp / "dump" / "ssl").glob("*/all/feats.scp"))
    assert len(caches) == 1 and len(caches[0].read_text().splitlines()) == 384
    again = run_recipe(tmp, *args)
    assert "is trained and up to date; nothing to do" in again.stderr
    assert list((tmp / "dump" / "ssl").glob("*/all/feats.scp")) == caches


@pytest.mark.slow
def test_fused_functionals_and_speaker_norm_through_the_recipe(finished_recipe, tmp_path):
    """A FLAM model fusing eGeMAPS functionals, under both protocols: stage 1 computes the functionals, the tags and
    results.json name the protocol, and a single file is classified with its functionals computed on the fly
    (refused, naming the reason, for the per-speaker protocol, which needs all of a speaker's audio)."""
    pytest.importorskip("opensmile", reason="opensmile is installed by tools/install.sh --opensmile/--test")
    import yaml

    tmp, _ = finished_recipe
    with open(os.path.join(REPO, "egs", "TEMPLATE", "conf", "train_fusion.yaml")) as f:
        config = yaml.safe_load(f)
    config["functionals"] = "eGeMAPSv02"
    config["encoder_conf"].update(d_model=32, num_heads=4, conv_channels=8)
    (tmp_path / "fusion.yaml").write_text(yaml.safe_dump(config))
    for norm in ("none", "cmvn"):
        run_recipe(tmp, "--exp-root", str(tmp_path / "exp"), "--stage", "1", "--folds", "1",
                   "--train-config", str(tmp_path / "fusion.yaml"), "--speaker-norm", norm,
                   "--train-args", "--set max_epoch=1")
    assert (tmp / "dump" / "functionals" / "eGeMAPSv02" / "feats.scp").exists()
    for tag, norm in (("fusion", "none"), ("fusion_spkcmvn", "cmvn")):
        with open(tmp_path / "exp" / tag / "results.json") as f:
            results = json.load(f)
        assert results["protocol"]["speaker_norm"] == norm and results["config"]["speaker_norm"] == norm
        assert results["config"]["functionals"] == "eGeMAPSv02" and results["runs"]["0"]["1"]["num_utts"] == 96
    wav = sorted((tmp / "corpus").glob("spk01/*.wav"))[0]
    env = {**os.environ, "PYTHONPATH": REPO}
    ok = subprocess.run([sys.executable, "-m", "ser.bin.classify_wav", "--model-dir",
                         str(tmp_path / "exp" / "fusion" / "seed0" / "fold1"), str(wav)], capture_output=True,
                        text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    probs = np.array(ok.stdout.splitlines()[1].split()[1:5], dtype=float)
    assert abs(probs.sum() - 1) < 1e-3
    refused = subprocess.run([sys.executable, "-m", "ser.bin.classify_wav", "--model-dir",
                              str(tmp_path / "exp" / "fusion_spkcmvn" / "seed0" / "fold1"), str(wav)],
                             capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "per-speaker normalisation" in refused.stderr
    # The fused model exports to TorchScript too: its functionals are standardised inside the exported module (its
    # ONNX export: test_export_onnx.py::test_onnx_posteriors_equal_pytorchs_alone_and_batched[fused]).
    export_and_compare(tmp_path / "exp" / "fusion" / "seed0" / "fold1",
                       sorted((tmp / "corpus").glob("spk01/*.wav"))[:3], tmp_path / "export_fusion", onnx=False)


@pytest.mark.slow
def test_emotion_recognizer_api_and_cli_on_real_audio(finished_recipe, tmp_path):
    """A fold's model classifies a file as stage 1 and 3 did; an experiment is the ensemble of its folds; in-memory
    waveforms equal files; the CLI takes files, folders and lists and writes table, CSV or JSON."""
    import soundfile as sf

    from ser import EmotionRecognizer

    tmp, _ = finished_recipe
    exp = tmp / "exp" / "train"
    wav = sorted((tmp / "corpus").glob("spk01/*.wav"))[0]
    utt = next(line.split()[0] for line in (tmp / "data" / "all" / "wav.scp").read_text().splitlines()
               if line.split()[1] == str(wav))
    test_fold = next(k for k in range(1, 5) if utt in (tmp / "data" / f"fold{k}" / "test" / "utt2emo").read_text())
    decoded = dict((line.split()[0], np.array(line.split()[1:], dtype=float)) for line in
                   (exp / "seed0" / f"fold{test_fold}" / "decode_test" / "posteriors").read_text().splitlines())
    single = EmotionRecognizer.from_dir(str(exp / "seed0" / f"fold{test_fold}"))
    one = single.classify_file(str(wav))
    assert one.models == 1 and list(one.posteriors) == single.classes
    np.testing.assert_allclose(list(one.posteriors.values()), decoded[utt], atol=2e-5)

    ensemble = EmotionRecognizer.from_dir(str(exp))
    assert len(ensemble.members) == 4 and "ensemble of 4 models" in ensemble.description
    each = [EmotionRecognizer.from_dir(str(exp / "seed0" / f"fold{k}")).classify_file(str(wav)) for k in range(1, 5)]
    mean = np.mean([list(p.posteriors.values()) for p in each], axis=0)
    together = ensemble.classify_file(str(wav))
    np.testing.assert_allclose(list(together.posteriors.values()), mean, atol=1e-6)
    assert together.label == ensemble.classes[int(mean.argmax())] and together.models == 4

    samples, rate = sf.read(wav, dtype="float32")
    from_memory = ensemble.classify_batch([samples, torch.from_numpy(samples)], rate)
    for p in from_memory:
        np.testing.assert_allclose(list(p.posteriors.values()), mean, atol=1e-5)
    out_of_range = ensemble.classify_batch([samples * 40000], rate)[0]  # a failure reported, not raised
    assert not out_of_range.ok and out_of_range.message.startswith("waveform 0: float samples must lie in")

    folder = tmp_path / "audio" / "nested"
    folder.mkdir(parents=True)
    for name in ("a.wav", "b.wav"):
        (folder / name).write_bytes(wav.read_bytes())
    (tmp_path / "audio" / "notes.txt").write_text("not audio\n")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# one per line\n{wav}\n")
    env = {**os.environ, "PYTHONPATH": REPO}
    base = [sys.executable, "-m", "ser.bin.classify", "--model", str(exp)]
    proc = subprocess.run(base + ["--format", "json", str(tmp_path / "audio"), "--list", str(listing)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [os.path.basename(r["file"]) for r in rows] == ["a.wav", "b.wav", wav.name]
    assert all(r["models"] == 4 and r["prediction"] == together.label for r in rows)
    np.testing.assert_allclose(list(rows[2]["posteriors"].values()), mean, atol=1e-6)
    assert "3 file(s), an ensemble of 4 models" in proc.stderr
    out = tmp_path / "out.csv"
    proc = subprocess.run(base + ["--format", "csv", "--output", str(out), str(wav)], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    header, row = out.read_text().splitlines()
    assert header == "file," + ",".join(ensemble.classes) + ",prediction" and row.endswith("," + together.label)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(base + [str(empty)], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "no audio files" in proc.stderr and str(empty) in proc.stderr


@pytest.mark.slow
def test_a_packed_model_classifies_elsewhere_as_the_experiment_does(finished_recipe, tmp_path):
    import io
    import tarfile

    from ser import EmotionRecognizer

    tmp, _ = finished_recipe
    exp = tmp / "exp" / "train"
    wav = sorted((tmp / "corpus").glob("spk02/*.wav"))[0]
    archive = tmp_path / "train.tar.gz"
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-m", "ser.bin.pack_model", "--model", str(exp), "--out", str(archive)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "model/MANIFEST.json" in names and "model/seed0/fold3/model.pth" in names
    assert not [n for n in names if "checkpoint" in n or "decode" in n]  # only what classification needs
    expected = EmotionRecognizer.from_dir(str(exp)).classify_file(str(wav))
    packed = EmotionRecognizer.from_dir(str(archive))
    got = packed.classify_file(str(wav))
    assert got.models == 4 and got.posteriors == pytest.approx(expected.posteriors, abs=1e-7)
    # A damaged archive is refused, naming it and the file.
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(damaged, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith("fold1/config.yaml"):
                data = data.replace(b"max_epoch: 3", b"max_epoch: 4")
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(ValueError, match="damaged.tar.gz: model/seed0/fold1/config.yaml .*differs from the manifest"):
        EmotionRecognizer.from_dir(str(damaged))


def export_and_compare(model_dir, wavs, out_dir, onnx=True):
    """The exported TorchScript module's posteriors (fbank in) and, with ``onnx``, the ONNX model's under onnxruntime
    (waveform in) against the recognizer's, alone and in one padded batch."""
    from ser import EmotionRecognizer
    from ser.audio import INT16_SCALE, load_mono
    from ser.export import export_model

    path = export_model(str(model_dir), str(out_dir), "torchscript")
    exported = torch.jit.load(path)
    recognizer = EmotionRecognizer.from_dir(str(model_dir))
    trained = recognizer.members[0]
    fbanks = [torch.from_numpy(trained.frontend.picture_of_wav(str(w), str(model_dir))[0]) for w in wavs]
    assert len({f.shape[0] for f in fbanks}) == len(fbanks)  # different lengths
    functionals = None
    if trained.config["functionals"] != "none":
        from ser.functionals import compute_functionals, make_extractor

        extractor = make_extractor(trained.config["functionals"])
        functionals = torch.from_numpy(np.concatenate([compute_functionals(extractor, load_mono(str(w), 16000))
                                                       for w in wavs]))
    expected = np.array([list(recognizer.classify_file(str(w)).posteriors.values()) for w in wavs])
    lengths = torch.tensor([f.shape[0] for f in fbanks])
    padded = torch.zeros(len(fbanks), int(lengths.max()), fbanks[0].shape[1])
    for i, f in enumerate(fbanks):
        padded[i, :f.shape[0]] = f
    extra = () if functionals is None else (functionals,)
    with torch.no_grad():
        batch = exported(padded, lengths, *extra).numpy()
        alone = np.concatenate([exported(f[None], lengths[i:i + 1], *(e[i:i + 1] for e in extra)).numpy()
                                for i, f in enumerate(fbanks)])
    np.testing.assert_allclose(batch, expected, atol=1e-5)
    np.testing.assert_allclose(alone, expected, atol=1e-5)
    meta = json.loads((out_dir / "model.json").read_text())
    assert meta["classes"] == recognizer.classes and (out_dir / "fbank.conf").exists()
    if not onnx:
        return
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/install.sh --test")
    session = onnxruntime.InferenceSession(export_model(str(model_dir), str(out_dir / "onnx"), "onnx"))
    waves = [load_mono(str(w), 16000) / INT16_SCALE for w in wavs]
    wave_lengths = np.array([len(w) for w in waves])
    batch_feeds = {"waveform": np.zeros((len(waves), wave_lengths.max()), np.float32), "lengths": wave_lengths}
    for i, w in enumerate(waves):
        batch_feeds["waveform"][i, :len(w)] = w
    if functionals is not None:
        batch_feeds["functionals"] = functionals.numpy()
    alone = np.concatenate([session.run(None, {name: (value[i:i + 1, :wave_lengths[i]] if name == "waveform"
                                                      else value[i:i + 1]) for name, value in batch_feeds.items()})[0]
                            for i in range(len(waves))])
    np.testing.assert_allclose(alone, expected, atol=1e-5)
    np.testing.assert_allclose(session.run(None, batch_feeds)[0], expected, atol=1e-5)


@pytest.mark.slow
def test_torchscript_and_onnx_export_give_pytorchs_posteriors_on_real_utterances(finished_recipe, tmp_path):
    tmp, _ = finished_recipe
    wavs = sorted((tmp / "corpus").glob("spk03/*.wav"))[:4]
    export_and_compare(tmp / "exp" / "train" / "seed0" / "fold2", wavs, tmp_path / "export")
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-m", "ser.bin.export_model", "--model-dir", str(tmp / "exp" / "train"),
                           "--out", str(tmp_path / "x")], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "no config.yaml" in proc.stderr


@pytest.mark.slow
def test_the_recorded_command_re_runs_as_written(finished_recipe):
    tmp, _ = finished_recipe
    recorded = json.loads((tmp / "exp" / "train" / "results.json").read_text())["command"]
    cmd, _ = recipe_command(tmp)
    # run.sh calls ./ser.sh with its own options first; the user's words follow, each as given.
    words = shlex.split(recorded)
    assert words[-len(cmd[1:]):] == cmd[1:] and RECIPE_TRAIN_ARGS in words and "" in words


@pytest.mark.slow
def test_cross_corpus_from_synth_to_a_ravdess_subset(finished_recipe, tmp_path):
    """Train on synth, score on real RAVDESS audio through a class map; per-run UA checked against the recognizer
    and scikit-learn; the protocol is cross-corpus and compare_results keeps it in its own table."""
    from sklearn.metrics import balanced_accuracy_score

    from ser import EmotionRecognizer

    from support import SHARED_CORPORA

    corpus = os.path.join(SHARED_CORPORA, "RAVDESS")
    if not os.path.isdir(corpus):
        pytest.skip(f"the RAVDESS copy {corpus} is absent (../shared/corpora beside the repository)")
    tmp, _ = finished_recipe
    env = {**os.environ, "PYTHONPATH": REPO}
    data = tmp_path / "ravdess_data"
    for cmd in (["-m", "ser.bin.prepare_data", "--corpus", "ravdess", "--corpus-dir", corpus, "--data-dir",
                 str(data)],
                ["-m", "ser.bin.datadir", "subset", "--spk-list", str(tmp_path / "speakers"), str(data / "all"),
                 str(tmp_path / "subset")]):
        (tmp_path / "speakers").write_text("Actor07\n")  # one actor: 60 utterances, every emotion
        proc = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
    exp = tmp / "exp" / "train"
    out = tmp_path / "cross"
    class_map = {"ang": "angry", "hap": "happy", "neu": "neutral", "sad": "sad"}
    proc = subprocess.run([sys.executable, "-m", "ser.bin.cross_corpus", "--exp-dir", str(exp), "--data-dir",
                           str(tmp_path / "subset"), "--class-map", " ".join(f"{a}={b}" for a, b in class_map.items()),
                           "--out", str(out), "--target-corpus", "ravdess"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    labels = dict(line.split() for line in (tmp_path / "subset" / "utt2emo").read_text().splitlines())
    wavs = dict(line.split(maxsplit=1) for line in (tmp_path / "subset" / "wav.scp").read_text().splitlines())
    kept = sorted(k for k, v in labels.items() if v in class_map.values())
    assert results["protocol"]["kind"] == "cross_corpus" and results["protocol"]["corpus"] == "synth -> ravdess"
    assert results["protocol"]["utterances_scored"] == len(kept) == 28  # 4 neutral, 8 each of the others
    assert results["protocol"]["utterances_left_out"] == 60 - len(kept)
    run = EmotionRecognizer.from_dir(str(exp / "seed0" / "fold2"))
    targets = list(class_map.values())
    predicted = []
    for k in kept:
        p = run.classify_file(wavs[k]).posteriors
        predicted.append(targets[int(np.argmax([p[c] for c in class_map]))])
    expected = 100 * balanced_accuracy_score([labels[k] for k in kept], predicted)
    assert results["runs"]["seed0/fold2"]["ua"] == pytest.approx(expected)
    assert results["summary"]["ua"]["mean"] == pytest.approx(np.mean([r["ua"] for r in results["runs"].values()]))
    table = subprocess.run([sys.executable, os.path.join(REPO, "utils", "compare_results.py"), str(out),
                            str(exp)], capture_output=True, text=True, env=env).stdout
    titles = [line for line in table.splitlines() if line.startswith("### Protocol")]
    assert len(titles) == 2 and any("corpus synth -> ravdess" in t for t in titles)
    bad = subprocess.run([sys.executable, "-m", "ser.bin.cross_corpus", "--exp-dir", str(exp), "--data-dir",
                          str(tmp_path / "subset"), "--class-map", "joy=happy", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "joy is not a class of the model" in bad.stderr


@pytest.mark.slow
def test_stage_5_trains_one_model_on_every_speaker_for_the_folds_epoch_count(finished_recipe, tmp_path):
    from ser import EmotionRecognizer

    tmp, _ = finished_recipe
    proc = run_recipe(tmp, "--stage", "5")
    final = tmp / "exp" / "train" / "final"
    epochs = [json.loads(p.read_text())["epoch"] for p in (tmp / "exp" / "train").glob("seed*/fold*/selection.json")]
    history = json.loads((final / "history.json").read_text())
    assert len(history) == int(np.ceil(np.median(epochs))) and "stage 5: one model on every speaker" in proc.stderr
    assert json.loads((final / "selection.json").read_text())["rule"] == "last"
    assert json.loads((final / "run.json").read_text())["train_dir"].endswith(os.path.join("dump", "all"))
    card = json.loads((final / "model_card.json").read_text())  # written by training: the dump names its protocol
    assert card["corpus"] == "synth" and card["synthetic_training_audio"] and card["test_metrics"] is None
    wav = sorted((tmp / "corpus").glob("spk01/*.wav"))[0]
    assert EmotionRecognizer.from_dir(str(final)).classify_file(str(wav)).models == 1
    assert len(EmotionRecognizer.from_dir(str(tmp / "exp" / "train")).members) == 4  # the final model stays apart
    again = run_recipe(tmp, "--stage", "5")
    assert "stage 5: " in again.stderr and "is up to date; nothing to do" in again.stderr


@pytest.mark.slow
def test_a_second_seed_gives_the_seed_ensemble_judged_on_validation(finished_recipe, tmp_path):
    """Two seeds of fold 1: each decodes its validation set too, and stage 4 scores their ensemble."""
    tmp, _ = finished_recipe
    run_recipe(tmp, "--exp-root", str(tmp_path / "exp"), "--stage", "2", "--seeds", "0 1", "--folds", "1")
    exp = tmp_path / "exp" / "train"
    for seed in (0, 1):
        valid = (exp / f"seed{seed}" / "fold1" / "decode_valid" / "posteriors").read_text().splitlines()
        assert len(valid) == len((tmp / "dump" / "fold1" / "valid" / "utt2emo").read_text().splitlines())
    ensemble = json.loads((exp / "results.json").read_text())["seed_ensemble"]
    assert ensemble["seeds"] == [0, 1] and "valid" in json.dumps(ensemble)
    # Validation predictions decoded (or changed) after scoring make stage 4 score again.
    predictions = exp / "seed1" / "fold1" / "decode_valid" / "predictions"
    lines = predictions.read_text().splitlines()
    key, label = lines[0].split()
    other = next(line.split()[1] for line in lines if line.split()[1] != label)
    predictions.write_text("\n".join([f"{key} {other}"] + lines[1:]) + "\n")
    again = run_recipe(tmp, "--exp-root", str(tmp_path / "exp"), "--stage", "4", "--seeds", "0 1", "--folds", "1")
    assert "stage 4: scoring" in again.stderr
