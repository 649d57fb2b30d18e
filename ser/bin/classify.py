"""Classify audio with trained models: ser-classify --model DIR [--list FILE] [--format table|csv|json] PATH...

DIR is one training run (exp/<tag>/seed<s>/fold<k>) or a whole experiment (exp/<tag>): then every fold and seed is
used and their posteriors are averaged (the console says so). PATH is an audio file or a folder, searched
recursively for audio files (.wav .flac .ogg .mp3 .sph); --list FILE reads one path per line ("-" = stdin).
Writes one row per file: the file, the posterior of each class, the prediction.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

from ser.cli import die

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".sph")


def audio_paths(paths: list[str], lists: list[str]) -> list[str]:
    """Files as given, folders expanded (sorted, recursive), list files read; a missing path is an error."""
    found = []
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
                raise FileNotFoundError(f"{path}: no audio files ({' '.join(AUDIO_EXTENSIONS)}) in this folder")
            found += inside
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    if not found:
        raise ValueError("no audio given: pass files, folders or --list FILE")
    return found


def write(predictions, classes: list[str], fmt: str, out) -> None:
    if fmt == "json":
        json.dump([{"file": p.source, "prediction": p.label, "posteriors": p.posteriors, "models": p.models}
                   for p in predictions], out, indent=1)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(["file", *classes, "prediction"])
        for p in predictions:
            writer.writerow([p.source, *(f"{p.posteriors[c]:.4f}" for c in classes), p.label])
        return
    out.write("file " + " ".join(classes) + " prediction\n")
    for p in predictions:
        out.write(p.source + " " + " ".join(f"{p.posteriors[c]:.4f}" for c in classes) + " " + p.label + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "--model-dir", dest="model", required=True,
                   help="a training run (exp/<tag>/seed<s>/fold<k>) or an experiment (exp/<tag>: an ensemble)")
    p.add_argument("paths", nargs="*", help="audio files or folders")
    p.add_argument("--list", action="append", default=[], metavar="FILE", help="a file of paths, one per line")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--output", help="write here instead of stdout")
    p.add_argument("--ngpu", type=int, default=0)
    args = p.parse_args(argv)
    from ser.cli import select_device
    from ser.recognizer import EmotionRecognizer

    try:
        files = audio_paths(args.paths, args.list)
        recognizer = EmotionRecognizer.from_dir(args.model, select_device(args.ngpu))
        print(f"{p.prog}: {len(files)} file(s), {recognizer.description}", file=sys.stderr)
        predictions = recognizer.classify_files(files)
        if args.output:
            from ser.atomic import atomic_path

            with atomic_path(args.output) as tmp, open(tmp, "w", newline="") as out:
                write(predictions, recognizer.classes, args.format, out)
        else:
            write(predictions, recognizer.classes, args.format, sys.stdout)
    except (OSError, ValueError) as e:
        die(e)


if __name__ == "__main__":
    main()
