"""Self-supervised waveform encoders (docs/method.md section 1): a pretrained Hugging Face WavLM, wav2vec 2.0,
HuBERT or data2vec-audio model on the raw 16 kHz waveform, giving hidden_size-dim frames at 50 frames/s
(``SSLEncoder``; Whisper's encoder, which reads log-mel in 30 s windows, is ser.models.whisper, built by
``make_ssl_encoder`` from the checkpoint's type); and ``WaveModel``, such an encoder followed by a frame encoder.
Their options are those of the ``wavlm``, ``ssl`` and ``whisper`` front-ends (ser.frontends.wavlm, which documents
them). The four share one layout (a convolutional feature encoder, then transformer layers in ``encoder.layers``),
which is what this module relies on.

Input: samples in the int16 range (as Kaldi reads them), padded to the longest utterance, with lengths in
samples. With normalize_wave each utterance is scaled to zero mean and unit variance over its valid samples,
var + 1e-7 as in Hugging Face's Wav2Vec2FeatureExtractor (so the input scale does not matter); without it
the samples are divided by 32768. Padding samples are then set to zero.

Padding: WavLM gets the attention mask of the valid samples; frame t reads samples [320 t, 320 t + 400),
so the first frame_lengths[b] frames of row b read valid samples only, and frames beyond are zeroed. For
checkpoints whose convolutional feature encoder uses layer norm (WavLM Large) an utterance gives the same
frames alone as inside a padded batch. Checkpoints with group norm (WavLM Base, Base+) normalise the first
convolution over the whole padded time axis, so there padding changes the frames slightly; data2vec-audio's
positional embedding is a stack of convolutions, through which padding reaches the valid frames too.

Hidden states: state 0 is the input of the first transformer layer, state k the output of layer k (for
stable-layer-norm models like WavLM Large before the final LayerNorm, as fairseq and s3prl define them); a
layer skipped by LayerDrop in training passes its input on. "last" is the model's last_hidden_state (after
that final LayerNorm). In training mode WavLM applies its checkpoint's dropouts, LayerDrop and time
masking (mask_time_prob; its spans are drawn with numpy's global RNG, and a batch shorter than one span,
mask_time_length frames, is not masked); with freeze "all" it always runs in eval mode.

transformers is imported when a model is built, so ``import ser.models`` works without it.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import torch
from torch import Tensor, nn

from ser.audio import INT16_SCALE
from ser.frontends.wavlm import SSL_MODEL_TYPES, WAVE_SAMPLE_RATE
from ser.models.output import ModelOutput
from ser.models.subsampling import check_lengths, valid_mask

NORMALIZE_VARIANCE_FLOOR = 1e-7


_CONFIG_CLASSES = {"wavlm": "WavLMConfig", "wav2vec2": "Wav2Vec2Config", "hubert": "HubertConfig",
                   "data2vec-audio": "Data2VecAudioConfig"}


def checkpoint_model_type(path: str, download: bool, model_id: str, model_types: tuple[str, ...]) -> str:
    """The config.model_type of the local checkpoint directory `path`, or, when path is empty and download is
    true, of the hub's `model_id`; it must be one of `model_types`."""
    from transformers import AutoConfig

    if path:
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"frontend_conf.path: {path!r} is not a Hugging Face checkpoint directory "
                             "(no config.json in it)")
        model_type = AutoConfig.from_pretrained(path, local_files_only=True).model_type
    elif not download:
        raise ValueError("frontend_conf.path is empty: set it to a local checkpoint directory "
                         "(config.json + weights, e.g. a download of microsoft/wavlm-large), or set "
                         "frontend_conf.download: true to fetch frontend_conf.model_id from the Hugging Face hub")
    else:
        model_type = AutoConfig.from_pretrained(model_id).model_type
    if model_type not in model_types:
        raise ValueError(f"frontend_conf.path: {path or model_id!r} holds a {model_type!r} model; this front-end "
                         f"reads {', '.join(model_types)}")
    return model_type


def load_ssl_encoder(path: str, download: bool, model_id: str, model_types: tuple[str, ...]) -> nn.Module:
    """The Hugging Face model in float32 from the local checkpoint directory `path`, or, when path is empty and
    download is true, from the hub's `model_id`; its config.model_type must be one of `model_types`."""
    from transformers import AutoModel

    checkpoint_model_type(path, download, model_id, model_types)
    if path:
        return AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    return AutoModel.from_pretrained(model_id, dtype=torch.float32)


def make_ssl_encoder(conf: dict, model_types: tuple[str, ...]) -> nn.Module:
    """The front-end module of a resolved frontend_conf: ser.models.whisper.WhisperSSLEncoder for a Whisper
    checkpoint, SSLEncoder for the others."""
    if checkpoint_model_type(conf["path"], conf["download"], conf["model_id"], model_types) == "whisper":
        from ser.models.whisper import WhisperSSLEncoder

        return WhisperSSLEncoder(conf)
    return SSLEncoder(conf, model_types)


def build_tiny_ssl(path: str, model_type: str = "wavlm", seed: int = 0, **config_overrides) -> str:
    """Save a tiny randomly initialised model of `model_type` (hidden 32, 2 layers, 2 heads, 16-channel
    convolutions with the real strides, layer-norm convolutions and stable layer norm as in the Large models) to
    the directory `path` for tests and benchmarks; returns path. No download. model_type "whisper": a tiny Whisper
    (ser.models.whisper.build_tiny_whisper)."""
    import transformers

    if model_type == "whisper":
        from ser.models.whisper import build_tiny_whisper

        return build_tiny_whisper(path, seed, **config_overrides)
    settings = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                    feat_extract_norm="layer", do_stable_layer_norm=True)
    if model_type == "wavlm":
        settings.update(num_buckets=32, max_bucket_distance=100)
    settings.update(config_overrides)
    config = getattr(transformers, _CONFIG_CLASSES[model_type])(**settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModel.from_config(config)
    model.save_pretrained(path)
    return path


def normalize_waveform(wave: Tensor, lengths: Tensor, per_utterance: bool) -> Tensor:
    """Zero-mean unit-variance over each row's valid samples (per_utterance) or wave / 32768; padding zeroed."""
    mask = valid_mask(lengths, wave.size(1)).to(wave.dtype)
    if not per_utterance:
        return wave / INT16_SCALE * mask
    counts = lengths.to(wave.dtype).unsqueeze(1)
    mean = (wave * mask).sum(1, keepdim=True) / counts
    centred = (wave - mean) * mask
    variance = centred.pow(2).sum(1, keepdim=True) / counts
    return centred / torch.sqrt(variance + NORMALIZE_VARIANCE_FLOOR)


def select_states(states: list[Tensor], layer) -> list[Tensor]:
    """The hidden states that frontend_conf.layer selects of ``states``: every one for "weighted" (or "last", whose
    one state the encoder gives), else [state k]."""
    return states if layer in ("weighted", "last") else [states[layer]]


def combine_states(states: list[Tensor], probs: Optional[Tensor]) -> Tensor:
    """The softmax-weighted sum of the states with weights ``probs`` (layer "weighted"), else the one state."""
    if probs is None:
        return states[0]
    return torch.einsum("k,k...->...", probs, torch.stack(states))


def _keep_layer_io(layer: nn.Module, args: tuple, output) -> None:
    """Forward hook on a transformer layer: keep its input and output hidden states for this forward."""
    layer.kept_io = (args[0], output[0] if isinstance(output, tuple) else output)


class LayeredEncoder(nn.Module):
    """What the waveform encoders share: the options (freeze, layer, normalize_wave), the learnable layer weights,
    eval mode when frozen, the input check, and forward = encode with the selected states combined. A subclass
    sets ``self.ssl`` and calls ``_choose_layers``; it defines ``encode``, ``frame_lengths`` and
    ``min_samples``."""

    min_samples_reason = "one frame"

    def _choose_layers(self, conf: dict, num_layers: int) -> None:
        """Take the options of a resolved frontend_conf; check an integer layer against the checkpoint's
        ``num_layers`` transformer layers; for "weighted", weights over states 0..num_layers (equal at start)."""
        self.freeze = conf["freeze"]
        self.layer = conf["layer"]
        self.normalize_wave = conf["normalize_wave"]
        if isinstance(self.layer, int) and self.layer > num_layers:
            raise ValueError(f"frontend_conf.layer is {self.layer}, but the checkpoint has {num_layers} "
                             f"transformer layers (valid indices 0..{num_layers})")
        if self.layer == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(num_layers + 1))  # softmax: equal at start

    def train(self, mode: bool = True) -> "LayeredEncoder":
        """An encoder frozen with freeze "all" stays in eval mode (no dropout, LayerDrop or masking)."""
        super().train(mode)
        if self.freeze == "all":
            self.ssl.eval()
        return self

    def layer_weight_probs(self) -> Tensor:
        """The softmax-normalised weights of the hidden states (layer "weighted" only)."""
        return torch.softmax(self.layer_weights, dim=0)

    def forward(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(wave, lengths, self.combine_states)

    def combine_states(self, states: list[Tensor]) -> Tensor:
        """The frames of the selected hidden states (``select_states``): their weighted sum for layer "weighted",
        else the one state."""
        return combine_states(states, self.layer_weight_probs() if self.layer == "weighted" else None)

    def _check_inputs(self, wave: Tensor, lengths: Tensor) -> None:
        if wave.dim() != 2 or not wave.is_floating_point():
            raise ValueError(f"wave must be a float tensor of shape (batch, samples), got {wave.dtype} "
                             f"{tuple(wave.shape)}")
        check_lengths(lengths, wave.size(0), wave.size(1), self.min_samples, "samples",
                      f"the encoder needs at least {self.min_samples} ({self.min_samples_reason})")


class SSLEncoder(LayeredEncoder):
    """(wave (B, N) float, lengths (B,) samples) -> (frames (B, T, hidden_size), frame_lengths (B,))."""

    def __init__(self, conf: dict, model_types: tuple[str, ...] = SSL_MODEL_TYPES):
        """conf: a resolved frontend_conf (ser.frontends.resolve_frontend_conf)."""
        super().__init__()
        self.ssl = load_ssl_encoder(conf["path"], conf["download"], conf["model_id"], model_types)
        config = self.ssl.config
        self.output_dim = config.hidden_size
        self._choose_layers(conf, config.num_hidden_layers)
        self.min_samples = self._receptive_field(config.conv_kernel, config.conv_stride)
        self.frames_per_second = WAVE_SAMPLE_RATE / math.prod(config.conv_stride)  # 50

        if self.freeze == "all":
            self.ssl.requires_grad_(False)
            self.ssl.eval()
        elif self.freeze == "feature_encoder":
            self.ssl.feature_extractor._freeze_parameters()  # as the models' freeze_feature_encoder

        if self.layer != "last":
            for layer in self.ssl.encoder.layers:
                layer.register_forward_hook(_keep_layer_io)
            # The encoder's dropout is the last step before its first layer: its output is hidden state 0, also
            # when LayerDrop skips that layer.
            self.ssl.encoder.dropout.register_forward_hook(_keep_layer_io)
            self._forget_layer_io()

    @staticmethod
    def _receptive_field(kernels, strides) -> int:
        """Samples that the convolutional feature encoder needs for one frame (400 for WavLM)."""
        field = 1
        for kernel, stride in zip(reversed(kernels), reversed(strides)):
            field = (field - 1) * stride + kernel
        return field

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Frames that WavLM's convolutional feature encoder makes of `lengths` samples."""
        return self.ssl._get_feat_extract_output_lengths(lengths).to(torch.long)

    def encode(self, wave: Tensor, lengths: Tensor, reduce) -> tuple[Tensor, Tensor]:
        """(reduce(the hidden states that ``layer`` selects: [last], [state k] or every state 0..L), each
        (B, T, H)) with frames beyond each row's length zeroed, frame_lengths)."""
        self._check_inputs(wave, lengths)
        samples = normalize_waveform(wave.float(), lengths, self.normalize_wave)
        attention_mask = valid_mask(lengths, wave.size(1)).to(torch.long)
        if self.layer != "last":
            self._forget_layer_io()  # a layer skipped by LayerDrop must not show a stale output
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.freeze != "all"):
            output = self.ssl(samples, attention_mask=attention_mask,
                                mask_time_indices=self._no_time_mask_if_too_short(wave))
            states = [output.last_hidden_state] if self.layer == "last" else self._collect_hidden_states()
        frames = reduce(select_states(states, self.layer))
        frame_lengths = self.frame_lengths(lengths)
        return frames * valid_mask(frame_lengths, frames.size(1)).unsqueeze(-1).to(frames.dtype), frame_lengths

    def _no_time_mask_if_too_short(self, wave: Tensor) -> Optional[Tensor]:
        """An all-False time mask when training on a batch shorter than one masked span (WavLM's own time
        masking would raise); None (WavLM draws its masks) otherwise."""
        config = self.ssl.config
        num_frames = int(self.frame_lengths(torch.tensor(wave.size(1))))
        if self.ssl.training and config.mask_time_prob > 0 and num_frames < config.mask_time_length:
            return torch.zeros(wave.size(0), num_frames, dtype=torch.bool, device=wave.device)
        return None

    def _collect_hidden_states(self) -> list[Tensor]:
        """[input of layer 0, output of layer 1, ..., output of layer L] of the forward just run."""
        states = [self.ssl.encoder.dropout.kept_io[1]]
        for layer in self.ssl.encoder.layers:
            states.append(states[-1] if layer.kept_io is None else layer.kept_io[1])  # None: LayerDrop
        self._forget_layer_io()
        return states

    def _forget_layer_io(self) -> None:
        for module in (self.ssl.encoder.dropout, *self.ssl.encoder.layers):
            module.kept_io = None

class WaveModel(nn.Module):
    """A waveform front-end followed by a frame encoder:
    forward(wave (B, N), lengths (B,) in samples) -> the encoder's ModelOutput (frame_lengths in its frames)."""

    def __init__(self, frontend: nn.Module, encoder: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder

    def forward(self, wave: Tensor, lengths: Tensor, utterance: Optional[Tensor] = None) -> ModelOutput:
        frames, frame_lengths = self.frontend(wave, lengths)
        return self.encoder(frames, frame_lengths, utterance)
