#!/usr/bin/env python3
"""Training throughput of full MLL vs the baseline, and the padding that length bucketing saves.

    bench_training.py [--data-dir egs/ravdess/dump/fbank/fold1/train] [--batches 20]

Both models train on the same prepared batches (EAM applied once, CMVN, 6 s crops) on CPU; reported as
utterances per second and the MLL/baseline ratio. The padded share of frames of one epoch's batches is reported
with and without bucketing.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import ser.components  # noqa: F401 (fills the registries)
from ser.augment import build_augment
from ser.config import load_config
from ser.dataset import TrainBatches, load_labelled_set, padding_fraction
from ser.features import CmvnNormaliser, read_cmvn_stats
from ser.losses import MultiLoss
from ser.models import build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def throughput(config: dict, batches: list[dict], dim: int, num_classes: int) -> float:
    torch.manual_seed(0)
    model = build_model(config["encoder"], config["encoder_conf"], dim, num_classes)
    criterion = MultiLoss(config["loss_conf"], num_classes, config["encoder_conf"]["embed_dim"])
    params = list(model.parameters()) + criterion.own_parameters()
    optimizer = torch.optim.Adam(params, lr=1e-3)
    model.train()
    for i, batch in enumerate([batches[0]] + batches):  # the first batch warms up
        if i == 1:
            start = time.time()
        out = model(batch["feats"], batch["lengths"])
        loss, _ = criterion(out.logits, out.embedding, out.contrastive_embedding, batch["targets"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return sum(len(b["lengths"]) for b in batches) / (time.time() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.path.join(REPO, "egs", "ravdess", "dump", "fbank", "fold1", "train"))
    p.add_argument("--classes", help="classes.txt [DATA_DIR/../../all/classes.txt]")
    p.add_argument("--batches", type=int, default=20)
    args = p.parse_args()
    classes_path = args.classes or os.path.join(args.data_dir, "..", "..", "all", "classes.txt")
    classes = [c.strip() for c in open(classes_path) if c.strip()]
    recipe_conf = os.path.join(REPO, "egs", "TEMPLATE", "conf")
    mll = load_config(os.path.join(recipe_conf, "train.yaml"))
    baseline = load_config(os.path.join(recipe_conf, "tuning", "01_baseline.yaml"))
    data = load_labelled_set(args.data_dir, classes)
    normaliser = CmvnNormaliser(read_cmvn_stats(os.path.join(args.data_dir, "cmvn.ark")))
    mixup = build_augment("eam", mll["augment_conf"], domain="fbank")

    for bucketing in (True, False):
        prepared = TrainBatches(data, len(classes), normaliser, 16, 600, bucketing, mixup, seed=0)
        share = np.mean([padding_fraction(prepared.batches, prepared.cropped_lengths())
                         for epoch in range(1, 4) if prepared.set_epoch(epoch) is None])
        print(f"padded share of frames per epoch, bucketing {'on ' if bucketing else 'off'}: {100 * share:5.1f}%")
    prepared = TrainBatches(data, len(classes), normaliser, 16, 600, True, mixup, seed=0)
    batches = [prepared[i] for i in range(min(args.batches, len(prepared)))]
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    fast = throughput(baseline, batches, data.feat_dim, len(classes))
    full = throughput(mll, batches, data.feat_dim, len(classes))
    print(f"{len(batches)} batches of 16 from {args.data_dir}, {torch.get_num_threads()} threads")
    print(f"  baseline (conv + mean pooling, CE): {fast:6.1f} utt/s")
    print(f"  full MLL (FLAM + 4 losses):         {full:6.1f} utt/s   ratio MLL/baseline {full / fast:.2f}")


if __name__ == "__main__":
    main()
