"""Pack a trained run or a whole experiment into one self-contained archive:
python -m ser.bin.pack_model --model exp/<tag>[/seed<s>/fold<k>] --out model.tar.gz

The archive holds what classification needs (config, weights, CMVN, fbank.conf, functionals statistics) with a
SHA-256 manifest. ser-classify --model model.tar.gz and EmotionRecognizer.from_dir("model.tar.gz") read it.
"""

from __future__ import annotations

import argparse
import sys

from ser.cli import die


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a training run or an experiment dir")
    p.add_argument("--out", required=True, help="the archive to write (.tar.gz)")
    args = p.parse_args(argv)
    from ser.packing import pack

    if not args.out.endswith((".tar.gz", ".tgz")):
        die(f"--out {args.out}: name the archive .tar.gz or .tgz")
    try:
        runs = pack(args.model, args.out)
    except (OSError, ValueError) as e:
        die(e)
    print(f"{args.out}: {len(runs)} run(s) of {args.model}", file=sys.stderr)


if __name__ == "__main__":
    main()
