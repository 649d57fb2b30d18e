"""Experiment configs: ESPnet-style YAML, every key with a default, every key checked at load.

A config names components (``encoder: flam``) and gives their options (``encoder_conf: {...}``). The defaults
of each component are written once, in its registry entry (ser.registry: FRONTENDS, ENCODERS, AUGMENTS, SPECAUGS,
LOSS_TERMS, OPTIMIZERS, SCHEDULERS, ...); this module merges them, rejects unknown keys by name (one ConfigError),
hashes the result and writes the resolved config that a run is reproduced from.

It imports no component: it asks the registries, which the component modules fill when they are imported.
Entry points import ser.components (every component module) first.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re

import yaml

from ser.atomic import write_text
from ser.registry import (
    AUGMENTS,
    ENCODERS,
    FRONTENDS,
    FUNCTIONALS,
    LOSS_SHARED,
    LOSS_TERMS,
    OPTIMIZERS,
    SCHEDULERS,
    SPEAKER_NORMS,
    SPECAUGS,
    SYSTEMS,
    ConfigError,
)

TRAINER_DEFAULTS = {
    "frontend": "fbank",
    "frontend_conf": {},
    "encoder": "flam",
    "encoder_conf": {},
    "augment": "eam",
    "augment_conf": {},
    "specaug": "none",  # none | specaug: frequency warp, time stretch and masks of training fbank (ser.specaug)
    "specaug_conf": {},
    "speed_perturb": [],  # e.g. [0.9, 1.0, 1.1]: each training utterance at a factor drawn per epoch; [] = off
    "loss_conf": {},
    "optim": "adam",
    "optim_conf": {},  # merged onto the defaults the optimizer registered (ser.optim)
    "center_optim": "sgd",  # the centre loss's own optimizer: sgd (plain SGD) | adam (betas 0.9/0.98, eps 1e-9: LAM's)
    "center_lr": 5.0e-3,
    "speaker_norm": "none",  # none | cmvn: per-speaker CMVN of the inputs (a transductive protocol; ser.speaker_norm)
    "functionals": "none",  # none | eGeMAPSv02 | ComParE_2016: openSMILE functionals fused into the embedding
    "stacking": "none",  # none | classic: the classic reference's out-of-fold log-posteriors fused beside them
    "scheduler": "exponential",
    "scheduler_conf": {"gamma": 0.875},
    "max_epoch": 20,
    "batch_size": 16,
    "crop_seconds": 6.0,  # training crops of at most this long; 0 = whole utterances; tests always use whole ones
    "bucketing": True,  # batch utterances of similar length to limit padding
    "model_selection": "valid_ua",  # valid_ua (best validation UA) | last (last epoch)
    "grad_clip": 0.0,  # max gradient norm; 0 = off
    "amp": "none",  # automatic mixed precision: none | bf16 | fp16 (fp16 with loss scaling, GPU only)
    "seed": 0,
    "num_threads": 0,  # torch intra-op threads; 0 = torch's default
    "num_workers": 0,  # DataLoader worker processes preparing training batches; 0 = in the training process
    "persistent_workers": False,  # keep the workers from epoch to epoch (num_workers > 0)
    "log_interval": 20,  # batches between progress log lines
}

MODEL_SELECTIONS = ("valid_ua", "last")
CENTER_OPTIMIZERS = ("sgd", "adam")
AMP_MODES = ("none", "bf16", "fp16")
STACKINGS = ("none", "classic")
# component key -> its registry: each resolves its <key>_conf
COMPONENT_REGISTRIES = {"frontend": FRONTENDS, "encoder": ENCODERS, "augment": AUGMENTS, "specaug": SPECAUGS}


def check_keys(given: dict, allowed, where: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(allowed))}")


FLOAT_LITERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def check_type(value, default, where: str):
    """Values must have the default's type (ints are accepted for floats); None defaults accept anything."""
    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, str) and FLOAT_LITERAL.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string; it means the number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
    elif isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return list(value)
    elif isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


def _merge(defaults: dict, given: dict, where: str) -> dict:
    check_keys(given, defaults, where)
    merged = copy.deepcopy(defaults)
    for key, value in given.items():
        merged[key] = check_type(value, defaults[key], f"{where}.{key}")
    return merged


def loss_defaults() -> dict:
    """loss_conf's defaults: each registered loss term's weight (its name) and options, in the order the terms were
    registered, then the keys of the weighted sum itself."""
    defaults = {}
    for term in LOSS_TERMS.names():
        defaults.update(LOSS_TERMS.defaults(term))
    defaults.update(LOSS_SHARED.defaults("multi"))
    return defaults


def resolve_loss_conf(given: dict | None) -> dict:
    """loss_conf over loss_defaults(), every key and value checked by the rule its term registered; ConfigError
    naming the key. The one validation of loss_conf (MultiLoss trusts what this returns)."""
    conf = _merge(loss_defaults(), given or {}, "loss_conf")
    rules = {}
    for term in LOSS_TERMS.names():
        rules.update(LOSS_TERMS.rules(term))
    rules.update(LOSS_SHARED.rules("multi"))
    for key, value in conf.items():
        is_valid, expected = rules[key]
        if not is_valid(value):
            raise ConfigError(f"loss_conf.{key} must be {expected}, got {value!r}")
    terms = LOSS_TERMS.names()
    if not any(conf[term] > 0 for term in terms):
        raise ConfigError(f"loss_conf: every loss weight ({', '.join(terms)}) is 0: nothing to train")
    return conf


def _choice(registry, name: str, source: str) -> None:
    if name not in registry:
        raise ConfigError(f"{source}: {registry.kind}: unknown value {name!r}; "
                          f"choose one of {', '.join(registry.names())}")


def _require_components() -> None:
    empty = [r.kind for r in (FRONTENDS, ENCODERS, LOSS_TERMS, OPTIMIZERS, SYSTEMS) if not r.names()]
    if empty:
        raise ConfigError(f"no {', '.join(empty)} is registered: import ser.components (every component module, "
                          "each filling its registry) before resolving a config")


def resolve_config(given: dict, source: str = "config") -> dict:
    """Merge a user config with every default; raise ConfigError naming the bad key."""
    _require_components()
    if not isinstance(given, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values")
    check_keys(given, TRAINER_DEFAULTS, source)
    config = copy.deepcopy(TRAINER_DEFAULTS)
    for key, value in given.items():
        if key.endswith("_conf"):
            config[key] = check_type(value if value is not None else {}, {}, f"{source}: {key}")
        else:
            config[key] = check_type(value, TRAINER_DEFAULTS[key], f"{source}: {key}")

    try:
        # Each component's conf is resolved by its registry: the one place of its defaults and value rules.
        for component, registry in COMPONENT_REGISTRIES.items():
            config[f"{component}_conf"] = registry.resolve(config[component], config[f"{component}_conf"])
        config["loss_conf"] = resolve_loss_conf(config["loss_conf"])
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None

    _choice(OPTIMIZERS, config["optim"], source)
    config["optim_conf"] = _resolve_registered(OPTIMIZERS, config["optim"], given.get("optim_conf") or {},
                                               f"{source}: optim_conf")
    _choice(SCHEDULERS, config["scheduler"], source)
    config["scheduler_conf"] = _resolve_registered(SCHEDULERS, config["scheduler"],
                                                   config["scheduler_conf"] if "scheduler_conf" in given else {},
                                                   f"{source}: scheduler_conf")
    if config["model_selection"] not in MODEL_SELECTIONS:
        raise ConfigError(f"{source}: model_selection: unknown value {config['model_selection']!r}; "
                          f"choose one of {', '.join(MODEL_SELECTIONS)}")
    if config["center_optim"] not in CENTER_OPTIMIZERS:
        raise ConfigError(f"{source}: center_optim: unknown value {config['center_optim']!r}; "
                          f"choose one of {', '.join(CENTER_OPTIMIZERS)}")
    _choice(SPEAKER_NORMS, config["speaker_norm"], source)
    _choice(FUNCTIONALS, config["functionals"], source)
    if config["stacking"] not in STACKINGS:
        raise ConfigError(f"{source}: stacking: unknown value {config['stacking']!r}; "
                          f"choose one of {', '.join(STACKINGS)}")
    if config["stacking"] != "none" and config["functionals"] == "none":
        raise ConfigError(f"{source}: stacking: {config['stacking']} stacks the classic reference on the fused "
                          "functionals: set functionals (eGeMAPSv02 or ComParE_2016)")
    frontend = FRONTENDS.build(config["frontend"], config["frontend_conf"])
    try:
        # Each chosen component checks that it fits the rest of the config (e.g. the front-end's domain).
        for key, registry in (("speaker_norm", SPEAKER_NORMS), ("augment", AUGMENTS), ("specaug", SPECAUGS)):
            registry.fits(config[key], config, frontend)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    if config["amp"] not in AMP_MODES:
        raise ConfigError(f"{source}: amp: unknown value {config['amp']!r}; choose one of {', '.join(AMP_MODES)}")
    for factor in config["speed_perturb"]:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.5 <= factor <= 2.0:
            raise ConfigError(f"{source}: speed_perturb: each factor must be a number in [0.5, 2.0], got {factor!r}")
    if len(set(config["speed_perturb"])) != len(config["speed_perturb"]):
        raise ConfigError(f"{source}: speed_perturb: a factor repeats in {config['speed_perturb']}")
    for key in ("max_epoch", "batch_size"):
        if config[key] < 1:
            raise ConfigError(f"{source}: {key}: must be >= 1, got {config[key]}")
    if config["num_workers"] < 0:
        raise ConfigError(f"{source}: num_workers: must be >= 0, got {config['num_workers']}")
    for key in ("crop_seconds", "grad_clip", "center_lr"):
        if config[key] < 0:
            raise ConfigError(f"{source}: {key}: must be >= 0, got {config[key]}")
    if config["optim_conf"].get("lr", 1.0) <= 0:
        raise ConfigError(f"{source}: optim_conf.lr: must be > 0")
    return config


def _resolve_registered(registry, name: str, given: dict, where: str) -> dict:
    """The registered defaults of ``name`` merged with ``given`` (types as in the defaults), then its rules."""
    conf = _merge(registry.defaults(name), given, where)
    try:
        return registry.resolve(name, conf)
    except ConfigError as e:
        raise ConfigError(f"{where.rpartition(':')[0]}: {e}") from None


def parse_overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` strings (VALUE in YAML; KEY may be a dotted path such as ``optim_conf.lr``) -> {key: value};
    a malformed item is a ConfigError naming it."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML: {e}") from None
    return overrides


def apply_overrides(given: dict, overrides: dict | None) -> dict:
    """Set each override in ``given``: ``a.b`` sets key b of mapping a (created if absent). The result is checked
    as a config file is, so an unknown key at any depth is an error naming it."""
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = given
        for depth, key in enumerate(parents):
            child = node.setdefault(key, {})
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: {'.'.join(parents[:depth + 1])} is {child!r}, not a mapping")
            node = child
        node[leaf] = value
    return given


def load_any_config(path: str, overrides: dict | None = None) -> dict:
    """A neural training config, or a classic-reference one (``system: classic``, ser.classic), resolved."""
    given = apply_overrides(_read_yaml(path), overrides)
    _require_components()
    if given.get("system") in SYSTEMS:
        return SYSTEMS.info(given["system"])["resolve_config"](given, source=path)
    return resolve_config(given, source=path)


def load_config(path: str, overrides: dict | None = None) -> dict:
    """Read a YAML config, apply ``overrides`` (dotted keys reach into mappings), and resolve it."""
    given = apply_overrides(_read_yaml(path), overrides)
    return resolve_config(given, source=path)


def _read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such config file")
    with open(path, encoding="utf-8") as f:
        try:
            given = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {yaml_error_line(e)}") from None
    if not isinstance(given, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return given


def yaml_error_line(error: yaml.YAMLError) -> str:
    """A YAML error in one line: where and what (a tag such as ``!!python/object`` is refused: configs are data)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def _canonical(value):
    """The value with every number as a float, so `10` and `10.0` (the same setting) hash alike."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


# Keys added after runs were published (as paths into the resolved config), with the value that trains as before
# they existed. At that value they are left out of the hash, so a finished run keeps its identity (and stays
# finished) when ser gains a key.
ADDED_KEYS_NO_OP = {("specaug",): "none", ("specaug_conf",): {}, ("speed_perturb",): [],
                    ("encoder_conf", "utterance_mean_norm"): False, ("encoder_conf", "branch_dropout"): 0.0,
                    ("loss_conf", "speaker_adv"): 0.0, ("loss_conf", "speaker_adv_hidden"): 128,
                    ("loss_conf", "speaker_adv_optim"): "adam", ("loss_conf", "speaker_adv_lr"): 1.0e-3}
# Keys that change how fast a run goes and never what it computes (epoch data depend on (seed, epoch) alone, in the
# training process or in workers): always left out of the hash, so switching them keeps a run's identity (a run
# resumes with workers on, and seeds trained with different values are one config to scoring).
SPEED_ONLY_KEYS = ("num_workers", "persistent_workers")


# Upgrades keep runs' identity by construction: the keys the hash knew when hashes were first pinned (version 1,
# test/test_architecture.py) are always hashed; every key added since is hashed only where its value differs from
# its default, so a key added with a default that trains as before changes no hash. Never edit this table: it is
# what finished runs were hashed with. (Top-level keys under "", then the keys inside each <component>_conf.)
HASHED_KEYS_V1 = {
    "": "amp augment augment_conf batch_size bucketing c_grid center_lr center_optim crop_seconds cv_folds encoder "
        "encoder_conf feature_set frontend frontend_conf functionals grad_clip log_interval loss_conf max_epoch "
        "max_iter model_selection num_threads num_workers optim optim_conf persistent_workers scheduler "
        "scheduler_conf seed speaker_norm system",
    "frontend_conf": "download dtype freeze layer model_id norm_vars normalize_wave path",
    "encoder_conf": "context_broadcasting conv_channels d_model dropout embed_dim fusion_dim fusion_dropout "
                    "input_layer num_heads pooling",
    "augment_conf": "max_segment_ratio prob snr_range",
    "optim_conf": "betas eps lr momentum nesterov weight_decay",
    "scheduler_conf": "gamma",
    "loss_conf": "ce center focal focal_gamma hard_label kl running_momentum scale_by_running_magnitude supcon "
                 "temperature",
}
# Keys added since whose default does not compute what runs before them did (a fix that changes results): hashed
# always, so a finished run of the old behaviour is trained again, never taken for one of the new.
HASHED_KEYS_CHANGED_BEHAVIOUR = {
    "": "tol",  # the classic reference: lbfgs stopping early at scikit-learn's tol 1e-4 -> newton-cg to tol 1e-6
}
_V1 = {conf: set(keys.split()) | set(HASHED_KEYS_CHANGED_BEHAVIOUR.get(conf, "").split())
       for conf, keys in HASHED_KEYS_V1.items()}
_NO_DEFAULT = object()


def default_of(config: dict, conf: str, key: str):
    """The default of ``key`` at the top level (conf "") or inside ``conf`` (a <component>_conf, as the chosen
    component registered it, or loss_conf) of a resolved config; _NO_DEFAULT where there is none."""
    if not conf:
        system = config.get("system")
        return (SYSTEMS.defaults(system) if system in SYSTEMS else TRAINER_DEFAULTS).get(key, _NO_DEFAULT)
    if conf == "loss_conf":
        return loss_defaults().get(key, _NO_DEFAULT)
    component = conf[:-len("_conf")]
    registry = {**COMPONENT_REGISTRIES, "optim": OPTIMIZERS, "scheduler": SCHEDULERS}.get(component)
    if registry is None or config.get(component) not in registry:
        return _NO_DEFAULT
    return registry.defaults(config[component]).get(key, _NO_DEFAULT)


def _hashed(config: dict) -> dict:
    """The part of a resolved config that names a run: version 1's keys, and later keys away from their default."""
    kept = {}
    for key, value in config.items():
        if key in _V1[""]:
            if key in _V1 and isinstance(value, dict):
                value = {k: v for k, v in value.items() if k in _V1[key] or
                         _canonical(v) != _canonical(default_of(config, key, k))}
            kept[key] = value
        elif _canonical(value) != _canonical(default_of(config, "", key)):
            kept[key] = value
    return kept


def config_hash(config: dict) -> str:
    """A short, stable hash of a resolved config: key order and int/float spelling do not matter, and neither do
    keys added after version 1 at their defaults (HASHED_KEYS_V1)."""
    config = copy.deepcopy(config)
    for key in SPEED_ONLY_KEYS:
        config.pop(key, None)
    for path, no_op in ADDED_KEYS_NO_OP.items():
        parent = config
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and path[-1] in parent and parent[path[-1]] == no_op:
            del parent[path[-1]]
    return hashlib.sha1(json.dumps(_canonical(_hashed(config)), sort_keys=True).encode()).hexdigest()[:12]


def write_config(config: dict, path: str) -> None:
    write_text(path, yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
