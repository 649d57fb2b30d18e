"""One registry per kind of component that a config names (``frontend``, ``encoder``, ``augment``, ``specaug``,
a loss term, ``optim``, ``scheduler``, ``speaker_norm``, ``functionals``, a ``system``), and ConfigError.

An entry holds the component's builder, its defaults (written once, here), the rule for each of its values and,
optionally, a check across values, a check against the rest of the config (``fits``) and declared facts about
the component (``info``). ``resolve`` turns a config's ``<kind>_conf`` into a complete, checked conf and is the one
validation path: every error is a ConfigError naming the key. ``build`` trusts a resolved conf.

This module imports no component: the registries are defined here, empty, and each component module fills its
own (one ``register`` line per component). ser.config resolves a config by asking them; ser.components imports
every component module, so that entry points (ser.bin.*, the recogniser) find the registries filled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable


class ConfigError(ValueError):
    """A bad config key or value; the message names the file and key."""


Rule = tuple[Callable[[Any], bool], str]  # (is the value valid, what is expected)


@dataclass
class Entry:
    build: Callable[..., Any]
    defaults: dict[str, Any]
    rules: dict[str, Rule]
    check: Callable[[dict], None] | None = None  # cross-value checks; may normalise values in place
    fits: Callable[[dict, Any], None] | None = None  # (resolved config, its front-end): ConfigError if it cannot
    info: dict[str, Any] | None = None  # what the component declares of itself (e.g. a loss term's own optimizer)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, build: Callable[..., Any], defaults: dict[str, Any], rules: dict[str, Rule],
                 check: Callable[[dict], None] | None = None, fits: Callable[[dict, Any], None] | None = None,
                 **info: Any) -> None:
        missing = sorted(set(defaults) - set(rules))
        if missing:
            raise ValueError(f"{self.kind} {name!r}: no rule for {', '.join(missing)}")
        self._entries[name] = Entry(build, defaults, rules, check, fits, info)

    def unregister(self, name: str) -> None:
        """Take ``name`` out again (a test that registers a made-up component cleans up with it)."""
        del self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def defaults(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._entry(name).defaults)

    def rules(self, name: str) -> dict[str, Rule]:
        return dict(self._entry(name).rules)

    def info(self, name: str) -> dict[str, Any]:
        return dict(self._entry(name).info or {})

    def fits(self, name: str, config: dict, frontend: Any) -> None:
        """The component's check against the rest of a resolved config (ConfigError naming the key), if it has one."""
        fits = self._entry(name).fits
        if fits:
            fits(config, frontend)

    def _entry(self, name: str) -> Entry:
        if not self._entries:
            raise ConfigError(f"{self.kind}: no {self.kind} is registered; import ser.components (which imports "
                              "every component module) before resolving a config")
        if name not in self._entries:
            raise ConfigError(f"{self.kind}: unknown value {name!r}; choose one of {', '.join(self._entries)}")
        return self._entries[name]

    def resolve(self, name: str, given: dict | None = None) -> dict[str, Any]:
        """The defaults of ``name`` overridden by ``given``, every key and value checked. Resolving a resolved conf
        gives it back unchanged."""
        entry = self._entry(name)
        given = {} if given is None else given
        if not isinstance(given, dict):
            raise ConfigError(f"{self.kind}_conf must be a mapping, got {type(given).__name__}")
        for key in given:
            if key not in entry.defaults:
                raise ConfigError(f"unknown key {self.kind}_conf.{key} for {self.kind} {name!r}; "
                                  f"valid keys: {', '.join(entry.defaults) or '(none)'}")
        conf = {**copy.deepcopy(entry.defaults), **given}
        for key, value in conf.items():
            is_valid, expected = entry.rules[key]
            if not is_valid(value):
                raise ConfigError(f"{self.kind}_conf.{key} must be {expected}, got {value!r}")
        if entry.check:
            entry.check(conf)
        return conf

    def build(self, name: str, conf: dict[str, Any], *args, **kwargs):
        """The component ``name`` built from a resolved conf (and the context the builder needs)."""
        return self._entry(name).build(*args, **kwargs, **conf)


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def number_in(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Rule:
    """A finite number in the interval (ints accepted)."""
    def is_valid(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return False
        return (low < value if low_open else low <= value) and (value < high if high_open else value <= high)

    return is_valid, f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def one_of(*choices: Any) -> Rule:
    return (lambda value: value in choices), "one of " + ", ".join(str(c) for c in choices)


def finite_number_at_least(low: float) -> Rule:
    def is_valid(value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, (int, float)) and value == value \
            and abs(value) != float("inf") and value >= low

    return is_valid, f"a finite number >= {low}"


def anything() -> Rule:
    return (lambda value: True), "anything"


# The registries, filled by the component modules (ser.components imports them all).
FRONTENDS = Registry("frontend")  # ser.frontends
ENCODERS = Registry("encoder")  # ser.models
AUGMENTS = Registry("augment")  # ser.augment
SPECAUGS = Registry("specaug")  # ser.specaug
LOSS_TERMS = Registry("loss")  # ser.losses: one entry per term; its defaults are its weight (key: its name) and options
LOSS_SHARED = Registry("loss_shared")  # ser.losses: entry "multi", the loss_conf keys of the sum itself
OPTIMIZERS = Registry("optim")  # ser.optim
SCHEDULERS = Registry("scheduler")  # ser.optim
SPEAKER_NORMS = Registry("speaker_norm")  # ser.speaker_norm
FUNCTIONALS = Registry("functionals")  # ser.functionals: none and the openSMILE feature sets
SYSTEMS = Registry("system")  # configs of another kind than the neural trainer's (ser.classic); info: resolve_config
