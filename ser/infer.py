"""Using a trained model: load an exp dir, classify data dirs or single wav files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

import ser.components  # noqa: F401 (fills the registries: models are rebuilt from stored configs)
from ser.config import load_config
from ser.dataset import LabelledSet, eval_batches
from ser.distributed import Distributed
from ser.frontends import Frontend, frontend_of
from ser.inputs import prepare_test_inputs, standardise_utterance, uses_functionals
from ser.models import model_of


@dataclass
class TrainedModel:
    model: torch.nn.Module = field(repr=False)
    config: dict = field(repr=False)
    classes: list[str]
    normaliser: object | None = field(repr=False)  # the front-end's fold CMVN (fbank); None where it needs none
    model_dir: str

    @property
    def frontend(self) -> Frontend:
        return frontend_of(self.config)


def read_weights(path: str, device: str = "cpu") -> dict:
    """A state dict saved by ser, loaded weights-only; an unreadable file is a ValueError naming it."""
    import pickle

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: cannot read the model weights ({reason})") from None


@torch.no_grad()
def predict(model, data: LabelledSet, normaliser, device, num_classes: int,
            batch_size: int = 16, dist: Distributed | None = None) -> np.ndarray:
    """Posteriors (N, C) of whole utterances, in the order of data.keys (shared out over ranks when distributed)."""
    model.eval()
    shard = (dist.rank, dist.world) if dist else (0, 1)
    posteriors = np.zeros((len(data.keys), num_classes), dtype=np.float32)
    for indices, feats, lengths, utterance in eval_batches(data, normaliser, batch_size, shard):
        out = model(feats.to(device), lengths.to(device), None if utterance is None else utterance.to(device))
        posteriors[indices] = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
    return dist.sum_(posteriors) if dist else posteriors


def load_trained(model_dir: str, device: str = "cpu", weights: str = "model.pth") -> TrainedModel:
    """Rebuild the model of a finished training run from its resolved config and chosen weights."""
    import json

    for name in ("config.yaml", "run.json", weights):
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise FileNotFoundError(f"{model_dir}: no {name}; is training of this fold finished?")
    config = load_config(os.path.join(model_dir, "config.yaml"))
    with open(os.path.join(model_dir, "run.json")) as f:
        classes = json.load(f)["identity"]["classes"]
    state = read_weights(os.path.join(model_dir, weights), device)
    utterance_dim = 0
    if uses_functionals(config):
        utterance_dim = int(state["head.utterance.1.weight"].shape[1]) if "head.utterance.1.weight" in state else \
            int(state["encoder.head.utterance.1.weight"].shape[1])
    frontend = frontend_of(config)
    normaliser = frontend.fold_normaliser(os.path.join(model_dir, "cmvn.ark")) if frontend.uses_fold_cmvn else None
    model = model_of(config, normaliser.dim if normaliser else None, len(classes), utterance_dim)
    model.load_state_dict(state)
    model.to(device).eval()
    return TrainedModel(model, config, classes, normaliser, model_dir)


def classify_data_dir(trained: TrainedModel, data_dir: str, device: str = "cpu",
                      functionals_scp: str | None = None) -> tuple[LabelledSet, np.ndarray]:
    """Posteriors of every utterance of a data dir. Under speaker_norm cmvn each speaker is normalised with the
    statistics of its own utterances in this data dir."""
    data = trained.frontend.load(data_dir, trained.classes)
    normaliser = prepare_test_inputs(trained.config, data, data_dir, trained.model_dir, trained.normaliser,
                                     functionals_scp)
    return data, predict(trained.model, data, normaliser, device, len(trained.classes))


def write_predictions(outdir: str, keys: list[str], posteriors: np.ndarray, classes: list[str]) -> None:
    """posteriors: ``utt p_1 ... p_C`` (class order of classes.txt); predictions: ``utt class``. Written atomically."""
    from ser.datadir import write_table

    os.makedirs(outdir, exist_ok=True)
    write_table(os.path.join(outdir, "posteriors"),
                {k: " ".join(f"{p:.6f}" for p in row) for k, row in zip(keys, posteriors)})
    with open(os.path.join(outdir, "classes.txt"), "w") as f:
        f.write("".join(c + "\n" for c in classes))
    write_table(os.path.join(outdir, "predictions"), {k: classes[int(i)] for k, i in zip(keys, posteriors.argmax(1))})


def model_input_of_wav(trained: TrainedModel, wav: str) -> tuple[np.ndarray, np.ndarray | None]:
    """What the model reads for one audio file, computed as stage 1 did for its training data; and the standardised
    (1, F) functionals when the model fuses them (else None)."""
    if trained.config["speaker_norm"] != "none":
        raise ValueError(f"{trained.model_dir}: the model was trained with per-speaker normalisation, which needs "
                         "all of a speaker's utterances: classify a data dir with utt2spk (python -m ser.bin.infer)")
    utterance = None
    if uses_functionals(trained.config):
        from ser.audio import load_mono
        from ser.functionals import SAMPLE_RATE, compute_functionals, make_extractor

        samples = load_mono(wav, SAMPLE_RATE, None, min_duration=0.1)
        utterance = standardise_utterance(
            trained.model_dir, compute_functionals(make_extractor(trained.config["functionals"]), samples))
    return trained.frontend.inputs_of_wav(wav, trained.model_dir, trained.normaliser), utterance
