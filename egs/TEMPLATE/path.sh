# Sourced by every recipe: puts ser's Python environment, utils/ and the C locale in place.
# The environment is tools/venv of this checkout; it is installed (tools/install.sh) the first time a recipe runs.
# To use an environment of your own instead, export SER_PYTHON_ENV=/path/to/venv (or SER_PYTHON_ENV=none for the
# python already on PATH, which must have ser installed, e.g. `pip install -e .`).
SER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export SER_ROOT
case "${SER_PYTHON_ENV:-$SER_ROOT/tools/venv}" in
  none) ;;
  *)
    ser_env=${SER_PYTHON_ENV:-$SER_ROOT/tools/venv}
    if [ ! -f "$ser_env/.ser_installed" ]; then
      echo "path.sh: no ser environment at $ser_env yet: installing it with tools/install.sh" >&2
      "$SER_ROOT/tools/install.sh" --venv "$ser_env" >&2
    fi
    # shellcheck disable=SC1091
    . "$ser_env/bin/activate"
    ;;
esac
export PYTHONPATH="$SER_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SER_ROOT/utils:$PATH"
export LC_ALL=C
export PYTHONUNBUFFERED=1
