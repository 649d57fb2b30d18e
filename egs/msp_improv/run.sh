#!/usr/bin/env bash
# MSP-IMPROV: 7798 utterances of ang hap neu sad (O and X excluded); 6 folds, leave one session out.
#   ./run.sh --corpus-dir DIR                      every stage (see ../TEMPLATE/ser.sh for the options)
#   ./run.sh --stage 2 --folds "1 3"                retrain two folds; finished work is kept
#   ./run.sh --train-config conf/tuning/01_baseline.yaml   an ablation rung beside the main run
set -euo pipefail
cd "$(dirname "$0")"

corpus_dir=/data/corpora/MSP-IMPROV   # edit, or pass --corpus-dir
class_set=4class

../TEMPLATE/ser.sh --corpus msp_improv --corpus-dir "$corpus_dir" --class-set "$class_set" "$@"
