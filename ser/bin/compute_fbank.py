"""Compute Kaldi-compatible fbank features for every utterance of a wav.scp.

Usage: python -m ser.bin.compute_fbank --config conf/fbank.conf WAV_SCP FEATS_ARK FEATS_SCP UTT2NUM_FRAMES

Completion protocol: the ark is written under its final name (the scp must point at it), while
FEATS_SCP and UTT2NUM_FRAMES are written to temporary names (ser.atomic) and renamed only after every utterance
succeeded, utt2num_frames first and feats.scp last. Outputs of an earlier run are deleted before
anything else, so a failed or killed run never leaves a feats.scp behind: its presence means the
job finished. On an error the partial ark and the temporary files are removed (a killed job may
leave them, which is harmless: nothing refers to them).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

import kaldiio
import numpy as np

from ser.atomic import FULL_DISK_ERRNOS, atomic_path, full_disk
from ser.audio import TRUNCATED_AUDIO_MODES, AudioError, load_mono
from ser.cli import error_text, parse_bool
from ser.features import FBANK_DEFAULTS, check_fbank_options, compute_fbank, read_fbank_conf

# kaldiio/Kaldi compression method kTwoByteAuto: 2 bytes per value, error <= range / 65535.
TWO_BYTE_COMPRESSION = 3


def read_wav_scp(path: str) -> list[tuple[int, str, str]]:
    """(line number, key, wav.scp value) for every line; format errors name the file and line."""
    entries = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as scp:
        for lineno, line in enumerate(scp, 1):
            fields = line.split(maxsplit=1)
            if len(fields) != 2:
                raise ValueError(
                    f"{path}:{lineno}: expected '<utterance-id> <path or command |>', got '{line.rstrip()}'"
                )
            key, spec = fields[0], fields[1].strip()
            if key in seen:
                raise ValueError(f"{path}:{lineno}: duplicate utterance id {key}")
            seen.add(key)
            entries.append((lineno, key, spec))
    if not entries:
        raise ValueError(f"{path}: no utterances")
    return entries


def _remove(*paths: str) -> None:
    for path in paths:
        if os.path.lexists(path):
            os.remove(path)


def write_fbank(
    wav_scp: str,
    feats_ark: str,
    feats_scp: str,
    utt2num_frames: str,
    opts: dict,
    compress: bool = True,
    log_every: int = 1000,
    truncated_audio: str = "error",
) -> tuple[int, int, int]:
    """Compute features for ``wav_scp`` into ark/scp and utt2num_frames (see module docstring).
    Returns (utterances, frames, wavs cut short)."""
    opts = check_fbank_options(opts)
    channel = None if opts["channel"] == -1 else opts["channel"]
    return write_feature_archive(
        wav_scp, feats_ark, feats_scp, utt2num_frames, lambda samples: compute_fbank(samples, opts),
        opts["sample-frequency"], channel, opts["min-duration"], compress, log_every, "compute_fbank",
        truncated_audio)


def write_feature_archive(
    wav_scp: str,
    feats_ark: str,
    feats_scp: str,
    utt2num_frames: str,
    compute: Callable[[np.ndarray], np.ndarray],
    sample_rate: int,
    channel: int | None,
    min_duration: float,
    compress: bool,
    log_every: int,
    program: str,
    truncated_audio: str = "error",
    write_function: str | None = None,
) -> tuple[int, int, int]:
    """``compute(samples)`` -> (T, D) matrix for every wav.scp entry, under the completion protocol of the module
    docstring. Samples are read by ser.audio.load_mono at ``sample_rate`` (int16 range). A wav cut short is an
    error (``truncated_audio`` "error") or a warning line on stderr naming it, its samples read as far as they go
    ("warn"). ``write_function`` "numpy" stores the matrices as NumPy arrays in the ark (any dtype, e.g. float16;
    kaldiio reads them, Kaldi's tools do not). Returns (utterances, frames, wavs cut short)."""
    if truncated_audio not in TRUNCATED_AUDIO_MODES:
        raise ValueError(f"truncated_audio must be one of {', '.join(TRUNCATED_AUDIO_MODES)}, got '{truncated_audio}'")
    _remove(feats_scp, utt2num_frames, feats_ark)
    if "," in feats_ark or "," in feats_scp:
        raise ValueError(f"output paths must not contain ',': {feats_ark} {feats_scp}")
    entries = read_wav_scp(wav_scp)
    for path in (feats_ark, feats_scp, utt2num_frames):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    total_frames = 0
    cut_short: list[str] = []

    def warn(message: str) -> None:  # a wav cut short, under truncated_audio "warn"; `where` is the entry read now
        cut_short.append(where)
        print(f"{program}: warning: {where}: {message}; its samples are read as far as they go", file=sys.stderr)

    try:
        # Leaving the block renames utt2num_frames first and feats.scp last (ser.atomic).
        with atomic_path(feats_scp) as scp_tmp, atomic_path(utt2num_frames) as frames_tmp:
            with kaldiio.WriteHelper(
                f"ark,scp:{feats_ark},{scp_tmp}",
                compression_method=TWO_BYTE_COMPRESSION if compress else None, write_function=write_function,
            ) as writer, open(frames_tmp, "w", encoding="utf-8") as frames_out:
                for done, (lineno, key, spec) in enumerate(entries, 1):
                    where = f"{wav_scp}:{lineno}: utterance {key}"
                    try:
                        samples = load_mono(spec, sample_rate, channel, min_duration, command_allowed=True,
                                            on_cut_short=warn if truncated_audio == "warn" else None)
                        feats = compute(samples)
                        if feats.shape[0] == 0:
                            raise AudioError(f"{len(samples)} samples are too few for one frame: {spec}")
                    except AudioError as err:
                        raise AudioError(f"{where}: {err}") from err
                    try:
                        writer(key, feats)
                    except OSError as err:  # kaldiio writes the ark itself: name it
                        if err.errno in FULL_DISK_ERRNOS and err.filename is None:
                            raise full_disk(feats_ark) from err
                        raise
                    frames_out.write(f"{key} {feats.shape[0]}\n")
                    total_frames += feats.shape[0]
                    if log_every > 0 and done % log_every == 0:
                        print(f"{program}: {done}/{len(entries)} utterances", file=sys.stderr)
    except BaseException:
        _remove(feats_ark)
        raise
    return len(entries), total_frames, len(cut_short)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="compute_fbank.py",
        description="Compute Kaldi-compatible log-mel fbank features (kaldi-native-fbank) for "
        "every line of a wav.scp and write them as a Kaldi ark + scp, plus utt2num_frames. "
        "feats.scp appears only when every utterance succeeded; any bad entry stops the job "
        "with an error naming the wav.scp line.",
    )
    parser.add_argument(
        "--config",
        help="Kaldi-style fbank.conf ('--name=value' lines); options it omits keep ser's "
        "defaults (80 bins, dither 0, 16 kHz, channel -1 = down-mix)",
    )
    parser.add_argument(
        "--compress",
        type=parse_bool,
        default=True,
        help="store the ark with Kaldi two-byte compression (kTwoByteAuto, method 3; "
        "error <= value range / 65535) (default: true)",
    )
    parser.add_argument(
        "--log-every", type=int, default=1000, help="progress line to stderr every N utterances (0: never)"
    )
    add_truncated_audio_option(parser)
    parser.add_argument("wav_scp", metavar="WAV_SCP", help="input wav.scp (or a split part of it)")
    parser.add_argument("feats_ark", metavar="FEATS_ARK", help="output ark (its path is written into FEATS_SCP)")
    parser.add_argument("feats_scp", metavar="FEATS_SCP", help="output scp")
    parser.add_argument("utt2num_frames", metavar="UTT2NUM_FRAMES", help="output '<utt> <frames>' file")
    args = parser.parse_args(argv)
    try:
        opts = read_fbank_conf(args.config) if args.config else dict(FBANK_DEFAULTS)
        num_utts, frames, cut_short = write_fbank(
            args.wav_scp, args.feats_ark, args.feats_scp, args.utt2num_frames, opts, args.compress, args.log_every,
            args.truncated_audio)
    except (ValueError, OSError) as err:
        print(f"compute_fbank.py: error: {error_text(err)}", file=sys.stderr)
        return 1
    print(f"compute_fbank.py: wrote {num_utts} utterances, {frames} frames to {args.feats_scp}"
          f"{cut_short_note(cut_short)}", file=sys.stderr)
    return 0


def add_truncated_audio_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--truncated-audio", choices=TRUNCATED_AUDIO_MODES, default="error",
        help="a wav cut short (its header promises more samples than the file holds): error stops the job naming "
        "it; warn reads what it holds and prints a warning naming it (default: error)")


def cut_short_note(count: int) -> str:
    """The end of a job's summary line when wavs were cut short."""
    return f"; {count} wav(s) were cut short and read as far as they go (see the warnings)" if count else ""


if __name__ == "__main__":
    sys.exit(main())
