#!/usr/bin/env bash
# SUBESCO, SUST Bangla Emotional Speech Corpus (Sultana et al., 2021): 7000 utterances, 20 speakers, Bangla; EmoBox's 5 folds of 4 speakers. Released at 44.1 or 48 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/SUBESCO   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus subesco --corpus-dir "$corpus_dir" "$@"
