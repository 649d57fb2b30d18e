"""Compute openSMILE utterance functionals for every utterance of a wav.scp.

Usage: python -m ser.bin.compute_functionals --feature-set ComParE_2016 WAV_SCP FEATS_ARK FEATS_SCP UTT2NUM_FRAMES

Each utterance gets a (1, D) float32 matrix (uncompressed) in FEATS_ARK; UTT2NUM_FRAMES holds 1 for each. The
completion protocol is compute_fbank's: FEATS_SCP appears only when every utterance succeeded.
"""
from __future__ import annotations

import argparse
import sys

from ser.bin.compute_fbank import add_truncated_audio_option, cut_short_note, write_feature_archive
from ser.cli import error_text
from ser.functionals import FEATURE_SETS, SAMPLE_RATE, FunctionalsUnavailable, compute_functionals, make_extractor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compute_functionals.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--feature-set", required=True, choices=FEATURE_SETS)
    parser.add_argument("--min-duration", type=float, default=0.1,
                        help="shorter audio is an error naming the wav.scp line (seconds; default 0.1)")
    parser.add_argument("--log-every", type=int, default=1000)
    add_truncated_audio_option(parser)
    parser.add_argument("wav_scp", metavar="WAV_SCP")
    parser.add_argument("feats_ark", metavar="FEATS_ARK")
    parser.add_argument("feats_scp", metavar="FEATS_SCP")
    parser.add_argument("utt2num_frames", metavar="UTT2NUM_FRAMES")
    args = parser.parse_args(argv)
    try:
        extractor = make_extractor(args.feature_set)
        num_utts, _, cut_short = write_feature_archive(
            args.wav_scp, args.feats_ark, args.feats_scp, args.utt2num_frames,
            lambda samples: compute_functionals(extractor, samples), SAMPLE_RATE, None, args.min_duration,
            False, args.log_every, "compute_functionals", args.truncated_audio)
    except (ValueError, OSError, FunctionalsUnavailable) as err:
        print(f"compute_functionals.py: error: {error_text(err)}", file=sys.stderr)
        return 1
    print(f"compute_functionals.py: wrote {args.feature_set} functionals of {num_utts} utterances to "
          f"{args.feats_scp}{cut_short_note(cut_short)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
