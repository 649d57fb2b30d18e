#!/usr/bin/env python3
"""Posteriors per second of an ONNX export under onnxruntime (fbank, CMVN and model in one graph) vs ser's PyTorch
recognizer (kaldi-native-fbank, then the model) on the same files, read once beforehand.

    bench_export.py --model-dir RUN [--files 32] [--corpus-dir ../shared/corpora/RAVDESS] [--batch 8]

RUN is a finished fbank run (exp/<tag>/seed<s>/fold<k>); the files are the first of --corpus-dir's wavs, or
generated tones (test_export_onnx.generated_wavs) without it. Reported: seconds for all files, one at a time and in
padded batches, and the ratio of each to the recognizer's one-file-at-a-time time measured in the same run.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

import numpy as np
import onnxruntime
import torch

from ser import EmotionRecognizer
from ser.audio import INT16_SCALE, load_mono
from ser.export import export_model

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from test_export_onnx import generated_wavs, padded  # noqa: E402


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--files", type=int, default=32)
    p.add_argument("--corpus-dir")
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus_dir:
            paths = sorted(glob.glob(os.path.join(args.corpus_dir, "**", "*.wav"), recursive=True))[:args.files]
        else:
            paths = generated_wavs(tmp, tuple(1.0 + 0.25 * (i % 12) for i in range(args.files)))
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = session_options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(export_model(args.model_dir, os.path.join(tmp, "onnx")),
                                               session_options, providers=["CPUExecutionProvider"])
        recognizer = EmotionRecognizer.from_dir(args.model_dir)
        waves = [load_mono(path, 16000) / INT16_SCALE for path in paths]
        audio_seconds = sum(len(w) for w in waves) / 16000
        reference = seconds(lambda: [recognizer.classify_batch([w], 16000) for w in waves])
        alone = seconds(lambda: [session.run(None, {"waveform": w[None], "lengths": np.array([len(w)])})
                                 for w in waves])

        def batched():
            for start in range(0, len(waves), args.batch):
                batch, lengths = padded(waves[start:start + args.batch])
                session.run(None, {"waveform": batch, "lengths": lengths})

        together = seconds(batched)
    print(f"{len(paths)} files, {audio_seconds:.1f} s of audio, one thread")
    print(f"PyTorch recognizer, one file at a time: {reference:.2f} s (reference)")
    print(f"onnxruntime, one file at a time: {alone:.2f} s, ratio {alone / reference:.2f}")
    print(f"onnxruntime, batches of {args.batch}: {together:.2f} s, ratio {together / reference:.2f}")


if __name__ == "__main__":
    main()
