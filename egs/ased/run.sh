#!/usr/bin/env bash
# ASED, the Amharic Speech Emotion Dataset (Retta et al., 2023): 2474 utterances, 65 speakers, Amharic; 5 speaker-grouped class-stratified folds. Released at 16 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/ASED_V1   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus ased --corpus-dir "$corpus_dir" "$@"
