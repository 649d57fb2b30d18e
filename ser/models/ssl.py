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
import pickle
from typing import Optional

import torch
from torch import Tensor, nn

from ser.models.layered import (  # noqa: F401 (re-exported)
    INT16_SCALE,
    NORMALIZE_VARIANCE_FLOOR,
    LayeredEncoder,
    _keep_layer_io,
    combine_states,
    normalize_waveform,
    select_states,
)
from ser.models.output import ModelOutput
from ser.models.subsampling import valid_mask

WAVE_SAMPLE_RATE = 16000  # what WavLM was trained on; waveform front-ends read audio at this rate
SSL_MODEL_TYPES = ("wavlm", "wav2vec2", "hubert", "data2vec-audio")  # Hugging Face config.model_type
WHISPER_MODEL_TYPES = ("whisper",)  # its encoder reads log-mel in 30 s windows (ser.models.whisper)


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
    if not path:
        return AutoModel.from_pretrained(model_id, dtype=torch.float32)
    try:
        return AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        # transformers loads .bin weights weights-only: a file holding other objects is refused, nothing in it runs
        weights = ", ".join(sorted(n for n in os.listdir(path) if n.endswith((".bin", ".safetensors"))))
        if isinstance(e, pickle.UnpicklingError):
            reason = "they hold objects other than tensors, refused (loaded weights-only: nothing in them ran)"
        else:
            reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{path}: cannot load the checkpoint's weights ({weights or 'none found'}): {reason}") \
            from None


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
