#!/usr/bin/env bash
# Emotions in Polish speech recordings (MOST Wiedzy, Gdańsk University of Technology): 450 utterances, 5 speakers, Polish; leave one speaker out in EmoBox's order (5 folds). Released at 44.1 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/Polish   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus polish --corpus-dir "$corpus_dir" "$@"
