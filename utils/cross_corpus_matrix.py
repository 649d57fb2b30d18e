#!/usr/bin/env python3
"""The cross-corpus matrix from a recipe dir or the repository root (python -m ser.bin.cross_corpus_matrix):
utils/cross_corpus_matrix.py egs/ravdess egs/savee egs/synth --out cross_matrix [--max-utts N] [--tags T]"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ser.bin.cross_corpus_matrix import main  # noqa: E402

if __name__ == "__main__":
    main()
