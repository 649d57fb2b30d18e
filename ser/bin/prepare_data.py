"""Stage 0, data preparation: a corpus as released -> data/all and data/fold<k>/{train,valid,test}.

python -m ser.bin.prepare_data --corpus {iemocap,msp_improv,ravdess,savee,synth} --corpus-dir DIR --data-dir data
    [--class-set NAME] [--strict-counts true|false] [--valid-fraction 0.1] [--valid-mode utt|spk] [--seed 0]

Writes data/protocol.json (with this command) and data/all/classes.txt. data/.stage0.done, the one mark of a
complete stage 0 (a digest of the corpus dir and the options, ser.stamps), is removed first and written last.
--skip-if-up-to-date: do nothing when that mark matches the corpus and options.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shlex
import sys

from ser.cli import die, setup_logging
from ser.corpora.common import Utterance, check_counts, class_list, prepare_recipe_data, remove_done_marker
from ser.stamps import is_up_to_date, write_stamp

CORPORA = ("iemocap", "msp_improv", "ravdess", "savee", "synth")  # modules of ser.corpora
DONE_MARKER = ".stage0.done"


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def load_corpus(corpus: str, corpus_dir: str, class_set: str | None, strict: bool
                ) -> tuple[list[Utterance], dict[int, list[str]], str, list[str], str]:
    """(utterances, folds, class set, classes, fold scheme) of a corpus; counts checked against the published ones
    where the corpus has them."""
    module = importlib.import_module(f"ser.corpora.{corpus}")
    class_set = class_set or module.DEFAULT_CLASS_SET
    if class_set not in module.CLASS_SETS:
        raise ValueError(f"{corpus} has no class set {class_set!r}; choose one of {', '.join(module.CLASS_SETS)}")
    utts = module.prepare(corpus_dir, class_set, strict=strict)
    if class_set in module.EXPECTED_COUNTS:
        check_counts(utts, module.EXPECTED_COUNTS[class_set], strict, corpus)
    return utts, module.folds(utts), class_set, class_list(module.CLASS_SETS[class_set]), module.FOLD_SCHEME


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, choices=CORPORA)
    p.add_argument("--corpus-dir", required=True, help="the corpus as released (or generated, for synth)")
    p.add_argument("--data-dir", required=True, help="output: all/, fold<k>/{train,valid,test}/, protocol.json")
    p.add_argument("--class-set", default=None, help="named class set of the corpus (default: the corpus's default)")
    p.add_argument("--strict-counts", type=_bool, default=True,
                   help="true: counts differing from the published ones, or labels without audio, are errors; "
                        "false: warnings (labels without audio skipped)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--valid-mode", choices=("utt", "spk"), default="utt",
                   help="utt: stratified utterances of every training speaker; spk: whole training speakers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-if-up-to-date", action="store_true",
                   help="do nothing when data/.stage0.done matches the corpus dir and these options")
    args = p.parse_args(argv)
    setup_logging()
    log = logging.getLogger("ser.bin.prepare_data")
    command = shlex.join(["python", "-m", "ser.bin.prepare_data", *argv])
    marker = os.path.join(args.data_dir, DONE_MARKER)
    options = json.dumps({k: v for k, v in sorted(vars(args).items()) if k not in ("data_dir", "skip_if_up_to_date")})
    try:
        if args.skip_if_up_to_date and is_up_to_date(marker, [args.corpus_dir], options):
            log.info("%s is up to date with %s; nothing to do", args.data_dir, args.corpus_dir)
            return
        remove_done_marker(args.data_dir, DONE_MARKER)  # a failed run must not leave an earlier run's mark
        utts, folds, class_set, classes, fold_scheme = load_corpus(
            args.corpus, args.corpus_dir, args.class_set, args.strict_counts)
        prepare_recipe_data(utts, folds, args.data_dir, corpus=args.corpus, class_set=class_set, classes=classes,
                            fold_scheme=fold_scheme, valid_fraction=args.valid_fraction,
                            valid_mode=args.valid_mode, seed=args.seed, command=command, done_marker=DONE_MARKER)
        write_stamp(marker, [args.corpus_dir], options)
    except (OSError, ValueError) as err:
        die(err)
    log.info("%s: %d utterances, %d speakers, %d folds, classes %s -> %s", args.corpus, len(utts),
             len({u.spk_id for u in utts}), len(folds), " ".join(classes), args.data_dir)


if __name__ == "__main__":
    main()
