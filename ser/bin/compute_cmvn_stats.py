"""Accumulate global CMVN statistics over every utterance of a feats.scp.

Usage: python -m ser.bin.compute_cmvn_stats FEATS_SCP OUT

OUT ending in .npy is a numpy file; any other name is a Kaldi ark holding one double matrix keyed
"global" in Kaldi's (2, D+1) layout (``copy-matrix ark:OUT ark,t:-`` shows it). Read it back with
ser.features.read_cmvn_stats.
"""
from __future__ import annotations

import argparse
import sys

from ser.features import CmvnAccumulator, iter_feats_scp, write_cmvn_stats


def compute_cmvn_stats(feats_scp: str, out_path: str) -> int:
    """Write the global stats of ``feats_scp`` to ``out_path``; return the number of utterances."""
    accumulator = CmvnAccumulator()
    num_utts = 0
    for key, feats in iter_feats_scp(feats_scp):
        try:
            accumulator.add(feats)
        except ValueError as err:
            raise ValueError(f"{feats_scp}: utterance {key}: {err}") from err
        num_utts += 1
    try:
        stats = accumulator.result()
    except ValueError as err:
        raise ValueError(f"{feats_scp}: {err}") from err
    write_cmvn_stats(out_path, stats)
    return num_utts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="compute_cmvn_stats.py",
        description="Global CMVN statistics (Kaldi layout: row 0 = sums + frame count, "
        "row 1 = sums of squares) over all utterances of a feats.scp.",
    )
    parser.add_argument("feats_scp", metavar="FEATS_SCP", help="input feats.scp")
    parser.add_argument(
        "out", metavar="OUT", help="output: *.npy for numpy, otherwise a Kaldi ark with the key 'global'"
    )
    args = parser.parse_args(argv)
    try:
        num_utts = compute_cmvn_stats(args.feats_scp, args.out)
    except (ValueError, OSError) as err:
        print(f"compute_cmvn_stats.py: error: {err}", file=sys.stderr)
        return 1
    print(f"compute_cmvn_stats.py: accumulated {num_utts} utterances into {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
