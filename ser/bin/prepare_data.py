"""Stage 0, data preparation: a corpus as released -> data/all and data/fold<k>/{train,valid,test}.

python -m ser.bin.prepare_data --corpus NAME|path/to/module.py --corpus-dir DIR --data-dir data
    [--class-set NAME] [--strict-counts true|false] [--fold-scheme default|kfold|loso|<corpus's>] [--num-folds 5]
    [--valid-fraction 0.1] [--valid-mode auto|spk|utt] [--seed 0]

--corpus manifest --corpus-dir FILE.csv prepares a user's own data from one CSV (ser.corpora.manifest).

Writes data/protocol.json (with this command) and data/all/classes.txt. data/.stage0.done, the one mark of a
complete stage 0 (a digest of the corpus dir and the options, ser.stamps), is removed first and written last.
--skip-if-up-to-date: do nothing when that mark matches the corpus and options.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys

from ser.cli import die, parse_bool, setup_logging
from ser.corpora import corpus_module
from ser.corpora.common import (
    MIN_SPEAKERS_FOR_SPK_VALID,
    VALID_SPLIT_VERSION,
    FoldScheme,
    Utterance,
    check_counts,
    class_list,
    folds_from_column,
    leave_one_speaker_out,
    prepare_recipe_data,
    remove_done_marker,
    speaker_kfold,
)
from ser.stamps import STAGE0_DONE, is_up_to_date, write_stamp

GENERIC_SCHEMES = ("kfold", "loso")  # fold schemes every corpus has, beside its own


def fold_schemes(module, utts: list[Utterance], num_folds: int, seed: int) -> dict[str, FoldScheme]:
    """The fold schemes of a corpus: "default" (its own rule, FOLD_SCHEME and folds), the module's FOLD_SCHEMES,
    and the generic kfold and loso. A module without a fixed rule (FOLD_SCHEME None, a manifest) defaults to the
    folds its utterances are given ("column") when they have them, else to kfold."""
    corpus = module.CORPUS
    schemes = {
        "kfold": FoldScheme(f"{num_folds} speaker-grouped, class-stratified folds (seed {seed})",
                            lambda us: speaker_kfold(us, num_folds, corpus, seed)),
        "loso": FoldScheme("leave one speaker out", lambda us: leave_one_speaker_out(us, corpus)),
    }
    if any(u.given_fold is not None for u in utts):
        schemes["column"] = FoldScheme("the folds given with the data (a fold column)",
                                       lambda us: folds_from_column(us, corpus))
    schemes.update(getattr(module, "FOLD_SCHEMES", {}))
    if module.FOLD_SCHEME:
        schemes["default"] = FoldScheme(module.FOLD_SCHEME, module.folds)
    else:
        schemes["default"] = schemes.get("column", schemes["kfold"])
    return schemes


def load_corpus(corpus: str, corpus_dir: str, class_set: str | None, strict: bool, fold_scheme: str = "default",
                num_folds: int = 5, seed: int = 0
                ) -> tuple[list[Utterance], dict[int, list[str]], str, list[str], FoldScheme, str]:
    """(utterances, folds, class set, classes, fold scheme, corpus name) of a corpus; counts checked against the
    published ones where the corpus has them."""
    module = corpus_module(corpus)
    class_set = class_set or module.DEFAULT_CLASS_SET
    utts = module.prepare(corpus_dir, class_set, strict=strict)
    if hasattr(module, "class_list_of"):  # a corpus whose classes come from its data (a manifest)
        classes = module.class_list_of(utts, class_set)
    else:
        if class_set not in module.CLASS_SETS:
            raise ValueError(f"{corpus} has no class set {class_set!r}; choose one of {', '.join(module.CLASS_SETS)}")
        classes = class_list(module.CLASS_SETS[class_set])
    if class_set in getattr(module, "EXPECTED_COUNTS", {}):
        check_counts(utts, module.EXPECTED_COUNTS[class_set], strict, module.CORPUS,
                     getattr(module, "NUM_SPEAKERS", None))
    schemes = fold_schemes(module, utts, num_folds, seed)
    if fold_scheme not in schemes:
        raise ValueError(f"{module.CORPUS}: unknown --fold-scheme {fold_scheme!r}; choose one of "
                         f"{', '.join(sorted(schemes))}")
    scheme = schemes[fold_scheme]
    name = module.corpus_name(corpus_dir) if hasattr(module, "corpus_name") else module.CORPUS
    return utts, scheme.assign(utts), class_set, classes, scheme, name


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True,
                   help="a registered corpus (ser.corpora.CORPORA), or a corpus module file path/to/mycorpus.py")
    p.add_argument("--corpus-dir", required=True,
                   help="the corpus as released (or generated, for synth); for --corpus manifest, the CSV file")
    p.add_argument("--fold-scheme", default="default",
                   help="default (the corpus's own rule), kfold (--num-folds speaker-grouped, class-stratified "
                        "folds), loso (leave one speaker out), or a scheme of the corpus (e.g. emobox)")
    p.add_argument("--num-folds", type=int, default=5, help="folds of --fold-scheme kfold")
    p.add_argument("--data-dir", required=True, help="output: all/, fold<k>/{train,valid,test}/, protocol.json")
    p.add_argument("--class-set", default=None, help="named class set of the corpus (default: the corpus's default)")
    p.add_argument("--strict-counts", type=parse_bool, default=True,
                   help="true: counts differing from the published ones, or labels without audio, are errors; "
                        "false: warnings (labels without audio skipped)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--valid-mode", choices=("auto", "spk", "utt"), default="auto",
                   help="spk: whole training speakers held out, gender-balanced; utt: utterances of every training "
                        f"speaker, stratified by class; auto: spk where a fold trains on {MIN_SPEAKERS_FOR_SPK_VALID} "
                        "or more speakers and tests unseen ones, else utt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-if-up-to-date", action="store_true",
                   help=f"do nothing when data/{STAGE0_DONE} matches the corpus dir and these options")
    args = p.parse_args(argv)
    setup_logging()
    log = logging.getLogger("ser.bin.prepare_data")
    command = shlex.join(["python", "-m", "ser.bin.prepare_data", *argv])
    marker = os.path.join(args.data_dir, STAGE0_DONE)
    # The options the data depend on; the fold options only when not at their defaults (so that marks written
    # before they existed stay valid).
    defaults = {"fold_scheme": "default", "num_folds": 5}
    not_options = ("data_dir", "skip_if_up_to_date")
    options = json.dumps({**{k: v for k, v in sorted(vars(args).items())
                             if k not in not_options and defaults.get(k, object()) != v},
                          "valid_split_version": VALID_SPLIT_VERSION})
    try:
        if args.skip_if_up_to_date and is_up_to_date(marker, [args.corpus_dir], options):
            log.info("%s is up to date with %s; nothing to do", args.data_dir, args.corpus_dir)
            return
        remove_done_marker(args.data_dir, STAGE0_DONE)  # a failed run must not leave an earlier run's mark
        utts, folds, class_set, classes, scheme, corpus = load_corpus(
            args.corpus, args.corpus_dir, args.class_set, args.strict_counts, args.fold_scheme, args.num_folds,
            args.seed)
        prepare_recipe_data(utts, folds, args.data_dir, corpus=corpus, class_set=class_set, classes=classes,
                            fold_scheme=scheme.description, valid_fraction=args.valid_fraction,
                            valid_mode=args.valid_mode, seed=args.seed, command=command,
                            fold_unit=scheme.unit)
        write_stamp(marker, [args.corpus_dir], options)
    except (OSError, ValueError) as err:
        die(err)
    log.info("%s: %d utterances, %d speakers, %d folds, classes %s -> %s", corpus, len(utts),
             len({u.spk_id for u in utts}), len(folds), " ".join(classes), args.data_dir)


if __name__ == "__main__":
    main()
