"""Export a trained fbank run as TorchScript: python -m ser.bin.export_model --model-dir RUN --out DIR
(DIR/model.ts takes raw fbank and gives posteriors; DIR/model.json and DIR/fbank.conf say how; see ser.export)."""

from __future__ import annotations

import argparse
import sys

from ser.cli import die


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", required=True, help="a finished training run (exp/<tag>/seed<s>/fold<k>)")
    p.add_argument("--out", required=True, help="output dir")
    args = p.parse_args(argv)
    from ser.export import export_torchscript

    try:
        print(f"wrote {export_torchscript(args.model_dir, args.out)}", file=sys.stderr)
    except (OSError, ValueError) as e:
        die(e)


if __name__ == "__main__":
    main()
