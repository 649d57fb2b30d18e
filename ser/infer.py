"""Using a trained model: load an exp dir, classify data dirs or single wav files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import yaml

from ser.config import resolve_config
from ser.dataset import LabelledSet
from ser.features import CmvnNormaliser, read_cmvn_stats
from ser.inputs import prepare_test_inputs, standardise_utterance, uses_functionals
from ser.models import build_model
from ser.train import load_inputs, predict


@dataclass
class TrainedModel:
    model: torch.nn.Module
    config: dict
    classes: list[str]
    normaliser: CmvnNormaliser | None  # None for waveform front-ends and per-speaker CMVN
    model_dir: str


def load_trained(model_dir: str, device: str = "cpu", weights: str = "model.pth") -> TrainedModel:
    """Rebuild the model of a finished training run from its resolved config and chosen weights."""
    import json

    for name in ("config.yaml", "run.json", weights):
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise FileNotFoundError(f"{model_dir}: no {name}; is training of this fold finished?")
    with open(os.path.join(model_dir, "config.yaml")) as f:
        config = resolve_config(yaml.safe_load(f), source=os.path.join(model_dir, "config.yaml"))
    with open(os.path.join(model_dir, "run.json")) as f:
        classes = json.load(f)["identity"]["classes"]
    state = torch.load(os.path.join(model_dir, weights), map_location=device, weights_only=True)
    normaliser, input_dim, utterance_dim = None, None, 0
    if uses_functionals(config):
        utterance_dim = int(state["head.utterance.1.weight"].shape[1]) if "head.utterance.1.weight" in state else \
            int(state["encoder.head.utterance.1.weight"].shape[1])
    if config["frontend"] == "fbank":
        stats = read_cmvn_stats(os.path.join(model_dir, "cmvn.ark"))
        normaliser = CmvnNormaliser(stats, config["frontend_conf"]["norm_vars"])
        input_dim = normaliser.dim
    model = build_model(config["encoder"], config["encoder_conf"], input_dim, len(classes),
                        frontend=config["frontend"], frontend_conf=config["frontend_conf"], utterance_dim=utterance_dim)
    model.load_state_dict(state)
    model.to(device).eval()
    return TrainedModel(model, config, classes, normaliser, model_dir)


def classify_data_dir(trained: TrainedModel, data_dir: str, device: str = "cpu",
                      functionals_scp: str | None = None) -> tuple[LabelledSet, np.ndarray]:
    """Posteriors of every utterance of a data dir. Under speaker_norm cmvn each speaker is normalised with the
    statistics of its own utterances in this data dir."""
    data = load_inputs(trained.config, data_dir, trained.classes)
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
    """What the model reads for one audio file: CMVN-normalised fbank as in stage 1, or the 16 kHz waveform; and
    the standardised (1, F) functionals when the model fuses them (else None)."""
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
    return _frames_of_wav(trained, wav), utterance


def _frames_of_wav(trained: TrainedModel, wav: str) -> np.ndarray:
    from ser.audio import load_mono
    from ser.frontends import WAVE_SAMPLE_RATE

    if trained.config["frontend"] == "fbank":
        return trained.normaliser(fbank_of_wav(trained.model_dir, wav))
    return load_mono(wav, WAVE_SAMPLE_RATE, None, min_duration=0.1)


def fbank_of_wav(model_dir: str, wav: str) -> np.ndarray:
    """Features of one audio file computed exactly as stage 1 did for the model's training data."""
    from ser.audio import load_mono
    from ser.features import compute_fbank, read_fbank_conf

    conf_path = os.path.join(model_dir, "fbank.conf")
    if not os.path.isfile(conf_path):
        raise FileNotFoundError(f"{model_dir}: no fbank.conf (the model was trained without --fbank-conf)")
    opts = read_fbank_conf(conf_path)
    channel = opts.get("channel", -1)
    samples = load_mono(wav, int(opts["sample-frequency"]), None if channel < 0 else channel, min_duration=0.1)
    return compute_fbank(samples, opts)
