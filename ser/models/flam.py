"""FLAM encoder (docs/method.md section 3): input layer (conv subsampling or linear), residual
multi-head self-attention, frame pooling (flam attention, mean or max), 64-dim embedding, classifier;
plus the context broadcasting branch that feeds the supervised contrastive loss.

Choices the paper leaves open:
- pre-norm: H = F + Dropout(MHSA(LayerNorm(F))), with a key padding mask; no positional encoding
  (the paper names none; the fbank convolutional front, or WavLM's own positional convolution,
  gives each frame its context).
- flam pooling: a_t = softmax over valid frames of w . tanh(H_t), u = sum_t a_t H_t, with one
  learnable vector w.
- head: e = Linear(u) is the embedding (no activation, so the contrastive loss can use the whole
  sphere); logits = Linear(Dropout(ReLU(e))).
- context broadcasting: H_cb = H + mean over valid frames of H, added to the valid frames; H_cb is
  pooled by the same pooling module (for flam the same w, its weights recomputed on H_cb) and mapped
  by the same embedding Linear to the contrastive embedding.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ser.models.output import ModelOutput
from ser.models.subsampling import build_input_layer, valid_mask

POOLING_NAMES = ("flam", "mean", "max")


def masked_mean(frames: Tensor, mask: Tensor) -> Tensor:
    """Mean of frames (B, T, E) over the frames where mask (B, T) is True -> (B, E)."""
    weights = mask.to(frames.dtype)
    return (frames * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True)


def masked_max(frames: Tensor, mask: Tensor) -> Tensor:
    """Per-dimension max of frames (B, T, E) over the frames where mask (B, T) is True -> (B, E)."""
    return frames.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)


def context_broadcast(frames: Tensor, mask: Tensor) -> Tensor:
    """Add the mean over valid frames to every valid frame (padding stays as it is)."""
    return frames + masked_mean(frames, mask).unsqueeze(1) * mask.unsqueeze(-1).to(frames.dtype)


class AttentionPooling(nn.Module):
    """u = sum_t a_t H_t, a = softmax over valid frames of w . tanh(H_t)."""

    def __init__(self, dim: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim) * dim ** -0.5)

    def forward(self, frames: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (pooled (B, E), weights (B, T), exactly zero on padding)."""
        scores = torch.tanh(frames) @ self.w
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        return torch.einsum("bt,bte->be", weights, frames), weights


class StatisticPooling(nn.Module):
    """Mean or max over valid frames; returns no attention weights."""

    def __init__(self, statistic: str):
        super().__init__()
        self.statistic = statistic
        self.reduce = {"mean": masked_mean, "max": masked_max}[statistic]

    def forward(self, frames: Tensor, mask: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        return self.reduce(frames, mask), None

    def extra_repr(self) -> str:
        return self.statistic


def build_pooling(name: str, dim: int) -> nn.Module:
    return AttentionPooling(dim) if name == "flam" else StatisticPooling(name)


class EmbeddingClassifier(nn.Module):
    """u -> e = Linear(u) (embedding) ; logits = Linear(Dropout(ReLU(e))).

    With utterance-level features v (F-dim, e.g. openSMILE functionals; utterance_dim > 0), the embedding fuses
    them: e = Linear([u; Dropout(ReLU(Linear(Dropout_in(v))))]), the projection fusion_dim wide and the input
    dropout fusion_dropout (a strong one: ComParE has 6373 values for about 1000 training utterances). In training,
    branch_dropout > 0 drops one whole branch of an utterance at that rate (see ``embedding``).
    """

    def __init__(self, input_dim: int, embed_dim: int, num_classes: int, dropout: float, utterance_dim: int,
                 fusion_dim: int, fusion_dropout: float, branch_dropout: float = 0.0):
        super().__init__()
        self.branch_dropout = branch_dropout
        fused_dim = fusion_dim if utterance_dim else 0
        self.embed = nn.Linear(input_dim + fused_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embed_dim, num_classes)
        self.utterance = None
        if utterance_dim:  # built last, so that a model without it initialises exactly as before
            self.utterance = nn.Sequential(nn.Dropout(fusion_dropout), nn.Linear(utterance_dim, fusion_dim),
                                           nn.ReLU(), nn.Dropout(dropout))

    def embedding(self, pooled: Tensor, utterance: Optional[Tensor], branch_scales: Optional[Tensor] = None) -> Tensor:
        if self.utterance is None:
            if utterance is not None:
                raise ValueError("this model was built without utterance-level features")
            return self.embed(pooled)
        if utterance is None:
            raise ValueError("this model fuses utterance-level features; none were given")
        fused = self.utterance(utterance.to(pooled.dtype))
        if branch_scales is not None:
            pooled, fused = pooled * branch_scales[:, :1], fused * branch_scales[:, 1:]
        return self.embed(torch.cat([pooled, fused], dim=-1))

    def branch_scales(self, batch: int, device) -> Optional[Tensor]:
        """(B, 2) factors of the frame and the functionals branch in training: with probability branch_dropout an
        utterance loses one branch (either, equally likely) and the other is doubled, so each must classify on its
        own. None (no draw) when off, in evaluation, or without fused features."""
        if not (self.training and self.branch_dropout > 0 and self.utterance is not None):
            return None
        drop = torch.rand(batch, 1, device=device) < self.branch_dropout
        frames_dropped = torch.rand(batch, 1, device=device) < 0.5
        scales = torch.cat([(~frames_dropped).float(), frames_dropped.float()], dim=1) * 2.0
        return torch.where(drop, scales, torch.ones_like(scales))

    def classify(self, embedding: Tensor) -> Tensor:
        return self.classifier(self.dropout(torch.relu(embedding)))


class FLAMModel(nn.Module):
    def __init__(self, input_dim: int, num_classes: int, d_model: int, num_heads: int,
                 conv_channels: int, embed_dim: int, dropout: float, pooling: str,
                 context_broadcasting: bool, input_layer: str, utterance_dim: int, fusion_dim: int,
                 fusion_dropout: float, utterance_mean_norm: bool = False, branch_dropout: float = 0.0):
        """Options as resolved by ser.models.ENCODERS (their defaults are written there)."""
        super().__init__()
        self.utterance_mean_norm = utterance_mean_norm
        self.subsampling = build_input_layer(input_layer, input_dim, d_model, conv_channels, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.self_attention = nn.MultiheadAttention(d_model, num_heads, dropout=dropout,
                                                    batch_first=True)
        self.residual_dropout = nn.Dropout(dropout)
        self.pooling = build_pooling(pooling, d_model)
        self.head = EmbeddingClassifier(d_model, embed_dim, num_classes, dropout, utterance_dim, fusion_dim,
                                        fusion_dropout, branch_dropout)
        self.context_broadcasting = context_broadcasting

    def forward(self, feats: Tensor, lengths: Tensor, utterance: Optional[Tensor] = None) -> ModelOutput:
        if self.utterance_mean_norm:
            # Each utterance's mean input frame removed (padding stays 0): its own channel and speaker tilt, as
            # ESPnet's utterance_mvn without the variance. Uses the utterance alone, so no protocol changes.
            input_mask = valid_mask(lengths, feats.size(1)).unsqueeze(-1).to(feats.dtype)
            feats = (feats - masked_mean(feats, input_mask[..., 0] > 0).unsqueeze(1)) * input_mask
        frames, frame_lengths = self.subsampling(feats, lengths)
        mask = valid_mask(frame_lengths, frames.size(1))
        # Every utterance keeps >= 1 valid frame (the input layer needs >= 1 input frame), so no
        # attention row is fully masked and the softmaxes stay finite.
        normed = self.norm(frames)
        attended, _ = self.self_attention(normed, normed, normed, key_padding_mask=~mask,
                                          need_weights=False)
        hidden = (frames + self.residual_dropout(attended)) * mask.unsqueeze(-1).to(frames.dtype)

        pooled, attention = self.pooling(hidden, mask)
        scales = self.head.branch_scales(pooled.size(0), pooled.device)
        embedding = self.head.embedding(pooled, utterance, scales)
        if self.context_broadcasting:
            contrastive_pooled, _ = self.pooling(context_broadcast(hidden, mask), mask)
            contrastive_embedding = self.head.embedding(contrastive_pooled, utterance, scales)
        else:
            contrastive_embedding = embedding
        return ModelOutput(logits=self.head.classify(embedding), embedding=embedding,
                           contrastive_embedding=contrastive_embedding, attention=attention,
                           frame_lengths=frame_lengths)
