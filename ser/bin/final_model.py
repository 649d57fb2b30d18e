"""Stage 5 (optional): one model trained on every speaker of the corpus, for use after the folds were measured.

    python -m ser.bin.final_model --exp-dir exp/<tag> --config CONF --classes classes.txt --dump-dir dump/fbank \
        [--functionals-scp SCP] [--fbank-conf conf/fbank.conf] [--seed 0] [--set K=V ...] [--ngpu 0]

It trains on dump/fbank/all (every utterance, every speaker) for the epoch count the folds chose: the median of the
selected epochs in exp/<tag>/seed*/fold*/selection.json, as no data are left to choose with. Model selection is
"last"; the validation numbers it logs are on training data and mean nothing. CMVN comes from all the features.
The model goes to exp/<tag>/final/, which ser-classify and EmotionRecognizer read like any run. It has no test
score: the folds' results are its estimate.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

from ser.cli import die, read_classes, select_device, setup_logging


def chosen_epochs(exp_dir: str) -> tuple[int, list[int]]:
    """(median of the folds' selected epochs, rounded up; the epochs) of a finished experiment."""
    import numpy as np

    epochs = []
    for path in sorted(glob.glob(os.path.join(exp_dir, "seed*", "fold*", "selection.json"))):
        with open(path) as f:
            selection = json.load(f)
        if "epoch" not in selection:
            raise ValueError(f"{path}: no selected epoch (a classic reference has none; stage 5 is for neural runs)")
        epochs.append(int(selection["epoch"]))
    if not epochs:
        raise FileNotFoundError(f"{exp_dir}: no trained folds (seed<s>/fold<k>/selection.json); run stage 2 first")
    return int(np.ceil(np.median(epochs))), epochs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--classes", required=True)
    p.add_argument("--dump-dir", required=True, help="holds all/ with feats.scp (stage 1)")
    p.add_argument("--functionals-scp")
    p.add_argument("--fbank-conf")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as ser.bin.train's --set")
    p.add_argument("--ngpu", type=int, default=0)
    args = p.parse_args(argv)
    setup_logging()
    import ser.components  # noqa: F401 (fills the registries the config is resolved by)
    from ser.config import ConfigError, load_config, parse_overrides
    from ser.datadir import DataDirError
    from ser.features import CmvnAccumulator, iter_feats_scp, write_cmvn_stats
    from ser.frontends import frontend_of
    from ser.train import TrainingError, train

    outdir = os.path.join(args.exp_dir, "final")
    try:
        epochs, each = chosen_epochs(args.exp_dir)
        overrides = {**parse_overrides(args.set), "max_epoch": epochs, "model_selection": "last"}
        if args.seed is not None:
            overrides["seed"] = args.seed
        config = load_config(args.config, overrides)
        all_dir = os.path.join(args.dump_dir, "all")
        cmvn = None
        if frontend_of(config).uses_fold_cmvn:
            accumulator = CmvnAccumulator()
            for _, feats in iter_feats_scp(os.path.join(all_dir, "feats.scp")):
                accumulator.add(feats)
            cmvn = os.path.join(args.exp_dir, "final_cmvn.ark")
            write_cmvn_stats(cmvn, accumulator.stats)
        print(f"final model: {epochs} epochs (median of the folds' selected epochs {each}) on every utterance of "
              f"{all_dir} -> {outdir}", flush=True)
        extra = {"fbank.conf": args.fbank_conf} if args.fbank_conf else {}
        train(config, read_classes(args.classes), all_dir, all_dir, cmvn, outdir, select_device(args.ngpu), extra,
              args.functionals_scp)
    except (ConfigError, DataDirError, TrainingError, ValueError, OSError) as e:
        die(e)


if __name__ == "__main__":
    main()
