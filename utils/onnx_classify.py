#!/usr/bin/env python3
"""Classify audio files with a model exported by ``python -m ser.bin.export_model --format onnx``, using numpy,
soundfile and onnxruntime only (no ser, no torch):

    python utils/onnx_classify.py EXPORT_DIR a.wav b.wav ...                       # fbank models
    python utils/onnx_classify.py EXPORT_DIR --functionals F.npy a.wav b.wav ...   # models fusing functionals

Prints a table: file, one posterior per class (model.json's order), prediction. The model computes Kaldi fbank and
CMVN itself; this script only reads each file as mono float samples in [-1, 1] (channels averaged, as ser does) at
the model's sample rate, pads them into batches and passes each row's length. openSMILE's functionals cannot run
inside an ONNX graph: a model fusing them needs F.npy, float32 (files, F) rows of raw openSMILE functionals in the
order of the files (model.json's inputs name the feature set). Resampling is not done here: convert other rates
first (e.g. ``sox in.wav -r 16000 out.wav``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime
import soundfile


def read_mono(path: str, rate: int, min_samples: int) -> np.ndarray:
    try:
        samples, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as error:  # soundfile.LibsndfileError is a RuntimeError
        raise ValueError(f"{path}: cannot read audio ({str(error).splitlines()[0]})") from None
    if file_rate != rate:
        raise ValueError(f"{path}: {file_rate} Hz; the model takes {rate} Hz (resample it first)")
    if samples.shape[0] < min_samples:
        raise ValueError(f"{path}: {samples.shape[0]} samples; the model needs at least {min_samples}")
    return samples.mean(axis=1, dtype=np.float64).astype(np.float32)


def classify(export_dir: str, waves: list[np.ndarray], functionals: np.ndarray | None = None,
             batch_size: int = 16) -> np.ndarray:
    """Posteriors (files, classes) of mono waveforms, ``batch_size`` rows per run of the model."""
    session = onnxruntime.InferenceSession(os.path.join(export_dir, "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    fuses = "functionals" in [i.name for i in session.get_inputs()]
    if fuses and functionals is None:
        raise ValueError(f"{export_dir}/model.onnx fuses openSMILE functionals, which cannot run inside an ONNX "
                         "graph: give each file's raw functionals with --functionals F.npy")
    out = []
    for start in range(0, len(waves), batch_size):
        batch = waves[start:start + batch_size]
        lengths = np.array([len(w) for w in batch], dtype=np.int64)
        padded = np.zeros((len(batch), int(lengths.max())), dtype=np.float32)
        for row, wave in enumerate(batch):
            padded[row, :len(wave)] = wave
        feeds = {"waveform": padded, "lengths": lengths}
        if fuses:
            feeds["functionals"] = np.ascontiguousarray(functionals[start:start + batch_size], dtype=np.float32)
        out.append(session.run(["posteriors"], feeds)[0])
    return np.concatenate(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export_dir", help="the --out dir of ser.bin.export_model --format onnx")
    p.add_argument("files", nargs="+", help="audio files at the model's sample rate")
    p.add_argument("--functionals", help=".npy (files, F) raw openSMILE functionals, for a model that fuses them")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    try:
        with open(os.path.join(args.export_dir, "model.json"), encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != "onnx":
            raise ValueError(f"{args.export_dir}/model.json: not an ONNX export (format {meta.get('format')!r})")
        waves = [read_mono(path, meta["sample_rate"], meta["min_samples"]) for path in args.files]
        functionals = None
        if args.functionals:
            functionals = np.load(args.functionals, allow_pickle=False)
            if functionals.ndim != 2 or functionals.shape[0] != len(waves):
                raise ValueError(f"{args.functionals}: shape {functionals.shape}; expected one row per file "
                                 f"({len(waves)})")
        posteriors = classify(args.export_dir, waves, functionals, args.batch_size)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    classes = meta["classes"]
    print("\t".join(["file", *classes, "prediction"]))
    for path, row in zip(args.files, posteriors):
        print("\t".join([path, *(f"{p:.6f}" for p in row), classes[int(row.argmax())]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
