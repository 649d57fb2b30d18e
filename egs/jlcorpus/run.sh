#!/usr/bin/env bash
# JL-Corpus (James, Tian & Watson, 2018): 2400 utterances, 4 speakers, New Zealand English; leave one speaker out in EmoBox's order (4 folds). Released at 44.1 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/JL-Corpus   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus jlcorpus --corpus-dir "$corpus_dir" "$@"
