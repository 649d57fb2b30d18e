"""What a model reads besides its frames' source: input normalisation and fused utterance-level features.

Frame normalisation (fbank): the training fold's global CMVN, or with ``speaker_norm: cmvn`` each speaker's own
CMVN. Utterance features (``functionals``): openSMILE functionals read from an archive of data/all, per-speaker
z-normalised under ``speaker_norm: cmvn``, then standardised with the training set's statistics (kept with the
model as ``utterance_norm.npz``).

Stacking (``stacking: classic``) appends to the functionals the log-posteriors of the classic reference
(ser.classic: standardised logistic regression, C by speaker-grouped cross-validation) on those same functionals.
Its model is fit on the train dir's utterances only: a training utterance gets the out-of-fold log-posteriors of
the cross-validation fit without its speaker; validation and test utterances (and audio at inference) those of the
model fit on every train-dir utterance, kept with the run as ``stack_classic.npz``. The valid dir is left out of
the fit so that validation scores it as unseen data, as the test is scored.

Speaker statistics come from the utterances a stage reads: training reads the train and valid dirs (both of
training-fold speakers only) and takes each training speaker's statistics from them; inference on a test dir takes
each test speaker's statistics from that speaker's utterances in the test dir. No statistic ever mixes speakers.
"""

from __future__ import annotations

import os

import numpy as np

from ser.atomic import atomic_path, write_json
from ser.classic import STACK_FILE, fit_stacker, read_linear_model, resolve_classic_config, stacked_features
from ser.dataset import LabelledSet
from ser.frontends import frontend_of
from ser.functionals import read_utterance_features
from ser.losses import reads_speakers
from ser.speaker_norm import read_speakers, speaker_normalise_rows

UTTERANCE_NORM_FILE = "utterance_norm.npz"


def uses_functionals(config: dict) -> bool:
    return config["functionals"] != "none"


def attach_speakers(config: dict, data: LabelledSet, data_dir: str) -> None:
    """data.speakers from utt2spk, where the speaker normalisation or a loss term (reads_speakers) needs them."""
    if config["speaker_norm"] != "none" or reads_speakers(config["loss_conf"]):
        data.speakers = read_speakers(data_dir, data.keys)


def _speaker_normalised_utterances(sets: list[LabelledSet]) -> None:
    """Per-speaker z-normalisation of the utterance features of ``sets``, statistics pooled over the sets."""
    normalised = speaker_normalise_rows(np.concatenate([s.utterance for s in sets]),
                                        [spk for s in sets for spk in s.speakers])
    start = 0
    for s in sets:
        s.utterance, start = normalised[start:start + len(s.keys)], start + len(s.keys)


def uses_stacking(config: dict) -> bool:
    return config["stacking"] != "none"


def _stack(config: dict, train_set: LabelledSet, valid_set: LabelledSet, train_dir: str, num_classes: int) -> None:
    """Append the classic model's log-posteriors to both sets' utterance features: out-of-fold for training rows,
    from the fit on all training rows for validation rows. The fit is kept in train_set.stacker."""
    speakers = train_set.speakers or read_speakers(train_dir, train_set.keys)
    classic_config = resolve_classic_config({"feature_set": config["functionals"]}, "stacking")
    oof, model, record = fit_stacker(train_set.utterance, train_set.labels, speakers, num_classes, classic_config)
    valid_set.utterance = np.concatenate([valid_set.utterance, stacked_features(model, valid_set.utterance)], 1)
    train_set.utterance = np.concatenate([train_set.utterance, oof], 1)
    train_set.stacker = (model, record)


def prepare_training_inputs(config: dict, train_set: LabelledSet, valid_set: LabelledSet, train_dir: str,
                            valid_dir: str, cmvn_path: str | None, functionals_scp: str | None,
                            num_classes: int | None = None):
    """Attach speakers and utterance features to both sets; return the front-end's normaliser (None where its inputs
    need none). The utterance standardisation is kept in train_set.utterance_norm (write_utterance_norm).
    num_classes (stacking's posteriors) defaults to the training labels' largest index + 1."""
    for data, data_dir in ((train_set, train_dir), (valid_set, valid_dir)):
        attach_speakers(config, data, data_dir)
        if uses_functionals(config):
            data.utterance = read_utterance_features(functionals_scp, data.keys)
    if uses_functionals(config):
        if config["speaker_norm"] == "cmvn":
            _speaker_normalised_utterances([train_set, valid_set])
        if uses_stacking(config):
            _stack(config, train_set, valid_set, train_dir,
                   num_classes if num_classes is not None else int(train_set.labels.max()) + 1)
        mean = train_set.utterance.mean(0)
        scale = train_set.utterance.std(0)
        scale[scale < 1e-8] = 1.0
        for data in (train_set, valid_set):
            data.utterance = ((data.utterance - mean) / scale).astype(np.float32)
        train_set.utterance_norm = (mean, scale)
    frontend = frontend_of(config)
    if config["speaker_norm"] == "cmvn":
        return frontend.speaker_normaliser([train_set, valid_set])
    return frontend.fold_normaliser(cmvn_path)


def write_utterance_norm(outdir: str, train_set: LabelledSet, classes: list[str]) -> None:
    """outdir/utterance_norm.npz: the standardisation of the fused utterance features (when there are any); with
    stacking, the stacked classic model (stack_classic.npz) and its C and cross-validation (stack_classic.json)."""
    if train_set.utterance_norm is not None:
        mean, scale = train_set.utterance_norm
        with atomic_path(os.path.join(outdir, UTTERANCE_NORM_FILE)) as tmp:
            np.savez(tmp, mean=mean, scale=scale)
    if train_set.stacker is not None:
        model, record = train_set.stacker
        model.save(os.path.join(outdir, STACK_FILE), classes)
        write_json(os.path.join(outdir, "stack_classic.json"), record)


def prepare_test_inputs(config: dict, data: LabelledSet, data_dir: str, model_dir: str, global_normaliser,
                        functionals_scp: str | None):
    """Attach speakers and (normalised) utterance features to a test set; return its normaliser: the model's own
    (global_normaliser), or each test speaker's own statistics under speaker_norm cmvn."""
    attach_speakers(config, data, data_dir)
    if uses_functionals(config):
        data.utterance = read_utterance_features(functionals_scp, data.keys)
        if config["speaker_norm"] == "cmvn":
            _speaker_normalised_utterances([data])
        data.utterance = standardise_utterance(model_dir, data.utterance)
    if config["speaker_norm"] == "cmvn":
        return frontend_of(config).speaker_normaliser([data])
    return global_normaliser


def standardise_utterance(model_dir: str, utterance: np.ndarray) -> np.ndarray:
    """The model's utterance input from (N, F) functionals: with the stacked classic model's log-posteriors appended
    where the run holds one (stacking), standardised with the training statistics."""
    stack_path = os.path.join(model_dir, STACK_FILE)
    if os.path.isfile(stack_path):
        utterance = np.concatenate([utterance, stacked_features(read_linear_model(stack_path)[0], utterance)], 1)
    path = os.path.join(model_dir, UTTERANCE_NORM_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir}: no {UTTERANCE_NORM_FILE}; is training of this fold finished?")
    with np.load(path, allow_pickle=False) as z:
        return ((utterance - z["mean"]) / z["scale"]).astype(np.float32)
