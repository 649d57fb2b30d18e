#!/usr/bin/env bash
# Oréau, French emotional speech database (Zenodo record 4405783, 2020): 434 utterances, 32 speakers, French; 5 speaker-grouped class-stratified folds. Released at 44.1 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/Oreau   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus oreau --corpus-dir "$corpus_dir" "$@"
