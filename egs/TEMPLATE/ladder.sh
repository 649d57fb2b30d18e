#!/usr/bin/env bash
# The ablation ladder of a recipe: every conf/tuning/*.yaml with several seeds, then one table.
#   ../TEMPLATE/ladder.sh --seeds "0 1 2" [run.sh options, e.g. --corpus-dir DIR]      (from egs/<corpus>)
# Stages 0-1 run once (or are up to date); each rung trains, decodes and scores all folds for every seed.
# The table (fold mean +- std and the seed spread per rung) goes to exp/LADDER.md.
set -euo pipefail
seeds="0 1 2"
if [ "${1:-}" = "--seeds" ]; then seeds=$2; shift 2; fi
./run.sh --stop-stage 1 "$@"
for config in conf/tuning/*.yaml; do
  ./run.sh --stage 2 --train-config "$config" --seeds "$seeds" "$@"
done
. ./path.sh
utils/compare_results.py exp > exp/LADDER.md
cat exp/LADDER.md
