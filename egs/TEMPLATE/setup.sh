#!/usr/bin/env bash
# Make a new recipe directory that uses this template, as ESPnet's setup.sh does: a run.sh and a README.md, and a
# link to utils/. Every stage, option and config of the template is reachable from it (ser.sh takes what the
# recipe dir lacks from egs/TEMPLATE); nothing of ser is copied or edited.
#
#   egs/TEMPLATE/setup.sh egs/mydata                       your own data, from a CSV manifest:
#     cd egs/mydata && ./run.sh --corpus-manifest /path/to/data.csv     (columns path,label,speaker)
#   egs/TEMPLATE/setup.sh egs/mycorpus --corpus local/mycorpus.py      a corpus module of your own (docs/extending.md)
#   egs/TEMPLATE/setup.sh egs/emodb2 --corpus emodb                      a registered corpus, in a recipe of your own
#
# An existing, non-empty directory is refused: nothing there is overwritten.
set -euo pipefail
usage() { sed -n '2,12s/^# \{0,1\}//p' "$0"; }
corpus=""
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --corpus) [ $# -ge 2 ] || { echo "$0: --corpus needs a value" >&2; exit 1; }; corpus=$2; shift 2 ;;
    --corpus=*) corpus=${1#--corpus=}; shift ;;
    -*) echo "$0: unknown option $1" >&2; usage >&2; exit 1 ;;
    *) [ -z "$target" ] || { echo "$0: one recipe directory only (got $target and $1)" >&2; exit 1; }; target=$1; shift ;;
  esac
done
[ -n "$target" ] || { usage >&2; exit 1; }
if [ -e "$target" ] && [ -n "$(ls -A "$target" 2>/dev/null)" ]; then
  echo "$0: $target exists and is not empty; nothing is overwritten (choose a new directory)" >&2
  exit 1
fi
template=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
name=$(basename "$target")
mkdir -p "$target"
target=$(cd "$target" && pwd)
to_template=$(realpath --relative-to="$target" "$template")
to_utils=$(realpath --relative-to="$target" "$template/../../utils")

if [ -n "$corpus" ]; then
  corpus_line="corpus=$(printf '%q' "$corpus")   # a registered corpus, or a module file (relative to this dir)"
  call='"$template/ser.sh" --corpus "$corpus" --corpus-dir "$corpus_dir" "$@"'
  usage_line="#   ./run.sh --corpus-dir DIR                     every stage (--help lists the options)"
else
  corpus_line="manifest=\"\"   # your CSV (path,label,speaker[,fold,gender,start,end]); or pass --corpus-manifest"
  call='"$template/ser.sh" ${manifest:+--corpus-manifest "$manifest"} "$@"'
  usage_line="#   ./run.sh --corpus-manifest FILE.csv           every stage on your data (--help lists the options)"
fi
{
  echo '#!/usr/bin/env bash'
  echo "# $name: made by egs/TEMPLATE/setup.sh. Edit it freely: it is yours."
  echo "$usage_line"
  echo '#   ./run.sh --stage 2 --folds "1 3"             retrain two folds; finished work is kept'
  echo '#   ./run.sh --fold-scheme loso                   leave one speaker out (or kfold --num-folds K)'
  echo 'set -euo pipefail'
  echo 'cd "$(dirname "$0")"'
  echo "template=$(printf '%q' "$to_template")"
  echo "$corpus_line"
  [ -z "$corpus" ] || echo 'corpus_dir=""   # edit, or pass --corpus-dir'
  echo "$call"
} > "$target/run.sh"
chmod +x "$target/run.sh"
ln -s "$to_utils" "$target/utils"
cat > "$target/README.md" <<README
# $name

Made by \`egs/TEMPLATE/setup.sh\`. \`./run.sh --help\` lists the options; the stages, configs and outputs are those
of every ser recipe (the top-level README). Configs: \`conf/<file>\` here wins over the template's
\`egs/TEMPLATE/conf/<file>\`, so copy one here to change it.

Results: none yet. After stage 4, \`exp/<tag>/RESULTS.md\` holds them with their protocol.
README
echo "$0: made $target (run.sh, README.md, utils -> $to_utils)"
