"""Loss terms of the multi-loss objective (docs/method.md section 4) and their weighted sum.

Targets are soft labels (rows summing to 1, one-hot when no mixup happened); every loss is a
mean over the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ser.config import ConfigError

LOSS_DEFAULTS = {"ce": 0.0, "kl": 1.0, "focal": 1.0, "focal_gamma": 2.0, "center": 0.002, "supcon": 0.1,
                 "temperature": 0.07, "scale_by_running_magnitude": False, "running_momentum": 0.99,
                 "hard_label": False}
# hard_label: CE, KL and focal read the one-hot label of the dominant class (argmax of the mixup soft label)
# instead of the soft label itself; with it, CE against KL measures what the soft label brings (KL to a one-hot
# target equals CE).
BOOLEAN_KEYS = ("scale_by_running_magnitude", "hard_label")
TERMS = ("ce", "kl", "focal", "center", "supcon")  # weight keys, in the order they are computed (TERM_FUNCTIONS)
# floor of the running magnitude a term is divided by
MAGNITUDE_FLOOR = 1e-8


class NonFiniteLossError(RuntimeError):
    """A loss term is NaN or infinite; ``term`` names it."""

    def __init__(self, term: str, value: float):
        super().__init__(f"loss term '{term}' is not finite ({value})")
        self.term = term
        self.value = value


def _check_logits_target(logits: Tensor, target: Tensor) -> None:
    if logits.dim() != 2 or logits.shape != target.shape:
        raise ValueError(f"logits and target must both be (batch, classes), got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """-sum_k y_k log p_k, mean over the batch (plain cross entropy for one-hot targets)."""
    _check_logits_target(logits, target)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def kl_divergence(logits: Tensor, target: Tensor) -> Tensor:
    """KL(y || softmax(z)) = sum_k y_k (log y_k - log p_k) with 0 log 0 = 0, mean over the batch."""
    _check_logits_target(logits, target)
    return (torch.xlogy(target, target) - target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def focal_loss(logits: Tensor, target: Tensor, gamma: float) -> Tensor:
    """Focal loss for soft targets: -sum_k y_k (1 - p_k)^gamma log p_k, mean over the batch."""
    _check_logits_target(logits, target)
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    log_p = F.log_softmax(logits, dim=1)
    one_minus_p = -torch.expm1(log_p)  # 1 - p_k, accurate when p_k is near 1
    return -(target * one_minus_p.pow(gamma) * log_p).sum(dim=1).mean()


class CenterLoss(nn.Module):
    """Center loss (Wen et al., ECCV 2016): 0.5 * mean_i ||e_i - c_{y_i}||^2.

    Normalised by the batch size (the paper sums over the batch). The centers are a Parameter
    trained by gradient descent through their own optimizer, rather than by the paper's
    count-averaged update rule.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.centers = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.centers)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if embeddings.dim() != 2 or embeddings.shape[1] != self.centers.shape[1]:
            raise ValueError(f"center loss needs embeddings (batch, {self.centers.shape[1]}), "
                             f"got {tuple(embeddings.shape)}")
        return 0.5 * (embeddings - self.centers[labels]).pow(2).sum(dim=1).mean()


def supervised_contrastive(embeddings: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss L_out (Khosla et al., NeurIPS 2020) on L2-normalised embeddings.

    For anchor i with positives P(i) (same label, not i) and A(i) = all samples but i:
    l_i = -1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t)).
    The loss is the mean of l_i over anchors that have a positive; anchors without one are left
    out, and a batch without any positive pair gives a zero that stays connected to the graph.
    """
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"supcon needs embeddings (batch, dim) and labels (batch,), got "
                         f"{tuple(embeddings.shape)} and {tuple(labels.shape)}")
    if not temperature > 0:
        raise ValueError(f"supcon temperature must be > 0, got {temperature}")
    batch = embeddings.shape[0]
    not_self = ~torch.eye(batch, dtype=torch.bool, device=embeddings.device)
    positive = (labels[:, None] == labels[None, :]) & not_self
    anchors = positive.any(dim=1)
    if not anchors.any():
        return embeddings.sum() * 0.0
    z = F.normalize(embeddings, dim=1)
    similarity = z[anchors] @ z.T / temperature
    log_denominator = torch.logsumexp(similarity.masked_fill(~not_self[anchors], -math.inf),
                                      dim=1, keepdim=True)
    log_prob = similarity - log_denominator
    positive = positive[anchors]
    per_anchor = -(log_prob * positive).sum(dim=1) / positive.sum(dim=1)
    return per_anchor.mean()


def _check_conf(conf: dict) -> dict:
    unknown = sorted(set(conf) - set(LOSS_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown loss_conf key(s) {unknown}, expected {sorted(LOSS_DEFAULTS)}")
    conf = {**LOSS_DEFAULTS, **conf}
    for key, value in conf.items():
        if key in BOOLEAN_KEYS:
            if not isinstance(value, bool):
                raise ConfigError(f"loss_conf key '{key}' must be true or false, got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ConfigError(f"loss_conf key '{key}' must be a finite number, got {value!r}")
        if key == "temperature" and not value > 0:
            raise ConfigError(f"loss_conf key '{key}' must be > 0, got {value}")
        if key == "running_momentum" and not 0 <= value < 1:
            raise ConfigError(f"loss_conf key '{key}' must be in [0, 1), got {value}")
        if value < 0:
            raise ConfigError(f"loss_conf key '{key}' must be >= 0, got {value}")
    if not any(conf[term] > 0 for term in TERMS):
        raise ConfigError(f"every loss weight ({', '.join(TERMS)}) is 0: nothing to train")
    return conf


class MultiLoss(nn.Module):
    """Weighted sum of CE, KL, focal, center and supervised contrastive losses.

    A term with weight 0 is off and not computed. The class used by the center and contrastive
    losses is argmax of the soft target. With ``scale_by_running_magnitude`` each term is divided
    by a bias-corrected exponential moving average of its detached value (updated in training
    mode only) so that every term is about 1 before weighting; the averages are buffers, so they
    are saved in the state_dict.
    """

    def __init__(self, conf: dict, num_classes: int, embed_dim: int):
        super().__init__()
        self.conf = _check_conf(dict(conf))
        self.active = [term for term in TERMS if self.conf[term] > 0]
        self.center = CenterLoss(num_classes, embed_dim) if self.conf["center"] > 0 else None
        self.register_buffer("running_magnitude", torch.zeros(len(TERMS), dtype=torch.float64))
        self.register_buffer("running_steps", torch.zeros((), dtype=torch.long))
        self._divisors: dict[str, float] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None

    # The loss's own parameters (the centres) are trained by the loss's own optimizer, which the trainer drives
    # through the five methods below without knowing which terms own parameters.

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters of the loss itself (the center loss's centres; empty when it is off)."""
        return [] if self.center is None else list(self.center.parameters())

    def attach_optimizer(self, kind: str, lr: float, make_scheduler) -> None:
        """Give the own parameters their optimizer: plain SGD, or Adam with default moments as in the LAM lineage,
        at ``lr``, with the scheduler that ``make_scheduler(optimizer)`` builds. No-op without own parameters."""
        params = self.own_parameters()
        if not params:
            return
        self.optimizer = (torch.optim.Adam(params, lr=lr) if kind == "adam" else torch.optim.SGD(params, lr=lr))
        self.scheduler = make_scheduler(self.optimizer)

    def zero_grad(self) -> None:
        if self.optimizer:
            self.optimizer.zero_grad(set_to_none=True)

    def step(self, average_, loss_scale: float | None = None) -> None:
        """Update the own parameters from the last backward pass. The gradients are averaged over ranks by
        ``average_`` and divided by the weight the centre term entered the total with (its loss weight, over its
        running magnitude when scaled) and by the fp16 loss scale: Wen et al. update the centres at their own
        rate, independent of how the term is weighted."""
        if not self.optimizer:
            return
        grads = [p.grad for p in self.own_parameters() if p.grad is not None]
        average_(grads)
        weight = self.conf["center"] / self._divisors.get("center", 1.0)
        for g in grads:
            g.div_(weight * loss_scale if loss_scale is not None else weight)
        self.optimizer.step()

    def end_epoch(self) -> None:
        if self.scheduler:
            self.scheduler.step()

    def optimizer_state(self) -> dict:
        if not self.optimizer:
            return {}
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_optimizer_state(self, state: dict) -> None:
        if self.optimizer:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])

    def _magnitudes(self, values: dict[str, float]) -> dict[str, float]:
        """Update (in training mode) and return the bias-corrected running magnitude per term."""
        momentum = self.conf["running_momentum"]
        if self.training:
            self.running_steps += 1
            for term, value in values.items():
                index = TERMS.index(term)
                self.running_magnitude[index] = (momentum * self.running_magnitude[index]
                                                 + (1.0 - momentum) * value)
        steps = int(self.running_steps)
        if steps == 0:
            return {term: 1.0 for term in values}
        correction = 1.0 - momentum ** steps
        return {term: max(float(self.running_magnitude[TERMS.index(term)]) / correction, MAGNITUDE_FLOOR)
                for term in values}

    def forward(self, logits: Tensor, embedding: Tensor | None, contrastive_embedding: Tensor | None,
                soft_target: Tensor, ranks=None) -> tuple[Tensor, dict[str, float]]:
        """(weighted total, {term: unweighted value, ..., "total": weighted total}). ``ranks``
        (ser.distributed.Distributed): with several ranks, each holding part of the batch, the supervised contrastive
        term is computed over the whole batch."""
        labels = soft_target.argmax(dim=1)
        if self.conf["hard_label"]:
            soft_target = F.one_hot(labels, soft_target.shape[1]).to(soft_target.dtype)
        losses, values = {}, {}
        for term in self.active:
            loss = TERM_FUNCTIONS[term](self, LossInputs(logits, embedding, contrastive_embedding, soft_target,
                                                          labels, ranks))
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(term, value)
            losses[term], values[term] = loss, value
        divisors = (self._magnitudes(values) if self.conf["scale_by_running_magnitude"]
                    else dict.fromkeys(values, 1.0))
        self._divisors = divisors
        total = sum(self.conf[term] * losses[term] / divisors[term] for term in self.active)
        values["total"] = float(total.detach())
        return total, values


@dataclass
class LossInputs:
    logits: Tensor
    embedding: Tensor | None
    contrastive_embedding: Tensor | None
    soft_target: Tensor
    labels: Tensor  # argmax of the soft target
    ranks: object | None  # ser.distributed.Distributed, for terms that span the whole batch


def _center_term(loss: MultiLoss, x: LossInputs) -> Tensor:
    if x.embedding is None:
        raise ValueError("the center loss is on but no embedding was given")
    return loss.center(x.embedding, x.labels)


def _supcon_term(loss: MultiLoss, x: LossInputs) -> Tensor:
    if x.contrastive_embedding is None:
        raise ValueError("the supcon loss is on but no contrastive_embedding was given")
    temperature = loss.conf["temperature"]
    if x.ranks is None or x.ranks.world == 1:
        return supervised_contrastive(x.contrastive_embedding, x.labels, temperature)
    # Data-parallel: the contrastive pairs span the whole batch, as in one process. Every rank computes the
    # loss of the whole batch with only its own rows differentiable; the gradient is multiplied by the number
    # of ranks (the value is not), so that the ranks' averaged gradients are the one-process gradient.
    value = supervised_contrastive(x.ranks.gather_rows(x.contrastive_embedding), x.ranks.gather_rows(x.labels),
                                   temperature)
    return value * x.ranks.world - value.detach() * (x.ranks.world - 1)


# Each term of the objective, by its weight key: (MultiLoss, its inputs) -> the unweighted term.
TERM_FUNCTIONS = {
    "ce": lambda loss, x: soft_cross_entropy(x.logits, x.soft_target),
    "kl": lambda loss, x: kl_divergence(x.logits, x.soft_target),
    "focal": lambda loss, x: focal_loss(x.logits, x.soft_target, loss.conf["focal_gamma"]),
    "center": _center_term,
    "supcon": _supcon_term,
}
assert tuple(TERM_FUNCTIONS) == TERMS
