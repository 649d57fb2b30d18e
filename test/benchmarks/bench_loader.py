#!/usr/bin/env python3
"""Utterances per second that the training data path delivers (num_workers 0 vs N) against the rate a tiny model
consumes them.

    bench_loader.py [--utts 96] [--seconds 3] [--rate 44100] [--workers 2] [--batch 8] [--device cpu|cuda]

A data dir of random-pitch tones at --rate Hz (so every read resamples to 16 kHz), half of them behind `cat |`
commands. Measured over one epoch each, with waveform EAM (prob 0.5) and 2 s crops, as ser.train makes them:
- in process, audio in memory (num_workers 0, today's path: audio read once at load, not timed here);
- in process, audio read lazily (what each worker does: read, resample, crop, mix);
- --workers DataLoader workers reading lazily (ser.dataset.batch_loader; pinned memory on CUDA);
- the model's step rate: a tiny WavLM (build_tiny_ssl) + FLAM d_model 256, forward + backward + Adam on
  --device, on batches prepared beforehand.
Reported: utterances/s of each and the ratio of each loader to the model's rate (>= 1: the loader keeps up).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

CLASSES = ["low", "high"]


def write_tone_dir(path: str, utts: int, seconds: float, rate: int, seed: int = 0) -> None:
    """wav.scp (paths and `cat |` commands) and utt2emo of `utts` noisy tones, low or high pitch."""
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    wav_scp, utt2emo = [], []
    for n in range(utts):
        emo = CLASSES[n % 2]
        t = np.arange(int(rate * seconds * rng.uniform(0.7, 1.3))) / rate
        x = 0.3 * np.sin(2 * np.pi * (150.0 if emo == "low" else 400.0) * rng.uniform(0.9, 1.1) * t)
        x += 0.02 * rng.normal(size=t.size)
        utt = f"spk1-{n:04d}"
        wav = os.path.join(path, f"{utt}.wav")
        sf.write(wav, x.astype(np.float32), rate, subtype="PCM_16")
        wav_scp.append(f"{utt} {wav}\n" if n % 2 else f"{utt} cat {wav} |\n")
        utt2emo.append(f"{utt} {emo}\n")
    for name, lines in (("wav.scp", wav_scp), ("utt2emo", utt2emo)):
        with open(os.path.join(path, name), "w") as f:
            f.writelines(sorted(lines))


def utterances_per_second(batches, source) -> float:
    start = time.perf_counter()
    count = sum(len(b["lengths"]) for b in source)
    return count / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=96)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rate", type=int, default=44100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=6, help="model steps timed (after one warm-up step)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    from ser.augment import build_augment
    from ser.dataset import TrainBatches, batch_loader, load_wave_set
    from ser.models import build_model
    from ser.models.ssl import build_tiny_ssl

    cuda = args.device.startswith("cuda")
    with tempfile.TemporaryDirectory() as tmp:
        write_tone_dir(os.path.join(tmp, "train"), args.utts, args.seconds, args.rate)
        crop = 2 * 16000

        def batches(lazy: bool) -> TrainBatches:
            data = load_wave_set(os.path.join(tmp, "train"), CLASSES, 16000, lazy=lazy)
            return TrainBatches(data, 2, None, args.batch, crop, True, build_augment("eam", {"prob": 0.5}, "wave"),
                                seed=0)

        in_memory, lazy = batches(False), batches(True)
        rates = {"in process, audio in memory (num_workers 0)": utterances_per_second(
                     in_memory, (in_memory[i] for i in range(len(in_memory)))),
                 "in process, audio read lazily": utterances_per_second(lazy, (lazy[i] for i in range(len(lazy))))}
        loader = batch_loader(lazy, args.workers, pin_memory=cuda, persistent_workers=True)
        lazy.set_epoch(2)
        list(loader)  # starts the persistent workers
        lazy.set_epoch(3)
        rates[f"{args.workers} workers, audio read lazily"] = utterances_per_second(lazy, loader)

        model = build_model("flam", {}, None, 2, "wavlm",
                            {"path": build_tiny_ssl(os.path.join(tmp, "tiny")), "freeze": "feature_encoder"})
        model.to(args.device).train()
        optimizer = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        prepared = [in_memory[i] for i in range(min(len(in_memory), args.steps + 1))]
        elapsed, seen = 0.0, 0
        for step, batch in enumerate(prepared):
            start = time.perf_counter()
            out = model(batch["feats"].to(args.device), batch["lengths"].to(args.device))
            loss = torch.nn.functional.cross_entropy(out.logits, batch["targets"].to(args.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if cuda:
                torch.cuda.synchronize()
            if step:  # the first step warms up
                elapsed += time.perf_counter() - start
                seen += len(batch["lengths"])
        model_rate = seen / elapsed

    print(f"{args.utts} utterances of ~{args.seconds} s at {args.rate} Hz, batch {args.batch}, 2 s crops, EAM; "
          f"torch threads {torch.get_num_threads()}, device {args.device}")
    print(f"{'tiny WavLM + FLAM consumes':45s} {model_rate:8.1f} utt/s")
    for name, rate in rates.items():
        print(f"{name:45s} {rate:8.1f} utt/s   loader / model = {rate / model_rate:.2f}")


if __name__ == "__main__":
    main()
