#!/usr/bin/env bash
# EmoV-DB, the Emotional Voices Database (Adigwe et al., 2018): 6887 utterances, 4 speakers, English; leave one speaker out (4 folds). Released at 16 kHz (bea: 44.1 kHz).
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/EmoV-DB   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus emovdb --corpus-dir "$corpus_dir" "$@"
