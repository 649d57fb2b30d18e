#!/usr/bin/env python3
"""Feature stage throughput: stage 1 of a recipe (nj=1 and nj=2) against a bare loop over the same files.

The bare loop only reads each wav with soundfile and computes fbank with kaldi-native-fbank (the library stage 1
uses) in one process. Reported: stage-1 wall time / bare-loop wall time, both measured in this run.
    bench_features.py [--corpus-dir ../shared/corpora/RAVDESS] [--recipe egs/ravdess]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bare_loop(wav_scp: str, conf: dict) -> float:
    from ser.features import compute_fbank

    start = time.time()
    with open(wav_scp) as f:
        for line in f:
            _, path = line.split(maxsplit=1)
            samples, sr = sf.read(path.strip(), dtype="float32", always_2d=True)
            assert sr == int(conf["sample-frequency"]), "the bare loop expects audio at the feature rate"
            compute_fbank(samples.mean(axis=1) * 32768.0, conf)
    return time.time() - start


def stage1(recipe: str, tmp: str, corpus_dir: str, nj: int) -> float:
    args = [os.path.join(recipe, "run.sh"), "--corpus-dir", corpus_dir, "--data-dir", f"{tmp}/data",
            "--dump-dir", f"{tmp}/dump{nj}", "--exp-root", f"{tmp}/exp", "--stage", "1", "--stop-stage", "1",
            "--nj", str(nj)]
    start = time.time()
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    return time.time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", default=os.path.join(os.path.dirname(REPO), "shared", "corpora", "RAVDESS"))
    p.add_argument("--recipe", default=os.path.join(REPO, "egs", "ravdess"))
    args = p.parse_args()
    if not os.path.isdir(args.corpus_dir):
        sys.exit(f"{args.corpus_dir} not found: this benchmark needs the RAVDESS corpus (or pass --corpus-dir)")
    from ser.features import read_fbank_conf

    conf = read_fbank_conf(os.path.join(args.recipe, "conf", "fbank.conf"))
    with tempfile.TemporaryDirectory(prefix="ser-bench-") as tmp:
        prep = [os.path.join(args.recipe, "run.sh"), "--corpus-dir", args.corpus_dir, "--data-dir", f"{tmp}/data",
                "--dump-dir", f"{tmp}/dump0", "--exp-root", f"{tmp}/exp", "--stage", "0", "--stop-stage", "0"]
        subprocess.run(prep, check=True, capture_output=True)
        wav_scp = f"{tmp}/data/all/wav.scp"
        n = sum(1 for _ in open(wav_scp))
        bare_loop(wav_scp, conf)  # warm the page cache so both sides read from memory
        bare = bare_loop(wav_scp, conf)
        nj1 = stage1(args.recipe, tmp, args.corpus_dir, 1)
        nj2 = stage1(args.recipe, tmp, args.corpus_dir, 2)
    print(f"{n} files from {args.corpus_dir} ({os.cpu_count()} CPUs)")
    print(f"  bare read+fbank loop, one process: {bare:6.1f} s")
    print(f"  stage 1, nj=1: {nj1:6.1f} s  ratio {nj1 / bare:.2f}  (target <= 1.25)")
    print(f"  stage 1, nj=2: {nj2:6.1f} s  ratio {nj2 / bare:.2f}  (target < 1.00)")
    print("  stage 1 includes: splitting data/all, per-job process start-up, writing compressed ark/scp and "
          "utt2num_frames, per-fold subsets and validation, and CMVN statistics of every training fold")


if __name__ == "__main__":
    main()
