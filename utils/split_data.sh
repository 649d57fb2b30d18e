#!/usr/bin/env bash
# Splits a data directory into <data-dir>/split<nj>/{1..nj} (reused while up to date); prints the parts.
# Usage: utils/split_data.sh [--per-spk] <data-dir> <nj>   (--help for the options)
exec "$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")/datadir.sh" split "$@"
