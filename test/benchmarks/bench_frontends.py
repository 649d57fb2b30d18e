#!/usr/bin/env python3
"""Forward + backward time of the fbank FLAM model vs a WavLM front-end model on the same audio.

    bench_frontends.py [--batch 16] [--seconds 3] [--repeats 5] [--large] [--device cpu]

One batch of random int16-range audio; the fbank model reads its Kaldi fbank (computed with
ser.features.compute_fbank, timed separately: a recipe computes it once in stage 1), the WavLM model the
waveform. Both feed a FLAM encoder of d_model 256. The WavLM is a tiny random checkpoint (build_tiny_ssl);
--large adds a randomly initialised model of WavLM Large's shape (no download). Reported: median seconds per
forward + backward (Adam step included) and the ratio to the fbank model measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from ser.features import compute_fbank, read_fbank_conf
from ser.frontends.wavlm import WAVE_SAMPLE_RATE
from ser.models import build_model
from ser.models.ssl import build_tiny_ssl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 4
WAVLM_LARGE_SHAPE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                         conv_dim=(512,) * 7, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
                         num_buckets=320, max_bucket_distance=800)


def step_seconds(model: torch.nn.Module, inputs: torch.Tensor, lengths: torch.Tensor, repeats: int,
                 device: str) -> float:
    labels = torch.arange(len(lengths), device=device) % NUM_CLASSES
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.to(device).train()
    inputs, lengths = inputs.to(device), lengths.to(device)
    times = []
    for i in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(inputs, lengths).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--large", action="store_true", help="also time a random model of WavLM Large's shape")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    rng = np.random.default_rng(0)
    num_samples = int(args.seconds * WAVE_SAMPLE_RATE)
    waves = [rng.normal(0, 3000, num_samples).astype(np.float32) for _ in range(args.batch)]
    fbank_conf = read_fbank_conf(os.path.join(REPO, "egs", "TEMPLATE", "conf", "fbank.conf"))
    start = time.perf_counter()
    feats = [compute_fbank(w, fbank_conf) for w in waves]
    fbank_seconds = time.perf_counter() - start
    feats_t = torch.from_numpy(np.stack(feats))
    frame_lengths = torch.full((args.batch,), feats_t.size(1))
    wave_t = torch.from_numpy(np.stack(waves))
    sample_lengths = torch.full((args.batch,), num_samples)
    print(f"{args.batch} x {args.seconds:g} s, device {args.device}, {torch.get_num_threads()} threads; "
          f"fbank extraction {fbank_seconds:.3f} s (stage 1, once)")

    torch.manual_seed(0)
    fbank_model = build_model("flam", {}, feats_t.size(2), NUM_CLASSES)
    reference = step_seconds(fbank_model, feats_t, frame_lengths, args.repeats, args.device)
    print(f"  fbank FLAM (d_model 256):            {reference:8.3f} s/step   1.00")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = [("tiny WavLM + FLAM (d_model 256)", build_tiny_ssl(os.path.join(tmp, "tiny")))]
        if args.large:
            checkpoints.append(("WavLM Large shape + FLAM, random", build_tiny_ssl(os.path.join(tmp, "large"),
                                                                                  **WAVLM_LARGE_SHAPE)))
        for name, path in checkpoints:
            torch.manual_seed(0)
            model = build_model("flam", {}, None, NUM_CLASSES, "wavlm", {"path": path})
            seconds = step_seconds(model, wave_t, sample_lengths, args.repeats, args.device)
            print(f"  {name:35s}  {seconds:8.3f} s/step  {seconds / reference:5.2f}")


if __name__ == "__main__":
    main()
