"""Export of an fbank model for inference without ser: ONNX (waveform in) or TorchScript (fbank in; deprecated).

ONNX (``export_onnx``): ``model.onnx`` computes the Kaldi fbank of ``fbank.conf`` (ser.fbank_graph), the fold's
global CMVN, the model and its softmax in one graph:

    posteriors = session.run(None, {"waveform": w, "lengths": n})[0]                          # fbank models
    posteriors = session.run(None, {"waveform": w, "lengths": n, "functionals": f})[0]        # fused models

waveform (B, N) float32 mono samples at fbank.conf's rate in [-1, 1] (soundfile's float scale), rows zero-padded to
the longest; lengths (B,) int64, each row's own number of samples; each row's posteriors equal those of the row
alone. openSMILE's functionals (pitch tracking, voicing, formants: a C++ pipeline of its own) cannot be expressed in
an ONNX graph, so a fused model takes them as a third input, raw, and standardises them inside. ``fbank.onnx``
(waveform, lengths -> feats (B, T, D), frame lengths (B,)) is the fbank alone. utils/onnx_classify.py runs
``model.onnx`` with numpy, soundfile and onnxruntime only.

TorchScript (``export_torchscript``, deprecated by torch): ``model.ts`` takes raw fbank,

    posteriors = torch.jit.load("model.ts")(feats, lengths)                  # fbank models
    posteriors = torch.jit.load("model.ts")(feats, lengths, functionals)     # models fusing functionals

feats (B, T, D) float, zero-padded; lengths (B,) long; functionals (B, F) raw openSMILE values.

Both write ``model.json`` (classes and inputs) and ``fbank.conf`` beside the model. A model is serialised in memory
and written through ser.atomic, so a failed write (a full disk included) leaves no file behind and names the file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings

import numpy as np
import torch
from torch import nn

from ser.atomic import write_bytes
from ser.fbank_graph import KaldiFbank
from ser.features import read_fbank_conf
from ser.frontends import frontend_of, frontends_that
from ser.infer import TrainedModel, load_trained
from ser.inputs import UTTERANCE_NORM_FILE, uses_functionals

FORMATS = ("onnx", "torchscript")
MIN_SECONDS = 0.1  # what ser itself classifies (the models' subsampling needs a few frames)
ONNX_OPSET = 18


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


class WaveformPosteriors(nn.Module):
    """Kaldi fbank in the graph, then Posteriors: waveforms (B, N) in [-1, 1] and their lengths in samples."""

    def __init__(self, fbank: KaldiFbank, posteriors: Posteriors):
        super().__init__()
        self.fbank, self.posteriors = fbank, posteriors

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor, functionals: torch.Tensor | None = None):
        feats, frame_lengths = self.fbank(waveform, lengths)
        return self.posteriors(feats, frame_lengths, functionals)


def exportable(model_dir: str) -> tuple[TrainedModel, Posteriors]:
    """The trained model of ``model_dir`` behind its CMVN (and functionals standardisation), or a ValueError saying
    why it cannot be exported."""
    trained = load_trained(model_dir)
    config = trained.config
    if not frontend_of(config).exportable or config["speaker_norm"] != "none":
        exportable_frontends = " or ".join(frontends_that("exportable"))
        raise ValueError(f"{model_dir}: export takes {exportable_frontends} models without per-speaker "
                         f"normalisation (this one: frontend {config['frontend']}, "
                         f"speaker_norm {config['speaker_norm']})")
    utterance_norm = None
    if uses_functionals(config):
        with np.load(os.path.join(model_dir, UTTERANCE_NORM_FILE), allow_pickle=False) as z:
            utterance_norm = (z["mean"].reshape(-1), z["scale"].reshape(-1))
    norm = trained.normaliser
    return trained, Posteriors(trained.model, norm.mean, norm.inv_std, utterance_norm).eval()


def _functionals_input(trained: TrainedModel, wrapper: Posteriors) -> list[str]:
    if not wrapper.fuses:
        return []
    name = trained.config["functionals"]
    return [f"functionals (B, {wrapper.u_mean.shape[0]}) float32: each row's raw openSMILE {name} functionals "
            f"(opensmile.Smile(FeatureSet.{name}, FeatureLevel.Functionals); openSMILE cannot run in the graph)"]


def _write_export(trained: TrainedModel, model_dir: str, out_dir: str, meta: dict, files: dict[str, bytes]) -> str:
    """Write ``files`` (name -> content; the model last), ``fbank.conf`` and ``model.json`` into out_dir, each
    atomically; if one fails, those already written by this call are removed, so no partial export remains.
    Returns the path of the last file (the model)."""
    with open(os.path.join(model_dir, "fbank.conf"), "rb") as f:
        fbank_conf = f.read()
    description = json.dumps({"classes": trained.classes, "source": os.path.relpath(model_dir, out_dir), **meta,
                              "output": "posteriors (B, C), classes in the order above"}, indent=1) + "\n"
    ordered = {"fbank.conf": fbank_conf, "model.json": description.encode(), **files}
    written = []
    try:
        for name, content in ordered.items():
            written.append(os.path.join(out_dir, name))
            write_bytes(written[-1], content)
    except BaseException:
        for path in written[:-1]:
            os.unlink(path)
        raise
    return written[-1]


def export_torchscript(model_dir: str, out_dir: str) -> str:
    """Write ``out_dir/model.ts``, ``model.json`` and ``fbank.conf``; returns the model path."""
    trained, wrapper = exportable(model_dir)
    example = (torch.randn(2, 160, wrapper.mean.shape[0]), torch.tensor([160, 97]))
    if wrapper.fuses:
        example += (torch.randn(2, wrapper.u_mean.shape[0]),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic: lengths stay inputs (tested)
        traced = torch.jit.trace(wrapper, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return _write_export(trained, model_dir, out_dir, {
        "format": "torchscript",
        "inputs": ["feats (B, T, D) raw log-mel fbank of fbank.conf, zero-padded", "lengths (B,) frames"]
                  + _functionals_input(trained, wrapper)}, {"model.ts": buffer.getvalue()})


def onnx_model_bytes(module: nn.Module, example: tuple, input_names: list[str], output_names: list[str]) -> bytes:
    """The ONNX model of ``module`` with a dynamic batch (dim 0 of every input) and number of samples."""
    batch, samples = torch.export.Dim("batch", min=1), torch.export.Dim("samples", min=2)
    shapes = {"waveform": {0: batch, 1: samples}, "lengths": {0: batch}, "functionals": {0: batch}}
    try:
        import onnx  # noqa: F401 (torch's exporter needs onnx and onnxscript, which ser does not need otherwise)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ValueError(f"ONNX export needs the {error.name} package: tools/install.sh --onnx "
                         "(or pip install onnx onnxscript)") from None
    onnx_log = logging.getLogger("torch.onnx")  # its notes on operators of packages ser does not use (torchvision)
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, example, dynamo=True, opset_version=ONNX_OPSET, verbose=False,
                                        input_names=input_names, output_names=output_names,
                                        dynamic_shapes={name: shapes[name] for name in input_names})
    finally:
        onnx_log.setLevel(level)
    return program.model_proto.SerializeToString()


def export_onnx(model_dir: str, out_dir: str) -> str:
    """Write ``out_dir/model.onnx`` (waveform in), ``fbank.onnx``, ``model.json`` and ``fbank.conf``; returns the
    model path."""
    trained, wrapper = exportable(model_dir)
    opts = read_fbank_conf(os.path.join(model_dir, "fbank.conf"))
    fbank = KaldiFbank(opts)
    rate = int(opts["sample-frequency"])
    example = (torch.randn(2, rate) * 0.1, torch.tensor([rate, rate * 3 // 4]))
    inputs = ["waveform", "lengths"] + (["functionals"] if wrapper.fuses else [])
    if wrapper.fuses:
        example += (torch.randn(2, wrapper.u_mean.shape[0]),)
    model = onnx_model_bytes(WaveformPosteriors(fbank, wrapper).eval(), example, inputs, ["posteriors"])
    fbank_model = onnx_model_bytes(fbank, example[:2], ["waveform", "lengths"], ["feats", "frame_lengths"])
    return _write_export(trained, model_dir, out_dir, {
        "format": "onnx", "sample_rate": rate, "min_samples": int(MIN_SECONDS * rate),
        "inputs": [f"waveform (B, N) float32 mono samples at {rate} Hz in [-1, 1], rows zero-padded",
                   "lengths (B,) int64 samples of each row"] + _functionals_input(trained, wrapper)},
        {"fbank.onnx": fbank_model, "model.onnx": model})


def export_model(model_dir: str, out_dir: str, fmt: str = "onnx") -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    return (export_onnx if fmt == "onnx" else export_torchscript)(model_dir, out_dir)
