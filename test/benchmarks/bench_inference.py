#!/usr/bin/env python3
"""Inference cost on the CPU: ser-classify's throughput against openSMILE's own extraction, and memory against the
length of a recording.

throughput: the same utterances (RAVDESS files, or the synth generator's where RAVDESS is absent) classified by
  ser-classify with the fbank model (egs/TEMPLATE/conf/train.yaml; also one utterance per forward pass) and the fused
  model (train_fusion.yaml: fbank + ComParE_2016 functionals), and processed by openSMILE alone
  (opensmile.Smile(...).process_file, ComParE_2016 and eGeMAPSv02 functionals), in this run. Reported: utterances/s,
  real-time factor (processing seconds per second of audio) and each time / openSMILE ComParE's time. ser-classify
  runs in process (ser.bin.classify.main) after a warm-up, so the figures leave out Python's and torch's start-up;
  its model load is timed apart.
long: a 60-minute and a 1-minute recording (RAVDESS files or synth audio, end to end) classified by the fbank model
  as a whole-file decision and as a timeline (--segment 4), each in a fresh process: peak RSS (ru_maxrss) and wall
  time. Reported: the 60-minute / 1-minute ratio of each.

The models have the shipped configs' architecture with untrained weights (cost does not depend on the weights), CMVN
from the benchmark's audio. One torch thread (OMP_NUM_THREADS=1 by default).
    bench_inference.py [--corpus-dir ../shared/corpora/RAVDESS] [--utterances 48] [--long-minutes 60] [--skip-long]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
CLASSES = ["ang", "hap", "neu", "sad"]
PEAK = """
import resource, sys, time
from ser.bin.classify import main
start = time.time()
try:
    main(sys.argv[1:])
except SystemExit as e:
    assert not e.code, e.code
print(time.time() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def audio_files(corpus_dir: str, count: int, tmp: str) -> list[str]:
    found = sorted(glob.glob(os.path.join(corpus_dir, "Actor_*", "*.wav")))
    if found:
        step = max(1, len(found) // count)
        return found[::step][:count]
    from ser.corpora.synth import generate_synth_corpus

    generate_synth_corpus(os.path.join(tmp, "synth"), num_speakers=2, utts_per_class=max(1, count // 8))
    return sorted(glob.glob(os.path.join(tmp, "synth", "**", "*.wav"), recursive=True))[:count]


def model_dir(out: str, config_file: str, files: list[str]) -> str:
    """A run dir with the config's architecture, untrained weights, CMVN of ``files`` and the template fbank.conf."""
    import shutil

    import torch

    import ser.components  # noqa: F401 (fills the registries)
    from ser.audio import load_mono
    from ser.config import config_hash, load_config, write_config
    from ser.features import accumulate_cmvn, compute_fbank, read_fbank_conf, write_cmvn_stats
    from ser.functionals import compute_functionals, make_extractor
    from ser.inputs import UTTERANCE_NORM_FILE, uses_functionals
    from ser.models import model_of

    os.makedirs(out)
    conf_path = os.path.join(REPO, "egs", "TEMPLATE", "conf", "fbank.conf")
    shutil.copyfile(conf_path, os.path.join(out, "fbank.conf"))
    opts = read_fbank_conf(conf_path)
    samples = [load_mono(f, 16000) for f in files[:16]]
    feats = [compute_fbank(s, opts) for s in samples]
    write_cmvn_stats(os.path.join(out, "cmvn.ark"), accumulate_cmvn(feats))
    config = load_config(config_file)
    utterance_dim = 0
    if uses_functionals(config):
        extractor = make_extractor(config["functionals"])
        rows = np.concatenate([compute_functionals(extractor, s) for s in samples])
        np.savez(os.path.join(out, UTTERANCE_NORM_FILE), mean=rows.mean(0), scale=rows.std(0) + 1e-3)
        utterance_dim = rows.shape[1]
    torch.manual_seed(0)
    model = model_of(config, feats[0].shape[1], len(CLASSES), utterance_dim)
    torch.save(model.state_dict(), os.path.join(out, "model.pth"))
    write_config(config, os.path.join(out, "config.yaml"))
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump({"identity": {"classes": CLASSES, "config_hash": config_hash(config)}}, f)
    return out


def classify_in_process(model: str, files: list[str], out: str, *extra: str) -> tuple[float, float]:
    """(model load seconds, classification seconds) of ser-classify over ``files``."""
    from ser.bin.classify import main
    from ser.recognizer import EmotionRecognizer

    start = time.time()
    EmotionRecognizer.from_dir(model)
    load = time.time() - start
    start = time.time()
    main(["--model", model, "--format", "csv", "--output", out, *extra, *files])
    return load, time.time() - start - load  # main loads the model once more: its load time taken off


def opensmile_seconds(feature_set: str, files: list[str]) -> float:
    import opensmile

    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                            feature_level=opensmile.FeatureLevel.Functionals)
    smile.process_file(files[0])  # warm-up
    start = time.time()
    for f in files:
        smile.process_file(f)
    return time.time() - start


def long_recording(path: str, minutes: float, files: list[str]) -> None:
    """``minutes`` of the given files end to end at 16 kHz, written a file at a time (never held whole)."""
    from ser.audio import load_mono

    pieces = [load_mono(f, 16000) / 32768.0 for f in files]
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as out:
        written, k = 0, 0
        while written < minutes * 60 * 16000:
            piece = pieces[k % len(pieces)][:int(minutes * 60 * 16000) - written]
            out.write(piece)
            written += piece.shape[0]
            k += 1


def peak(model: str, path: str, *extra: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of ser-classify in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", PEAK, "--model", model, "--output", os.devnull, *extra, path],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    seconds, rss = proc.stderr.split()[-2:]
    return float(seconds), int(rss) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", default=os.path.join(os.path.dirname(REPO), "shared", "corpora", "RAVDESS"))
    p.add_argument("--utterances", type=int, default=48)
    p.add_argument("--long-minutes", type=float, default=60.0)
    p.add_argument("--skip-long", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    with tempfile.TemporaryDirectory(prefix="ser-bench-") as tmp:
        files = audio_files(args.corpus_dir, args.utterances, tmp)
        seconds = sum(sf.info(f).duration for f in files)
        conf = os.path.join(REPO, "egs", "TEMPLATE", "conf")
        fbank = model_dir(os.path.join(tmp, "fbank"), os.path.join(conf, "train.yaml"), files)
        print(f"{len(files)} utterances, {seconds:.1f} s of audio ({os.path.dirname(files[0])}...)")
        if not args.skip_throughput:
            fused = model_dir(os.path.join(tmp, "fused"), os.path.join(conf, "train_fusion.yaml"), files)
            classify_in_process(fbank, files[:2], os.path.join(tmp, "warm.csv"))  # warm-up
            reference = opensmile_seconds("ComParE_2016", files)
            egemaps = opensmile_seconds("eGeMAPSv02", files)
            rows = [("openSMILE ComParE_2016 functionals", 0.0, reference),
                    ("openSMILE eGeMAPSv02 functionals", 0.0, egemaps)]
            for name, model, extra in (("ser-classify, fbank model", fbank, ()),
                                       ("ser-classify, fbank model, --batch-size 1", fbank, ("--batch-size", "1")),
                                       ("ser-classify, fused model", fused, ())):
                load, took = classify_in_process(model, files, os.path.join(tmp, "out.csv"), *extra)
                rows.append((name, load, took))
            print(f"{'':42} {'utt/s':>7} {'RTF':>7} {'/ ComParE':>9} {'model load s':>12}")
            for name, load, took in rows:
                print(f"{name:42} {len(files) / took:7.2f} {took / seconds:7.4f} {took / reference:9.2f} "
                      f"{load:12.2f}")
        if not args.skip_long:
            short, long = os.path.join(tmp, "short.wav"), os.path.join(tmp, "long.wav")
            long_recording(short, 1.0, files)
            long_recording(long, args.long_minutes, files)
            print(f"\nlong recordings, fbank model: 1 min vs {args.long_minutes:g} min (fresh process each)")
            print(f"{'':28} {'1 min s':>8} {'MB':>7} {'long s':>8} {'MB':>7} {'time x':>7} {'RSS x':>6}")
            for name, extra in (("whole-file decision", ()), ("timeline --segment 4", ("--segment", "4"))):
                (t1, m1), (t2, m2) = peak(fbank, short, *extra), peak(fbank, long, *extra)
                print(f"{name:28} {t1:8.1f} {m1:7.0f} {t2:8.1f} {m2:7.0f} {t2 / t1:7.1f} {m2 / m1:6.2f}")



if __name__ == "__main__":
    main()
