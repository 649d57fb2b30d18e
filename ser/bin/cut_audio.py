"""A segment of an audio file, as a wav on standard output: the wav.scp command of a manifest's segment rows.

python -m ser.bin.cut_audio FILE START END       (seconds; the samples [round(START*rate), round(END*rate)))

The samples are written as 32-bit float wav at the file's own rate and channels, which holds 16- and 24-bit PCM
exactly, so a segment reads as the same samples it has in the file.
"""

from __future__ import annotations

import argparse
import io
import sys

import soundfile

from ser.audio import read_segment
from ser.cli import die


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file")
    p.add_argument("start", type=float)
    p.add_argument("end", type=float)
    args = p.parse_args(argv)
    try:
        samples, rate = read_segment(args.file, args.start, args.end)
        out = io.BytesIO()  # a wav header needs its sizes, which a pipe cannot seek back to write
        soundfile.write(out, samples, rate, format="WAV", subtype="FLOAT")
        sys.stdout.buffer.write(out.getvalue())
    except (OSError, ValueError) as err:
        die(err)


if __name__ == "__main__":
    main()
