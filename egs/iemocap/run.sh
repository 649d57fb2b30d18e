#!/usr/bin/env bash
# IEMOCAP: 5531 utterances of ang, hap (+exc merged), neu, sad; 5 folds, leave one session out. Class sets: 4class_exc_merged (default), 4class (exc dropped).
#   ./run.sh --corpus-dir DIR                      every stage (see ../TEMPLATE/ser.sh for the options)
#   ./run.sh --stage 2 --folds "1 3"                retrain two folds; finished work is kept
#   ./run.sh --train-config conf/tuning/01_baseline.yaml   an ablation rung beside the main run
set -euo pipefail
cd "$(dirname "$0")"

corpus_dir=/data/corpora/IEMOCAP_full_release   # edit, or pass --corpus-dir
class_set=4class_exc_merged

../TEMPLATE/ser.sh --corpus iemocap --corpus-dir "$corpus_dir" --class-set "$class_set" "$@"
