#!/usr/bin/env bash
# Prints the utt2spk of a spk2utt file (or of standard input).
# Usage: utils/spk2utt_to_utt2spk.sh [<spk2utt>|-] > utt2spk   (--help for the options)
exec "$(dirname "$(readlink -f "$0" 2>/dev/null || echo "$0")")/datadir.sh" spk2utt-to-utt2spk "$@"
