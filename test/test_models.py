from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ser.models import ENCODERS, ModelOutput, build_model
from ser.models.flam import AttentionPooling, context_broadcast, masked_max, masked_mean
from ser.models.subsampling import Conv2dSubsampling, receptive_field_center, subsampled_length, valid_mask
from ser.plot import attention_frame_edges, plot_attention, plot_confusion

from support import overfit_losses

INPUT_DIM = 20
NUM_CLASSES = 4
SMALL_FLAM = {"d_model": 32, "num_heads": 4, "conv_channels": 8, "embed_dim": 16}
SMALL_BASELINE = {"d_model": 32, "conv_channels": 8, "embed_dim": 16}

CONFIGS = [
    ("baseline", SMALL_BASELINE),
    ("flam", {**SMALL_FLAM, "pooling": "flam"}),
    ("flam", {**SMALL_FLAM, "pooling": "mean"}),
    ("flam", {**SMALL_FLAM, "pooling": "max"}),
    ("flam", {**SMALL_FLAM, "pooling": "flam", "context_broadcasting": False}),
    ("flam", {**SMALL_FLAM, "pooling": "flam", "utterance_mean_norm": True}),
]
CONFIG_IDS = ["baseline", "flam", "mean", "max", "flam-no-cb", "flam-utt-mean"]


def make_batch(lengths, seed=0, pad_value=None):
    """Random features padded to the longest length; padding is random garbage unless pad_value."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), max(lengths), INPUT_DIM, generator=gen)
    if pad_value is not None:
        for row, length in enumerate(lengths):
            feats[row, length:] = pad_value
    return feats, torch.tensor(lengths)


def build(encoder, conf, seed=0):
    torch.manual_seed(seed)
    return build_model(encoder, conf, INPUT_DIM, NUM_CLASSES)


@pytest.mark.parametrize("encoder,conf", CONFIGS, ids=CONFIG_IDS)
def test_output_shapes(encoder, conf):
    model = build(encoder, conf)
    lengths = [41, 8, 1, 17]
    out = model(*make_batch(lengths))
    assert isinstance(out, ModelOutput)
    embed_dim = conf["embed_dim"]
    assert out.logits.shape == (4, NUM_CLASSES)
    assert out.embedding.shape == (4, embed_dim)
    assert out.contrastive_embedding.shape == (4, embed_dim)
    assert out.frame_lengths.tolist() == [math.ceil(n / 4) for n in lengths]
    if conf.get("pooling") == "flam":
        assert out.attention.shape == (4, math.ceil(41 / 4))
    else:
        assert out.attention is None


def test_default_configs_build_and_run():
    feats, lengths = torch.randn(2, 30, 80), torch.tensor([30, 9])
    for encoder in ENCODERS.names():
        out = build_model(encoder, {}, 80, 7)(feats, lengths)
        assert out.logits.shape == (2, 7)
        assert out.embedding.shape == (2, 64)


@pytest.mark.parametrize("encoder,conf", CONFIGS, ids=CONFIG_IDS)
def test_utterance_alone_equals_its_row_in_padded_batch(encoder, conf):
    model = build(encoder, conf).eval()
    lengths = [53, 8, 23, 1, 37, 12]
    feats, lengths_t = make_batch(lengths, pad_value=None)  # garbage padding must not leak
    with torch.no_grad():
        batch_out = model(feats, lengths_t)
        for row, length in enumerate(lengths):
            alone = model(feats[row:row + 1, :length], lengths_t[row:row + 1])
            num_sub = math.ceil(length / 4)
            assert batch_out.frame_lengths[row].item() == alone.frame_lengths.item() == num_sub
            for name in ("logits", "embedding", "contrastive_embedding"):
                torch.testing.assert_close(getattr(batch_out, name)[row], getattr(alone, name)[0],
                                           atol=1e-5, rtol=1e-5, msg=f"{name} row {row}")
            if batch_out.attention is not None:
                torch.testing.assert_close(batch_out.attention[row, :num_sub], alone.attention[0],
                                           atol=1e-5, rtol=1e-5)


def test_utterance_mean_norm_removes_each_utterances_own_offset():
    model = build("flam", {**SMALL_FLAM, "utterance_mean_norm": True}).eval()
    lengths = [30, 11]
    feats, lengths_t = make_batch(lengths, pad_value=0.0)
    offset = torch.randn(2, 1, INPUT_DIM) * 5.0  # a channel/speaker tilt per utterance
    shifted = feats.clone()
    for row, length in enumerate(lengths):
        shifted[row, :length] += offset[row, 0]
    with torch.no_grad():
        torch.testing.assert_close(model(shifted, lengths_t).logits, model(feats, lengths_t).logits)
        plain = build("flam", SMALL_FLAM).eval()
        assert not torch.allclose(plain(shifted, lengths_t).logits, plain(feats, lengths_t).logits)


def test_subsampling_output_alone_equals_padded_row_frame_by_frame():
    torch.manual_seed(0)
    sub = Conv2dSubsampling(INPUT_DIM, 16, 4).eval()
    lengths = [13, 5, 30, 2]
    feats, lengths_t = make_batch(lengths)
    frames, frame_lengths = sub(feats, lengths_t)
    for row, length in enumerate(lengths):
        alone, _ = sub(feats[row:row + 1, :length], lengths_t[row:row + 1])
        num_sub = frame_lengths[row].item()
        torch.testing.assert_close(frames[row, :num_sub], alone[0], atol=1e-6, rtol=1e-6)
        assert torch.all(frames[row, num_sub:] == 0)


def test_flam_attention_sums_to_one_on_valid_frames_and_is_zero_on_padding():
    model = build("flam", SMALL_FLAM).eval()
    lengths = [40, 9, 1, 25]
    out = model(*make_batch(lengths))
    mask = valid_mask(out.frame_lengths, out.attention.size(1))
    torch.testing.assert_close(out.attention.sum(1), torch.ones(4))
    assert torch.all(out.attention[~mask] == 0)
    assert torch.all(out.attention[mask] > 0)


@pytest.mark.parametrize("num_frames", list(range(1, 70)) + [99, 100, 101, 599, 600, 601, 1234])
def test_subsampled_length_matches_conv_output(num_frames):
    sub = Conv2dSubsampling(INPUT_DIM, 8, 2)
    x = torch.zeros(1, 1, num_frames, INPUT_DIM)
    for conv in sub.convs:
        x = conv(x)
    expected = x.size(2)
    assert expected == math.ceil(num_frames / 4)
    assert subsampled_length(num_frames) == expected
    assert subsampled_length(torch.tensor([num_frames])).item() == expected
    frames, frame_lengths = sub(torch.randn(1, num_frames, INPUT_DIM), torch.tensor([num_frames]))
    assert frames.size(1) == frame_lengths.item() == expected


def test_receptive_field_center_matches_input_gradient_support():
    num_frames = 37
    sub = Conv2dSubsampling(INPUT_DIM, 8, 4)
    with torch.no_grad():  # positive weights and inputs keep every ReLU active
        for conv in sub.convs:
            conv.weight.abs_()
            conv.bias.abs_()
    for out_frame in range(subsampled_length(num_frames)):
        feats = torch.rand(1, num_frames, INPUT_DIM, requires_grad=True)
        frames, _ = sub(feats, torch.tensor([num_frames]))
        frames[0, out_frame].sum().backward()
        support = torch.nonzero(feats.grad[0].abs().sum(1)).flatten().tolist()
        center = receptive_field_center(out_frame)
        assert center == 4 * out_frame
        assert support == list(range(max(0, center - 3), min(num_frames, center + 4)))


def _random_frames_and_mask(seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 1, 4, 10])
    frames = torch.randn(4, 10, 6, generator=gen)
    return frames, valid_mask(lengths, 10), lengths.tolist()


def test_mean_and_max_pooling_equal_direct_computation_over_valid_frames():
    frames, mask, lengths = _random_frames_and_mask()
    mean, maximum = masked_mean(frames, mask), masked_max(frames, mask)
    array = frames.numpy()
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(mean[row].numpy(), array[row, :length].mean(0), rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_allclose(maximum[row].numpy(), array[row, :length].max(0), rtol=0, atol=0)


def test_attention_pooling_equals_direct_computation():
    frames, mask, lengths = _random_frames_and_mask()
    pooling = AttentionPooling(6)
    pooled, weights = pooling(frames, mask)
    w = pooling.w.detach().numpy().astype(np.float64)
    array = frames.numpy().astype(np.float64)
    for row, length in enumerate(lengths):
        scores = np.array([w @ np.tanh(array[row, t]) for t in range(length)])
        expected_weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        expected_pooled = sum(expected_weights[t] * array[row, t] for t in range(length))
        np.testing.assert_allclose(weights[row, :length].detach().numpy(), expected_weights,
                                   rtol=1e-5, atol=1e-6)
        assert torch.all(weights[row, length:] == 0)
        np.testing.assert_allclose(pooled[row].detach().numpy(), expected_pooled, rtol=1e-5,
                                   atol=1e-6)


def test_context_broadcast_equals_direct_computation():
    frames, mask, lengths = _random_frames_and_mask()
    broadcast = context_broadcast(frames, mask).numpy()
    array = frames.numpy()
    for row, length in enumerate(lengths):
        valid_mean = array[row, :length].mean(0)
        np.testing.assert_allclose(broadcast[row, :length], array[row, :length] + valid_mean,
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(broadcast[row, length:], array[row, length:])


def test_context_broadcasting_switch():
    feats, lengths = make_batch([30, 11, 19])
    off = build("flam", {**SMALL_FLAM, "context_broadcasting": False}).eval()
    out_off = off(feats, lengths)
    assert torch.equal(out_off.contrastive_embedding, out_off.embedding)
    on = build("flam", SMALL_FLAM).eval()
    out_on = on(feats, lengths)
    assert not torch.allclose(out_on.contrastive_embedding, out_on.embedding, atol=1e-3)


def test_context_broadcasting_path_pools_broadcast_frames_with_same_pooling_and_embedding():
    model = build("flam", SMALL_FLAM).eval()
    pooled_inputs = []
    model.pooling.register_forward_hook(lambda mod, args, result: pooled_inputs.append(args[0]))
    feats, lengths = make_batch([30, 11, 19])
    out = model(feats, lengths)
    hidden, broadcast = pooled_inputs
    mask = valid_mask(out.frame_lengths, hidden.size(1))
    for row, num_sub in enumerate(out.frame_lengths.tolist()):
        expected = hidden[row, :num_sub] + hidden[row, :num_sub].mean(0)
        torch.testing.assert_close(broadcast[row, :num_sub], expected)
    expected_embedding = model.head.embed(model.pooling(broadcast, mask)[0])
    torch.testing.assert_close(out.contrastive_embedding, expected_embedding)


def test_mean_pooling_contrastive_embedding_is_embedding_of_doubled_mean():
    # mean(H + mean(H)) = 2 mean(H), so contrastive - b = 2 (embedding - b) for the shared Linear.
    model = build("flam", {**SMALL_FLAM, "pooling": "mean"}).eval()
    out = model(*make_batch([30, 11, 19]))
    bias = model.head.embed.bias
    torch.testing.assert_close(out.contrastive_embedding - bias, 2 * (out.embedding - bias),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoder,conf", CONFIGS, ids=CONFIG_IDS)
def test_gradients_finite_with_one_frame_utterances_in_training_mode(encoder, conf):
    model = build(encoder, conf).train()
    out = model(*make_batch([1, 2, 45, 5]))
    (out.logits.sum() + out.embedding.sum() + out.contrastive_embedding.sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("encoder,conf", [CONFIGS[0], CONFIGS[1]], ids=CONFIG_IDS[:2])
def test_tiny_model_overfits_small_random_batch(encoder, conf):
    model = build(encoder, {**conf, "dropout": 0.0})
    feats, lengths = make_batch([40, 33, 25, 12, 38, 20, 29, 16], seed=3)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    losses = overfit_losses(model, feats, lengths, labels, steps=50)
    assert losses[-1] < 0.1 * losses[0]


@pytest.mark.parametrize("encoder,conf,key", [
    ("flam", {"d_model": 250}, "d_model"),
    ("flam", {"num_heads": 0}, "num_heads"),
    ("flam", {"pooling": "attention"}, "pooling"),
    ("flam", {"dropout": 1.0}, "dropout"),
    ("flam", {"context_broadcasting": "yes"}, "context_broadcasting"),
    ("flam", {"conv_channels": True}, "conv_channels"),
    ("flam", {"embed_dim": 64.0}, "embed_dim"),
    ("flam", {"heads": 4}, "heads"),
    ("baseline", {"pooling": "mean"}, "pooling"),
    ("conformer", {}, "conformer"),
    ("flam", [("d_model", 128)], "encoder_conf"),
])
def test_bad_config_raises_value_error_naming_key(encoder, conf, key):
    with pytest.raises(ValueError, match=key):
        build_model(encoder, conf, INPUT_DIM, NUM_CLASSES)


@pytest.mark.parametrize("feats_shape,lengths,match", [
    ((2, 10, INPUT_DIM), [10, 0], "at least 1"),
    ((2, 10, INPUT_DIM), [11, 3], "exceeds"),
    ((2, 10, INPUT_DIM + 1), [10, 3], "shape"),
    ((2, 10, INPUT_DIM), [10], "lengths"),
])
def test_bad_inputs_raise_value_error(feats_shape, lengths, match):
    model = build("flam", SMALL_FLAM)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*feats_shape), torch.tensor(lengths))


@pytest.mark.parametrize("num_frames", [1, 3, 4, 5, 8, 9, 37, 600])
def test_attention_frame_edges_tile_the_utterance(num_frames):
    edges = attention_frame_edges(num_frames)
    assert len(edges) == math.ceil(num_frames / 4) + 1
    assert edges[0] == 0 and edges[-1] == num_frames
    assert np.all(np.diff(edges) > 0)
    for t in range(len(edges) - 1):  # each span holds the centre of its receptive field
        assert edges[t] <= 4 * t + 0.5 <= edges[t + 1]
    np.testing.assert_array_equal(np.diff(edges)[1:-1], 4)


def _assert_png(path, min_bytes):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > min_bytes


def test_plot_attention_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    fbank = rng.normal(size=(203, 80))
    attention = rng.random(subsampled_length(203))
    out = tmp_path / "attention.png"
    plot_attention(fbank, attention / attention.sum(), 0.01, str(out), title="utt1 (ang)")
    _assert_png(out, 20_000)
    with pytest.raises(ValueError, match="attention"):
        plot_attention(fbank, attention[:-1], 0.01, str(tmp_path / "bad.png"))


def test_plot_confusion_writes_png(tmp_path):
    matrix = np.array([[50, 3, 2, 1], [4, 40, 6, 0], [1, 2, 60, 3], [0, 5, 1, 30]])
    out = tmp_path / "confusion.png"
    plot_confusion(matrix, ["ang", "hap", "neu", "sad"], str(out), title="fold 1")
    _assert_png(out, 10_000)
    with pytest.raises(ValueError, match="shape"):
        plot_confusion(matrix, ["ang", "hap", "neu"], str(tmp_path / "bad.png"))


def test_branch_dropout_drops_one_whole_branch_per_utterance_in_training_only():
    torch.manual_seed(0)
    conf = {**SMALL_FLAM, "dropout": 0.0, "fusion_dropout": 0.0, "branch_dropout": 0.9}
    model = build_model("flam", conf, INPUT_DIM, NUM_CLASSES, utterance_dim=12)
    feats, lengths = make_batch([20, 15, 9, 30, 12, 18, 25, 7])
    utterance = torch.randn(8, 12)
    head = model.head
    with torch.no_grad():
        model.eval()
        evaluated = model(feats, lengths, utterance)
        model.train()
        trained = model(feats, lengths, utterance)
        # The embedding is e = W_u u + W_f f + b: split it into the frame part and the functionals part.
        both = evaluated.embedding
        functionals_part = torch.nn.functional.linear(head.utterance(utterance),
                                                      head.embed.weight[:, SMALL_FLAM["d_model"]:])
        frames_part = both - functionals_part - head.embed.bias
        candidates = {"both": both, "frames x2": 2 * frames_part + head.embed.bias,
                      "functionals x2": 2 * functionals_part + head.embed.bias}
        kinds = []
        for row in range(8):
            match = [k for k, c in candidates.items() if torch.allclose(trained.embedding[row], c[row], atol=1e-5)]
            assert len(match) == 1, row
            kinds.append(match[0])
        assert {"frames x2", "functionals x2"} <= set(kinds)  # at rate 0.9, both kinds occur among 8 utterances
    plain = build_model("flam", {**conf, "branch_dropout": 0.0}, INPUT_DIM, NUM_CLASSES, utterance_dim=12)
    assert plain.head.branch_scales(8, "cpu") is None
