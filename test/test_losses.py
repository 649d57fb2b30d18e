"""Tests of ser.losses against per-sample numpy loops, torch's kl_div and pytorch-metric-learning."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import SupConLoss

import ser.components  # noqa: F401  fills the registries (the training test resolves a whole config)
import ser.losses as losses
from ser.config import ConfigError, resolve_config, resolve_loss_conf
from ser.losses import (
    LOSS_DEFAULTS,
    CenterLoss,
    MultiLoss,
    NonFiniteLossError,
    focal_loss,
    kl_divergence,
    soft_cross_entropy,
    supervised_contrastive,
)
from ser.train import train

from support import FAST_CONFIG

NUM_CLASSES, EMBED_DIM, BATCH = 4, 8, 16


def softmax_row(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def soft_targets(rng, batch=BATCH, classes=NUM_CLASSES):
    """Rows mixing two classes with lam in [0, 0.5], some one-hot (zeros exercise 0 log 0)."""
    target = np.zeros((batch, classes))
    for row in target:
        y_i, y_j = rng.integers(classes, size=2)
        lam = rng.uniform(0, 0.5) if rng.random() < 0.6 else 0.0
        row[y_i] += 1 - lam
        row[y_j] += lam
    return target


def batch(seed, logit_scale=3.0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((BATCH, NUM_CLASSES)) * logit_scale
    return rng, torch.tensor(logits), torch.tensor(soft_targets(rng))


def reference_ce(logits, target):
    return np.mean([-sum(y * math.log(p) for y, p in zip(t, softmax_row(z))) for z, t in zip(logits, target)])


def reference_kl(logits, target):
    return np.mean([sum(y * (math.log(y) - math.log(p)) for y, p in zip(t, softmax_row(z)) if y > 0)
                    for z, t in zip(logits, target)])


def reference_focal(logits, target, gamma):
    return np.mean([-sum(y * (1 - p) ** gamma * math.log(p) for y, p in zip(t, softmax_row(z)))
                    for z, t in zip(logits, target)])


def reference_center(embeddings, labels, centers):
    return np.mean([0.5 * np.sum((e - centers[y]) ** 2) for e, y in zip(embeddings, labels)])


def reference_supcon(embeddings, labels, temperature):
    z = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    per_anchor = []
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(z[i] @ z[a] / temperature) for a in range(len(z)) if a != i)
        per_anchor.append(-np.mean([z[i] @ z[p] / temperature - math.log(denominator) for p in positives]))
    return np.mean(per_anchor) if per_anchor else 0.0


@pytest.mark.parametrize("seed", range(3))
def test_ce_kl_focal_match_per_sample_loops(seed):
    _, logits, target = batch(seed)
    z, y = logits.numpy(), target.numpy()
    assert soft_cross_entropy(logits, target).item() == pytest.approx(reference_ce(z, y), rel=1e-10)
    assert kl_divergence(logits, target).item() == pytest.approx(reference_kl(z, y), rel=1e-10)
    for gamma in (0.0, 0.5, 2.0, 3.0):
        assert focal_loss(logits, target, gamma).item() == pytest.approx(reference_focal(z, y, gamma), rel=1e-10)


def test_ce_with_one_hot_targets_is_torch_cross_entropy():
    _, logits, _ = batch(10)
    labels = torch.arange(BATCH) % NUM_CLASSES
    one_hot = F.one_hot(labels, NUM_CLASSES).double()
    assert soft_cross_entropy(logits, one_hot).item() == pytest.approx(F.cross_entropy(logits, labels).item(),
                                                                       rel=1e-12)


def test_kl_matches_torch_kl_div_and_is_ce_minus_entropy():
    _, logits, target = batch(11)
    expected = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")
    assert kl_divergence(logits, target).item() == pytest.approx(expected.item(), rel=1e-12)
    entropy = -torch.xlogy(target, target).sum(1).mean()
    assert kl_divergence(logits, target).item() == pytest.approx(
        (soft_cross_entropy(logits, target) - entropy).item(), rel=1e-10)
    assert kl_divergence(target.log().clamp_min(-1e4), target).item() == pytest.approx(0.0, abs=1e-6)


def test_focal_gamma_zero_is_soft_ce():
    _, logits, target = batch(12)
    assert focal_loss(logits, target, 0.0).item() == pytest.approx(soft_cross_entropy(logits, target).item(),
                                                                   rel=1e-12)
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(logits, target, -1.0)


def test_shape_errors():
    with pytest.raises(ValueError, match="batch, classes"):
        kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="supcon"):
        supervised_contrastive(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        supervised_contrastive(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="center"):
        CenterLoss(NUM_CLASSES, EMBED_DIM)(torch.zeros(4, EMBED_DIM + 1), torch.zeros(4, dtype=torch.long))


def test_center_loss_matches_loop_and_trains_centers():
    rng = np.random.default_rng(13)
    center = CenterLoss(NUM_CLASSES, EMBED_DIM).double()
    embeddings = torch.tensor(rng.standard_normal((BATCH, EMBED_DIM)), requires_grad=True)
    labels = torch.tensor(rng.integers(NUM_CLASSES, size=BATCH))
    loss = center(embeddings, labels)
    expected = reference_center(embeddings.detach().numpy(), labels.numpy(), center.centers.detach().numpy())
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    # d/de_i of 0.5 * mean ||e_i - c||^2 is (e_i - c_{y_i}) / batch
    expected_grad = (embeddings - center.centers[labels]).detach() / BATCH
    torch.testing.assert_close(embeddings.grad, expected_grad)
    present = torch.zeros(NUM_CLASSES, dtype=torch.bool)
    present[labels] = True
    assert (center.centers.grad[present].abs().sum(1) > 0).all()
    assert (center.centers.grad[~present] == 0).all()


def supcon_batch(seed, labels):
    rng = np.random.default_rng(seed)
    return torch.tensor(rng.standard_normal((len(labels), EMBED_DIM)) * 2.0), torch.tensor(labels)


@pytest.mark.parametrize("labels", [
    [0, 1, 2, 3] * 4,                       # every anchor has positives and negatives
    [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 1, 0],   # uneven classes
    [0, 0, 1, 1, 2, 3, 3, 1],               # class 2 is a single sample: its anchor has no positive
])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_supcon_matches_loop_and_pytorch_metric_learning(labels, temperature):
    """pytorch-metric-learning's SupConLoss (v2.9) uses cosine similarity, i.e. normalises the
    embeddings itself, and excludes self-pairs from positives and from the denominator, as here.
    An anchor without positives gets loss 0 there and its AvgNonZeroReducer averages only the
    non-zero anchor losses, which equals leaving such anchors out. It differs only on batches with
    no negative pair at all (one class), where it returns 0 and this loss follows Khosla's formula."""
    embeddings, labels = supcon_batch(len(labels), labels)
    ours = supervised_contrastive(embeddings, labels, temperature)
    expected = reference_supcon(embeddings.numpy(), labels.numpy(), temperature)
    assert ours.item() == pytest.approx(expected, rel=1e-10)
    normalised = F.normalize(embeddings, dim=1)
    pml = SupConLoss(temperature=temperature)
    assert pml(normalised, labels).item() == pytest.approx(ours.item(), rel=1e-6)
    assert pml(embeddings, labels).item() == pytest.approx(ours.item(), rel=1e-6)
    # scale invariance: the loss sees only directions
    assert supervised_contrastive(embeddings * 7.0, labels, temperature).item() == pytest.approx(ours.item(),
                                                                                                 rel=1e-10)


def test_supcon_single_class_batch_follows_khosla():
    embeddings, labels = supcon_batch(5, [2] * 6)
    ours = supervised_contrastive(embeddings, labels, 0.1)
    assert ours.item() == pytest.approx(reference_supcon(embeddings.numpy(), labels.numpy(), 0.1), rel=1e-10)
    assert ours.item() > 0
    assert SupConLoss(temperature=0.1)(embeddings, labels).item() == 0.0  # the documented difference


def test_supcon_without_positive_pairs_is_a_connected_zero():
    embeddings = torch.randn(4, EMBED_DIM, requires_grad=True)
    loss = supervised_contrastive(embeddings, torch.arange(4), 0.07)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))


def inputs(seed, embed_scale=1.0, requires_grad=False):
    rng, logits, target = batch(seed)
    embedding = torch.tensor(rng.standard_normal((BATCH, EMBED_DIM)) * embed_scale, dtype=torch.float32)
    contrastive = torch.tensor(rng.standard_normal((BATCH, 12)), dtype=torch.float32)
    tensors = [logits.float(), embedding, contrastive]
    for tensor in tensors:
        tensor.requires_grad_(requires_grad)
    return (*tensors, target.float())


def test_multiloss_total_is_weighted_sum_with_argmax_labels():
    conf = {"ce": 0.3, "kl": 1.0, "focal": 0.5, "focal_gamma": 1.5, "center": 0.01, "supcon": 0.2,
            "temperature": 0.2}
    loss = MultiLoss(conf, NUM_CLASSES, EMBED_DIM)
    logits, embedding, contrastive, target = inputs(14)
    total, terms = loss(logits, embedding, contrastive, target)
    assert set(terms) == {"ce", "kl", "focal", "center", "supcon", "total"}
    z, y, labels = logits.double().numpy(), target.double().numpy(), target.argmax(1).numpy()
    expected = {"ce": reference_ce(z, y), "kl": reference_kl(z, y), "focal": reference_focal(z, y, 1.5),
                "center": reference_center(embedding.numpy(), labels, loss.center.centers.detach().numpy()),
                "supcon": reference_supcon(contrastive.double().numpy(), labels, 0.2)}
    for term, value in expected.items():
        assert terms[term] == pytest.approx(value, rel=1e-5), term
    weighted = sum(conf[term] * value for term, value in expected.items())
    assert total.item() == pytest.approx(weighted, rel=1e-5)
    assert terms["total"] == pytest.approx(total.item())


def test_multiloss_gradients_reach_every_input_and_the_centers():
    loss = MultiLoss({"ce": 1.0}, NUM_CLASSES, EMBED_DIM)
    logits, embedding, contrastive, target = inputs(15, requires_grad=True)
    total, _ = loss(logits, embedding, contrastive, target)
    total.backward()
    for tensor in (logits, embedding, contrastive, *loss.own_parameters()):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0
    assert loss.own_parameters() == [loss.center.centers]


@pytest.mark.parametrize("scaled", [False, True])
def test_centre_step_is_the_centre_loss_gradient_whatever_the_weighting(scaled):
    """The loss's own optimizer moves each centre by lr times the gradient of the unweighted centre loss,
    -(1/B) sum_{i: y_i = k} (e_i - c_k) (Wen et al.), whatever the term's weight, its running-magnitude scaling
    and the fp16 loss scale; the gradients pass through the rank averaging hook."""
    lr, scale = 0.5, 8.0
    loss = MultiLoss({"center": 0.002, "scale_by_running_magnitude": scaled}, NUM_CLASSES, EMBED_DIM)
    loss.attach_optimizer("sgd", lr, lambda optimizer: None)
    logits, embedding, contrastive, target = inputs(21, requires_grad=True)
    for _ in range(3):  # a few steps, so that the running magnitude is far from 1
        loss.zero_grad()
        centres = loss.center.centers.detach().double().numpy().copy()
        total, terms = loss(logits, embedding, contrastive, target)
        (scale * total).backward()
        averaged = []
        loss.step(lambda grads: averaged.extend(grads), loss_scale=scale)
        labels = target.argmax(1).numpy()
        e = embedding.detach().double().numpy()
        gradient = np.zeros_like(centres)
        for i, k in enumerate(labels):
            gradient[k] -= (e[i] - centres[k]) / len(labels)
        np.testing.assert_allclose(loss.center.centers.detach().numpy(), centres - lr * gradient, rtol=1e-4,
                                   atol=1e-6)
        assert len(averaged) == 1


def test_weight_zero_skips_the_term(monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a term with weight 0 was computed")

    monkeypatch.setattr(losses, "focal_loss", must_not_run)
    monkeypatch.setattr(losses, "supervised_contrastive", must_not_run)
    loss = MultiLoss({"focal": 0, "supcon": 0.0, "center": 0}, NUM_CLASSES, EMBED_DIM)
    logits, _, _, target = inputs(16)
    total, terms = loss(logits, None, None, target)
    assert set(terms) == {"kl", "total"}
    assert total.item() == pytest.approx(terms["kl"])
    assert loss.own_parameters() == []
    assert not any("center" in key for key in loss.state_dict())


def test_missing_input_for_an_active_term_is_an_error():
    logits, embedding, _, target = inputs(17)
    with pytest.raises(ValueError, match="contrastive_embedding"):
        MultiLoss({}, NUM_CLASSES, EMBED_DIM)(logits, embedding, None, target)
    with pytest.raises(ValueError, match="no embedding"):
        MultiLoss({"supcon": 0}, NUM_CLASSES, EMBED_DIM)(logits, None, None, target)


@pytest.mark.parametrize("conf, key", [
    ({"klx": 1.0}, "klx"),
    ({"focal": -1.0}, "focal"),
    ({"temperature": 0.0}, "temperature"),
    ({"running_momentum": 1.0}, "running_momentum"),
    ({"scale_by_running_magnitude": "yes"}, "scale_by_running_magnitude"),
    ({"center": "0.1"}, "center"),
    ({"supcon": float("nan")}, "supcon"),
    ({"kl": 0, "focal": 0, "center": 0, "supcon": 0}, "every loss weight"),
])
def test_config_errors_name_the_key(conf, key):
    """loss_conf is checked once, by the rules its terms registered (MultiLoss trusts a resolved conf)."""
    with pytest.raises(ConfigError, match=key):
        resolve_loss_conf(conf)
    assert issubclass(ConfigError, ValueError)


def test_missing_keys_take_defaults():
    loss = MultiLoss({"kl": 0.5}, NUM_CLASSES, EMBED_DIM)
    assert loss.conf == {**LOSS_DEFAULTS, "kl": 0.5}
    assert loss.active == ["kl", "focal", "center", "supcon"]  # ce defaults to 0


def test_non_finite_term_is_named():
    logits, embedding, contrastive, target = inputs(18)
    nan_logits = torch.full_like(logits, float("nan"))
    with pytest.raises(NonFiniteLossError, match="'kl'") as error:
        MultiLoss({}, NUM_CLASSES, EMBED_DIM)(nan_logits, embedding, contrastive, target)
    assert error.value.term == "kl"
    with pytest.raises(NonFiniteLossError) as error:
        MultiLoss({"kl": 0}, NUM_CLASSES, EMBED_DIM)(nan_logits, embedding, contrastive, target)
    assert error.value.term == "focal"
    with pytest.raises(NonFiniteLossError) as error:
        MultiLoss({}, NUM_CLASSES, EMBED_DIM)(logits, embedding.clone().fill_(float("inf")), contrastive, target)
    assert error.value.term == "center"


def bias_corrected_ema(history, momentum):
    average = 0.0
    for value in history:
        average = momentum * average + (1 - momentum) * value
    return average / (1 - momentum ** len(history))


def test_running_magnitude_brings_terms_to_one_and_survives_state_dict():
    conf = {"ce": 1.0, "kl": 1.0, "focal": 1.0, "center": 1.0, "supcon": 1.0,
            "scale_by_running_magnitude": True, "running_momentum": 0.9}
    on = [term for term in losses.TERMS if conf.get(term, 0) > 0]
    torch.manual_seed(0)
    loss = MultiLoss(conf, NUM_CLASSES, EMBED_DIM).train()
    history = {term: [] for term in on}
    scaled = {term: [] for term in on}
    for step in range(120):
        # embeddings far from the centers make the center term ~100 times the others
        total, terms = loss(*inputs(100 + step, embed_scale=10.0))
        for term in on:
            history[term].append(terms[term])
        magnitudes = {term: bias_corrected_ema(history[term], 0.9) for term in on}
        assert total.item() == pytest.approx(sum(terms[t] / magnitudes[t] for t in on), rel=1e-5)
        for term in on:
            scaled[term].append(terms[term] / magnitudes[term])
    assert np.mean(history["center"]) > 50 * np.mean(history["focal"])
    for term in on:
        assert scaled[term][0] == pytest.approx(1.0)  # bias correction: exact on the first step
        assert np.mean(scaled[term][40:]) == pytest.approx(1.0, abs=0.1), term

    state = {key: value.clone() for key, value in loss.state_dict().items()}
    assert "running_magnitude" in state and int(state["running_steps"]) == 120
    restored = MultiLoss(conf, NUM_CLASSES, EMBED_DIM)
    restored.load_state_dict(state)
    fresh = MultiLoss(conf, NUM_CLASSES, EMBED_DIM)
    fresh.load_state_dict({key: value for key, value in state.items() if "running" not in key}, strict=False)
    next_batch = inputs(999, embed_scale=10.0)
    expected, _ = loss(*next_batch)
    assert restored(*next_batch)[0].item() == expected.item()
    assert fresh(*next_batch)[0].item() != pytest.approx(expected.item(), rel=1e-3)


def test_running_magnitude_is_frozen_in_eval_mode():
    loss = MultiLoss({"scale_by_running_magnitude": True}, NUM_CLASSES, EMBED_DIM)
    loss.eval()
    total, terms = loss(*inputs(20))  # no statistics yet: unscaled
    assert int(loss.running_steps) == 0
    assert total.item() == pytest.approx(sum(loss.conf[t] * terms[t] for t in loss.active), rel=1e-5)
    loss.train()
    loss(*inputs(21))
    before = loss.running_magnitude.clone()
    loss.eval()
    loss(*inputs(22))
    assert torch.equal(loss.running_magnitude, before) and int(loss.running_steps) == 1


def test_hard_label_option_reads_the_dominant_class_only():
    """hard_label: CE, KL and focal see one-hot targets of argmax(soft label); checked against torch's own
    cross_entropy on the class indices."""
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    soft = torch.tensor([[0.7, 0.3, 0, 0], [0, 0.6, 0.4, 0], [0, 0, 1.0, 0], [0.2, 0, 0, 0.8],
                         [0.55, 0, 0.45, 0], [0, 0, 0.1, 0.9]])
    hard = MultiLoss({"ce": 1.0, "kl": 0.0, "focal": 0.0, "center": 0.0, "supcon": 0.0, "hard_label": True}, 4, 8)
    soft_loss = MultiLoss({"ce": 1.0, "kl": 0.0, "focal": 0.0, "center": 0.0, "supcon": 0.0}, 4, 8)
    total, _ = hard(logits, None, None, soft)
    torch.testing.assert_close(total, F.cross_entropy(logits, soft.argmax(1)))
    assert not torch.allclose(soft_loss(logits, None, None, soft)[0], total)
    # KL to a one-hot target is the cross-entropy: with hard labels the two rungs coincide.
    kl = MultiLoss({"ce": 0.0, "kl": 1.0, "focal": 0.0, "center": 0.0, "supcon": 0.0, "hard_label": True}, 4, 8)
    torch.testing.assert_close(kl(logits, None, None, soft)[0], total)
    with pytest.raises(ConfigError, match="hard_label"):
        resolve_loss_conf({"hard_label": 1})


def test_own_optimizer_state_is_per_term_and_reads_the_centre_only_layout():
    """The checkpoint holds {term: {optimizer, scheduler}} for each term with own parameters; a checkpoint written
    before terms registered (the centre's optimizer alone) still resumes."""
    def make():
        loss = MultiLoss({"center": 0.01}, NUM_CLASSES, EMBED_DIM)
        loss.attach_optimizers({"center_optim": "adam", "center_lr": 0.1},
                               lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.5))
        return loss

    loss = make()
    total, _ = loss(*inputs(30))
    total.backward()
    loss.step(lambda grads: None)
    loss.end_epoch()
    state = loss.optimizer_state()
    assert set(state) == {"center"}
    for saved in (state, state["center"]):  # today's layout, and the centre-only one
        restored = make()
        restored.load_optimizer_state(saved)
        assert str(restored.optimizer_state()) == str(state)


def test_centre_adam_steps_with_the_lam_moments():
    """center_optim adam is Adam with betas (0.9, 0.98) and eps 1e-9 (docs/method.md section 5): two steps of the
    centres equal two Adam updates written out by hand with those moments (torch's defaults, 0.999 and 1e-8, give
    other centres)."""
    loss = MultiLoss({"center": 1.0, "kl": 0.0, "focal": 0.0, "supcon": 0.0}, NUM_CLASSES, EMBED_DIM)
    loss.attach_optimizers({"center_optim": "adam", "center_lr": 0.1}, lambda o: None)
    centres = loss.center.centers.detach().clone()
    m, v = torch.zeros_like(centres), torch.zeros_like(centres)
    beta1, beta2, eps, lr = 0.9, 0.98, 1e-9, 0.1
    for step in (1, 2):
        loss.zero_grad()
        total, _ = loss(*inputs(30 + step))
        total.backward()
        grad = loss.center.centers.grad.detach().clone()
        loss.step(lambda grads: None)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad * grad
        centres = centres - lr * (m / (1 - beta1 ** step)) / ((v / (1 - beta2 ** step)).sqrt() + eps)
        torch.testing.assert_close(loss.center.centers.detach(), centres, rtol=1e-5, atol=1e-7)


def test_reverse_gradient_negates_the_autograd_gradient_exactly():
    x = torch.randn(6, EMBED_DIM, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(EMBED_DIM, 3, dtype=torch.float64)
    (reference,) = torch.autograd.grad(torch.tanh(x @ weight).pow(2).sum(), x)
    y = losses.reverse_gradient(x)
    assert torch.equal(y, x)
    (reversed_,) = torch.autograd.grad(torch.tanh(y @ weight).pow(2).sum(), x)
    assert torch.equal(reversed_, -reference)


def test_speaker_adversary_trains_its_head_on_speakers_and_reverses_the_embedding_gradient():
    """The head's gradient is that of plain speaker cross entropy (its own rate: MultiLoss.step divides out the
    weight); the embedding receives -weight times it; only the head is the term's own parameters."""
    weight, num_speakers = 0.3, 5
    loss = MultiLoss({"speaker_adv": weight, "kl": 0.0, "focal": 0.0, "center": 0.0, "supcon": 0.0},
                     NUM_CLASSES, EMBED_DIM, num_speakers)
    loss.attach_optimizers({"loss_conf": loss.conf}, lambda o: None)
    logits, embedding, contrastive, target = inputs(40, requires_grad=True)
    speakers = F.one_hot(torch.arange(BATCH) % num_speakers, num_speakers).float()
    total, values = loss(logits, embedding, contrastive, target, speakers=speakers)
    total.backward()
    head = copy.deepcopy(loss.speaker_adv.head)
    plain = soft_cross_entropy(head(embedding.detach().requires_grad_()), speakers)
    e = embedding.detach().clone().requires_grad_()
    (e_grad,) = torch.autograd.grad(soft_cross_entropy(head(e), speakers), e)
    torch.testing.assert_close(embedding.grad, -weight * e_grad)
    assert values["speaker_adv"] == pytest.approx(float(plain.detach()))
    plain.backward()
    loss.step(lambda grads: None)  # divides the head's gradients by the weight, then steps
    for own, reference in zip(loss.speaker_adv.head.parameters(), head.parameters()):
        torch.testing.assert_close(own.grad, reference.grad)
    assert len(loss.own_parameters()) == 4
    with pytest.raises(ValueError, match="2 training speakers"):
        MultiLoss({"speaker_adv": 0.1}, NUM_CLASSES, EMBED_DIM, 1)


def test_training_with_the_speaker_adversary_learns(feature_dirs, tmp_path):
    """A tiny run with the adversary on: the emotion is learned, the speaker term is logged, and the head lives in
    the checkpoint's loss state, not in model.pth."""
    config = resolve_config({**FAST_CONFIG, "max_epoch": 6, "loss_conf": {"speaker_adv": 0.5}})
    classes = [c.strip() for c in open(feature_dirs / "classes.txt") if c.strip()]
    selection = train(config, classes, str(feature_dirs / "train"), str(feature_dirs / "valid"),
                      str(feature_dirs / "train" / "cmvn.ark"), str(tmp_path / "run"))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(h["train"]["speaker_adv"] > 0 for h in history)
    assert selection["valid"]["ua"] >= 60.0  # 4 classes, chance 25
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert any(k.startswith("speaker_adv.head") for k in checkpoint["criterion"])
    assert not any("speaker_adv" in k for k in torch.load(tmp_path / "run" / "model.pth", weights_only=True))
