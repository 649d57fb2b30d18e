"""Tests for ser.audio: int16-range reading, channels, resampling, wav.scp commands, bad audio."""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

from ser.audio import AudioError, load_mono, read_audio, resample, to_mono


def _tone(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def _write(path, samples, rate, subtype="PCM_16") -> str:
    soundfile.write(str(path), samples, rate, subtype=subtype)
    return str(path)


def test_int16_wav_is_read_on_the_int16_scale(tmp_path):
    ints = np.array([0, 1, -1, 32767, -32768, 1234, -4321], dtype=np.int16)
    path = _write(tmp_path / "a.wav", ints, 16000)
    samples, rate = read_audio(path)
    assert rate == 16000
    assert samples.dtype == np.float32 and samples.shape == (len(ints), 1)
    np.testing.assert_array_equal(samples[:, 0], ints.astype(np.float32))


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT", "PCM_32"])
def test_high_resolution_formats_share_the_int16_scale(tmp_path, subtype):
    signal = _tone(300, 16000, 0.1, amplitude=0.7)
    path = _write(tmp_path / "hi.wav", signal, 16000, subtype=subtype)
    samples, _ = read_audio(path)
    np.testing.assert_allclose(samples[:, 0], signal * 32768, atol=0.01)


def test_resample_48k_to_16k_matches_scipy_and_keeps_the_tone(tmp_path):
    signal = _tone(1000, 48000, 1.0)
    path = _write(tmp_path / "48k.wav", signal, 48000, subtype="FLOAT")
    mono = load_mono(path, 16000)
    expected = resample_poly(signal * 32768, 1, 3)
    assert mono.dtype == np.float32 and mono.shape == (16000,)
    np.testing.assert_allclose(mono, expected, atol=0.05)
    spectrum = np.abs(np.fft.rfft(mono))
    peak_hz = np.argmax(spectrum) * 16000 / len(mono)
    assert abs(peak_hz - 1000) <= 1.0


def test_resample_uses_gcd_reduced_ratio():
    signal = np.random.default_rng(0).standard_normal(4410)
    out = resample(signal, 44100, 16000)
    np.testing.assert_allclose(out, resample_poly(signal, 160, 441), rtol=1e-5, atol=1e-5)
    assert out.dtype == np.float32
    same = resample(signal.astype(np.float32), 16000, 16000)
    np.testing.assert_array_equal(same, signal.astype(np.float32))
    with pytest.raises(AudioError):
        resample(signal, 0, 16000)


def test_stereo_downmix_and_channel_selection(tmp_path):
    rng = np.random.default_rng(1)
    stereo = rng.integers(-20000, 20000, size=(800, 2)).astype(np.int16)
    path = _write(tmp_path / "st.wav", stereo, 16000)
    as_float = stereo.astype(np.float64)
    np.testing.assert_allclose(load_mono(path, 16000), as_float.mean(axis=1), atol=1e-3)
    np.testing.assert_array_equal(load_mono(path, 16000, channel=1), as_float[:, 1])
    np.testing.assert_array_equal(to_mono(as_float.astype(np.float32), 0), as_float[:, 0])
    with pytest.raises(AudioError, match="st.wav") as err:
        load_mono(path, 16000, channel=2)
    assert "2 channel" in str(err.value)
    with pytest.raises(AudioError):
        to_mono(as_float, -1)


def test_command_entry_reads_stdout(tmp_path):
    signal = _tone(440, 16000, 0.2)
    path = _write(tmp_path / "c.wav", signal, 16000)
    direct = load_mono(path, 16000)
    np.testing.assert_array_equal(load_mono(f"cat {path} |", 16000, command_allowed=True), direct)
    np.testing.assert_array_equal(load_mono(f"cat {path} | cat |", 16000, command_allowed=True), direct)


def test_a_file_name_is_never_run_as_a_command(tmp_path):
    """Only wav.scp values may be commands: a file name ending in '|' given directly is a file name."""
    marker = tmp_path / "ran"
    with pytest.raises(AudioError, match="audio file not found"):
        load_mono(f"touch {marker} |", 16000)
    assert not marker.exists()


def test_command_entry_with_streamed_wav_header(tmp_path):
    # Tools writing a wav to a pipe cannot fill in the sizes; they write 0xFFFFFFFF.
    signal = _tone(440, 16000, 0.2)
    path = _write(tmp_path / "s.wav", signal, 16000)
    data = bytearray(open(path, "rb").read())
    assert data[36:40] == b"data"
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(bytes(data))
    np.testing.assert_array_equal(load_mono(f"cat {streamed} |", 16000, command_allowed=True),
                                  load_mono(path, 16000))


def test_failing_command_is_an_error(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match="missing.wav") as err:
        read_audio(f"cat {missing} |", command_allowed=True)
    assert "exit status" in str(err.value)
    # pipefail: a failure early in a pipeline is not hidden by a succeeding last command.
    with pytest.raises(AudioError, match="exit status"):
        read_audio(f"cat {missing} | cat |", command_allowed=True)
    with pytest.raises(AudioError, match="nothing"):
        read_audio("true |", command_allowed=True)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="nope.wav"):
        load_mono(str(tmp_path / "nope.wav"), 16000)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(os.urandom(4000))
    with pytest.raises(AudioError, match="corrupt.wav"):
        load_mono(str(path), 16000)


def test_empty_wav(tmp_path):
    path = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(AudioError, match="empty.wav") as err:
        load_mono(path, 16000)
    assert "no samples" in str(err.value)


def test_too_short_after_resampling(tmp_path):
    # 0.09 s at 48 kHz is 1440 samples at 16 kHz: below a 0.1 s minimum, above 0.05 s.
    path = _write(tmp_path / "short.wav", _tone(200, 48000, 0.09), 48000)
    with pytest.raises(AudioError, match="short.wav") as err:
        load_mono(path, 16000, min_duration=0.1)
    assert "min-duration" in str(err.value)
    assert load_mono(path, 16000, min_duration=0.05).shape == (1440,)


def test_non_finite_samples(tmp_path):
    signal = _tone(200, 16000, 0.05)
    signal[10] = np.nan
    path = _write(tmp_path / "nan.wav", signal, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav"):
        load_mono(path, 16000)


def test_a_cut_short_wav_is_an_error_naming_it(tmp_path):
    """A wav whose data chunk promises more samples than the file holds is not read as a shorter utterance."""
    path = _write(tmp_path / "whole.wav", _tone(440, 16000, 0.5), 16000)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 4])
    assert len(load_mono(path, 16000)) == 8000
    with pytest.raises(AudioError, match=r"cut.wav is cut short: its data chunk promises 16000 bytes"):
        load_mono(str(cut), 16000)


def test_a_cut_short_wav_read_as_far_as_it_goes_when_asked(tmp_path):
    """With on_cut_short the samples the file holds are returned (the whole file's first ones) and the callback
    gets the message naming the file; a complete wav never calls it."""
    ints = (np.arange(16000) % 2000 - 1000).astype(np.int16)
    path = _write(tmp_path / "whole.wav", ints, 16000)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + 2 * 3000 + 1])  # 3000 whole samples and one byte of the next
    messages = []
    samples, rate = read_audio(str(cut), on_cut_short=messages.append)
    np.testing.assert_array_equal(samples[:, 0], ints[:3000].astype(np.float32))
    assert messages == [f"audio file {cut} is cut short: its data chunk promises 32000 bytes, the file holds 6001"]
    read_audio(path, on_cut_short=messages.append)
    assert len(messages) == 1
    np.testing.assert_array_equal(load_mono(str(cut), 16000, on_cut_short=messages.append),
                                  ints[:3000].astype(np.float32))
