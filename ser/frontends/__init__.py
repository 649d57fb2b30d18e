"""Front-ends: what turns a stored utterance into the input of a model (the interface: ser.frontends.base).

Adding a front-end is one module with a ``Frontend`` subclass and one line in the registration below.
"""

from __future__ import annotations

from typing import Any

from ser.frontends.base import Frontend
from ser.frontends.fbank import Fbank
from ser.frontends.ssl_cached import SSLCached
from ser.frontends.wavlm import SSL, WavLM, Whisper
from ser.registry import FRONTENDS

FRONTEND_CLASSES = (Fbank, WavLM, SSL, Whisper, SSLCached)
for _cls in FRONTEND_CLASSES:
    FRONTENDS.register(_cls.name, _cls.from_conf, _cls.defaults, _cls.rules, _cls.check)


def frontends_that(attribute: str) -> list[str]:
    """The names of the front-ends whose class attribute ``attribute`` is true (caches_frames, exportable, ...)."""
    return [cls.name for cls in FRONTEND_CLASSES if getattr(cls, attribute)]


def resolve_frontend_conf(name: str, given: dict | None) -> dict[str, Any]:
    """The front-end's defaults overridden by ``given`` (frontend_conf), every key and value checked."""
    return FRONTENDS.resolve(name, given)


def make_frontend(name: str, conf: dict | None = None) -> Frontend:
    """The front-end ``name`` with ``conf`` resolved over its defaults."""
    return FRONTENDS.build(name, FRONTENDS.resolve(name, conf))


def frontend_of(config: dict) -> Frontend:
    """The front-end of a resolved config (its frontend_conf trusted as it is)."""
    return FRONTENDS.build(config["frontend"], config["frontend_conf"])
