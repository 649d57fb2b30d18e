"""Score every trained experiment of some recipes on every other recipe's data/all (see ser.cross_corpus_matrix):
python -m ser.bin.cross_corpus_matrix egs/ravdess egs/savee egs/synth --out cross_matrix [--max-utts N] [--tags T]"""

from __future__ import annotations

import argparse
import shlex
import sys

from ser.cli import die


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("recipes", nargs="+", help="recipe dirs, each with data/all and exp/<tag>/results.json")
    p.add_argument("--out", required=True, help="where MATRIX.md, matrix.json and one dir per pair go")
    p.add_argument("--tags", help="only these experiments: tags or recipe/tag, space- or comma-separated [all]")
    p.add_argument("--max-utts", type=int, help="score a class-stratified subsample of at most N utterances of each "
                   "target (deterministic; recorded in the protocol) [all]")
    p.add_argument("--ngpu", type=int, default=0)
    args = p.parse_args(argv)
    from ser.cli import select_device
    from ser.cross_corpus_matrix import build_matrix

    tags = args.tags.replace(",", " ").split() if args.tags else None
    command = " ".join(shlex.quote(w) for w in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    try:
        matrix = build_matrix(args.recipes, args.out, tags, args.max_utts, select_device(args.ngpu), command,
                              log=lambda line: print(line, file=sys.stderr))
    except (OSError, ValueError) as e:
        die(e)
    cells = sum(len(c) for c in matrix["cells"].values())
    collapsed = sum(c["collapse"] for row in matrix["cells"].values() for c in row.values())
    print(f"{len(matrix['rows'])} experiments x {len(matrix['columns'])} recipes: {cells} pairs scored "
          f"({collapsed} collapsed), {len(matrix['skipped'])} skipped, {len(matrix['failed'])} failed "
          f"-> {args.out}/MATRIX.md", file=sys.stderr)
    if matrix["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
