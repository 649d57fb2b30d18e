"""One registry per kind of component that a config names (``frontend``, ``encoder``, ``augment``).

An entry holds the component's builder, its defaults (written once, here), the rule for each of its values and,
optionally, a check across values. ``resolve`` turns a config's ``<kind>_conf`` into a complete, checked conf and
is the one validation path: every error is a ConfigError naming the key. ``build`` trusts a resolved conf.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

from ser.config import ConfigError

Rule = tuple[Callable[[Any], bool], str]  # (is the value valid, what is expected)


@dataclass
class Entry:
    build: Callable[..., Any]
    defaults: dict[str, Any]
    rules: dict[str, Rule]
    check: Callable[[dict], None] | None = None  # cross-value checks; may normalise values in place


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, build: Callable[..., Any], defaults: dict[str, Any], rules: dict[str, Rule],
                 check: Callable[[dict], None] | None = None) -> None:
        missing = sorted(set(defaults) - set(rules))
        if missing:
            raise ValueError(f"{self.kind} {name!r}: no rule for {', '.join(missing)}")
        self._entries[name] = Entry(build, defaults, rules, check)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def defaults(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._entry(name).defaults)

    def _entry(self, name: str) -> Entry:
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
