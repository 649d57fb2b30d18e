"""Front-ends: what turns a stored utterance into the input of a model (the interface: ser.frontends.base).

Adding a front-end is one module with a ``Frontend`` subclass and one line in ``FRONTENDS``.
"""

from __future__ import annotations

from typing import Any

from ser.frontends.base import Frontend
from ser.frontends.fbank import Fbank
from ser.frontends.wavlm import WavLM

FRONTENDS: dict[str, type[Frontend]] = {cls.name: cls for cls in (Fbank, WavLM)}

FRONTEND_DEFAULTS: dict[str, dict[str, Any]] = {name: cls.defaults for name, cls in FRONTENDS.items()}


def frontend_class(name: str) -> type[Frontend]:
    if name not in FRONTENDS:
        raise ValueError(f"unknown frontend {name!r}; choose one of {', '.join(FRONTENDS)}")
    return FRONTENDS[name]


def resolve_frontend_conf(name: str, given: dict | None) -> dict[str, Any]:
    """The front-end's defaults overridden by ``given`` (frontend_conf), every key and value checked."""
    return frontend_class(name).resolve(given)


def make_frontend(name: str, conf: dict | None = None) -> Frontend:
    return frontend_class(name)(conf)


def frontend_of(config: dict) -> Frontend:
    """The front-end of a resolved config."""
    return make_frontend(config["frontend"], config["frontend_conf"])
