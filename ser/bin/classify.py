"""Classify audio with trained models: ser-classify --model DIR [--list FILE] [--format table|csv|json] PATH...

DIR is one training run (exp/<tag>/seed<s>/fold<k>), a whole experiment (exp/<tag>: every fold and seed is used and
their posteriors are averaged; the console says so) or a packed archive (.tar.gz). PATH is an audio file or a
folder, searched recursively for audio files (.wav .flac .ogg .mp3 .sph); --list FILE reads one path per line
("-" = stdin). Writes one row per file: the file, the posterior of each class, the prediction. Audio longer than
30 s is decided by pooling 30 s windows (memory stays bounded whatever the length).

--segment S [--hop H] writes a timeline instead: a row per window of S seconds every H seconds (default S): the
file, start, end, the posteriors and the prediction of that window, classified on its own.

A file that cannot be classified (missing, empty, not audio, no samples, unreadable, too short, ...) gets one line
on stderr naming it and why; the others are classified and written. The last line counts them; the exit status is
1 when any failed. --info MODEL prints the model's card (corpus, protocol, test metrics, licence, revision).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

from ser.cli import die

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".sph")


def audio_paths(paths: list[str], lists: list[str]) -> tuple[list[str], list[str]]:
    """Files as given (a missing one too: the recognizer names it), folders expanded (sorted, recursive), list files
    read; and a message per folder without audio files. An unreadable list is an error."""
    found, empty_folders = [], []
    for list_file in lists:
        try:
            lines = (sys.stdin if list_file == "-" else open(list_file, encoding="utf-8")).read().splitlines()
        except OSError as e:
            raise OSError(f"{list_file}: cannot read the list: {e.strerror}") from None
        paths = paths + [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    for path in paths:
        if os.path.isdir(path):
            inside = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                            if name.lower().endswith(AUDIO_EXTENSIONS))
            if not inside:
                empty_folders.append(f"{path}: no audio files ({' '.join(AUDIO_EXTENSIONS)}) in this folder")
            found += inside
        else:
            found.append(path)
    if not found and not empty_folders:
        raise ValueError("no audio given: pass files, folders or --list FILE")
    return found, empty_folders


def _rows(results, classes: list[str]):
    """(file, start, end, posteriors, prediction) per file or window of the good results."""
    for r in results:
        if hasattr(r, "windows") and isinstance(r.windows, list):
            for w in r.windows:
                yield r.source, w.start, w.end, w.posteriors, w.label
        else:
            yield r.source, None, None, r.posteriors, r.label


def write(results, classes: list[str], fmt: str, out) -> None:
    """Predictions (or timelines: start and end columns) as a table, CSV or JSON."""
    timeline = any(isinstance(getattr(r, "windows", None), list) for r in results)
    if fmt == "json":
        if timeline:
            items = [{"file": t.source, "segment": t.segment, "hop": t.hop, "models": t.models,
                      "windows": [{"start": round(w.start, 3), "end": round(w.end, 3), "prediction": w.label,
                                   "posteriors": w.posteriors} for w in t.windows]} for t in results]
        else:
            items = [{"file": p.source, "prediction": p.label, "posteriors": p.posteriors, "models": p.models,
                      "windows": p.windows} for p in results]
        json.dump(items, out, indent=1)
        out.write("\n")
        return
    header = ["file", *(("start", "end") if timeline else ()), *classes, "prediction"]
    rows = [[source, *((f"{start:.3f}", f"{end:.3f}") if timeline else ()),
             *(f"{posteriors[c]:.4f}" for c in classes), label]
            for source, start, end, posteriors, label in _rows(results, classes)]
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerows([header, *rows])
        return
    out.writelines(" ".join(row) + "\n" for row in [header, *rows])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "--model-dir", dest="model",
                   help="a training run (exp/<tag>/seed<s>/fold<k>), an experiment (exp/<tag>: an ensemble) or an "
                        "archive")
    p.add_argument("--info", metavar="MODEL", help="print the model card of MODEL and stop")
    p.add_argument("paths", nargs="*", help="audio files or folders")
    p.add_argument("--list", action="append", default=[], metavar="FILE", help="a file of paths, one per line")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--output", help="write here instead of stdout")
    p.add_argument("--segment", type=float, metavar="S", help="a timeline: windows of S seconds")
    p.add_argument("--hop", type=float, metavar="H", help="with --segment: a window every H seconds (default S)")
    p.add_argument("--batch-size", type=int, default=16, help="windows (utterances) per forward pass")
    p.add_argument("--ngpu", type=int, default=0)
    args = p.parse_args(argv)
    from ser.cli import select_device

    try:
        if args.info:
            from ser.card import format_card, read_card
            from ser.packing import read_archive_card

            card = read_archive_card(args.info) if os.path.isfile(args.info) else read_card(args.info)
            print(format_card(card, args.info))
            return
        if not args.model:
            p.error("--model is required (or --info MODEL)")
        if args.hop is not None and args.segment is None:
            p.error("--hop needs --segment")
        if args.batch_size < 1:
            p.error("--batch-size must be at least 1")
        from ser.recognizer import EmotionRecognizer, windows_of

        if args.segment is not None:
            windows_of(1, 1, args.segment, args.hop or args.segment)  # checked before the model is loaded
        files, empty_folders = audio_paths(args.paths, args.list)
        if not files:
            raise ValueError("; ".join(empty_folders))
        recognizer = EmotionRecognizer.from_dir(args.model, select_device(args.ngpu))
        recognizer.batch_size = args.batch_size
        print(f"{p.prog}: {len(files)} file(s), {recognizer.description}", file=sys.stderr)
        if args.segment is not None:
            results = recognizer.timelines(files, args.segment, args.hop)
        else:
            results = recognizer.classify_files(files)
        good = [r for r in results if r.ok]
        for message in empty_folders + [r.message for r in results if not r.ok]:
            print(f"{p.prog}: {message}", file=sys.stderr)
        if args.output:
            from ser.atomic import atomic_path

            with atomic_path(args.output) as tmp, open(tmp, "w", newline="") as out:
                write(good, recognizer.classes, args.format, out)
        else:
            write(good, recognizer.classes, args.format, sys.stdout)
        failures = len(results) - len(good)
        print(f"{p.prog}: {len(good)} file(s) classified, {failures} failed"
              + (f", {len(empty_folders)} folder(s) without audio" if empty_folders else ""), file=sys.stderr)
        if failures or empty_folders:
            sys.exit(1)
    except (OSError, ValueError) as e:
        die(e)


if __name__ == "__main__":
    main()
