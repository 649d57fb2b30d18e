"""Score an experiment: python -m ser.bin.score --exp-dir exp/<tag> --data-dir data [--command "..."]"""

from __future__ import annotations

import argparse

import ser.components  # noqa: F401  (fills the registries: a config's hash reads their defaults)
from ser.cli import die


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--data-dir", required=True, help="the recipe's data dir (protocol.json, fold<k>/test)")
    p.add_argument("--command", default="", help="the command that produced the experiment, recorded with it")
    p.add_argument("--allow-mixed-configs", action="store_true",
                   help="average runs trained with different configs (recorded in results.json as mixed_configs)")
    args = p.parse_args(argv)
    from ser.scoring import METRICS, score_experiment

    try:
        results = score_experiment(args.exp_dir, args.data_dir, args.command, args.allow_mixed_configs)
    except (OSError, ValueError, KeyError) as e:
        die(e)
    s = results["summary"]
    print(f"{results['experiment']}: " + ", ".join(
        f"{m.upper()} {s[m]['mean']:.2f} +- {s[m]['std_over_folds']:.2f}" for m in METRICS)
        + f" ({len(results['protocol']['folds_scored'])} folds x {len(results['protocol']['seeds'])} seeds)")
    print(f"written: {args.exp_dir}/results.json, {args.exp_dir}/RESULTS.md")


if __name__ == "__main__":
    main()
