"""The encoder of OpenAI's Whisper as a waveform front-end (``WhisperSSLEncoder``): the same interface and options as
ser.models.ssl.SSLEncoder (frontend ``whisper``, or ``ssl`` on a checkpoint whose config.json says "whisper"),
giving d_model-dim frames at 50 frames/s.

Input: samples in the int16 range, padded to the longest utterance, with lengths in samples; scaled as in
ser.models.ssl (normalize_wave: zero mean and unit variance over the whole utterance, as WhisperFeatureExtractor's
do_normalize; otherwise / 32768, Whisper's own input), padding zeroed.

30 s windows: Whisper's encoder reads exactly 3000 log-mel frames (30 s at 100 frames/s) and gives 1500 frames. An
utterance is cut into consecutive 30 s windows (window_samples = the checkpoint's preprocessor_config.json
n_samples, 480000 at 16 kHz); each window is padded with zeros to 30 s on its own, turned into Whisper's log-mel
(below) and encoded; the windows' frames are concatenated and cut to the utterance's own frames:
``ceil(samples / 320)`` (frame j stands for samples [320 j, 320 j + 320), and a 30 s window is exactly 1500
frames, so the rule holds per window and for the whole utterance). The encoder has no attention mask (Whisper was
trained on padded 30 s windows only); since every window is padded on its own, an utterance gives the same frames
alone as in a padded batch. The cost of an utterance is that of its number of 30 s windows, however short it is.

Log-mel (as WhisperFeatureExtractor, in torch on the model's device, float32, no gradient): power spectrum of a
centred STFT (n_fft 400, hop 160, periodic Hann window, reflect padding), its last frame dropped, the checkpoint's
mel filters, log10 floored at 1e-10, each window floored at its maximum - 8, then (x + 4) / 4.

Hidden states, as Hugging Face's: state 0 is the input of the first transformer layer (convolutions + positions),
state k < L the output of layer k, state L the last layer's output after the encoder's final LayerNorm (= "last").
LayerDrop is turned off (Whisper checkpoints have encoder_layerdrop 0); the checkpoint's dropouts apply in training
mode unless freeze is "all". Freeze "feature_encoder" freezes the two input convolutions (the positional embedding
is always frozen, as in Hugging Face's model).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from ser.models.layered import LayeredEncoder, normalize_waveform, select_states
from ser.models.subsampling import valid_mask

WHISPER_RATE = 16000


def load_whisper_encoder(path: str, download: bool, model_id: str) -> tuple[nn.Module, object]:
    """(Whisper's encoder in float32, its WhisperFeatureExtractor) from the checkpoint directory `path` (or the hub's
    `model_id` when path is empty: download was checked by the caller). Only the encoder's weights are loaded."""
    import transformers

    source, local = (path, True) if path else (model_id, False)
    if path and not os.path.isfile(os.path.join(path, "preprocessor_config.json")):
        raise ValueError(f"frontend_conf.path: {path!r} holds a Whisper model without preprocessor_config.json "
                         "(its log-mel settings); save the checkpoint's WhisperFeatureExtractor there")
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(source, local_files_only=local)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the decoder's weights are unused and the classifier is new: expected
    try:
        model, info = transformers.WhisperForAudioClassification.from_pretrained(
            source, local_files_only=local, dtype=torch.float32, output_loading_info=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
    missing = [key for key in info["missing_keys"] if key.startswith("encoder.")]
    if missing:
        raise ValueError(f"frontend_conf.path: {source!r}: the checkpoint lacks encoder weights "
                         f"({', '.join(missing[:3])}, ...)")
    return model.encoder, extractor


def build_tiny_whisper(path: str, seed: int = 0, **config_overrides) -> str:
    """Save a tiny randomly initialised Whisper (d_model 16, 2 encoder layers, 2 heads, 1 decoder layer, a 16-token
    vocabulary; Whisper's real 80 mel bins and 1500 positions) and its WhisperFeatureExtractor to the directory
    `path` for tests and benchmarks; returns path. No download. max_source_positions, a multiple of 50, sets the
    window: max_source_positions / 50 seconds (50: 1 s windows, so that short test utterances span several)."""
    import transformers

    settings = dict(d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
                    decoder_attention_heads=2, decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=1500,
                    vocab_size=16, max_target_positions=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                    decoder_start_token_id=3, suppress_tokens=[], begin_suppress_tokens=[])
    settings.update(config_overrides)
    seconds, rest = divmod(settings["max_source_positions"], 50)  # 50 encoder frames a second
    if rest or not seconds:
        raise ValueError(f"max_source_positions must be a positive multiple of 50, got "
                         f"{settings['max_source_positions']}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.WhisperModel(transformers.WhisperConfig(**settings))
    model.save_pretrained(path)
    extractor = transformers.WhisperFeatureExtractor(feature_size=settings["num_mel_bins"], chunk_length=seconds)
    extractor.save_pretrained(path)
    return path


class WhisperSSLEncoder(LayeredEncoder):
    """(wave (B, N) float, lengths (B,) samples) -> (frames (B, T, d_model), frame_lengths (B,))."""

    def __init__(self, conf: dict):
        """conf: a resolved frontend_conf (ser.frontends.resolve_frontend_conf)."""
        super().__init__()
        self.ssl, extractor = load_whisper_encoder(conf["path"], conf["download"], conf["model_id"])
        config = self.ssl.config
        self.output_dim = config.d_model
        self._choose_layers(conf, config.encoder_layers)
        self.ssl.layerdrop = 0.0
        config.encoder_layerdrop = 0.0

        mel_frames = 2 * config.max_source_positions  # conv2 has stride 2
        where = f"frontend_conf.path: {conf['path'] or conf['model_id']!r}: preprocessor_config.json"
        if extractor.sampling_rate != WHISPER_RATE or extractor.feature_size != config.num_mel_bins:
            raise ValueError(f"{where} has sampling_rate {extractor.sampling_rate} and feature_size "
                             f"{extractor.feature_size}; the model reads {config.num_mel_bins} mel bins of "
                             f"{WHISPER_RATE} Hz audio")
        if extractor.n_samples != mel_frames * extractor.hop_length:
            raise ValueError(f"{where} makes {extractor.n_samples // extractor.hop_length} mel frames of a "
                             f"window; the encoder reads {mel_frames}")
        self.window_samples = extractor.n_samples
        self.window_frames = config.max_source_positions
        self.samples_per_frame = extractor.n_samples // config.max_source_positions  # 320
        self.frames_per_second = WHISPER_RATE / self.samples_per_frame  # 50
        self.min_samples = 1
        self.min_samples_reason = "a sample"
        self.n_fft, self.hop_length = extractor.n_fft, extractor.hop_length
        self.register_buffer("mel_filters", torch.tensor(extractor.mel_filters, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("stft_window", torch.hann_window(self.n_fft), persistent=False)

        self.ssl.embed_positions.requires_grad_(False)  # sinusoidal, fixed (from_pretrained may unfreeze it)
        if self.freeze == "all":
            self.ssl.requires_grad_(False)
            self.ssl.eval()
        elif self.freeze == "feature_encoder":
            self.ssl.conv1.requires_grad_(False)
            self.ssl.conv2.requires_grad_(False)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """ceil(lengths / 320): the frames of the utterance's own samples."""
        return torch.div(lengths + self.samples_per_frame - 1, self.samples_per_frame, rounding_mode="floor")

    def log_mel(self, windows: Tensor) -> Tensor:
        """(W, window_samples) float32 samples -> (W, num_mel_bins, 3000) Whisper log-mel."""
        with torch.no_grad(), torch.autocast(device_type=windows.device.type, enabled=False):
            stft = torch.stft(windows.float(), self.n_fft, self.hop_length, window=self.stft_window,
                              return_complex=True)
            power = stft[..., :-1].abs() ** 2
            log_spec = torch.clamp(self.mel_filters.T @ power, min=1e-10).log10()
            log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)
            return (log_spec + 4.0) / 4.0

    def encode(self, wave: Tensor, lengths: Tensor, reduce) -> tuple[Tensor, Tensor]:
        """(reduce(the hidden states that ``layer`` selects: [last], [state k] or every state 0..L), each
        (windows, window_frames, d_model)) put back in utterance order, frames beyond each row's length zeroed,
        frame_lengths). reduce acts on each frame alone."""
        self._check_inputs(wave, lengths)
        samples = normalize_waveform(wave.float(), lengths, self.normalize_wave)  # padding zeroed
        batch, size = samples.shape
        windows_per_row = torch.div(lengths + self.window_samples - 1, self.window_samples, rounding_mode="floor")
        most = int(windows_per_row.max())
        samples = nn.functional.pad(samples, (0, most * self.window_samples - size))
        kept = valid_mask(windows_per_row, most)  # (B, K): the windows that hold samples of the utterance
        windows = samples.view(batch, most, self.window_samples)[kept]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.freeze != "all"):
            output = self.ssl(self.log_mel(windows), output_hidden_states=self.layer != "last")
            states = [output.last_hidden_state] if self.layer == "last" else list(output.hidden_states)
        encoded = reduce(select_states(states, self.layer))
        frames = encoded.new_zeros(batch, most, self.window_frames, encoded.size(-1))
        frames[kept] = encoded
        frame_lengths = self.frame_lengths(lengths)
        frames = frames.view(batch, most * self.window_frames, -1)[:, :int(frame_lengths.max())]
        return frames * valid_mask(frame_lengths, frames.size(1)).unsqueeze(-1).to(frames.dtype), frame_lengths
