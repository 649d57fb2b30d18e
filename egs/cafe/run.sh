#!/usr/bin/env bash
# CaFE, Canadian French Emotional speech dataset (Gournay, Lahaie & Lefebvre, 2018): 936 utterances, 12 speakers, Canadian French; EmoBox's 3 folds of 4 actors. Released at 48 kHz (and 192 kHz).
#   ./run.sh --corpus-dir DIR          every stage (../TEMPLATE/ser.sh --help lists the options)
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/CaFE   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus cafe --corpus-dir "$corpus_dir" "$@"
