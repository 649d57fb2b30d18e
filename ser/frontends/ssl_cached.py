"""``ssl_cached``: a frozen pretrained encoder (any of ``ssl``'s model types: WavLM, wav2vec 2.0, HuBERT,
data2vec-audio, Whisper) whose frames were computed once per utterance by ``python -m ser.bin.cache_ssl``
(ser.ssl_cache) and are read back like fbank, from feats.scp; 50 frames/s for every type.

Options: path (a local checkpoint directory: its content names the cache), layer as for ``ssl``
(ser.frontends.wavlm), normalize_wave (true, false, or "auto", the default: false for a Whisper checkpoint, as the
``whisper`` front-end, true for the others, as ``ssl``; the cache's record holds the value used), and dtype
(float16 | float32: how the frames are stored). The encoder is frozen (``ssl`` with freeze "all"; Whisper's
encoder reads its 30 s windows as there); with layer "weighted" the cache holds every hidden state and the layer
weights train.

Data dirs are the cache's (<cache>/fold<k>/<set>, with ssl_cache.json): loading one whose record was made with
other settings is refused. Mixup acts on the cached frames (``augment: featmix``, ser.augment); waveform EAM needs
the waveform, so it is a ConfigError here. Crops cut the cached frames (the encoder saw the whole utterance).
Decoding a data dir reads its cache (the test sets are cached with the rest of data/all); a single audio file
(``inputs_of_wav``, ser-classify) runs the encoder from ``path`` on it and rounds to the stored dtype, as the
cache does.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from torch import nn

from ser.dataset import LabelledSet, load_labelled_set
from ser.frontends.base import Frontend
from ser.frontends.wavlm import SSL, SSL_MODEL_TYPES, WAVE_SAMPLE_RATE, WHISPER_MODEL_TYPES
from ser.ssl_cache import CACHE_DTYPES, CACHE_RECORD, SSLCacheError, check_record

CACHED_FRAMES_PER_SECOND = 50  # 16 kHz audio, 320 samples a frame (the feature encoders' stride; Whisper's)


class SSLCached(Frontend):
    name = "ssl_cached"
    defaults = {"path": "", "layer": "weighted", "normalize_wave": "auto", "dtype": "float16"}
    rules = {**{k: SSL.rules[k] for k in ("path", "layer")},
             "normalize_wave": (lambda v: isinstance(v, bool) or v == "auto", "true, false or auto"),
             "dtype": (lambda v: v in CACHE_DTYPES, "one of " + ", ".join(CACHE_DTYPES))}
    check = staticmethod(SSL.check)
    inputs_per_second = CACHED_FRAMES_PER_SECOND
    augment_domain = "frames"
    default_input_layer = "linear"
    caches_frames = True
    model_types = SSL_MODEL_TYPES + WHISPER_MODEL_TYPES

    def load(self, data_dir: str, classes: list[str], lazy: bool = False) -> LabelledSet:
        """The cached frames of data_dir, kept in memory in the stored dtype (float16 halves it)."""
        record = check_record(data_dir, self.conf)
        if record["frames_per_second"] != self.inputs_per_second:
            raise SSLCacheError(f"{os.path.join(data_dir, CACHE_RECORD)}: {record['frames_per_second']} frames/s; "
                                f"the ssl_cached front-end reads {self.inputs_per_second}")
        data = load_labelled_set(data_dir, classes, dtype=np.dtype(self.conf["dtype"]))
        if data.feat_dim != record["num_states"] * record["hidden_size"]:
            raise SSLCacheError(f"{data_dir}/feats.scp: frames of dimension {data.feat_dim}; its record says "
                                f"{record['num_states']} x {record['hidden_size']}")
        return data

    def digest(self, data_dir: str) -> str:
        from ser.stamps import inputs_digest

        return inputs_digest([os.path.join(data_dir, n) for n in ("feats.scp", "utt2emo", CACHE_RECORD)])[:12]

    def geometry(self) -> tuple[int, int]:
        """(hidden states stored per frame, hidden size), from the checkpoint's config.json."""
        from transformers import AutoConfig

        if not os.path.isfile(os.path.join(self.conf["path"], "config.json")):
            raise ValueError(f"frontend_conf.path: {self.conf['path']!r} is not a Hugging Face checkpoint "
                             "directory (no config.json in it)")
        from ser.models.ssl_cache import stored_states

        config = AutoConfig.from_pretrained(self.conf["path"], local_files_only=True)
        return stored_states(config, self.conf["layer"]), config.hidden_size

    def wrap(self, make_encoder, feat_dim: int | None) -> nn.Module:
        from ser.models.ssl import WaveModel
        from ser.models.ssl_cache import CachedLayers

        states, hidden = self.geometry()
        if feat_dim is not None and feat_dim != states * hidden:
            raise ValueError(f"cached frames have dimension {feat_dim}; layer {self.conf['layer']!r} of the "
                             f"checkpoint {self.conf['path']} gives {states} x {hidden}")
        return WaveModel(CachedLayers(states, hidden), make_encoder(hidden))

    def inputs_of_wav(self, wav: str, model_dir: str, normaliser) -> np.ndarray:
        from ser.audio import load_mono

        return self.inputs_of_samples(load_mono(wav, WAVE_SAMPLE_RATE, None, min_duration=0.1), model_dir,
                                      normaliser)

    def audio_rate(self, model_dir: str) -> int:
        return WAVE_SAMPLE_RATE

    def inputs_of_samples(self, samples: np.ndarray, model_dir: str, normaliser) -> np.ndarray:
        """The frames the cache would hold for these samples (the encoder run here, on the CPU)."""
        import torch

        extractor = _extractor(tuple(sorted(self.conf.items())), self.model_types)
        wave = torch.from_numpy(np.asarray(samples, dtype=np.float32))[None]
        frames, _ = extractor(wave, torch.tensor([wave.size(1)]))
        return frames[0].numpy().astype(self.conf["dtype"]).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _extractor(conf_items: tuple, model_types: tuple[str, ...]):
    from ser.models.ssl_cache import StateExtractor

    return StateExtractor(dict(conf_items), model_types).eval()
