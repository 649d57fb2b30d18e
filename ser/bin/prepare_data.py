"""Stage 0, data preparation: a corpus as released -> data/all and data/fold<k>/{train,valid,test}.

python -m ser.bin.prepare_data --corpus {iemocap,msp_improv,ravdess,savee,synth} --corpus-dir DIR --data-dir data
    [--class-set NAME] [--strict-counts true|false] [--valid-fraction 0.1] [--valid-mode utt|spk] [--seed 0]

Writes data/protocol.json and data/all/classes.txt; data/.done (holding this command) is written last.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys

from ser.cli import die, setup_logging
from ser.corpora.common import Utterance, check_counts, class_list, prepare_recipe_data, remove_done_marker

CORPORA = ("iemocap", "msp_improv", "ravdess", "savee", "synth")
SYNTH_CLASS_SET = "4class"


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def load_corpus(corpus: str, corpus_dir: str, class_set: str | None, strict: bool
                ) -> tuple[list[Utterance], dict[int, list[str]], str, list[str], str]:
    """(utterances, folds, class set, classes, fold scheme) of a corpus; counts checked against the published ones."""
    if corpus == "synth":
        from ser.corpora import synth

        if class_set not in (None, SYNTH_CLASS_SET):
            raise ValueError(f"synth has the one class set {SYNTH_CLASS_SET!r}, not {class_set!r}")
        utts = synth.prepare_synth(corpus_dir)
        folds = synth.synth_folds(len({u.spk_id for u in utts}))
        return utts, folds, SYNTH_CLASS_SET, list(synth.SYNTH_CLASSES), "one male and one female speaker per fold"
    module = importlib.import_module(f"ser.corpora.{corpus}")
    class_set = class_set or module.DEFAULT_CLASS_SET
    utts = module.prepare(corpus_dir, class_set, strict=strict)
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
    args = p.parse_args(argv)
    setup_logging()
    log = logging.getLogger("ser.bin.prepare_data")
    command = shlex.join(["python", "-m", "ser.bin.prepare_data", *argv])
    try:
        remove_done_marker(args.data_dir)  # a failed run must not leave an earlier run's mark
        utts, folds, class_set, classes, fold_scheme = load_corpus(
            args.corpus, args.corpus_dir, args.class_set, args.strict_counts)
        prepare_recipe_data(utts, folds, args.data_dir, corpus=args.corpus, class_set=class_set, classes=classes,
                            fold_scheme=fold_scheme, valid_fraction=args.valid_fraction,
                            valid_mode=args.valid_mode, seed=args.seed, command=command)
    except (OSError, ValueError) as err:
        die(str(err))
    log.info("%s: %d utterances, %d speakers, %d folds, classes %s -> %s", args.corpus, len(utts),
             len({u.spk_id for u in utts}), len(folds), " ".join(classes), args.data_dir)


if __name__ == "__main__":
    main()
