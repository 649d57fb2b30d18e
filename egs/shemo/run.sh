#!/usr/bin/env bash
# ShEMO, Sharif Emotional Speech Database (Mohamad Nezami et al., 2019): 3000 utterances, 87 speakers, Persian; 5 speaker-grouped folds. Released at 44.1 kHz (some 22.05 kHz).
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/ShEMO   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus shemo --corpus-dir "$corpus_dir" "$@"
