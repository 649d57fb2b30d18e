"""``fbank``: Kaldi fbank precomputed in stage 1 (feats.scp), normalised with the training fold's global CMVN, or
with each speaker's own CMVN under ``speaker_norm: cmvn``. Options: norm_vars (divide by the global std)."""

from __future__ import annotations

import os

import numpy as np
from torch import nn

from ser.dataset import LabelledSet, load_labelled_set
from ser.features import CmvnNormaliser, compute_fbank, read_cmvn_stats, read_fbank_conf
from ser.frontends.base import Frontend
from ser.stamps import inputs_digest

FBANK_FRAMES_PER_SECOND = 100  # the 10 ms frame shift of conf/fbank.conf


class FbankInputError(ValueError):
    pass


class Fbank(Frontend):
    name = "fbank"
    defaults = {"norm_vars": True}
    rules = {"norm_vars": (lambda v: isinstance(v, bool), "true or false")}
    inputs_per_second = FBANK_FRAMES_PER_SECOND
    augment_domain = "fbank"
    default_input_layer = "conv2d"
    uses_fold_cmvn = True
    supports_speaker_norm = True
    exportable = True

    def load(self, data_dir: str, classes: list[str], lazy: bool = False) -> LabelledSet:
        return load_labelled_set(data_dir, classes)

    def digest(self, data_dir: str) -> str:
        """feats.scp and utt2emo by content. The feature values themselves are named by the training fold's CMVN
        statistics (in the run's identity, and in a training dir's cmvn.ark): sums and sums of squares of every
        training frame, which any change of the features changes. So features recomputed identically (new
        archives, same content) leave a finished run finished, as ser.sh's up-to-date check does."""
        return inputs_digest([os.path.join(data_dir, "feats.scp"), os.path.join(data_dir, "utt2emo")])[:12]

    def fold_normaliser(self, cmvn_path: str | None) -> CmvnNormaliser:
        if not cmvn_path:
            raise FbankInputError("the fbank front-end needs the training fold's CMVN statistics (--cmvn)")
        return CmvnNormaliser(read_cmvn_stats(cmvn_path), self.conf["norm_vars"])

    def wrap(self, make_encoder, feat_dim: int | None) -> nn.Module:
        if not isinstance(feat_dim, int) or isinstance(feat_dim, bool) or feat_dim <= 0:
            raise ValueError(f"input_dim must be a positive integer, got {feat_dim!r}")
        return make_encoder(feat_dim)

    def inputs_of_wav(self, wav: str, model_dir: str, normaliser) -> np.ndarray:
        return normaliser(self.picture_of_wav(wav, model_dir)[0])

    def audio_rate(self, model_dir: str) -> int:
        return int(self._fbank_opts(model_dir)["sample-frequency"])

    def inputs_of_samples(self, samples: np.ndarray, model_dir: str, normaliser) -> np.ndarray:
        return normaliser(compute_fbank(samples, self._fbank_opts(model_dir)))

    @staticmethod
    def _fbank_opts(model_dir: str) -> dict:
        conf_path = os.path.join(model_dir, "fbank.conf")
        if not os.path.isfile(conf_path):
            raise FileNotFoundError(f"{model_dir}: no fbank.conf (the model was trained without --fbank-conf)")
        return read_fbank_conf(conf_path)

    def picture_of_wav(self, wav: str, model_dir: str) -> tuple[np.ndarray, float]:
        """The fbank of one audio file computed exactly as stage 1 did for the model's data (its fbank.conf)."""
        from ser.audio import load_mono

        opts = self._fbank_opts(model_dir)
        channel = opts.get("channel", -1)
        samples = load_mono(wav, int(opts["sample-frequency"]), None if channel < 0 else channel, min_duration=0.1)
        return compute_fbank(samples, opts), float(opts["frame-shift"]) / 1000.0
