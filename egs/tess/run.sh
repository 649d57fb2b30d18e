#!/usr/bin/env bash
# TESS (Dupuis & Pichora-Fuller, 2010): 2800 utterances, 2 speakers, English; leave one speaker out (2 folds). Released at 24.414 kHz.
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/TESS   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus tess --corpus-dir "$corpus_dir" "$@"
