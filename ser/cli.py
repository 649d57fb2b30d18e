"""Small helpers shared by the command-line tools in ser.bin."""

from __future__ import annotations

import argparse
import logging
import os
import sys

TRUE_WORDS = ("true", "t", "1")
FALSE_WORDS = ("false", "f", "0")


class BoolError(ValueError, argparse.ArgumentTypeError):
    """Not a boolean: a ValueError, and to argparse (``type=parse_bool``) an error whose message it prints."""


def parse_bool(text: str) -> bool:
    """Kaldi's boolean spelling: true/t/1 or false/f/0, any case (command-line options and fbank.conf)."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BoolError(f"expected true or false, got {text!r}")


def setup_logging(log_file: str | None = None) -> None:
    """Log to stderr (which job runners capture per job) and, when given, to a file too."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def read_classes(path: str) -> list[str]:
    """classes.txt: one class per line, in the order of the model's outputs."""
    with open(path, encoding="utf-8") as f:
        classes = [line.strip() for line in f if line.strip()]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"{path}: expected one distinct class name per line")
    return classes


def select_device(ngpu: int) -> str:
    import torch

    if ngpu <= 0:
        return "cpu"
    if not torch.cuda.is_available():
        raise SystemExit(f"error: --ngpu {ngpu} asked for a GPU but torch sees none "
                         "(CUDA build? CUDA_VISIBLE_DEVICES?)")
    return "cuda"


VERBOSE_ENV = "SER_VERBOSE"  # set to 1: an error also prints its traceback (before the one-line message)


def error_text(error: BaseException) -> str:
    """One line for an error: an OSError as ``FILE: cause`` (``exp/run: Permission denied``), else its message."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        if str(error.filename) in error.strerror:  # the message names the file already
            return error.strerror
        also = f" (and {error.filename2})" if error.filename2 is not None else ""
        return f"{error.filename}{also}: {error.strerror}"
    return str(error)


def die(problem: str | BaseException) -> None:
    """Stop with one line naming the problem (a message or an error, see :func:`error_text`); with SER_VERBOSE=1
    the traceback of the error being handled too."""
    if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        import traceback

        traceback.print_exc()
    message = problem if isinstance(problem, str) else error_text(problem)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)
