#!/usr/bin/env bash
# Stage 0 of egs/synth: generate the synthetic corpus into $1 unless it is already complete there.
# Generation is deterministic from its seed (the same files on every run with the same numpy/scipy).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 <corpus-dir>" >&2; exit 1; }
if [ -f "$1/labels.txt" ]; then
  echo "local/data.sh: $1 is already generated; keeping it" >&2
  exit 0
fi
if [ -e "$1" ]; then
  echo "local/data.sh: $1 exists but is not a complete synth corpus (no labels.txt); move it away or pass another --corpus-dir" >&2
  exit 1
fi
python -c "import sys; from ser.corpora.synth import generate_synth_corpus; generate_synth_corpus(sys.argv[1])" "$1"
echo "local/data.sh: generated $1" >&2
