#!/usr/bin/env bash
# MESD, Mexican Emotional Speech Database (Duville et al., 2021): 862 utterances, 11 speakers in 3 voice types, Mexican Spanish; leave one voice type out. Released at 48 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/MESD   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus mesd --corpus-dir "$corpus_dir" "$@"
