#!/usr/bin/env bash
# Installs ser's Python environment: a virtualenv with torch, then ser itself (editable) and its dependencies.
#
#   tools/install.sh                   CPU torch 2.13.0 in tools/venv
#   tools/install.sh --test            also the test dependencies (pytest, pytest-xdist, scikit-learn,
#                                      pytorch-metric-learning, onnx, onnxscript and onnxruntime)
#   tools/install.sh --cuda cu126      the CUDA 12.6 build of torch 2.13.0 (from download.pytorch.org/whl/cu126)
#   tools/install.sh --cpu-index       take the CPU build from download.pytorch.org/whl/cpu (machines where PyPI's
#                                      default torch wheel is a CUDA build)
#   tools/install.sh --wavlm           also transformers, for the WavLM front-end
#   tools/install.sh --onnx            also onnx and onnxscript (ONNX export) and onnxruntime (running it)
#   tools/install.sh --opensmile       also opensmile and scikit-learn, for the classic reference and functionals
#                                      fusion (opensmile: audEERING's research licence, non-commercial use only)
#   tools/install.sh --venv DIR        install somewhere else; --python PY  the interpreter to build it from
#
# Idempotent: a run that finds the environment complete for the same options does nothing and says so.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root/tools/venv
python=python3
torch_version=2.13.0
cuda=""
cpu_index=false
extras=""

while [ $# -gt 0 ]; do
  case "$1" in
    --test) extras="$extras${extras:+,}test"; shift ;;
    --wavlm) extras="$extras${extras:+,}wavlm"; shift ;;
    --onnx) extras="$extras${extras:+,}onnx"; shift ;;
    --opensmile) extras="$extras${extras:+,}opensmile"; shift ;;
    --cuda) [ $# -ge 2 ] || { echo "install.sh: --cuda needs a value such as cu126" >&2; exit 1; }; cuda=$2; shift 2 ;;
    --cpu-index) cpu_index=true; shift ;;
    --venv) [ $# -ge 2 ] || { echo "install.sh: --venv needs a directory" >&2; exit 1; }; venv=$2; shift 2 ;;
    --python) [ $# -ge 2 ] || { echo "install.sh: --python needs an interpreter" >&2; exit 1; }; python=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done

torch_spec="torch==$torch_version"
index_args=()
if [ -n "$cuda" ]; then
  index_args=(--index-url "https://download.pytorch.org/whl/$cuda" --extra-index-url https://pypi.org/simple)
elif $cpu_index; then
  index_args=(--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple)
fi

# What this environment must hold: the options and the dependency list of setup.py.
want=$( (echo "$torch_spec ${cuda:-cpu} $extras"; cat "$root/setup.py") | sha1sum | cut -d' ' -f1)
marker=$venv/.ser_installed
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
  echo "install.sh: $venv is complete ($torch_spec, ${cuda:-cpu}${extras:+, extras $extras}); nothing to do"
  exit 0
fi
rm -f "$marker"

if [ ! -x "$venv/bin/python" ]; then
  echo "install.sh: creating the virtualenv $venv with $($python --version 2>&1)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
echo "install.sh: installing $torch_spec (${cuda:-cpu} build)"
"${pip[@]}" install -q "${index_args[@]}" "$torch_spec"
echo "install.sh: installing ser (editable) and its dependencies${extras:+ with extras [$extras]}"
"${pip[@]}" install -q -e "$root${extras:+[$extras]}"
"$venv/bin/python" -c "import torch, kaldiio, kaldi_native_fbank, soundfile, ser; print('install.sh: installed torch', torch.__version__, '(CUDA build:', torch.version.cuda or 'none', ') | GPU visible:', torch.cuda.is_available())"
echo "$want" > "$marker"
echo "install.sh: done; recipes activate it through their path.sh"
