"""What a model reads besides its frames' source: input normalisation and fused utterance-level features.

Frame normalisation (fbank): the training fold's global CMVN, or with ``speaker_norm: cmvn`` each speaker's own
CMVN. Utterance features (``functionals``): openSMILE functionals read from an archive of data/all, per-speaker
z-normalised under ``speaker_norm: cmvn``, then standardised with the training set's statistics (kept with the
model as ``utterance_norm.npz``).

Speaker statistics come from the utterances a stage reads: training reads the train and valid dirs (both of
training-fold speakers only) and takes each training speaker's statistics from them; inference on a test dir takes
each test speaker's statistics from that speaker's utterances in the test dir. No statistic ever mixes speakers.
"""

from __future__ import annotations

import os

import kaldiio
import numpy as np

from ser.atomic import atomic_path
from ser.datadir import DataDirError, read_table
from ser.dataset import LabelledSet
from ser.frontends import frontend_of
from ser.losses import reads_speakers
from ser.speaker_norm import SpeakerNormaliser, read_speakers, speaker_statistics

UTTERANCE_NORM_FILE = "utterance_norm.npz"


class InputError(ValueError):
    pass


def uses_functionals(config: dict) -> bool:
    return config["functionals"] != "none"


def read_utterance_features(functionals_scp: str | None, keys: list[str]) -> np.ndarray:
    """(N, F) float32 functionals of ``keys`` from an archive of (1, F) matrices."""
    if not functionals_scp:
        raise InputError("the config fuses functionals but no functionals archive was given (--functionals-scp)")
    table = read_table(functionals_scp, 2)  # the value is the rest of the line: paths may hold spaces
    rows = []
    for key in keys:
        if key not in table:
            raise DataDirError(f"{functionals_scp}: no functionals for utterance {key}")
        mat = kaldiio.load_mat(table[key])
        if mat.ndim != 2 or mat.shape[0] != 1:
            raise DataDirError(f"{functionals_scp}: functionals of {key} have shape {mat.shape}, expected (1, F)")
        rows.append(mat[0])
    return np.asarray(rows, dtype=np.float32)


def attach_speakers(config: dict, data: LabelledSet, data_dir: str) -> None:
    """data.speakers from utt2spk, where the speaker normalisation or a loss term (reads_speakers) needs them."""
    if config["speaker_norm"] != "none" or reads_speakers(config["loss_conf"]):
        data.speakers = read_speakers(data_dir, data.keys)


def speaker_normalise_rows(x: np.ndarray, speakers: list[str]) -> np.ndarray:
    """Every row of x (N, F) z-normalised with the statistics of its speaker's rows in x (and nothing else)."""
    norm = SpeakerNormaliser(speaker_statistics(list(x[:, None, :]), speakers))
    return np.concatenate([norm(row[None], spk) for row, spk in zip(x, speakers)])


def _speaker_normalised_utterances(sets: list[LabelledSet]) -> None:
    """Per-speaker z-normalisation of the utterance features of ``sets``, statistics pooled over the sets."""
    normalised = speaker_normalise_rows(np.concatenate([s.utterance for s in sets]),
                                        [spk for s in sets for spk in s.speakers])
    start = 0
    for s in sets:
        s.utterance, start = normalised[start:start + len(s.keys)], start + len(s.keys)


def prepare_training_inputs(config: dict, train_set: LabelledSet, valid_set: LabelledSet, train_dir: str,
                            valid_dir: str, cmvn_path: str | None, functionals_scp: str | None):
    """Attach speakers and utterance features to both sets; return the front-end's normaliser (None where its inputs
    need none). The utterance standardisation is kept in train_set.utterance_norm (write_utterance_norm)."""
    for data, data_dir in ((train_set, train_dir), (valid_set, valid_dir)):
        attach_speakers(config, data, data_dir)
        if uses_functionals(config):
            data.utterance = read_utterance_features(functionals_scp, data.keys)
    if uses_functionals(config):
        if config["speaker_norm"] == "cmvn":
            _speaker_normalised_utterances([train_set, valid_set])
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


def write_utterance_norm(outdir: str, train_set: LabelledSet) -> None:
    """outdir/utterance_norm.npz: the standardisation of the fused utterance features (when there are any)."""
    if train_set.utterance_norm is not None:
        mean, scale = train_set.utterance_norm
        with atomic_path(os.path.join(outdir, UTTERANCE_NORM_FILE)) as tmp:
            np.savez(tmp, mean=mean, scale=scale)


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
    path = os.path.join(model_dir, UTTERANCE_NORM_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_dir}: no {UTTERANCE_NORM_FILE}; is training of this fold finished?")
    with np.load(path, allow_pickle=False) as z:
        return ((utterance - z["mean"]) / z["scale"]).astype(np.float32)
