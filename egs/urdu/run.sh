#!/usr/bin/env bash
# URDU (Latif et al. 2018): 400 utterances of Urdu talk-show speech, 4 emotions (100 each), 29 speaker codes;
# 5 speaker-grouped, class-stratified folds. Released at 44.1 kHz mono (16 kHz copies work the same).
#   ./run.sh --corpus-dir DIR                      every stage (../TEMPLATE/ser.sh --help lists the options)
#   ./run.sh --fold-scheme emobox                  EmoBox's kind of split: speaker-dependent, another protocol
set -euo pipefail
cd "$(dirname "$0")"
corpus_dir=/data/corpora/URDU   # edit, or pass --corpus-dir
../TEMPLATE/ser.sh --corpus urdu --corpus-dir "$corpus_dir" "$@"
