#!/usr/bin/env bash
# Sorts a data directory's files, keeps the utterances present in all of them, regenerates spk2utt; originals go to <data-dir>/.backup.
# Usage: utils/fix_data_dir.sh [--no-backup] <data-dir>   (--help for the options)
exec "$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")/datadir.sh" fix "$@"
