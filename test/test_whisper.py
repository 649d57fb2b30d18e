"""Whisper's encoder as a front-end (ser.models.whisper), on a tiny random Whisper saved to a tmp dir (no download),
checked against Hugging Face's WhisperFeatureExtractor + WhisperModel encoder run on each 30 s window by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from support import assert_alone_equals_batched, make_wave

pytest.importorskip("transformers")
from transformers import WhisperFeatureExtractor, WhisperModel  # noqa: E402

from ser.frontends import resolve_frontend_conf  # noqa: E402
from ser.models import build_model  # noqa: E402
from ser.models.ssl import WaveModel, build_tiny_ssl, make_ssl_encoder  # noqa: E402
from ser.models.whisper import WhisperSSLEncoder  # noqa: E402

D_MODEL = 16
NUM_LAYERS = 2
SMALL_FLAM = {"d_model": 16, "num_heads": 2, "embed_dim": 8}
WINDOW = 480000  # 30 s at 16 kHz
LENGTHS = [8000, 3201, 16000, 700]


@pytest.fixture(scope="module")
def whisper_path(tmp_path_factory):
    return build_tiny_ssl(str(tmp_path_factory.mktemp("tiny_whisper")), "whisper")


@pytest.fixture(scope="module")
def reference(whisper_path):
    """Hugging Face's own pipeline: (encoder in eval mode, its feature extractor)."""
    return (WhisperModel.from_pretrained(whisper_path, local_files_only=True).encoder.eval(),
            WhisperFeatureExtractor.from_pretrained(whisper_path, local_files_only=True))


def encoder(path, frontend="whisper", **conf):
    torch.manual_seed(0)
    return make_ssl_encoder(resolve_frontend_conf(frontend, {"path": path, **conf}), ("whisper",))


def reference_states(reference, samples, normalize=False):
    """Hidden states of each 30 s window of one utterance (float samples in [-1, 1]) through the extractor and the
    encoder, concatenated over the windows and cut to ceil(len / 320) frames."""
    model, extractor = reference
    windows = [samples[start:start + WINDOW] for start in range(0, len(samples), WINDOW)]
    feats = extractor(windows, sampling_rate=16000, return_tensors="pt", do_normalize=normalize).input_features
    with torch.no_grad():
        states = model(feats, output_hidden_states=True).hidden_states
    return [state.reshape(-1, D_MODEL)[:-(-len(samples) // 320)] for state in states]


def test_frame_rule_and_hugging_face_pipeline(whisper_path, reference):
    model = encoder(whisper_path, layer="last").eval()
    assert isinstance(model, WhisperSSLEncoder) and model.output_dim == D_MODEL
    wave, lengths = make_wave(LENGTHS)
    with torch.no_grad():
        frames, frame_lengths = model(wave, lengths)
    assert frame_lengths.tolist() == [25, 11, 50, 3]  # ceil(samples / 320)
    assert frames.shape == (4, 50, D_MODEL)
    for row, length in enumerate(LENGTHS):
        expected = reference_states(reference, wave[row, :length].numpy() / 32768)[-1]
        torch.testing.assert_close(frames[row, :frame_lengths[row]], expected, atol=1e-4, rtol=1e-4)
        assert torch.all(frames[row, frame_lengths[row]:] == 0)


def test_log_mel_equals_whisper_feature_extractor(whisper_path, reference):
    model = encoder(whisper_path)
    x = make_wave([WINDOW], seed=1, scale=0.1)[0]
    x[0, 100000:] = 0  # a padded tail, which the dynamic-range floor sees
    expected = reference[1](x.numpy(), sampling_rate=16000, return_tensors="np").input_features
    np.testing.assert_allclose(model.log_mel(x).numpy(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("layer", ["last", "weighted", 1])
def test_utterance_alone_equals_its_row_in_padded_batch(whisper_path, layer):
    assert_alone_equals_batched(encoder(whisper_path, layer=layer).eval(), layer, LENGTHS, seed=2, tol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_utterance_over_30_s_is_encoded_window_by_window(whisper_path, reference, normalize):
    """31 s: a full window (1500 frames) and 1 s of a second one (50 frames), each padded and encoded on its own;
    the batch's other row is shorter than one window."""
    model = encoder(whisper_path, layer="last", normalize_wave=normalize).eval()
    wave, lengths = make_wave([31 * 16000, 5000], seed=3)
    with torch.no_grad():
        frames, frame_lengths = model(wave, lengths)
    assert frame_lengths.tolist() == [1550, 16] and frames.shape == (2, 1550, D_MODEL)
    for row, length in enumerate(lengths.tolist()):
        x = wave[row, :length].numpy().astype(np.float64)
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7) if normalize else x / 32768  # over the whole utterance
        expected = reference_states(reference, x.astype(np.float32))[-1]
        torch.testing.assert_close(frames[row, :frame_lengths[row]], expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(frames[0, 1500:1510], frames[0, :10], atol=1e-3)  # the 2nd window starts over


@pytest.mark.parametrize("layer", range(NUM_LAYERS + 1))
def test_integer_layer_picks_that_hidden_state(whisper_path, reference, layer):
    model = encoder(whisper_path, layer=layer).eval()
    wave, lengths = make_wave(LENGTHS[:2], seed=4)
    with torch.no_grad():
        frames, frame_lengths = model(wave, lengths)
    for row, length in enumerate(lengths.tolist()):
        expected = reference_states(reference, wave[row, :length].numpy() / 32768)[layer]
        torch.testing.assert_close(frames[row, :frame_lengths[row]], expected, atol=1e-4, rtol=1e-4)
    if layer == NUM_LAYERS:  # the last state is after the final LayerNorm: the same as "last"
        with torch.no_grad():
            torch.testing.assert_close(encoder(whisper_path, layer="last").eval()(wave, lengths)[0], frames)


def test_weighted_layers_are_softmax_weighted_sum_of_hidden_states(whisper_path, reference):
    model = encoder(whisper_path, layer="weighted").eval()
    torch.testing.assert_close(model.layer_weight_probs(), torch.full((NUM_LAYERS + 1,), 1 / (NUM_LAYERS + 1)))
    with torch.no_grad():
        model.layer_weights.copy_(torch.tensor([1.5, -0.5, 0.2]))
    probs = model.layer_weight_probs().detach()
    wave, lengths = make_wave(LENGTHS[:2], seed=5)
    with torch.no_grad():
        frames, frame_lengths = model(wave, lengths)
    for row, length in enumerate(lengths.tolist()):
        states = reference_states(reference, wave[row, :length].numpy() / 32768)
        expected = sum(probs[k] * states[k] for k in range(NUM_LAYERS + 1))
        torch.testing.assert_close(frames[row, :frame_lengths[row]], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("freeze", ["all", "feature_encoder", "none"])
def test_freeze_modes(whisper_path, freeze):
    torch.manual_seed(0)
    model = build_model("flam", SMALL_FLAM, None, 3, "whisper", {"path": whisper_path, "freeze": freeze,
                                                                 "layer": "weighted"})
    assert isinstance(model, WaveModel)
    whisper = model.frontend.ssl
    all_names = {name for name, _ in whisper.named_parameters()}
    conv_names = {name for name in all_names if name.startswith(("conv1.", "conv2."))}
    positions = {"embed_positions.weight"}  # frozen by Hugging Face's model itself
    expected = {"all": set(), "feature_encoder": all_names - conv_names - positions,
                "none": all_names - positions}[freeze]
    assert {name for name, param in whisper.named_parameters() if param.requires_grad} == expected
    model.train()
    assert whisper.training == (freeze != "all")
    out = model(*make_wave([6000, 4000, 9000], seed=6))
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2])).backward()
    with_grad = {name for name, param in whisper.named_parameters()
                 if param.grad is not None and param.grad.abs().sum() > 0}
    assert with_grad == expected
    assert model.frontend.layer_weights.grad.abs().sum() > 0
    assert all(param.grad is not None for param in model.encoder.parameters() if param.requires_grad)


def test_wrong_checkpoint_types_are_named(whisper_path, tmp_path):
    with pytest.raises(ValueError, match="holds a 'whisper' model; this front-end reads wavlm"):
        build_model("flam", SMALL_FLAM, None, 3, "wavlm", {"path": whisper_path})
    wavlm = build_tiny_ssl(str(tmp_path / "wavlm"), "wavlm")
    with pytest.raises(ValueError, match="holds a 'wavlm' model; this front-end reads whisper"):
        build_model("flam", SMALL_FLAM, None, 3, "whisper", {"path": wavlm})
    assert isinstance(encoder(whisper_path, frontend="ssl"), WhisperSSLEncoder)  # ssl reads every type
    assert resolve_frontend_conf("ssl", {})["normalize_wave"] and not resolve_frontend_conf("whisper", {})[
        "normalize_wave"]
    with pytest.raises(ValueError, match="frontend_conf.layer.*0..2"):
        encoder(whisper_path, layer=3)


def test_checkpoint_without_preprocessor_config_is_an_error(whisper_path, tmp_path):
    import shutil

    copy = tmp_path / "no_preprocessor"
    shutil.copytree(whisper_path, copy)
    (copy / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match="without preprocessor_config.json"):
        encoder(str(copy))
    shutil.copy(f"{whisper_path}/preprocessor_config.json", copy)
    settings = json.loads((copy / "preprocessor_config.json").read_text())
    (copy / "preprocessor_config.json").write_text(json.dumps({**settings, "chunk_length": 20,
                                                               "n_samples": 320000, "nb_max_frames": 2000}))
    with pytest.raises(ValueError, match="makes 2000 mel frames of a window; the encoder reads 3000"):
        encoder(str(copy))
