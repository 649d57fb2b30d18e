"""Stage 1's per-fold part: feature data dirs of every fold and set, and each training fold's global CMVN.

    python -m ser.bin.fold_features --data-dir data --dump-dir dump/fbank

For every fold k and set in train/valid/test: dump/fbank/fold<k>/<set> = dump/fbank/all restricted to the
utterances of data/fold<k>/<set>, validated; dump/fbank/fold<k>/train/cmvn.ark = global CMVN statistics of that
training set only. Every utterance's features are read once, in one process, whatever the number of folds.
"""

from __future__ import annotations

import argparse
import os

from ser.cli import die


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="the recipe's data dir (protocol.json, fold<k>/<set>)")
    p.add_argument("--dump-dir", required=True, help="holds all/ with feats.scp; fold dirs are written beside it")
    args = p.parse_args(argv)
    from ser.datadir import DataDirError, write_fold_dirs
    from ser.features import CmvnAccumulator, iter_feats_scp, utterance_cmvn_stats, write_cmvn_stats

    try:
        all_dir = os.path.join(args.dump_dir, "all")
        # Per-utterance sufficient statistics, so that each fold's CMVN is a sum of them.
        utt_stats = {utt: utterance_cmvn_stats(feats)
                     for utt, feats in iter_feats_scp(os.path.join(all_dir, "feats.scp"))}
        for fold, part, utts, out in write_fold_dirs(args.data_dir, all_dir, args.dump_dir):
            if part == "train":
                accumulator = CmvnAccumulator()
                for utt in utts:
                    accumulator.add_stats(utt_stats[utt])
                write_cmvn_stats(os.path.join(out, "cmvn.ark"), accumulator.result())
            elif part == "test":
                print(f"fold {fold}: train/valid/test feature dirs and training-set CMVN ({len(utts)} test "
                      "utterances)")
    except (OSError, ValueError, KeyError, DataDirError) as e:
        die(e)


if __name__ == "__main__":
    main()
