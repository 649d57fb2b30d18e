"""Worker of test_distributed.test_uneven_batches_give_one_process_gradients: the gradients of one training step
of ser's own pieces (TrainBatches' sharding, FLAM behind DDP, MultiLoss, the centres' averaging) on each batch of an
epoch of 8 utterances in batches of 7: a 7-utterance batch (4 + 3 over two ranks) and a 1-utterance remainder
(one rank holds a stand-in). Run alone (one process) or under torchrun; rank 0 writes {batch size: gradients}."""

from __future__ import annotations

import sys

import numpy as np
import torch

import ser.components  # noqa: F401  fills the registries
from ser.augment import build_augment
from ser.config import resolve_config
from ser.dataset import LabelledSet, TrainBatches
from ser.distributed import Distributed
from ser.losses import MultiLoss
from ser.models import model_of

NUM_CLASSES, DIM = 4, 12
CONFIG = {"encoder_conf": {"d_model": 16, "num_heads": 2, "conv_channels": 4, "embed_dim": 8, "dropout": 0.0},
          "loss_conf": {"kl": 1.0, "focal": 1.0, "center": 0.5, "supcon": 0.1}}


def main(out_path: str) -> None:
    torch.set_num_threads(1)
    dist = Distributed("cpu")
    config = resolve_config(CONFIG)
    rng = np.random.default_rng(0)
    lengths = [40, 55, 31, 62, 47, 38, 70, 52]
    data = LabelledSet([f"u{i}" for i in range(8)], rng.integers(0, NUM_CLASSES, 8),
                       [rng.standard_normal((n, DIM)).astype(np.float32) for n in lengths])
    mixup = build_augment("eam", {}, domain="fbank")
    batches = TrainBatches(data, NUM_CLASSES, None, 7, 0, False, mixup, seed=3, shard=(dist.rank, dist.world))
    torch.manual_seed(0)
    model = model_of(config, DIM, NUM_CLASSES)
    criterion = MultiLoss(config["loss_conf"], NUM_CLASSES, config["encoder_conf"]["embed_dim"])
    trained = torch.nn.parallel.DistributedDataParallel(model) if dist.world > 1 else model
    model.train()
    result = {}
    for step in range(len(batches)):
        batch = batches[step]
        model.zero_grad(set_to_none=True)
        criterion.zero_grad()
        out = trained(batch["feats"], batch["lengths"], None)
        loss, values = criterion(out.logits, out.embedding, out.contrastive_embedding, batch["targets"], dist,
                                 rows=int(batch["rows"]))
        loss.backward()
        centres = [criterion.center.centers.grad.clone()]
        dist.average_(centres)
        size = int(dist.sum_(np.array([batch["rows"]], dtype=np.float64))[0])
        result[size] = {"values": values, "centres": centres[0],
                        **{name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}}
    if dist.is_main:
        torch.save(result, out_path)
    dist.close()


if __name__ == "__main__":
    main(sys.argv[1])
