#!/usr/bin/env bash
# Writes the union of data directories; a key repeated with different values is an error.
# Usage: utils/combine_data.sh <dest-dir> <src-dir1> [<src-dir2> ...]   (--help for the options)
exec "$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")/datadir.sh" combine "$@"
