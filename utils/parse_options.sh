# Command-line options for run scripts, Kaldi style. Source it after setting the defaults:
#
#   stage=0
#   train_config=conf/train.yaml
#   . utils/parse_options.sh      # now "$@" holds the positional arguments only
#
# --name value and --name=value set the shell variable name (dashes become underscores), which must be
# one of the script's options: the variables it assigns at the start of a line before it sources this
# file (other variables, such as "readonly command_line=...", are not options). Anything else is an
# error naming the option. A variable whose value is
# true or false takes only true or false. Options come before the positional arguments; parsing stops
# at the first argument not starting with "--" or at "--" (which is removed).
# --help / -h prints the script's leading comment (or $help_message when the script sets one) and its
# options with their current values, then exits 0. Safe under set -euo pipefail.

# The script's options: the variables it assigns at the start of a line before it sources this file.
_parse_options_names() {
  [ -f "$0" ] || return 0
  awk '/parse_options\.sh/ { exit } match($0, /^[A-Za-z_][A-Za-z0-9_]*=/) { print substr($0, 1, RLENGTH - 1) }' "$0" \
    | awk '$0 != "help_message" && !seen[$0]++'
}

_parse_options_help() {
  if [ -n "${help_message:-}" ]; then
    printf '%s\n' "$help_message"
  elif [ -f "$0" ]; then
    # The comment block at the top of the script, without the #! line and the leading '# '.
    awk 'NR == 1 && /^#!/ { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
  fi
  if [ -f "$0" ]; then
    local _po_names _po_name
    _po_names=$(_parse_options_names)
    if [ -n "$_po_names" ]; then
      echo
      echo "Options (current values):"
      for _po_name in $_po_names; do
        if [ -n "${!_po_name+set}" ]; then
          printf '  --%s %q\n' "${_po_name//_/-}" "${!_po_name}"
        fi
      done
    fi
  fi
}

# Exits with an error naming the option unless --name[=value] is one of the script's options.
_parse_options_known() {
  local _po_known=${1%%=*}
  _po_known=${_po_known#--}
  _po_known=${_po_known//-/_}
  if ! [[ "$_po_known" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!_po_known+set}" ] || \
      { [ -f "$0" ] && ! _parse_options_names | grep -qx "$_po_known"; }; then
    echo "$0: ${1%%=*}: unknown option (--help lists the options)" >&2
    exit 1
  fi
}

# Sets the variables and leaves in _parse_options_count how many arguments were options.
# Locals carry the _po_ prefix so that they shadow no variable of the script.
_parse_options() {
  _parse_options_count=0
  local _po_arg _po_name _po_value _po_old
  while [ $# -gt 0 ]; do
    _po_arg=$1
    case "$_po_arg" in
      --help|-h)
        _parse_options_help
        exit 0
        ;;
      --)
        _parse_options_count=$((_parse_options_count + 1))
        return 0
        ;;
      --?*=*)
        _po_name=${_po_arg%%=*}
        _po_value=${_po_arg#*=}
        shift
        _parse_options_count=$((_parse_options_count + 1))
        ;;
      --?*)
        _po_name=$_po_arg
        _parse_options_known "$_po_arg"
        if [ $# -lt 2 ]; then
          echo "$0: option $_po_arg: missing value" >&2
          exit 1
        fi
        _po_value=$2
        shift 2
        _parse_options_count=$((_parse_options_count + 2))
        ;;
      *)
        return 0
        ;;
    esac
    _parse_options_known "$_po_arg"
    _po_name=${_po_name#--}
    _po_name=${_po_name//-/_}
    _po_old=${!_po_name}
    if { [ "$_po_old" = true ] || [ "$_po_old" = false ]; } && [ "$_po_value" != true ] && [ "$_po_value" != false ]; then
      echo "$0: option ${_po_arg%%=*} takes true or false, not '$_po_value'" >&2
      exit 1
    fi
    printf -v "$_po_name" '%s' "$_po_value"
  done
  return 0
}

_parse_options "$@"
shift "$_parse_options_count"
unset -f _parse_options _parse_options_help _parse_options_names _parse_options_known
unset _parse_options_count
