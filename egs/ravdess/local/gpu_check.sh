#!/usr/bin/env bash
# The GPU check of the WavLM set-up (about 8 minutes on one GPU; see ser/bin/gpu_check.py): WavLM Large's
# architecture (random weights, no download) trained on 16 x 6 s batches in fp32 and bf16 (step time, peak memory,
# loader wait), one RAVDESS fold for 2 epochs through the recipe with conf/train_wavlm.yaml, and the figures written
# into the marked blocks of conf/train_wavlm.yaml and docs/gpu.md.
#   local/gpu_check.sh --corpus-dir /data/corpora/RAVDESS [--work-dir exp/gpu_check]
#   local/gpu_check.sh --tiny            the same end to end on the CPU at a tiny scale (synth corpus)
# Other options go to ser.bin.gpu_check (--config-file, --readme: the files whose blocks are rewritten).
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
work_dir=exp/gpu_check
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --work-dir) work_dir=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
python -m ser.bin.gpu_check --work-dir "$work_dir" --config-file ../TEMPLATE/conf/train_wavlm.yaml --readme ../../docs/gpu.md "${args[@]}"
