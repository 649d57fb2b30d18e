"""TorchScript export of an fbank model: raw Kaldi log-mel fbank in, class posteriors out.

The exported module holds the fold's global CMVN (and, for a model that fuses openSMILE functionals, their
standardisation), so a user computes the fbank of ``fbank.conf`` (written beside it) and calls

    posteriors = torch.jit.load("model.ts")(feats, lengths)                  # fbank models
    posteriors = torch.jit.load("model.ts")(feats, lengths, functionals)     # models fusing functionals

feats (B, T, D) float, zero-padded; lengths (B,) long; functionals (B, F) raw openSMILE values. No ser import is
needed to run it (torch only). ``model.json`` beside it names the classes and the inputs.
"""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import torch
from torch import nn

from ser.atomic import atomic_path, write_json
from ser.frontends import frontend_of, frontends_that
from ser.infer import load_trained
from ser.inputs import UTTERANCE_NORM_FILE, uses_functionals


class Posteriors(nn.Module):
    """CMVN (and functionals standardisation) + the trained model + softmax."""

    def __init__(self, model: nn.Module, mean: np.ndarray, inv_std: np.ndarray,
                 utterance_norm: tuple[np.ndarray, np.ndarray] | None):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.from_numpy(np.asarray(mean, dtype=np.float32)))
        self.register_buffer("inv_std", torch.from_numpy(np.asarray(inv_std, dtype=np.float32)))
        self.fuses = utterance_norm is not None
        if self.fuses:
            self.register_buffer("u_mean", torch.from_numpy(np.asarray(utterance_norm[0], dtype=np.float32)))
            self.register_buffer("u_scale", torch.from_numpy(np.asarray(utterance_norm[1], dtype=np.float32)))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, utterance: torch.Tensor | None = None):
        feats = (feats - self.mean) * self.inv_std  # padding becomes non-zero; the model masks it
        if self.fuses:
            utterance = (utterance - self.u_mean) / self.u_scale
        return torch.softmax(self.model(feats, lengths, utterance).logits.float(), dim=-1)


def export_torchscript(model_dir: str, out_dir: str) -> str:
    """Write ``out_dir/model.ts``, ``model.json`` and ``fbank.conf``; returns the model path."""
    trained = load_trained(model_dir)
    config = trained.config
    if not frontend_of(config).exportable or config["speaker_norm"] != "none":
        exportable = " or ".join(frontends_that("exportable"))
        raise ValueError(f"{model_dir}: export takes {exportable} models without per-speaker normalisation "
                         f"(this one: frontend {config['frontend']}, speaker_norm {config['speaker_norm']})")
    utterance_norm = None
    if uses_functionals(config):
        with np.load(os.path.join(model_dir, UTTERANCE_NORM_FILE), allow_pickle=False) as z:
            utterance_norm = (z["mean"].reshape(-1), z["scale"].reshape(-1))
    norm = trained.normaliser
    wrapper = Posteriors(trained.model, norm.mean, norm.inv_std, utterance_norm).eval()
    example = (torch.randn(2, 160, norm.dim), torch.tensor([160, 97]))
    if utterance_norm is not None:
        example += (torch.randn(2, utterance_norm[0].shape[0]),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic: lengths stay inputs (tested)
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.ts")
    with atomic_path(path) as tmp:
        torch.jit.save(traced, tmp)
    shutil.copyfile(os.path.join(model_dir, "fbank.conf"), os.path.join(out_dir, "fbank.conf"))
    write_json(os.path.join(out_dir, "model.json"), {
        "classes": trained.classes, "source": os.path.abspath(model_dir),
        "inputs": ["feats (B, T, D) raw log-mel fbank of fbank.conf, zero-padded", "lengths (B,) frames"]
                  + ([f"functionals (B, F) raw openSMILE {config['functionals']}"] if utterance_norm is not None
                     else []),
        "output": "posteriors (B, C), classes in the order above"}, indent=1)
    return path
