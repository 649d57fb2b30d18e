#!/usr/bin/env bash
# The ablation ladder of a recipe: every conf/tuning/*.yaml with several seeds, then one table.
#   ../TEMPLATE/ladder.sh [--seeds "0 1 2"] [--tuning-dir conf/tuning_fusion] [run.sh options, e.g. --corpus-dir DIR]
#   (from egs/<corpus>; conf/tuning_fusion is the same ladder on the backbone with fused ComParE functionals)
# Stages 0-1 run once (or are up to date); each rung trains, decodes and scores all folds for every seed.
# The table (fold mean +- std and the seed spread per rung) goes to exp/LADDER.md.
set -euo pipefail
seeds="0 1 2"
tuning_dir=conf/tuning
while [ $# -ge 1 ]; do
  case "$1" in
    -h|--help) sed -n '2,6s/^# \{0,1\}//p' "$0"; exit 0 ;;
    --seeds|--tuning-dir)
      [ $# -ge 2 ] || { echo "$0: option $1: missing value" >&2; exit 1; }
      if [ "$1" = --seeds ]; then seeds=$2; else tuning_dir=$2; fi
      shift 2 ;;
    *) break ;;
  esac
done
[ -x ./run.sh ] || { echo "$0: run it from a recipe dir (egs/<corpus>), which has run.sh" >&2; exit 1; }
configs=("$tuning_dir"/*.yaml)
[ -f "${configs[0]}" ] || { echo "$0: no ladder configs in $tuning_dir (this recipe has none; see egs/ravdess)" >&2
  exit 1; }
./run.sh --stop-stage 1 "$@"
for config in "${configs[@]}"; do
  ./run.sh --stage 2 --train-config "$config" --seeds "$seeds" --classic-configs "" "$@"
done
. ./path.sh
# Every rung's experiment (and its *_spkcmvn sibling when run with --speaker-norm cmvn), one table per protocol.
shopt -s nullglob
rungs=()
for config in "${configs[@]}"; do rungs+=(exp/"$(basename "$config" .yaml)"{,_spk*}); done
utils/compare_results.py "${rungs[@]}" > exp/LADDER.md
cat exp/LADDER.md
