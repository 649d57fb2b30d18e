"""Audio input for feature extraction.

Samples are returned in the **int16 range** (a full-scale sine peaks at 32767), as Kaldi reads
them, whatever the file's format (16/24/32-bit PCM, float, FLAC, ...). Kaldi's fbank is defined
on that scale: feeding samples scaled to [-1, 1] instead lowers every log-mel value by
2 * ln(32768) ~= 20.8, so features would no longer match Kaldi's.

A wav.scp value is either a path or a shell command ending in ``|`` whose standard output is an
audio file (e.g. ``sox in.flac -t wav - |``). Commands run under ``bash -o pipefail`` so a failing
command anywhere in a pipeline is an error.
"""
from __future__ import annotations

import io
import math
import os
import shlex
import subprocess
from typing import Callable

import numpy as np
import soundfile

# soundfile returns PCM scaled to [-1, 1); this maps it back onto Kaldi's int16 scale.
INT16_SCALE = 32768.0


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file or command."""


# What feature extraction does with a wav cut short: stop with an error naming it, or warn and read what it holds.
TRUNCATED_AUDIO_MODES = ("error", "warn")


def read_audio(spec: str, command_allowed: bool = False,
               on_cut_short: Callable[[str], None] | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file, or with ``command_allowed`` a wav.scp value (a file, or a command ending in ``|``
    whose output is the audio); return (float32 samples of shape (N, C) in the int16 range, rate). Only
    wav.scp values may be commands: a file name given anywhere else is always a file.

    A wav file cut short (see :func:`wav_cut_short`) is an AudioError; with ``on_cut_short`` it is read as far as
    it goes, and ``on_cut_short`` gets the message naming it.

    soundfile decodes to float32 in [-1, 1) and the result is scaled by 32768, which is exact for
    16- and 24-bit PCM; float files keep their values (times 32768), unclipped.
    """
    spec = spec.strip() if command_allowed else spec
    if command_allowed and spec.endswith("|"):
        source = _run_command(spec[:-1].strip())
        where = f"command '{spec}'"
    else:
        if not os.path.isfile(spec):
            raise AudioError(f"audio file not found: {spec}")
        cut_short = wav_cut_short(spec)
        if cut_short is not None:
            if on_cut_short is None:
                raise AudioError(cut_short)
            on_cut_short(cut_short)
        source = spec
        where = f"audio file {spec}"
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as err:
        raise AudioError(f"cannot decode {where}: {err}") from err
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{where} contains NaN or infinite samples")
    return samples * np.float32(INT16_SCALE), int(rate)


def wav_cut_short(path: str) -> str | None:
    """A RIFF/WAVE file whose data chunk promises more bytes than the file holds is cut short (a copy or download
    that stopped): the message naming it, else None. Decoders read such a file as if it were shorter. Streamed
    headers (size 0 or 0xFFFFFFFF, written by tools that cannot seek back) are not checked. Other formats pass."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk = f.read(8)
            chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:8], "little")
            if chunk_id == b"data":
                held = size - offset - 8
                if chunk_size in (0, 0xFFFFFFFF) or chunk_size <= held:
                    return None
                return (f"audio file {path} is cut short: its data chunk promises {chunk_size} bytes, "
                        f"the file holds {held}")
            offset += 8 + chunk_size + (chunk_size & 1)
    return None


SEGMENT_COMMAND = "python -m ser.bin.cut_audio"  # a manifest's segment rows: SEGMENT_COMMAND FILE START END |


def segment_command(path: str, start: float, end: float) -> str:
    """The wav.scp value of the segment [start, end) seconds of an audio file."""
    return f"{SEGMENT_COMMAND} {shlex.quote(path)} {start:.3f} {end:.3f} |"


def read_segment(path: str, start: float, end: float) -> tuple[np.ndarray, int]:
    """float32 samples (N, C) in [-1, 1) of [round(start * rate), round(end * rate)) of a file, and its rate."""
    try:
        info = soundfile.info(path)
    except (RuntimeError, soundfile.SoundFileError) as err:
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    first, last = round(start * info.samplerate), round(end * info.samplerate)
    if not 0 <= first < last <= info.frames:
        raise AudioError(f"{path}: segment {start:g}-{end:g} s is outside the recording "
                         f"(0-{info.frames / info.samplerate:.3f} s)")
    samples, rate = soundfile.read(path, start=first, stop=last, dtype="float32", always_2d=True)
    return samples, int(rate)


def _run_command(command: str) -> io.BytesIO:
    """Run a wav.scp command and return its standard output as an in-memory file. ser's own segment command is
    run in this process (the same samples, without a Python start-up per segment)."""
    if not command:
        raise AudioError("empty command in wav.scp value '|'")
    words = shlex.split(command) if command.startswith(SEGMENT_COMMAND + " ") else []
    if len(words) == 6:
        try:
            start, end = float(words[4]), float(words[5])
        except ValueError:
            start = end = None
        if start is not None:
            samples, rate = read_segment(words[3], start, end)
            out = io.BytesIO()
            soundfile.write(out, samples, rate, format="WAV", subtype="FLOAT")
            out.seek(0)
            return out
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise AudioError(
            f"command '{command} |' failed with exit status {result.returncode}: {stderr[-500:]}"
        )
    if not result.stdout:
        raise AudioError(f"command '{command} |' wrote nothing to standard output")
    return io.BytesIO(result.stdout)


def to_mono(samples: np.ndarray, channel: int | None) -> np.ndarray:
    """Reduce (N, C) samples to (N,): average all channels (channel None) or pick one by index."""
    if samples.ndim != 2:
        raise AudioError(f"expected samples of shape (N, C), got {samples.shape}")
    num_channels = samples.shape[1]
    if channel is None:
        return samples.mean(axis=1, dtype=np.float64).astype(np.float32)
    if not 0 <= channel < num_channels:
        raise AudioError(f"channel {channel} requested, but the audio has {num_channels} channel(s)")
    return np.ascontiguousarray(samples[:, channel])


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling of 1-D samples from sr_in to sr_out Hz (float32 result)."""
    if sr_in <= 0 or sr_out <= 0:
        raise AudioError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # imported only when needed: scipy.signal takes ~1 s to import
    divisor = math.gcd(sr_in, sr_out)
    resampled = resample_poly(samples, sr_out // divisor, sr_in // divisor)
    return resampled.astype(np.float32, copy=False)


def resampled_length(num_samples: int, sr_in: int, sr_out: int) -> int:
    """The number of samples :func:`resample` gives for ``num_samples`` (polyphase: ceil(n up / down))."""
    if sr_in == sr_out:
        return num_samples
    divisor = math.gcd(sr_in, sr_out)
    return -(-num_samples * (sr_out // divisor) // (sr_in // divisor))


def header_length(path: str, sample_rate: int) -> int:
    """The samples an audio file will have at ``sample_rate``, from its header (the file is not decoded). Errors
    as :func:`read_audio`'s: a missing, undecodable or cut-short file is an AudioError naming it."""
    import soundfile

    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    cut_short = wav_cut_short(path)
    if cut_short is not None:
        raise AudioError(cut_short)
    try:
        info = soundfile.info(path)
    except (soundfile.SoundFileError, RuntimeError) as err:
        raise AudioError(f"cannot decode audio file {path}: {err}") from err
    return resampled_length(int(info.frames), info.samplerate, sample_rate)


def check_duration(num_samples: int, sample_rate: int, min_duration: float, spec: str) -> None:
    """An AudioError naming ``spec`` when it has no samples or lasts under ``min_duration`` seconds."""
    if num_samples == 0:
        raise AudioError(f"audio has no samples: {spec}")
    duration = num_samples / sample_rate
    if duration < min_duration:
        raise AudioError(
            f"audio is {duration:.3f} s long, shorter than min-duration {min_duration} s: {spec}"
        )


def load_mono(
    spec: str, sample_rate: int, channel: int | None = None, min_duration: float = 0.0,
    command_allowed: bool = False, on_cut_short: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Read an audio file (or a wav.scp value; a wav cut short: see read_audio), reduce it to one channel and
    resample it to ``sample_rate``.

    Raises AudioError (naming the file or command) for missing or undecodable audio, a failing
    command, a bad channel, no samples, or a duration below ``min_duration`` seconds.
    """
    samples, rate = read_audio(spec, command_allowed, on_cut_short)
    check_duration(samples.shape[0], rate, 0.0, spec)
    try:
        mono = resample(to_mono(samples, channel), rate, sample_rate)
    except AudioError as err:
        raise AudioError(f"{spec}: {err}") from err
    check_duration(mono.shape[0], sample_rate, min_duration, spec)
    return mono


class AudioProblem(AudioError):
    """Audio that cannot be classified; ``reason`` says why in a few words (missing, empty, unreadable, not audio,
    cut short, no samples, too short, not finite), the message names the file."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Recording:
    """Mono audio read a piece at a time: ``read(first, last)`` gives samples [first, last) at ``rate``, float32
    in the int16 range, channels averaged (as stage 1 reads them). A file is never decoded whole."""

    def __init__(self, name: str, rate: int, frames: int, read: Callable[[int, int], np.ndarray]):
        self.name, self.rate, self.frames, self.read = name, rate, frames, read

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def open_recording(path: str) -> Recording:
    """A file as a Recording, its header checked (nothing decoded); an AudioProblem names what is wrong with it."""
    if not os.path.lexists(path):
        raise AudioProblem("missing", f"{path}: missing (no such file)")
    if os.path.isdir(path):
        raise AudioProblem("not audio", f"{path}: not audio (a folder)")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise AudioProblem("unreadable", f"{path}: unreadable ({err.strerror})") from None
    if os.path.getsize(path) == 0:
        raise AudioProblem("empty", f"{path}: empty (0 bytes)")
    cut_short = wav_cut_short(path)
    if cut_short is not None:
        raise AudioProblem("cut short", cut_short)
    try:
        info = soundfile.info(path)
    except (soundfile.SoundFileError, RuntimeError) as err:
        raise AudioProblem("not audio", f"{path}: not audio ({str(err).splitlines()[0]})") from None
    if info.frames <= 0:
        raise AudioProblem("no samples", f"{path}: no samples (a valid header with no audio)")

    def read(first: int, last: int) -> np.ndarray:
        try:
            with soundfile.SoundFile(path) as f:
                f.seek(first)
                samples = f.read(last - first, dtype="float32", always_2d=True)
        except (soundfile.SoundFileError, RuntimeError, OSError) as err:
            raise AudioProblem("unreadable", f"{path}: unreadable ({str(err).splitlines()[0]})") from None
        if samples.shape[0] == 0:  # a header promising more than the decoder finds
            raise AudioProblem("no samples", f"{path}: no samples from {first / info.samplerate:.3f} s on")
        if not np.all(np.isfinite(samples)):
            raise AudioProblem("not finite", f"{path}: NaN or infinite samples")
        return to_mono(samples * np.float32(INT16_SCALE), None)

    return Recording(path, int(info.samplerate), int(info.frames), read)


def array_recording(name: str, samples: np.ndarray, rate: int) -> Recording:
    """(N,) samples in the int16 range held in memory, as a Recording."""
    return Recording(name, rate, samples.shape[0], lambda first, last: samples[first:last])
