#!/usr/bin/env bash
# RAVDESS speech (Livingstone & Russo 2018): 1440 utterances, 24 actors; 6 folds of 4 actors (1-4, 5-8, ...). Accepts the 48 kHz release (five stereo files) and 16 kHz copies: stage 1 resamples and down-mixes. Class sets: 8class (default), 7class_no_calm.
#   ./run.sh --corpus-dir DIR                      every stage (see ../TEMPLATE/ser.sh for the options)
#   ./run.sh --stage 2 --folds "1 3"                retrain two folds; finished work is kept
#   ./run.sh --train-config conf/tuning/01_baseline.yaml   an ablation rung beside the main run
set -euo pipefail
cd "$(dirname "$0")"

corpus_dir=/data/corpora/RAVDESS   # edit, or pass --corpus-dir
class_set=8class

# The template's default model (conf/train_fusion.yaml) fuses openSMILE ComParE functionals (tools/install.sh
# --opensmile; audEERING's research licence, non-commercial use): on RAVDESS it is 10 UA above the fbank-only model
# (RESULTS.md), which runs instead where openSMILE is not installed (or with --train-config conf/train.yaml).

../TEMPLATE/ser.sh --corpus ravdess --corpus-dir "$corpus_dir" --class-set "$class_set" "$@"
