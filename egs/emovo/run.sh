#!/usr/bin/env bash
# EMOVO (Costantini, Iaderola, Paoloni & Todisco, 2014): 588 utterances, 6 speakers, Italian; leave one speaker out (6 folds). Released at 48 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/EMOVO   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus emovo --corpus-dir "$corpus_dir" "$@"
