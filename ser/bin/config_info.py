"""What a stage script needs to know of a training config:
python -m ser.bin.config_info CONFIG FIELD [FIELD ...] [--set K=V]

FIELD: system (neural | classic), seed, functionals (the openSMILE feature set the run reads, or none), frontend
(the neural front-end, or none for a classic reference), caches_frames (true when the front-end's frames are cached
before training: ser.bin.cache_ssl), model_file (the file a finished fold's model is stored
in): each value on a line of its own, in the order asked (one start-up for several fields); or resolved, alone (the
whole config with every default, as YAML: what training will use). The config is fully resolved, so a bad key or
value stops here with an error naming the file and key.
"""

from __future__ import annotations

import argparse

from ser.cli import die

FIELDS = ("system", "seed", "functionals", "frontend", "caches_frames", "model_file", "resolved")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("fields", nargs="+", choices=FIELDS, metavar="FIELD", help=", ".join(FIELDS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as ser.bin.train's --set")
    args = p.parse_args(argv)
    if "resolved" in args.fields and len(args.fields) > 1:
        p.error("resolved is asked for alone")
    import ser.components  # noqa: F401 (fills the registries the config is resolved by)
    from ser.config import ConfigError, load_any_config, parse_overrides

    try:
        config = load_any_config(args.config, parse_overrides(args.set))
    except ConfigError as e:
        die(e)
    if args.fields == ["resolved"]:
        import yaml

        print(yaml.safe_dump(config, sort_keys=False, default_flow_style=None), end="")
        return
    values = config_fields(config)
    print("\n".join(str(values[field]) for field in args.fields))


def config_fields(config: dict) -> dict:
    """The fields above (but resolved) of a resolved config."""
    classic = config.get("system") == "classic"
    caches = False
    if not classic:
        from ser.frontends import frontend_of

        caches = frontend_of(config).caches_frames
    return {
        "system": "classic" if classic else "neural",
        "seed": config["seed"],
        "functionals": config["feature_set"] if classic else config["functionals"],
        "frontend": "none" if classic else config["frontend"],
        "caches_frames": str(caches).lower(),
        "model_file": "model.npz" if classic else "model.pth",
    }


if __name__ == "__main__":
    main()
