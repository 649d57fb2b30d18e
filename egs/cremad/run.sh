#!/usr/bin/env bash
# CREMA-D (Cao, Cooper, Keutmann, Gur, Nenkova & Verma, 2014): 7442 utterances, 91 speakers, English; 5 folds by actor number. Released at 16 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/CREMA-D   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus cremad --corpus-dir "$corpus_dir" "$@"
