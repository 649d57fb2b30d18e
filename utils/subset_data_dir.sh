#!/usr/bin/env bash
# Copies the part of a data directory holding the listed utterances or speakers.
# Usage: utils/subset_data_dir.sh (--utt-list <file> | --spk-list <file>) <src-dir> <dest-dir>
#        utils/subset_data_dir.sh <src-dir> <num-utt> <dest-dir>   (num-utt utterances spread evenly; --help)
exec "$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")/datadir.sh" subset "$@"
