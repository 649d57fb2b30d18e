#!/usr/bin/env python3
"""Epoch time of training on cached frozen-SSL frames (frontend ssl_cached) against running the frozen encoder on
the fly (frontend ssl, freeze all), and the cache's storage per hour of audio.

    bench_ssl_cache.py [--utts 48] [--seconds 3] [--layer weighted] [--dtype float16] [--device cpu]

The same utterances (tones at 16 kHz, bench_loader.write_tone_dir), the same frozen tiny WavLM (build_tiny_ssl:
hidden 32, 2 layers) and the same FLAM encoder (d_model 64); one epoch of forward + backward + Adam each, batch 8,
2 s crops, the mixup of each path (waveform EAM on the fly, featmix on the cache). The cache is computed once
beforehand (its time is reported apart: ser.bin.cache_ssl does it once per recipe). Reported: seconds per epoch,
their ratio (cached / on the fly), and MB per hour of audio: measured for the tiny model, and by the same count
(frames/s x stored states x hidden size x bytes) for WavLM Large's shape (24 layers, hidden 1024).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_loader import CLASSES, REPO, write_tone_dir  # noqa: E402

sys.path.insert(0, REPO)


def epoch_seconds(model, batches, device: str) -> float:
    optimizer = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-4)
    model.to(device).train()
    start = time.perf_counter()
    for i in range(len(batches)):
        batch = batches[i]
        out = model(batch["feats"].to(device), batch["lengths"].to(device))
        loss = torch.nn.functional.cross_entropy(out.logits, batch["targets"].to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=48)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--layer", default="weighted")
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    from ser.augment import build_augment
    from ser.dataset import TrainBatches, load_wave_set
    from ser.frontends import make_frontend, resolve_frontend_conf
    from ser.models import build_model
    from ser.models.ssl import build_tiny_ssl
    from ser.models.ssl_cache import write_cache

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "data")
        write_tone_dir(data_dir, args.utts, args.seconds, 16000)
        checkpoint = build_tiny_ssl(os.path.join(tmp, "tiny"))
        layer = int(args.layer) if args.layer.isdigit() else args.layer
        cached = make_frontend("ssl_cached", {"path": checkpoint, "layer": layer, "dtype": args.dtype})
        start = time.perf_counter()
        record = write_cache(data_dir, os.path.join(tmp, "cache"), cached.conf, cached.model_types, args.device,
                             log_every=0)
        cache_seconds = time.perf_counter() - start
        stored_bytes = os.path.getsize(os.path.join(tmp, "cache", "feats.ark"))
        shutil.copyfile(os.path.join(data_dir, "utt2emo"), os.path.join(tmp, "cache", "utt2emo"))

        waves = load_wave_set(data_dir, CLASSES, 16000)
        frames = cached.load(os.path.join(tmp, "cache"), CLASSES)
        encoder = {"d_model": 64, "num_heads": 4, "embed_dim": 32}
        torch.manual_seed(0)
        on_the_fly = build_model("flam", encoder, None, 2, "ssl",
                                 resolve_frontend_conf("ssl", {"path": checkpoint, "layer": layer, "freeze": "all"}))
        torch.manual_seed(0)
        from_cache = build_model("flam", encoder, frames.feat_dim, 2, cached)
        wave_batches = TrainBatches(waves, 2, None, 8, 2 * 16000, True, build_augment("eam", {}, "wave"), seed=0)
        cache_batches = TrainBatches(frames, 2, None, 8, 2 * cached.inputs_per_second, True,
                                     build_augment("featmix", {}, "frames"), seed=0)
        epoch_seconds(from_cache, cache_batches, args.device)  # warm-up
        fly = epoch_seconds(on_the_fly, wave_batches, args.device)
        cache = epoch_seconds(from_cache, cache_batches, args.device)

    hours = waves.lengths.sum() / 16000 / 3600
    bytes_per_value = np.dtype(args.dtype).itemsize
    large_states = 25 if layer == "weighted" else 1
    large_mb_per_hour = 50 * 3600 * large_states * 1024 * bytes_per_value / 1e6
    tiny_formula = 50 * 3600 * record["num_states"] * record["hidden_size"] * bytes_per_value / 1e6
    print(f"{args.utts} utterances, {hours * 3600:.0f} s of audio; layer {args.layer}, {args.dtype}; "
          f"torch threads {torch.get_num_threads()}, device {args.device}")
    print(f"cache computed once: {cache_seconds:.2f} s")
    print(f"epoch on the fly (frozen tiny WavLM + FLAM): {fly:.2f} s")
    print(f"epoch from the cache (+ FLAM):               {cache:.2f} s   ratio cached / on the fly = "
          f"{cache / fly:.3f}")
    print(f"storage: {stored_bytes / 1e6 / hours:.1f} MB/h measured for the tiny model "
          f"({record['num_states']} x {record['hidden_size']}; by the count {tiny_formula:.1f} MB/h); "
          f"WavLM Large shape ({large_states} x 1024): {large_mb_per_hour:.0f} MB/h")


if __name__ == "__main__":
    main()
