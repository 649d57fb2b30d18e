"""Export a trained fbank run: python -m ser.bin.export_model --model-dir RUN --out DIR [--format onnx|torchscript]
(onnx: DIR/model.onnx takes the 16 kHz waveform and computes fbank and CMVN inside; torchscript, deprecated:
DIR/model.ts takes raw fbank; DIR/model.json and DIR/fbank.conf say how; see ser.export)."""

from __future__ import annotations

import argparse
import sys

from ser.cli import die


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model-dir", required=True, help="a finished training run (exp/<tag>/seed<s>/fold<k>)")
    p.add_argument("--out", required=True, help="output dir")
    p.add_argument("--format", default="onnx", choices=("onnx", "torchscript"),
                   help="onnx (waveform in; needs the onnx and onnxscript packages) or torchscript (fbank in; "
                        "deprecated by torch)")
    args = p.parse_args(argv)
    from ser.export import export_model

    if args.format == "torchscript":
        print("note: TorchScript is deprecated by torch 2.13 and kept for now; --format onnx is the default",
              file=sys.stderr)
    try:
        print(f"wrote {export_model(args.model_dir, args.out, args.format)}", file=sys.stderr)
    except (OSError, ValueError) as e:
        die(e)


if __name__ == "__main__":
    main()
