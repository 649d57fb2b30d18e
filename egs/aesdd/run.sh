#!/usr/bin/env bash
# AESDD, Acted Emotional Speech Dynamic Database (Vryzas et al., 2018): 604 utterances, 6 speakers, Greek; leave one speaker out. Released at 44.1 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/AESDD   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus aesdd --corpus-dir "$corpus_dir" "$@"
