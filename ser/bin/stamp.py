"""Stage stamps: `stamp.py check STAMP [--extra S] INPUT...` exits 0 when up to date; `stamp.py write ...` records."""

from __future__ import annotations

import argparse
import sys

from ser.cli import error_text
from ser.stamps import is_up_to_date, write_stamp


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("action", choices=("check", "write"))
    p.add_argument("stamp")
    p.add_argument("inputs", nargs="*")
    p.add_argument("--extra", default="", help="options of the stage that are not files")
    args = p.parse_intermixed_args(argv)
    try:
        if args.action == "check":
            sys.exit(0 if is_up_to_date(args.stamp, args.inputs, args.extra) else 1)
        write_stamp(args.stamp, args.inputs, args.extra)
    except FileNotFoundError as e:
        if args.action == "check":
            sys.exit(1)
        sys.exit(f"error: {error_text(e)}")
    except OSError as e:  # e.g. a stage's output dir that is not writable
        sys.exit(f"error: {error_text(e)}")


if __name__ == "__main__":
    main()
