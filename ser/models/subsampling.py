"""Encoder input layers: two-layer convolutional subsampling (for fbank) and a linear projection
(for SSL frames already at 50 frames/s), both with exact padding.

Conv2dSubsampling: time and frequency / 4.

Each Conv2d has kernel 3, stride 2 and zero padding 1, so a layer maps L frames to
(L - 1) // 2 + 1 = ceil(L / 2) frames and any utterance of at least one frame survives:
T input frames give ceil(ceil(T / 2) / 2) = ceil(T / 4) output frames.
Output frame t' has its receptive field centred on input frame 4 t' (input frames 4t'-3 .. 4t'+3).

Exact padding: the input frames beyond each utterance's length and every layer's outputs beyond
that layer's valid length are set to zero. A zeroed padding frame then looks exactly like the
convolution's own zero padding, so an utterance gives the same output alone as inside a padded batch.

LinearInput: Dropout(Linear(frame)) per frame, the frame rate unchanged, padding frames zeroed.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

KERNEL_SIZE = 3
STRIDE = 2
PADDING = 1
NUM_LAYERS = 2
SUBSAMPLING_FACTOR = STRIDE ** NUM_LAYERS

IntOrTensor = Union[int, Tensor]


def subsampled_length(num_frames: IntOrTensor) -> IntOrTensor:
    """Number of output frames for `num_frames` input frames (a Python int or an integer tensor)."""
    length = num_frames
    for _ in range(NUM_LAYERS):
        length = _conv_output_length(length)
    return length


def receptive_field_center(subsampled_frame: int) -> int:
    """Input frame on which the receptive field of output frame `subsampled_frame` is centred."""
    # Each layer maps its output i to the centre of its kernel window, input 2 i + (k - 1) / 2 - p = 2 i.
    center = subsampled_frame
    for _ in range(NUM_LAYERS):
        center = center * STRIDE + (KERNEL_SIZE - 1) // 2 - PADDING
    return center


def _conv_output_length(length: IntOrTensor) -> IntOrTensor:
    return (length + 2 * PADDING - KERNEL_SIZE) // STRIDE + 1


def valid_mask(lengths: Tensor, max_length: int) -> Tensor:
    """(B, max_length) bool, True on the first lengths[b] frames of row b."""
    positions = torch.arange(max_length, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


class Conv2dSubsampling(nn.Module):
    """(B, T, input_dim) features -> (B, ceil(T/4), d_model) frames, zero beyond each valid length."""

    def __init__(self, input_dim: int, d_model: int, conv_channels: int):
        super().__init__()
        self.input_dim = input_dim
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, conv_channels, KERNEL_SIZE, stride=STRIDE, padding=PADDING)
            for in_channels in (1, conv_channels)
        )
        self.projection = nn.Linear(conv_channels * subsampled_length(input_dim), d_model)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (frames (B, T', d_model), frame_lengths (B,))."""
        check_frame_inputs(feats, lengths, self.input_dim)
        x = _zero_padding(feats, lengths).unsqueeze(1)  # (B, 1, T, D)
        for conv in self.convs:
            x = torch.relu(conv(x))  # (B, C, T_l, D_l)
            lengths = _conv_output_length(lengths)
            x = x * valid_mask(lengths, x.size(2))[:, None, :, None]
        batch, channels, frames, freqs = x.shape
        x = x.transpose(1, 2).reshape(batch, frames, channels * freqs)
        return _zero_padding(self.projection(x), lengths), lengths


class LinearInput(nn.Module):
    """(B, T, input_dim) frames -> Dropout(Linear(frames)) (B, T, d_model), zero beyond each valid length."""

    def __init__(self, input_dim: int, d_model: int, dropout: float):
        super().__init__()
        self.input_dim = input_dim
        self.projection = nn.Linear(input_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (frames (B, T, d_model), lengths (B,) unchanged)."""
        check_frame_inputs(feats, lengths, self.input_dim)
        return _zero_padding(self.dropout(self.projection(feats)), lengths), lengths


INPUT_LAYERS = ("conv2d", "linear")


def build_input_layer(name: str, input_dim: int, d_model: int, conv_channels: int,
                      dropout: float) -> nn.Module:
    """"conv2d": Conv2dSubsampling (conv_channels used, dropout not); "linear": LinearInput (the reverse)."""
    if name == "conv2d":
        return Conv2dSubsampling(input_dim, d_model, conv_channels)
    if name == "linear":
        return LinearInput(input_dim, d_model, dropout)
    raise ValueError(f"unknown input layer {name!r}; choose one of {', '.join(INPUT_LAYERS)}")


def check_frame_inputs(feats: Tensor, lengths: Tensor, input_dim: int) -> None:
    """feats (B, T, input_dim) with B >= 1, lengths (B,) integers in [1, T]."""
    if feats.dim() != 3 or feats.size(2) != input_dim:
        raise ValueError(f"feats must have shape (batch, frames, {input_dim}), got {tuple(feats.shape)}")
    check_lengths(lengths, feats.size(0), feats.size(1), 1, "frames", "the input layer needs at least 1")


def check_lengths(lengths: Tensor, batch: int, padded: int, minimum: int, unit: str, need: str) -> None:
    """lengths (batch,) integers in [minimum, padded] of a non-empty batch; errors say what is wrong."""
    if lengths.shape != (batch,) or lengths.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"lengths must be an integer tensor of shape ({batch},), "
                         f"got {lengths.dtype} {tuple(lengths.shape)}")
    if batch == 0:
        raise ValueError("empty batch")
    if torch.compiler.is_exporting():  # a graph cannot raise: an exported model's caller checks the lengths
        return
    shortest, longest = int(lengths.min()), int(lengths.max())
    if shortest < minimum:
        raise ValueError(f"an utterance has {shortest} {unit}; {need}")
    if longest > padded:
        raise ValueError(f"a length ({longest}) exceeds the padded number of {unit} ({padded})")


def _zero_padding(frames: Tensor, lengths: Tensor) -> Tensor:
    """Zero the frames (B, T, ...) beyond each row's length."""
    return frames * valid_mask(lengths, frames.size(1))[:, :, None]
