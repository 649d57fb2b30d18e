"""WavLM front-end and WaveModel, on tiny randomly initialised WavLM checkpoints saved to tmp dirs (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from support import assert_alone_equals_batched, make_wave, overfit_losses

pytest.importorskip("transformers")
from transformers import AutoModel, Wav2Vec2FeatureExtractor  # noqa: E402

from ser.config import ConfigError  # noqa: E402
from ser.frontends import FRONTENDS, resolve_frontend_conf  # noqa: E402
from ser.models import ModelOutput, build_model  # noqa: E402
from ser.models.ssl import SSL_MODEL_TYPES, SSLEncoder, WaveModel, build_tiny_ssl, normalize_waveform  # noqa: E402
from ser.models.subsampling import Conv2dSubsampling, LinearInput  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask:UserWarning")  # inside WavLM

HIDDEN = 32
NUM_LAYERS = 2
NUM_CLASSES = 4
SMALL_FLAM = {"d_model": 32, "num_heads": 4, "embed_dim": 16}
LENGTHS = [4000, 1234, 400, 2900]  # 400 samples = one frame


@pytest.fixture(scope="module", params=SSL_MODEL_TYPES)
def tiny_path(tmp_path_factory, request):
    """A tiny random checkpoint of each self-supervised architecture that the ssl front-end reads."""
    return build_tiny_ssl(str(tmp_path_factory.mktemp(f"tiny_{request.param}")), request.param)


def skip_if_padding_leaks(path):
    """data2vec-audio's positional embedding is a stack of convolutions: padding reaches the valid frames (see
    ser.models.ssl), so an utterance alone and its row in a padded batch differ there by design."""
    if "data2vec" in path:
        pytest.skip("data2vec-audio: padding reaches valid frames through its stacked positional convolutions")


@pytest.fixture(scope="module")
def quiet_path(tmp_path_factory):
    """No dropout, LayerDrop or time masking: training mode is deterministic."""
    return build_tiny_ssl(str(tmp_path_factory.mktemp("quiet_wavlm")), hidden_dropout=0.0,
                            attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0)


@pytest.fixture(scope="module")
def base_style_path(tmp_path_factory):
    """Group-norm convolutions and post-layer-norm transformer, as WavLM Base / Base+."""
    return build_tiny_ssl(str(tmp_path_factory.mktemp("base_style_wavlm")), feat_extract_norm="group",
                            do_stable_layer_norm=False)


def frontend(path, **conf):
    torch.manual_seed(0)
    return SSLEncoder(resolve_frontend_conf("ssl", {"path": path, **conf}))


def reference_model(path):
    return AutoModel.from_pretrained(path, local_files_only=True).eval()


def reference_inputs(wave, lengths, normalize=True):
    """Hugging Face's own feature extractor on the [-1, 1] samples: per-utterance normalisation, zero padding,
    attention mask."""
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         do_normalize=normalize, return_attention_mask=True)
    rows = [wave[row, :length].numpy() / 32768.0 for row, length in enumerate(lengths.tolist())]
    inputs = extractor(rows, sampling_rate=16000, padding=True, return_tensors="pt")
    return inputs.input_values, inputs.attention_mask


def conv_stack_frames(num_samples, config):
    frames = num_samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        frames = (frames - kernel) // stride + 1
    return frames


def test_frontend_defaults_and_resolution():
    assert FRONTENDS.defaults("fbank") == {"norm_vars": True}
    conf = resolve_frontend_conf("wavlm", {"layer": "7"})
    assert conf["layer"] == 7 and conf["freeze"] == "feature_encoder" and conf["normalize_wave"] is True
    assert resolve_frontend_conf("wavlm", None)["layer"] == "weighted"


def test_shapes_and_frame_lengths(tiny_path):
    model = frontend(tiny_path, layer="last").eval()
    wave, lengths = make_wave(LENGTHS)
    with torch.no_grad():
        frames, frame_lengths = model(wave, lengths)
    config = model.ssl.config
    assert model.output_dim == HIDDEN
    assert frames.shape == (4, conv_stack_frames(max(LENGTHS), config), HIDDEN)
    assert frame_lengths.tolist() == [conv_stack_frames(n, config) for n in LENGTHS]
    assert frame_lengths.tolist() == [(n - 400) // 320 + 1 for n in LENGTHS]  # WavLM's 25 ms / 20 ms frames
    with torch.no_grad():  # the convolutions themselves agree with the formula
        assert model.ssl.feature_extractor(wave[:1, :1234]).size(2) == conv_stack_frames(1234, config)
    for row, num_frames in enumerate(frame_lengths.tolist()):
        assert torch.all(frames[row, num_frames:] == 0)
        assert torch.all(frames[row, :num_frames].abs().sum(1) > 0)
    assert model.min_samples == 400


@pytest.mark.parametrize("normalize", [True, False])
def test_last_layer_equals_hugging_face_pipeline(tiny_path, normalize):
    model = frontend(tiny_path, layer="last", normalize_wave=normalize).eval()
    wave, lengths = make_wave(LENGTHS, seed=1)
    input_values, attention_mask = reference_inputs(wave, lengths, normalize)
    with torch.no_grad():
        frames, frame_lengths = model(wave, lengths)
        expected = reference_model(tiny_path)(input_values, attention_mask=attention_mask).last_hidden_state
    for row, num_frames in enumerate(frame_lengths.tolist()):
        torch.testing.assert_close(frames[row, :num_frames], expected[row, :num_frames], atol=1e-4, rtol=1e-4)


def test_normalize_waveform_equals_hugging_face_extractor():
    """Per-utterance normalisation equals Wav2Vec2FeatureExtractor's on the [-1, 1] samples, its variance floor
    (1e-7) included: a near-silent utterance (amplitude ~1 in int16, variance ~1e-9 in [-1, 1]) is scaled as Hugging
    Face scales it, not to unit variance."""
    wave, lengths = make_wave([50, 7, 33, 40], seed=2)
    wave[3] = wave[3] / wave[3].abs().max()  # near silence: |x| <= 1 of 32768
    expected, mask = reference_inputs(wave, lengths, normalize=True)
    normalized = normalize_waveform(wave, lengths, per_utterance=True)
    torch.testing.assert_close(normalized[:, :expected.shape[1]], expected * mask, rtol=1e-5, atol=1e-5)
    assert float(normalized[3, :40].std()) < 0.5  # the floor dominates
    scaled = normalize_waveform(wave, lengths, per_utterance=False)
    unnormalized, _ = reference_inputs(wave, lengths, normalize=False)
    torch.testing.assert_close(scaled[:, :expected.shape[1]], unnormalized * mask, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("layer", ["last", "weighted", 1])
def test_utterance_alone_equals_its_row_in_padded_batch(tiny_path, layer):
    skip_if_padding_leaks(tiny_path)
    assert_alone_equals_batched(frontend(tiny_path, layer=layer).eval(), layer, LENGTHS, seed=3, tol=1e-4)


def test_wave_model_utterance_alone_equals_its_row_in_padded_batch(tiny_path):
    skip_if_padding_leaks(tiny_path)
    torch.manual_seed(0)
    model = build_model("flam", SMALL_FLAM, None, NUM_CLASSES, "ssl", {"path": tiny_path}).eval()
    wave, lengths = make_wave(LENGTHS, seed=4)
    with torch.no_grad():
        batch = model(wave, lengths)
        for row, length in enumerate(LENGTHS):
            alone = model(wave[row:row + 1, :length], lengths[row:row + 1])
            for name in ("logits", "embedding", "contrastive_embedding"):
                torch.testing.assert_close(getattr(batch, name)[row], getattr(alone, name)[0], atol=1e-4,
                                           rtol=1e-4, msg=name)


@pytest.mark.parametrize("layer", range(NUM_LAYERS + 1))
def test_integer_layer_picks_that_hidden_state(tiny_path, layer):
    check_layer_is_hidden_state(tiny_path, layer)


@pytest.mark.parametrize("layer", range(NUM_LAYERS + 1))
def test_integer_layer_picks_that_hidden_state_of_a_base_style_wavlm(base_style_path, layer):
    check_layer_is_hidden_state(base_style_path, layer)


def check_layer_is_hidden_state(tiny_path, layer):
    model = frontend(tiny_path, layer=layer).eval()
    wave, lengths = make_wave(LENGTHS, seed=5)
    input_values, attention_mask = reference_inputs(wave, lengths)
    with torch.no_grad():
        frames, frame_lengths = model(wave, lengths)
        states = reference_model(tiny_path)(input_values, attention_mask=attention_mask,
                                            output_hidden_states=True).hidden_states
    assert len(states) == NUM_LAYERS + 1
    for row, num_frames in enumerate(frame_lengths.tolist()):
        torch.testing.assert_close(frames[row, :num_frames], states[layer][row, :num_frames], atol=1e-4, rtol=1e-4)


def test_weighted_layers_are_softmax_weighted_sum_of_hidden_states(tiny_path):
    model = frontend(tiny_path, layer="weighted").eval()
    probs = model.layer_weight_probs()
    torch.testing.assert_close(probs, torch.full((NUM_LAYERS + 1,), 1 / (NUM_LAYERS + 1)))
    with torch.no_grad():
        model.layer_weights.copy_(torch.tensor([1.5, -0.5, 0.2]))
    probs = model.layer_weight_probs().detach()
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
    wave, lengths = make_wave(LENGTHS, seed=6)
    input_values, attention_mask = reference_inputs(wave, lengths)
    with torch.no_grad():
        frames, frame_lengths = model(wave, lengths)
        states = reference_model(tiny_path)(input_values, attention_mask=attention_mask,
                                            output_hidden_states=True).hidden_states
    expected = sum(probs[k] * states[k] for k in range(NUM_LAYERS + 1))
    for row, num_frames in enumerate(frame_lengths.tolist()):
        torch.testing.assert_close(frames[row, :num_frames], expected[row, :num_frames], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("freeze", ["all", "feature_encoder", "none"])
def test_layer_weights_receive_gradients(tiny_path, freeze):
    model = frontend(tiny_path, layer="weighted", freeze=freeze).train()
    frames, _ = model(*make_wave([2000, 1500], seed=7))
    (frames ** 2).sum().backward()
    assert model.layer_weights.grad is not None
    assert torch.all(torch.isfinite(model.layer_weights.grad)) and model.layer_weights.grad.abs().sum() > 0


def test_layer_skipped_by_layerdrop_passes_its_input_on(tmp_path, quiet_path):
    # LayerDrop 1 skips every layer after the first in training: hidden state 2 is then hidden state 1.
    dropping = frontend(build_tiny_ssl(str(tmp_path), hidden_dropout=0.0, attention_dropout=0.0,
                                         activation_dropout=0.0, layerdrop=1.0, mask_time_prob=0.0),
                        layer="weighted", freeze="none").train()
    with torch.no_grad():
        dropping.layer_weights.copy_(torch.tensor([0.4, -0.3, 1.1]))
    probs = dropping.layer_weight_probs().detach()
    wave, lengths = make_wave(LENGTHS, seed=8)
    input_values, attention_mask = reference_inputs(wave, lengths)
    with torch.no_grad():
        frames, frame_lengths = dropping(wave, lengths)
        states = reference_model(quiet_path)(input_values, attention_mask=attention_mask,
                                             output_hidden_states=True).hidden_states
    expected = probs[0] * states[0] + (probs[1] + probs[2]) * states[1]
    for row, num_frames in enumerate(frame_lengths.tolist()):
        torch.testing.assert_close(frames[row, :num_frames], expected[row, :num_frames], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("freeze", ["all", "feature_encoder", "none"])
def test_freeze_modes(tiny_path, freeze):
    torch.manual_seed(0)
    model = build_model("flam", SMALL_FLAM, None, NUM_CLASSES, "ssl",
                        {"path": tiny_path, "freeze": freeze, "layer": "last"})
    wavlm = model.frontend.ssl
    trainable = {name for name, param in wavlm.named_parameters() if param.requires_grad}
    conv_names = {"feature_extractor." + name for name, _ in wavlm.feature_extractor.named_parameters()}
    all_names = {name for name, _ in wavlm.named_parameters()}
    expected = {"all": set(), "feature_encoder": all_names - conv_names, "none": all_names}[freeze]
    assert trainable == expected
    assert all(param.requires_grad for param in model.encoder.parameters())

    model.train()
    assert wavlm.training == (freeze != "all") and model.frontend.training and model.encoder.training
    before = {name: param.detach().clone() for name, param in wavlm.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    out = model(*make_wave([3000, 2200, 1000], seed=9))
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 2])).backward()
    optimizer.step()
    changed = {name for name, param in wavlm.named_parameters() if not torch.equal(param, before[name])}
    assert changed <= trainable
    assert (len(changed) > 0) == (freeze != "all")
    if freeze == "none":
        assert changed & conv_names


@pytest.mark.parametrize("layer", ["last", "weighted"])
def test_normalize_wave_makes_output_invariant_to_input_scale_and_offset(tiny_path, layer):
    wave, lengths = make_wave(LENGTHS, seed=10)
    normalized = frontend(tiny_path, layer=layer).eval()
    raw = frontend(tiny_path, layer=layer, normalize_wave=False).eval()
    with torch.no_grad():
        reference, _ = normalized(wave, lengths)
        # Scales that keep the variance far above the floor (1e-7 on [-1, 1]); near silence the floor rules.
        for scale, offset in ((0.5, 0.0), (7.0, 0.0), (0.5, 900.0)):
            torch.testing.assert_close(normalized(wave * scale + offset, lengths)[0], reference,
                                       atol=1e-4, rtol=1e-4)
        # Without normalisation a DC offset reaches WavLM (the tiny model's bias-free convolution followed
        # by LayerNorm makes it insensitive to pure scaling, so the offset is the discriminating case).
        assert not torch.allclose(raw(wave + 900.0, lengths)[0], raw(wave, lengths)[0], atol=1e-2)


def test_training_on_a_batch_shorter_than_a_time_mask_span(tiny_path):
    model = frontend(tiny_path, freeze="none").train()
    assert model.ssl.config.mask_time_prob > 0 and model.ssl.config.mask_time_length == 10
    for num_samples in (400, 3000, 16000):  # 1, 9 and 49 frames
        frames, frame_lengths = model(*make_wave([num_samples, 400], seed=13))
        assert frames.shape == (2, frame_lengths[0].item(), HIDDEN) and torch.all(torch.isfinite(frames))


def test_missing_path_error_tells_how_to_fix():
    with pytest.raises(ValueError, match="frontend_conf.path is empty.*frontend_conf.download"):
        build_model("flam", {}, None, NUM_CLASSES, "wavlm", {})


def test_path_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="frontend_conf.path.*config.json"):
        SSLEncoder(resolve_frontend_conf("wavlm", {"path": str(tmp_path)}))


@pytest.mark.parametrize("conf,key", [
    ({"freeze": "encoder"}, "freeze"),
    ({"layer": "middle"}, "layer"),
    ({"layer": -1}, "layer"),
    ({"layer": True}, "layer"),
    ({"normalize_wave": "yes"}, "normalize_wave"),
    ({"download": 1}, "download"),
    ({"path": None}, "path"),
    ({"model_id": ""}, "model_id"),
    ({"layers": 3}, "layers"),
    ({"norm_vars": True}, "norm_vars"),
])
def test_bad_frontend_conf_raises_value_error_naming_key(conf, key):
    with pytest.raises(ValueError, match=f"frontend_conf.{key}"):
        resolve_frontend_conf("wavlm", conf)


def test_wavlm_frontend_reads_wavlm_checkpoints_only(tiny_path):
    """frontend wavlm refuses another architecture, naming the path and its type; frontend ssl reads it."""
    model_type = AutoModel.from_pretrained(tiny_path, local_files_only=True).config.model_type
    if model_type == "wavlm":
        assert isinstance(SSLEncoder(resolve_frontend_conf("wavlm", {"path": tiny_path}), ("wavlm",)), SSLEncoder)
        return
    with pytest.raises(ValueError, match=f"holds a '{model_type}' model; this front-end reads wavlm"):
        build_model("flam", SMALL_FLAM, None, NUM_CLASSES, "wavlm", {"path": tiny_path})
    assert isinstance(build_model("flam", SMALL_FLAM, None, NUM_CLASSES, "ssl", {"path": tiny_path}), WaveModel)


def test_layer_index_beyond_checkpoint_is_an_error(tiny_path):
    with pytest.raises(ValueError, match="frontend_conf.layer.*0..2"):
        frontend(tiny_path, layer=NUM_LAYERS + 1)


def test_bad_build_arguments(tiny_path):
    with pytest.raises(ValueError, match="input_dim must be None"):
        build_model("flam", {}, 80, NUM_CLASSES, "ssl", {"path": tiny_path})
    with pytest.raises(ConfigError, match="frontend: unknown value .mfcc."):
        build_model("flam", {}, 80, NUM_CLASSES, "mfcc")
    with pytest.raises(ValueError, match="encoder_conf.input_layer"):
        build_model("flam", {"input_layer": "conv1d"}, 80, NUM_CLASSES)


@pytest.mark.parametrize("lengths,num_samples,match", [
    ([399, 1000], 1000, "399 samples.*at least 400"),
    ([1001, 1000], 1000, "exceeds"),
    ([1000], 1000, "lengths"),
])
def test_bad_wave_inputs(tiny_path, lengths, num_samples, match):
    model = frontend(tiny_path)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(2, num_samples), torch.tensor(lengths))


def test_input_layer_auto_and_explicit(tiny_path):
    fbank_model = build_model("flam", SMALL_FLAM, 20, NUM_CLASSES)
    assert isinstance(fbank_model.subsampling, Conv2dSubsampling)
    wave_model = build_model("baseline", {"d_model": 16, "embed_dim": 8}, None, NUM_CLASSES, "ssl",
                             {"path": tiny_path})
    assert isinstance(wave_model, WaveModel) and isinstance(wave_model.encoder.subsampling, LinearInput)
    assert wave_model.encoder.subsampling.projection.in_features == HIDDEN

    wave, lengths = make_wave(LENGTHS, seed=11)
    out = wave_model.eval()(wave, lengths)
    assert isinstance(out, ModelOutput) and out.logits.shape == (4, NUM_CLASSES)
    assert out.frame_lengths.tolist() == [(n - 400) // 320 + 1 for n in LENGTHS]
    conv_model = build_model("flam", {**SMALL_FLAM, "input_layer": "conv2d"}, None, NUM_CLASSES, "ssl",
                             {"path": tiny_path}).eval()
    assert conv_model(wave, lengths).frame_lengths.tolist() == [-(-((n - 400) // 320 + 1) // 4) for n in LENGTHS]

    linear_fbank = build_model("flam", {**SMALL_FLAM, "input_layer": "linear"}, 20, NUM_CLASSES).eval()
    assert linear_fbank(torch.randn(2, 30, 20), torch.tensor([30, 7])).frame_lengths.tolist() == [30, 7]


def test_linear_input_equals_direct_computation():
    torch.manual_seed(0)
    layer = LinearInput(6, 5, dropout=0.5).eval()
    feats, lengths = torch.randn(3, 9, 6), torch.tensor([9, 4, 1])
    frames, frame_lengths = layer(feats, lengths)
    assert frame_lengths.tolist() == [9, 4, 1]
    weight, bias = layer.projection.weight.detach().numpy(), layer.projection.bias.detach().numpy()
    for row, length in enumerate(lengths.tolist()):
        for t in range(9):
            expected = weight @ feats[row, t].numpy() + bias if t < length else np.zeros(5)
            np.testing.assert_allclose(frames[row, t].detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_tiny_wave_model_overfits_small_random_batch(quiet_path):
    torch.manual_seed(0)
    model = build_model("flam", {**SMALL_FLAM, "dropout": 0.0}, None, NUM_CLASSES, "wavlm",
                        {"path": quiet_path}).train()
    wave, lengths = make_wave([6000, 5200, 4100, 3000, 5800, 4500, 3300, 6000], seed=12)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    losses = overfit_losses(model, wave, lengths, labels, steps=40)
    assert losses[-1] < 0.1 * losses[0]
