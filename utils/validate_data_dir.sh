#!/usr/bin/env bash
# Checks a data directory against Kaldi's rules (validate_data_dir.sh --no-text) and ser's.
# Usage: utils/validate_data_dir.sh [--classes "a b c"] [--need-feats|--no-feats] [--no-wav] <data-dir>   (--help for the options)
exec "$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")/datadir.sh" validate "$@"
