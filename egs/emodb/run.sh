#!/usr/bin/env bash
# EmoDB, Berlin Database of Emotional Speech (Burkhardt, Paeschke, Rolfes, Sendlmeier & Weiss, 2005): 535 utterances, 10 speakers, German; leave one speaker out (10 folds). Released at 16 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/EmoDB   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus emodb --corpus-dir "$corpus_dir" "$@"
