#!/usr/bin/env bash
# Stage 0 of egs/synth: generate the synthetic corpus into $1 unless it is already complete there.
# Generation is deterministic (fixed seed): the same files, byte for byte, on every machine.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 <corpus-dir>" >&2; exit 1; }
if [ -f "$1/labels.txt" ]; then
  echo "local/data.sh: $1 is already generated; keeping it" >&2
  exit 0
fi
python -c "import sys; from ser.corpora.synth import generate_synth_corpus; generate_synth_corpus(sys.argv[1])" "$1"
echo "local/data.sh: generated $1" >&2
