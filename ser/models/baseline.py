"""Ablation baseline: the FLAM model's input layer and head, with no self-attention and
mean pooling over valid frames. Its contrastive embedding is its embedding (no context broadcasting).
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from ser.models.flam import EmbeddingClassifier, masked_mean
from ser.models.output import ModelOutput
from ser.models.subsampling import build_input_layer, valid_mask


class BaselineModel(nn.Module):
    def __init__(self, input_dim: int, num_classes: int, d_model: int, conv_channels: int,
                 embed_dim: int, dropout: float, input_layer: str, utterance_dim: int, fusion_dim: int,
                 fusion_dropout: float):
        """Options as resolved by ser.models.ENCODERS (their defaults are written there)."""
        super().__init__()
        self.subsampling = build_input_layer(input_layer, input_dim, d_model, conv_channels, dropout)
        self.frame_dropout = nn.Dropout(dropout)
        self.head = EmbeddingClassifier(d_model, embed_dim, num_classes, dropout, utterance_dim, fusion_dim,
                                        fusion_dropout)

    def forward(self, feats: Tensor, lengths: Tensor, utterance: Optional[Tensor] = None) -> ModelOutput:
        frames, frame_lengths = self.subsampling(feats, lengths)
        pooled = masked_mean(self.frame_dropout(frames), valid_mask(frame_lengths, frames.size(1)))
        embedding = self.head.embedding(pooled, utterance)
        return ModelOutput(logits=self.head.classify(embedding), embedding=embedding,
                           contrastive_embedding=embedding, attention=None,
                           frame_lengths=frame_lengths)
