#!/usr/bin/env bash
# Runs ser's data directory tools: utils/datadir.sh COMMAND [options] ARGS (COMMAND --help for each).
# COMMAND: validate fix subset combine split utt2spk-to-spk2utt spk2utt-to-utt2spk.
# The wrappers utils/{validate_data_dir,fix_data_dir,subset_data_dir,combine_data,split_data,
# utt2spk_to_spk2utt,spk2utt_to_utt2spk}.sh call this script.
#
# Python: the environment of egs/TEMPLATE/path.sh's convention: $SER_PYTHON_ENV (a venv, or "none" for python3
# on PATH), else this checkout's tools/venv when it exists, else python3 on PATH (these tools need only the
# standard library). The repository root goes first on PYTHONPATH, so this checkout's ser is the one run.
# Works through symlinks (e.g. egs/<corpus>/utils -> ../../utils).
set -euo pipefail
script=$(readlink -f "${BASH_SOURCE[0]}" 2>/dev/null || echo "${BASH_SOURCE[0]}")
root=$(cd -P "$(dirname "$script")/.." && pwd)
env_dir=${SER_PYTHON_ENV:-$root/tools/venv}
if [ "$env_dir" != none ] && [ -x "$env_dir/bin/python" ]; then
  python=$env_dir/bin/python
else
  python=$(command -v python3 || command -v python) || { echo "$0: no python3 on PATH" >&2; exit 1; }
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m ser.bin.datadir "$@"
