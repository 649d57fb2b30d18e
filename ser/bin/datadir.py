"""Kaldi data directory tools: validate, fix, subset, combine, split, utt2spk <-> spk2utt.

    python -m ser.bin.datadir validate [--classes "a b c"] [--no-feats|--need-feats] [--no-wav] DIR
    python -m ser.bin.datadir fix [--no-backup] DIR
    python -m ser.bin.datadir subset (--utt-list FILE | --spk-list FILE) SRC DST  |  subset SRC N DST
    python -m ser.bin.datadir combine DST SRC [SRC...]
    python -m ser.bin.datadir split [--per-spk] SRC NJ          (prints the part directories)
    python -m ser.bin.datadir utt2spk-to-spk2utt [FILE|-]       (to stdout)
    python -m ser.bin.datadir spk2utt-to-utt2spk [FILE|-]       (to stdout)

utils/{validate_data_dir,fix_data_dir,subset_data_dir,combine_data,split_data,utt2spk_to_spk2utt,
spk2utt_to_utt2spk}.sh run these. An error prints its message on stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys

from ser import datadir
from ser.cli import error_text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 1 like every other error here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(1)


def _read_stdin_or_file(name: str, min_fields: int, max_fields: int | None) -> dict[str, str]:
    if name == "-":
        text = sys.stdin.read()
        if text and not text.endswith("\n"):
            text += "\n"
        lines = datadir.parse_table_lines(text, "<stdin>", min_fields, max_fields)
        return datadir.table_from_lines(lines, "<stdin>")
    return datadir.read_table(name, min_fields, max_fields)


def _validate(args: argparse.Namespace) -> None:
    classes = args.classes.split() if args.classes is not None else None
    datadir.validate_data_dir(args.dir, classes=classes, need_feats=args.need_feats, need_wav=not args.no_wav)
    utt2spk = datadir.read_table(f"{args.dir}/utt2spk", 2, 2)
    print(f"{args.dir}: valid data directory ({len(utt2spk)} utterances, {len(set(utt2spk.values()))} speakers)")


def _fix(args: argparse.Namespace) -> None:
    result = datadir.fix_data_dir(args.dir, backup=not args.no_backup)
    print(f"{args.dir}: kept {result['utterances_kept']} utterances; dropped {result['utterances_dropped']} "
          f"utterances, {result['speakers_dropped']} speakers, {result['recordings_dropped']} recordings, "
          f"{result['duplicate_lines_dropped']} repeated lines")
    if result["files_rewritten"]:
        where = f"; originals in {result['backup_dir']}" if result["backup_dir"] else ""
        print(f"{args.dir}: rewrote {' '.join(result['files_rewritten'])}{where}")


def _subset(args: argparse.Namespace) -> None:
    lists = args.utt_list is not None or args.spk_list is not None
    if lists and len(args.args) == 1:
        datadir.subset_data_dir(args.src, args.args[0], utt_list=args.utt_list, spk_list=args.spk_list)
    elif not lists and len(args.args) == 2 and args.args[0].isdigit() and int(args.args[0]) > 0:
        datadir.subset_data_dir(args.src, args.args[1], num_utts=int(args.args[0]))
    else:
        raise ValueError("subset: give --utt-list FILE or --spk-list FILE with SRC DST, or SRC N DST (N > 0)")


def _combine(args: argparse.Namespace) -> None:
    datadir.combine_data_dirs(args.dst, args.srcs)


def _split(args: argparse.Namespace) -> None:
    for part in datadir.split_data_dir(args.src, args.nj, by_speaker=args.per_spk):
        print(part)


def _utt2spk_to_spk2utt(args: argparse.Namespace) -> None:
    utt2spk = _read_stdin_or_file(args.file, 2, 2)
    sys.stdout.write(datadir.format_table(datadir.utt2spk_to_spk2utt(utt2spk), args.file))


def _spk2utt_to_utt2spk(args: argparse.Namespace) -> None:
    spk2utt = _read_stdin_or_file(args.file, 2, None)
    sys.stdout.write(datadir.format_table(datadir.spk2utt_to_utt2spk(spk2utt), args.file))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m ser.bin.datadir", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    p = commands.add_parser("validate", help="check a data dir against Kaldi's rules and ser's")
    p.add_argument("--classes", help='the class set, e.g. "ang hap neu sad": every utt2emo label must be one')
    feats = p.add_mutually_exclusive_group()
    feats.add_argument("--need-feats", action="store_true", help="require feats.scp (checked whenever present)")
    feats.add_argument("--no-feats", dest="need_feats", action="store_false",
                       help="do not require feats.scp (the default; Kaldi's --no-feats)")
    p.add_argument("--no-wav", action="store_true", help="do not require wav.scp (checked whenever present)")
    p.add_argument("dir")
    p.set_defaults(run=_validate)

    p = commands.add_parser("fix", help="sort files, drop utterances missing from some file, regenerate spk2utt")
    p.add_argument("--no-backup", action="store_true", help="do not keep the originals in DIR/.backup")
    p.add_argument("dir")
    p.set_defaults(run=_fix)

    p = commands.add_parser("subset", help="copy the part of SRC holding the listed utterances or speakers, or N "
                                              "utterances spread evenly over SRC (SRC N DST, Kaldi's form)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--utt-list", help="file whose lines start with the utterance ids to keep")
    which.add_argument("--spk-list", help="file whose lines start with the speaker ids to keep")
    p.add_argument("src")
    p.add_argument("args", nargs="+", metavar="[N] DST")
    p.set_defaults(run=_subset)

    p = commands.add_parser("combine", help="write the union of data dirs SRC... to DST")
    p.add_argument("dst")
    p.add_argument("srcs", nargs="+", metavar="src")
    p.set_defaults(run=_combine)

    p = commands.add_parser("split", help="split SRC into SRC/splitNJ/{1..NJ}; prints the parts")
    p.add_argument("--per-spk", action="store_true", help="keep every speaker whole within one part")
    p.add_argument("src")
    p.add_argument("nj", type=_positive_int)
    p.set_defaults(run=_split)

    for name, run, source in (("utt2spk-to-spk2utt", _utt2spk_to_spk2utt, "utt2spk"),
                              ("spk2utt-to-utt2spk", _spk2utt_to_utt2spk, "spk2utt")):
        p = commands.add_parser(name, help=f"print the table derived from {source} (a file, or - for stdin)")
        p.add_argument("file", nargs="?", default="-")
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as e:  # DataDirError is a ValueError
        print(f"{args.command}: error: {error_text(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
