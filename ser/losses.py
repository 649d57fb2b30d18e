"""Loss terms of the multi-loss objective (docs/method.md section 4) and their weighted sum.

Targets are soft labels (rows summing to 1, one-hot when no mixup happened); every loss is a
mean over the batch.

Each term is one class and one ``LOSS_TERMS.register`` line: its weight is the loss_conf key of its name, its
options are further loss_conf keys (with their defaults and rules), and its builder makes a LossTerm. MultiLoss sums
the terms whose weight is > 0, in the order they were registered, and never names one: a term with parameters of
its own (the centre loss's centres) declares them (``own_parameters``) and the config keys of their optimizer
(``own_optimizer`` in its registry info), and MultiLoss gives them that optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ser.config import loss_defaults
from ser.optim import build_own_optimizer
from ser.registry import LOSS_SHARED, LOSS_TERMS, finite_number_at_least, is_bool, number_in, one_of, positive_int

# hard_label: CE, KL and focal read the one-hot label of the dominant class (argmax of the mixup soft label)
# instead of the soft label itself; with it, CE against KL measures what the soft label brings (KL to a one-hot
# target equals CE).
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
        return center_loss(embeddings, labels, self.centers)


def center_loss(embeddings: Tensor, labels: Tensor, centers: Tensor) -> Tensor:
    """0.5 * mean_i ||e_i - c_{y_i}||^2."""
    if embeddings.dim() != 2 or embeddings.shape[1] != centers.shape[1]:
        raise ValueError(f"center loss needs embeddings (batch, {centers.shape[1]}), got {tuple(embeddings.shape)}")
    return 0.5 * (embeddings - centers[labels]).pow(2).sum(dim=1).mean()


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


@dataclass
class LossInputs:
    logits: Tensor
    embedding: Tensor | None
    contrastive_embedding: Tensor | None
    soft_target: Tensor
    labels: Tensor  # argmax of the soft target
    ranks: object | None  # ser.distributed.Distributed, for terms that span the whole batch
    speakers: Tensor | None = None  # (B, S) soft training-speaker targets (mixed as the labels), for terms that
    # declare reads_speakers in their registry info


class LossTerm(nn.Module):
    """One term of the objective: ``forward(LossInputs) -> Tensor``, the unweighted term (a mean over the batch).
    A term with parameters of its own returns them from ``own_parameters``; MultiLoss trains them with their own
    optimizer (the one the term's registry info ``own_optimizer`` names) at their own rate, independent of the
    term's weight."""

    spans_ranks = False  # True: the term is computed over the whole batch on every rank (its value and gradient
    # already those of one process); False: a mean over this rank's examples, which MultiLoss makes the batch mean

    def own_parameters(self) -> list[nn.Parameter]:
        return []


class CrossEntropyTerm(LossTerm):
    def __init__(self, **conf):
        super().__init__()

    def forward(self, x: LossInputs) -> Tensor:
        return soft_cross_entropy(x.logits, x.soft_target)


class KLTerm(LossTerm):
    def __init__(self, **conf):
        super().__init__()

    def forward(self, x: LossInputs) -> Tensor:
        return kl_divergence(x.logits, x.soft_target)


class FocalTerm(LossTerm):
    def __init__(self, focal_gamma: float, **conf):
        super().__init__()
        self.gamma = focal_gamma

    def forward(self, x: LossInputs) -> Tensor:
        return focal_loss(x.logits, x.soft_target, self.gamma)


class CenterTerm(LossTerm):
    """The centre loss on the embedding; its centres (``centers``) are its own parameters."""

    def __init__(self, num_classes: int, embed_dim: int, **conf):
        super().__init__()
        self.centers = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.xavier_uniform_(self.centers)

    def own_parameters(self) -> list[nn.Parameter]:
        return [self.centers]

    def forward(self, x: LossInputs) -> Tensor:
        if x.embedding is None:
            raise ValueError("the center loss is on but no embedding was given")
        return center_loss(x.embedding, x.labels, self.centers)


class SupConTerm(LossTerm):
    spans_ranks = True

    def __init__(self, temperature: float, **conf):
        super().__init__()
        self.temperature = temperature

    def forward(self, x: LossInputs) -> Tensor:
        if x.contrastive_embedding is None:
            raise ValueError("the supcon loss is on but no contrastive_embedding was given")
        if x.ranks is None or x.ranks.world == 1:
            return supervised_contrastive(x.contrastive_embedding, x.labels, self.temperature)
        # Data-parallel: the contrastive pairs span the whole batch, as in one process. Every rank computes the
        # loss of the whole batch with only its own rows differentiable; the gradient is multiplied by the number
        # of ranks (the value is not), so that the ranks' averaged gradients are the one-process gradient.
        value = supervised_contrastive(x.ranks.gather_rows(x.contrastive_embedding), x.ranks.gather_rows(x.labels),
                                       self.temperature)
        return value * x.ranks.world - value.detach() * (x.ranks.world - 1)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return -grad


def reverse_gradient(x: Tensor) -> Tensor:
    """The identity forward; the gradient negated backward (Ganin and Lempitsky's gradient reversal layer)."""
    return _ReverseGradient.apply(x)


class SpeakerAdversaryTerm(LossTerm):
    """Speaker-adversarial training: a head (Linear-ReLU-Linear) classifies the training speaker of each utterance
    from its embedding through a gradient reversal layer (cross entropy with the speaker targets mixed as the
    labels). The head learns to tell the speakers apart at its own rate (its own optimizer, like the centres); the
    model receives the reversed gradient times the term's weight, so it learns an embedding the head cannot read
    the speaker from. The head belongs to the loss: it is checkpointed, never part of model.pth."""

    def __init__(self, num_speakers: int, embed_dim: int, speaker_adv_hidden: int, **conf):
        super().__init__()
        if num_speakers < 2:
            raise ValueError(f"loss_conf.speaker_adv needs at least 2 training speakers, got {num_speakers}")
        self.head = nn.Sequential(nn.Linear(embed_dim, speaker_adv_hidden), nn.ReLU(),
                                  nn.Linear(speaker_adv_hidden, num_speakers))

    def own_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def forward(self, x: LossInputs) -> Tensor:
        if x.embedding is None or x.speakers is None:
            raise ValueError("the speaker_adv loss is on but no embedding or speaker targets were given")
        return soft_cross_entropy(self.head(reverse_gradient(x.embedding)), x.speakers)


_WEIGHT = finite_number_at_least(0.0)
# One line per term, in the order the terms are computed: builder, defaults (the weight under the term's name, then
# its options), rules.
LOSS_TERMS.register("ce", CrossEntropyTerm, {"ce": 0.0}, {"ce": _WEIGHT})
LOSS_TERMS.register("kl", KLTerm, {"kl": 1.0}, {"kl": _WEIGHT})
LOSS_TERMS.register("focal", FocalTerm, {"focal": 1.0, "focal_gamma": 2.0},
                    {"focal": _WEIGHT, "focal_gamma": finite_number_at_least(0.0)})
LOSS_TERMS.register("center", CenterTerm, {"center": 0.002}, {"center": _WEIGHT},
                    own_optimizer=("center_optim", "center_lr"))  # config keys: sgd | adam, and its rate
LOSS_TERMS.register("supcon", SupConTerm, {"supcon": 0.1, "temperature": 0.07},
                    {"supcon": _WEIGHT, "temperature": (lambda v: _WEIGHT[0](v) and v > 0, "a finite number > 0")})
LOSS_TERMS.register("speaker_adv", SpeakerAdversaryTerm,
                    {"speaker_adv": 0.0, "speaker_adv_hidden": 128, "speaker_adv_optim": "adam",
                     "speaker_adv_lr": 1.0e-3},
                    {"speaker_adv": _WEIGHT, "speaker_adv_hidden": (positive_int, "an integer > 0"),
                     "speaker_adv_optim": one_of("sgd", "adam"),
                     "speaker_adv_lr": (lambda v: _WEIGHT[0](v) and v > 0, "a finite number > 0")},
                    own_optimizer=("loss_conf.speaker_adv_optim", "loss_conf.speaker_adv_lr"), reads_speakers=True)
# The keys of the weighted sum itself.
LOSS_SHARED.register("multi", None, {"scale_by_running_magnitude": False, "running_momentum": 0.99,
                                     "hard_label": False},
                     {"scale_by_running_magnitude": (is_bool, "true or false"),
                      "running_momentum": number_in(0.0, 1.0, high_open=True),
                      "hard_label": (is_bool, "true or false")})
LOSS_DEFAULTS = loss_defaults()  # the loss_conf defaults of ser's own terms
TERMS = tuple(LOSS_TERMS.names())  # ser's own terms, in the order they are computed


def reads_speakers(loss_conf: dict) -> bool:
    """Whether a term that loss_conf turns on needs the training speakers (its registry info: reads_speakers)."""
    return any(loss_conf.get(term, 0) > 0 and LOSS_TERMS.info(term).get("reads_speakers")
               for term in LOSS_TERMS.names())


def _config_value(config: dict, dotted: str):
    """config["a"]["b"] for "a.b" (an own_optimizer key may live in loss_conf)."""
    for key in dotted.split("."):
        config = config[key]
    return config


class MultiLoss(nn.Module):
    """Weighted sum of the registered loss terms (ser's own: CE, KL, focal, center and supervised contrastive).

    ``conf`` is a loss_conf resolved by ser.config.resolve_loss_conf (missing keys take their defaults; values are
    trusted). A term with weight 0 is off and not built. The class used by the center and contrastive losses is
    argmax of the soft target. With ``scale_by_running_magnitude`` each term is divided by a bias-corrected
    exponential moving average of its detached value (updated in training mode only) so that every term is about 1
    before weighting; the averages are buffers, so they are saved in the state_dict.
    """

    def __init__(self, conf: dict, num_classes: int, embed_dim: int, num_speakers: int = 0):
        super().__init__()
        self.conf = {**loss_defaults(), **conf}
        self.term_names = LOSS_TERMS.names()  # every registered term: the slots of the running magnitudes
        self.active = [term for term in self.term_names if self.conf[term] > 0]
        self.terms: dict[str, LossTerm] = {}
        for term in self.active:
            options = {key: self.conf[key] for key in LOSS_TERMS.defaults(term)}
            context = {"num_speakers": num_speakers} if LOSS_TERMS.info(term).get("reads_speakers") else {}
            self.terms[term] = LOSS_TERMS.build(term, options, num_classes=num_classes, embed_dim=embed_dim,
                                                **context)
            self.add_module(term, self.terms[term])
        self.register_buffer("running_magnitude", torch.zeros(len(self.term_names), dtype=torch.float64))
        self._register_load_state_dict_pre_hook(self._pad_running_magnitude)
        self.register_buffer("running_steps", torch.zeros((), dtype=torch.long))
        self._divisors: dict[str, float] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}  # term -> the optimizer of its own parameters
        self.schedulers: dict[str, object] = {}

    def _pad_running_magnitude(self, state_dict, prefix, *args) -> None:
        """A checkpoint saved before later terms registered has fewer slots: theirs (the last ones) start at 0."""
        key = prefix + "running_magnitude"
        saved = state_dict.get(key)
        if saved is not None and saved.shape[0] < len(self.term_names):
            state_dict[key] = torch.cat([saved, saved.new_zeros(len(self.term_names) - saved.shape[0])])

    # The terms' own parameters are trained by their own optimizers, which the trainer drives through the methods
    # below without knowing which terms own parameters.

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters of the loss itself (the active terms' own ones, e.g. the centres)."""
        return [p for term in self.active for p in self.terms[term].own_parameters()]

    def attach_optimizers(self, config: dict, make_scheduler) -> None:
        """Give each term's own parameters their optimizer, read from the config keys the term's registry info names
        (``own_optimizer``: (kind key, rate key); ser.optim.build_own_optimizer: plain SGD, or Adam with the LAM
        lineage's moments), with the scheduler that ``make_scheduler(optimizer)`` builds."""
        for term in self.active:
            params = self.terms[term].own_parameters()
            if not params:
                continue
            kind, lr = (_config_value(config, key) for key in LOSS_TERMS.info(term)["own_optimizer"])
            optimizer = build_own_optimizer(kind, params, lr)
            self.optimizers[term] = optimizer
            self.schedulers[term] = make_scheduler(optimizer)

    def attach_optimizer(self, kind: str, lr: float, make_scheduler) -> None:
        """Every term's own parameters with optimizer ``kind`` at ``lr`` (tests of one term at a time)."""
        for term in self.active:
            params = self.terms[term].own_parameters()
            if params:
                optimizer = build_own_optimizer(kind, params, lr)
                self.optimizers[term], self.schedulers[term] = optimizer, make_scheduler(optimizer)

    def zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def step(self, average_, loss_scale: float | None = None) -> None:
        """Update the own parameters from the last backward pass. The gradients are averaged over ranks by
        ``average_`` and divided by the weight their term entered the total with (its loss weight, over its
        running magnitude when scaled) and by the fp16 loss scale: Wen et al. update the centres at their own
        rate, independent of how the term is weighted."""
        for term, optimizer in self.optimizers.items():
            grads = [p.grad for p in self.terms[term].own_parameters() if p.grad is not None]
            average_(grads)
            weight = self.conf[term] / self._divisors.get(term, 1.0)
            for g in grads:
                g.div_(weight * loss_scale if loss_scale is not None else weight)
            optimizer.step()

    def end_epoch(self) -> None:
        for scheduler in self.schedulers.values():
            if scheduler:
                scheduler.step()

    def optimizer_state(self) -> dict:
        """{term: {"optimizer": ..., "scheduler": ...}} of the terms with own parameters."""
        return {term: {"optimizer": optimizer.state_dict(), "scheduler": self.schedulers[term].state_dict()}
                for term, optimizer in self.optimizers.items()}

    def load_optimizer_state(self, state: dict) -> None:
        if "optimizer" in state:  # a checkpoint of ser before terms were registered: the centre's optimizer alone
            state = {term: state for term in self.optimizers}
        for term, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[term]["optimizer"])
            self.schedulers[term].load_state_dict(state[term]["scheduler"])

    def _magnitudes(self, values: dict[str, float]) -> dict[str, float]:
        """Update (in training mode) and return the bias-corrected running magnitude per term."""
        momentum = self.conf["running_momentum"]
        if self.training:
            self.running_steps += 1
            for term, value in values.items():
                index = self.term_names.index(term)
                self.running_magnitude[index] = (momentum * self.running_magnitude[index]
                                                 + (1.0 - momentum) * value)
        steps = int(self.running_steps)
        if steps == 0:
            return {term: 1.0 for term in values}
        correction = 1.0 - momentum ** steps
        return {term: max(float(self.running_magnitude[self.term_names.index(term)]) / correction, MAGNITUDE_FLOOR)
                for term in values}

    def forward(self, logits: Tensor, embedding: Tensor | None, contrastive_embedding: Tensor | None,
                soft_target: Tensor, ranks=None, rows: int | None = None,
                speakers: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """(weighted total, {term: unweighted value, ..., "total": weighted total}). ``rows``: how many leading rows
        are examples (default all; 0 on a rank that holds a stand-in only). ``ranks`` (ser.distributed.Distributed):
        with several ranks, each holding part of the batch, every value is that of the whole batch, and the gradient
        of a per-example term is weighted rows * world / (rows of all ranks), so that the ranks' averaged gradients
        are one process's on the whole batch however unevenly it split; a term that spans the ranks (supervised
        contrastive) gathers the whole batch itself."""
        world = 1 if ranks is None else ranks.world
        rows = logits.shape[0] if rows is None else rows
        anchor = None
        if rows == 0:  # a stand-in: its outputs and the terms' own parameters stay in the graph at weight 0, so
            # that every rank reduces the same gradients (zeros here)
            kept = [t for t in (logits, embedding, contrastive_embedding) if t is not None] + self.own_parameters()
            anchor = sum(t.sum() for t in kept) * 0.0
        logits, soft_target = logits[:rows], soft_target[:rows]
        embedding = None if embedding is None else embedding[:rows]
        contrastive_embedding = None if contrastive_embedding is None else contrastive_embedding[:rows]
        speakers = None if speakers is None else speakers[:rows]
        labels = soft_target.argmax(dim=1)
        if self.conf["hard_label"]:
            soft_target = F.one_hot(labels, soft_target.shape[1]).to(soft_target.dtype)
        inputs = LossInputs(logits, embedding, contrastive_embedding, soft_target, labels, ranks, speakers)
        per_example = [term for term in self.active if not self.terms[term].spans_ranks]
        all_rows = rows if world == 1 else float(ranks.sum_(np.array([rows], dtype=np.float64))[0])
        losses, values = {}, {}
        for term in self.active:
            if rows == 0 and term in per_example:
                continue
            loss = self.terms[term](inputs)
            losses[term], values[term] = loss, float(loss.detach())
        if world > 1 and per_example:
            sums = ranks.sum_(np.array([values.get(term, 0.0) * rows for term in per_example], dtype=np.float64))
            for term, total_value in zip(per_example, sums):
                values[term] = float(total_value / all_rows)
                if term in losses:
                    losses[term] = losses[term] * (rows * world / all_rows)
        for term in self.active:
            if not math.isfinite(values[term]):
                raise NonFiniteLossError(term, values[term])
        values = {term: values[term] for term in self.active}
        divisors = (self._magnitudes(values) if self.conf["scale_by_running_magnitude"]
                    else dict.fromkeys(values, 1.0))
        self._divisors = divisors
        total = sum(self.conf[term] * losses[term] / divisors[term] for term in losses)
        if anchor is not None:
            total = total + anchor
        values["total"] = sum(self.conf[term] * values[term] / divisors[term] for term in self.active)
        if world == 1:
            values["total"] = float(total.detach())  # as before: the value of the very sum differentiated
        return total, values
