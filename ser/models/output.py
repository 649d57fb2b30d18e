"""What every model returns (the losses, the trainer and inference read it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor


@dataclass
class ModelOutput:
    logits: Tensor  # (B, C)
    embedding: Tensor  # (B, E), for the center loss
    contrastive_embedding: Tensor  # (B, E), for the supervised contrastive loss
    attention: Optional[Tensor]  # (B, T') pooling weights, zero on padding; None unless flam pooling
    frame_lengths: Tensor  # (B,) valid frames after the encoder's input layer
