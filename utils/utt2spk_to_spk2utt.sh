#!/usr/bin/env bash
# Prints the spk2utt of an utt2spk file (or of standard input).
# Usage: utils/utt2spk_to_spk2utt.sh [<utt2spk>|-] > spk2utt   (--help for the options)
exec "$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")/datadir.sh" utt2spk-to-spk2utt "$@"
