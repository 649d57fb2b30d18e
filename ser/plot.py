"""PNG figures: FLAM attention over an utterance's filterbank, and confusion matrices.

Drawn with matplotlib's Agg canvas directly, so no display and no global backend change is needed. The attention
plots import the model's subsampling (and so torch) when drawn: scoring, which draws confusion matrices and
training curves only, stays light.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def attention_frame_edges(num_frames: int) -> np.ndarray:
    """Boundaries, in input frames, of the spans drawn for each subsampled frame.

    Input frame k occupies [k, k + 1). Subsampled frame t' gets the SUBSAMPLING_FACTOR-frame span
    centred on the input frame its receptive field is centred on; the first and last spans are
    stretched or cut to the utterance's edges so the spans tile [0, num_frames].
    """
    from ser.models.subsampling import SUBSAMPLING_FACTOR, receptive_field_center, subsampled_length

    num_subsampled = subsampled_length(num_frames)
    inner = [receptive_field_center(t) + 0.5 + SUBSAMPLING_FACTOR / 2
             for t in range(num_subsampled - 1)]
    return np.array([0.0, *inner, float(num_frames)])


def plot_attention(fbank: np.ndarray, attention: np.ndarray, frame_shift_s: float, out_png: str,
                   title: str = "") -> None:
    """Filterbank (T, D) on top, pooling weights (T',) of the subsampled frames beneath, one time axis."""
    from ser.models.subsampling import subsampled_length

    fbank = np.asarray(fbank)
    attention = np.asarray(attention, dtype=float)
    if fbank.ndim != 2 or fbank.shape[0] == 0:
        raise ValueError(f"fbank must have shape (frames >= 1, dims), got {fbank.shape}")
    if attention.shape != (subsampled_length(fbank.shape[0]),):
        raise ValueError(f"attention must have shape ({subsampled_length(fbank.shape[0])},) for "
                         f"{fbank.shape[0]} input frames, got {attention.shape}")
    if not frame_shift_s > 0:
        raise ValueError(f"frame_shift_s must be positive, got {frame_shift_s}")
    num_frames, num_bins = fbank.shape
    duration = num_frames * frame_shift_s

    fig = Figure(figsize=(10, 5), constrained_layout=True)
    FigureCanvasAgg(fig)
    spec_ax, att_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    image = spec_ax.imshow(fbank.T, origin="lower", aspect="auto", interpolation="nearest",
                           extent=(0, duration, 0, num_bins), cmap="magma")
    fig.colorbar(image, ax=spec_ax, label="log-mel")
    spec_ax.set_ylabel("mel bin")
    if title:
        spec_ax.set_title(title)

    att_ax.stairs(attention, attention_frame_edges(num_frames) * frame_shift_s, fill=True,
                  alpha=0.6, label="attention")
    att_ax.axhline(1 / attention.size, color="gray", linestyle="--", linewidth=1, label="uniform")
    att_ax.set_xlim(0, duration)
    att_ax.set_ylim(0, max(attention.max(), 1 / attention.size) * 1.1)
    att_ax.set_xlabel("time (s)")
    att_ax.set_ylabel("weight")
    att_ax.legend(loc="upper right", fontsize="small")
    fig.savefig(out_png, dpi=100)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], out_png: str,
                   title: str = "") -> None:
    """Confusion matrix (rows true, columns predicted): counts and row percentages, coloured by recall."""
    matrix = np.asarray(matrix)
    num_classes = len(class_names)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"matrix must have shape ({num_classes}, {num_classes}) for "
                         f"{num_classes} class names, got {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.integer) or (matrix < 0).any():
        raise ValueError("matrix must hold non-negative integer counts")
    row_totals = matrix.sum(axis=1, keepdims=True)
    recall = matrix / np.maximum(row_totals, 1)

    side = 2.5 + 0.8 * num_classes
    fig = Figure(figsize=(side + 1, side), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of true class")
    for true in range(num_classes):
        for pred in range(num_classes):
            ax.text(pred, true, f"{matrix[true, pred]}\n{100 * recall[true, pred]:.0f}%",
                    ha="center", va="center", fontsize="small",
                    color="white" if recall[true, pred] > 0.5 else "black")
    ax.set_xticks(range(num_classes), class_names, rotation=45, ha="right")
    ax.set_yticks(range(num_classes), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.savefig(out_png, dpi=100)


def plot_training_curves(history: list[dict], out_png: str, title: str = "", selected_epoch: int | None = None) -> None:
    """Per epoch: each training loss term (left) and training accuracy with validation UA (right)."""
    if not history:
        raise ValueError("no epochs to draw")
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4), constrained_layout=True)
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for term in history[0]["train"]:
        loss_ax.plot(epochs, [h["train"].get(term, np.nan) for h in history], marker=".", label=term)
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss (epoch mean)")
    loss_ax.legend(fontsize="small")
    acc_ax.plot(epochs, [h.get("train_acc", np.nan) for h in history], marker=".", label="train accuracy")
    acc_ax.plot(epochs, [h["valid"]["ua"] for h in history], marker=".", label="validation UA")
    if selected_epoch is not None:
        acc_ax.axvline(selected_epoch, color="grey", linestyle="--", label=f"selected (epoch {selected_epoch})")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("%")
    acc_ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.savefig(out_png, dpi=100)
