"""Train one SER model on a fold: python -m ser.bin.train --config conf/train.yaml --train-dir ... --outdir ..."""

from __future__ import annotations

import argparse
import os

from ser.cli import die, read_classes, select_device, setup_logging


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="training YAML config")
    p.add_argument("--classes", required=True, help="classes.txt of the recipe (one class per line)")
    p.add_argument("--train-dir", required=True, help="data dir with feats.scp and utt2emo")
    p.add_argument("--valid-dir", required=True, help="validation data dir (training-fold speakers only)")
    p.add_argument("--cmvn", help="global CMVN stats of the training fold (Kaldi matrix; fbank front-end)")
    p.add_argument("--functionals-scp", help="openSMILE functionals of data/all (configs with functionals)")
    p.add_argument("--fbank-conf", help="the feature config, kept with the model for single-file classification")
    p.add_argument("--outdir", required=True)
    p.add_argument("--seed", type=int, help="overrides the config's seed")
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value); dotted keys reach into mappings, e.g. --set max_epoch=5 "
                   "--set optim_conf.lr=1e-4")
    args = p.parse_args(argv)

    import ser.components  # noqa: F401 (fills the registries the config is resolved by)
    from ser.config import ConfigError, load_any_config, parse_overrides
    from ser.datadir import DataDirError
    from ser.train import TrainingError, train

    setup_logging()
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.outdir)), exist_ok=True)
        overrides = parse_overrides(args.set)
        if args.seed is not None:
            overrides["seed"] = args.seed
        config = load_any_config(args.config, overrides)
        classes = read_classes(args.classes)
        if config.get("system") == "classic":
            from ser.classic import train_classic_run

            train_classic_run(config, classes, args.functionals_scp, [args.train_dir, args.valid_dir], args.outdir)
            return
        extra = {"fbank.conf": args.fbank_conf} if args.fbank_conf else {}
        train(config, classes, args.train_dir, args.valid_dir, args.cmvn, args.outdir, select_device(args.ngpu), extra,
              args.functionals_scp)
    except (ConfigError, DataDirError, TrainingError, ValueError, OSError) as e:  # one line; no traceback
        die(e)


if __name__ == "__main__":
    main()
