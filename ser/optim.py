"""Optimizers and learning-rate schedulers of the model's parameters: one builder and one registry line each.

``optim: adam`` with ``optim_conf`` over the entry's defaults; ``scheduler: exponential`` (the rate times gamma after
every epoch) or ``none``, with ``scheduler_conf``.
"""

from __future__ import annotations

import torch

from ser.registry import OPTIMIZERS, SCHEDULERS, anything, finite_number_at_least, is_bool

_NUMBER = finite_number_at_least(0.0)
_BETAS = (lambda value: isinstance(value, list) and len(value) == 2, "[beta1, beta2]")


def _with_tuple_betas(cls):
    def build(params, **conf):
        if "betas" in conf:
            conf["betas"] = tuple(conf["betas"])
        return cls(params, **conf)

    return build


ADAM_DEFAULTS = {"lr": 1.0e-4, "betas": [0.9, 0.98], "eps": 1.0e-9, "weight_decay": 0.0}
_ADAM_RULES = {"lr": anything(), "betas": _BETAS, "eps": _NUMBER, "weight_decay": _NUMBER}  # lr > 0: ser.config
OPTIMIZERS.register("adam", _with_tuple_betas(torch.optim.Adam), ADAM_DEFAULTS, _ADAM_RULES)
OPTIMIZERS.register("adamw", _with_tuple_betas(torch.optim.AdamW), ADAM_DEFAULTS, _ADAM_RULES)
OPTIMIZERS.register("sgd", torch.optim.SGD, {"lr": 1.0e-2, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False},
                    {"lr": anything(), "momentum": _NUMBER, "weight_decay": _NUMBER,
                     "nesterov": (is_bool, "true or false")})

# A loss term's own parameters (the centres): plain SGD, or Adam with the moments of the LAM lineage's model optimizer
# (betas 0.9/0.98, eps 1e-9: docs/method.md section 5), which LAM uses for its centres too.
def build_own_optimizer(kind: str, params, lr: float) -> torch.optim.Optimizer:
    """The optimizer ``kind`` (ser.config.CENTER_OPTIMIZERS) of a loss term's own parameters at rate ``lr``."""
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(ADAM_DEFAULTS["betas"]), eps=ADAM_DEFAULTS["eps"])
    return torch.optim.SGD(params, lr=lr)


SCHEDULERS.register("exponential", lambda optimizer, gamma: torch.optim.lr_scheduler.ExponentialLR(optimizer,
                                                                                                      gamma=gamma),
                    {"gamma": 0.875}, {"gamma": _NUMBER})
SCHEDULERS.register("none", lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0), {}, {})


def build_optimizer(config: dict, params) -> torch.optim.Optimizer:
    """The optimizer of a resolved config over ``params``."""
    return OPTIMIZERS.build(config["optim"], dict(config["optim_conf"]), params)


def build_scheduler(config: dict, optimizer):
    """The scheduler of a resolved config driving ``optimizer``."""
    return SCHEDULERS.build(config["scheduler"], config["scheduler_conf"], optimizer)
