#!/usr/bin/env bash
# SAVEE: 480 utterances of 7 classes by 4 male speakers (DC JE JK KL); 4 folds, leave one speaker out. Both the AudioData/DC/a01.wav and the flat DC_a01.wav layouts are accepted.
#   ./run.sh --corpus-dir DIR                      every stage (see ../TEMPLATE/ser.sh for the options)
#   ./run.sh --stage 2 --folds "1 3"                retrain two folds; finished work is kept
#   ./run.sh --train-config conf/tuning/01_baseline.yaml   an ablation rung beside the main run
set -euo pipefail
cd "$(dirname "$0")"

corpus_dir=/data/corpora/SAVEE   # edit, or pass --corpus-dir
class_set=7class

../TEMPLATE/ser.sh --corpus savee --corpus-dir "$corpus_dir" --class-set "$class_set" "$@"
