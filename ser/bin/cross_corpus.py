"""Score a trained experiment on another corpus's data dir through a class map (see ser.cross_corpus):
python -m ser.bin.cross_corpus --exp-dir EXP --data-dir DATA --class-map "angry=ang happy=hap ..." --out DIR"""

from __future__ import annotations

import argparse
import shlex
import sys

from ser.cli import die


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp-dir", required=True, help="a trained experiment (exp/<tag>) or one run")
    p.add_argument("--data-dir", required=True, help="the target corpus's data dir (utt2emo, wav.scp)")
    p.add_argument("--class-map", required=True, help='"MODEL_CLASS=TARGET_CLASS ...", or @FILE with such pairs')
    p.add_argument("--out", required=True, help="where results.json, RESULTS.md and posteriors go")
    p.add_argument("--target-corpus", help="the target corpus's name [from the protocol.json of its data root]")
    p.add_argument("--max-utts", type=int, help="score a class-stratified subsample of at most N utterances "
                   "(deterministic; recorded in the protocol) [all]")
    p.add_argument("--ngpu", type=int, default=0)
    args = p.parse_args(argv)
    from ser.cli import select_device
    from ser.cross_corpus import evaluate, parse_class_map

    try:
        text = args.class_map
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        command = " ".join(shlex.quote(w) for w in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
        results = evaluate(args.exp_dir, args.data_dir, parse_class_map(text), args.out,
                           select_device(args.ngpu), command, args.target_corpus, args.max_utts)
    except (OSError, ValueError) as e:
        die(e)
    s = results["summary"]["ua"]
    print(f"{results['experiment']}: UA {s['mean']:.2f} +- {s['std_over_folds']:.2f} over "
          f"{len(results['runs'])} runs, ensemble UA {results['ensemble']['ua']:.2f} -> {args.out}/results.json",
          file=sys.stderr)
    if results["collapse"]["collapsed"]:
        print(f"COLLAPSE: see {args.out}/RESULTS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
