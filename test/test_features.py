"""Tests for ser.features and the compute_fbank CLI.

fbank is checked against a direct numpy implementation of Kaldi's definition written here.
"""
from __future__ import annotations

import os
import subprocess
import sys

import kaldiio
import numpy as np
import pytest
import soundfile

from ser.audio import load_mono
from ser.bin import compute_fbank as compute_fbank_cli
from ser.features import (
    FBANK_DEFAULTS,
    CmvnNormaliser,
    accumulate_cmvn,
    check_fbank_options,
    compute_fbank,
    iter_feats_scp,
    num_frames,
    read_cmvn_stats,
    read_fbank_conf,
    write_cmvn_stats,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLT_EPSILON = float(np.finfo(np.float32).eps)


# ---------------------------------------------------------------------------------------------
# Reference: Kaldi's fbank written out directly in float64.


def _kaldi_mel(freq):
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def _window(kind: str, length: int) -> np.ndarray:
    n = np.arange(length)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / (length - 1))
    if kind == "povey":
        return hann**0.85
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(2 * np.pi * n / (length - 1))
    raise AssertionError(kind)


def reference_fbank(wave, rate, num_bins, low_freq=20.0, high_freq=0.0, snip_edges=True,
                    window="povey", round_pow2=True, preemph=0.97, remove_dc=True):
    wave = np.asarray(wave, dtype=np.float64)
    length, shift = int(rate * 0.025), int(rate * 0.010)
    if snip_edges:
        count = 1 + (len(wave) - length) // shift if len(wave) >= length else 0
        starts = [t * shift for t in range(count)]
    else:
        count = (len(wave) + shift // 2) // shift
        starts = [t * shift + shift // 2 - length // 2 for t in range(count)]
    fft_size = 1 << int(np.ceil(np.log2(length))) if round_pow2 else length
    num_fft_bins = fft_size // 2

    # Triangular filters, equally spaced on Kaldi's mel scale; the Nyquist bin is not used.
    nyquist = rate / 2
    top = high_freq if high_freq > 0 else nyquist + high_freq
    mel_low, mel_high = _kaldi_mel(low_freq), _kaldi_mel(top)
    mel_step = (mel_high - mel_low) / (num_bins + 1)
    bin_mels = _kaldi_mel(np.arange(num_fft_bins) * rate / fft_size)
    filters = np.zeros((num_bins, num_fft_bins))
    for b in range(num_bins):
        left, centre, right = (mel_low + (b + k) * mel_step for k in range(3))
        for k, mel in enumerate(bin_mels):
            if left < mel <= centre:
                filters[b, k] = (mel - left) / (centre - left)
            elif centre < mel < right:
                filters[b, k] = (right - mel) / (right - centre)

    taper = _window(window, length)
    out = np.zeros((count, num_bins))
    for t, start in enumerate(starts):
        frame = np.empty(length)
        for i in range(length):
            j = start + i
            if j < 0:  # reflect at the edges (snip-edges false)
                j = -j - 1
            elif j >= len(wave):
                j = 2 * len(wave) - 1 - j
            frame[i] = wave[j]
        if remove_dc:
            frame -= frame.mean()
        emphasised = frame.copy()
        for i in range(length - 1, 0, -1):
            emphasised[i] = frame[i] - preemph * frame[i - 1]
        emphasised[0] = frame[0] - preemph * frame[0]
        power = np.abs(np.fft.rfft(emphasised * taper, n=fft_size)) ** 2
        out[t] = np.log(np.maximum(filters @ power[:num_fft_bins], FLT_EPSILON))
    return out


def _test_signal(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Noise plus two tones and a DC offset, in the int16 range."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    tones = 6000 * np.sin(2 * np.pi * 440 * t) + 3000 * np.sin(2 * np.pi * 1870 * t + 0.3)
    return (tones + 800 * rng.standard_normal(len(t)) + 150).astype(np.float32)


CASES = {
    "16k-80-defaults": (16000, {}, {}),
    "8k-40-bins": (
        8000,
        {"sample-frequency": 8000, "num-mel-bins": 40, "low-freq": 60.0, "high-freq": -200.0},
        {"low_freq": 60.0, "high_freq": -200.0},
    ),
    "no-snip-hamming-no-pow2": (
        16000,
        {"num-mel-bins": 23, "snip-edges": False, "window-type": "hamming",
         "round-to-power-of-two": False, "preemphasis-coefficient": 0.9, "remove-dc-offset": False,
         "high-freq": 7000.0},
        {"snip_edges": False, "window": "hamming", "round_pow2": False, "preemph": 0.9,
         "remove_dc": False, "high_freq": 7000.0},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fbank_matches_direct_kaldi_definition(case):
    rate, opts, ref_kwargs = CASES[case]
    wave = _test_signal(rate, 0.3)
    feats = compute_fbank(wave, opts)
    num_bins = opts.get("num-mel-bins", FBANK_DEFAULTS["num-mel-bins"])
    expected = reference_fbank(wave, rate, num_bins, **ref_kwargs)
    assert feats.dtype == np.float32
    assert feats.shape == expected.shape == (num_frames(len(wave), opts), num_bins)
    assert np.max(np.abs(feats - expected)) < 1e-3


def test_defaults_are_80_bins_without_dither():
    wave = _test_signal(16000, 0.2)
    first = compute_fbank(wave, {})
    assert first.shape[1] == 80
    np.testing.assert_array_equal(first, compute_fbank(wave, {}))
    dithered = compute_fbank(wave, {"dither": 1.0})
    assert not np.array_equal(first, dithered)


def test_int16_scale_shifts_log_mel_by_2_ln_32768():
    wave = _test_signal(16000, 0.2)
    shift = compute_fbank(wave, {}) - compute_fbank(wave / 32768, {})
    np.testing.assert_allclose(shift, 2 * np.log(32768), atol=1e-3)


def test_use_energy_adds_a_column():
    assert compute_fbank(_test_signal(16000, 0.1), {"use-energy": True}).shape[1] == 81


@pytest.mark.parametrize("snip_edges", [True, False])
@pytest.mark.parametrize("num_samples", [0, 1, 79, 80, 399, 400, 401, 559, 560, 561, 16000])
def test_num_frames_agrees_with_computed_features(snip_edges, num_samples):
    opts = {"snip-edges": snip_edges}
    wave = _test_signal(16000, num_samples / 16000)
    assert compute_fbank(wave, opts).shape[0] == num_frames(num_samples, opts)


def test_fbank_rejects_bad_options_and_input():
    with pytest.raises(ValueError, match="unknown fbank option.*num_mel_bins"):
        compute_fbank(np.zeros(800, np.float32), {"num_mel_bins": 80})
    with pytest.raises(ValueError, match="low-freq"):
        check_fbank_options({"low-freq": 9000.0})
    with pytest.raises(ValueError, match="1-D"):
        compute_fbank(np.zeros((800, 2), np.float32), {})


# ---------------------------------------------------------------------------------------------
# Conf files


def test_read_fbank_conf_good(tmp_path):
    conf = tmp_path / "fbank.conf"
    conf.write_text(
        "# comment line\n"
        "\n"
        "--num-mel-bins=40   # trailing comment\n"
        "--sample-frequency=8000\n"
        "--snip-edges=false\n"
        "--snip-edges\n"  # bare boolean = true; later lines win
        "  --window-type=hamming\n"
        "--use-energy=F\n"
        "--low-freq=64.5\n"
        "--channel=1\n"
    )
    opts = read_fbank_conf(str(conf))
    assert set(opts) == set(FBANK_DEFAULTS)
    assert opts["num-mel-bins"] == 40 and opts["sample-frequency"] == 8000
    assert opts["snip-edges"] is True and opts["use-energy"] is False
    assert opts["window-type"] == "hamming" and opts["low-freq"] == 64.5 and opts["channel"] == 1
    assert opts["dither"] == 0.0 and opts["frame-shift"] == 10.0


def test_template_conf_spells_out_the_defaults():
    path = os.path.join(REPO_ROOT, "egs", "TEMPLATE", "conf", "fbank.conf")
    with open(path) as conf:
        written = {line.split("=")[0][2:] for line in conf if line.startswith("--")}
    assert written == set(FBANK_DEFAULTS)
    assert read_fbank_conf(path) == FBANK_DEFAULTS


@pytest.mark.parametrize(
    "line, message",
    [
        ("--num-mel-bin=80", "unknown option --num-mel-bin"),
        ("num-mel-bins=80", "expected '--name=value'"),
        ("--num-mel-bins=eighty", "bad value for --num-mel-bins"),
        ("--snip-edges=maybe", "bad value for --snip-edges"),
        ("--window-type=triangle", "bad value for --window-type"),
        ("--sample-frequency=16000.5", "bad value for --sample-frequency"),
        ("--channel=-2", "bad value for --channel"),
        ("--dither", "--dither needs a value"),
    ],
)
def test_read_fbank_conf_bad_lines(tmp_path, line, message):
    conf = tmp_path / "bad.conf"
    conf.write_text(f"# fine\n--num-mel-bins=80\n{line}\n")
    with pytest.raises(ValueError, match=message) as err:
        read_fbank_conf(str(conf))
    assert f"{conf}:3:" in str(err.value)


# ---------------------------------------------------------------------------------------------
# kaldiio storage


def test_kaldiio_round_trip_exact_and_compressed(tmp_path):
    rng = np.random.default_rng(2)
    mats = {f"utt{i}": (rng.standard_normal((50 + i, 80)) * 4 + 8).astype(np.float32) for i in range(3)}
    for compression in (None, 3):
        ark, scp = tmp_path / f"f{compression}.ark", tmp_path / f"f{compression}.scp"
        with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}", compression_method=compression) as writer:
            for key, mat in mats.items():
                writer(key, mat)
        loaded = dict(iter_feats_scp(str(scp)))
        assert list(loaded) == list(mats)
        for key, mat in mats.items():
            if compression is None:
                np.testing.assert_array_equal(loaded[key], mat)
            else:
                # Two-byte compression: 65535 levels over the matrix's value range.
                step = (mat.max() - mat.min()) / 65535
                assert np.max(np.abs(loaded[key] - mat)) <= step
    compressed = os.path.getsize(tmp_path / "f3.ark")
    assert compressed < 0.55 * os.path.getsize(tmp_path / "fNone.ark")


def test_iter_feats_scp_names_bad_line(tmp_path):
    scp = tmp_path / "feats.scp"
    scp.write_text(f"utt1 {tmp_path}/missing.ark:5\n")
    with pytest.raises(ValueError, match=r"feats.scp:1: .*utt1"):
        list(iter_feats_scp(str(scp)))
    scp.write_text("lonely\n")
    with pytest.raises(ValueError, match="feats.scp:1"):
        list(iter_feats_scp(str(scp)))


# ---------------------------------------------------------------------------------------------
# CMVN


def _feature_set(dim=5):
    rng = np.random.default_rng(3)
    return [(rng.standard_normal((n, dim)) * np.arange(1, dim + 1) + 10).astype(np.float32) for n in (7, 30, 12)]


def test_accumulate_cmvn_matches_numpy():
    mats = _feature_set()
    stats = accumulate_cmvn(iter(mats))
    allframes = np.concatenate(mats).astype(np.float64)
    assert stats.shape == (2, 6) and stats.dtype == np.float64
    np.testing.assert_allclose(stats[0, :5], allframes.sum(axis=0), rtol=1e-10)
    np.testing.assert_allclose(stats[1, :5], (allframes**2).sum(axis=0), rtol=1e-10)
    assert stats[0, 5] == len(allframes) and stats[1, 5] == 0
    with pytest.raises(ValueError, match="no features"):
        accumulate_cmvn([])
    with pytest.raises(ValueError, match="dimension 4"):
        accumulate_cmvn([mats[0], mats[1][:, :4]])


def apply_cmvn(feats, stats, norm_vars=True):
    return CmvnNormaliser(stats, norm_vars)(feats)


def test_apply_cmvn():
    mats = _feature_set()
    stats = accumulate_cmvn(mats)
    allframes = np.concatenate(mats).astype(np.float64)
    mean, std = allframes.mean(axis=0), allframes.std(axis=0)
    normalised = apply_cmvn(mats[1], stats)
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(normalised, (mats[1] - mean) / std, atol=1e-5)
    np.testing.assert_allclose(apply_cmvn(mats[1], stats, norm_vars=False), mats[1] - mean, atol=1e-5)
    whole = apply_cmvn(allframes, stats)
    np.testing.assert_allclose(whole.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(whole.std(axis=0), 1, atol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        apply_cmvn(mats[1][:, :4], stats)
    with pytest.raises(ValueError, match="count"):
        apply_cmvn(mats[1], np.zeros((2, 6)))


@pytest.mark.parametrize("name", ["cmvn.ark", "cmvn.npy"])
def test_cmvn_stats_file_round_trip(tmp_path, name):
    stats = accumulate_cmvn(_feature_set())
    path = str(tmp_path / name)
    write_cmvn_stats(path, stats)
    np.testing.assert_array_equal(read_cmvn_stats(path), stats)
    assert sorted(os.listdir(tmp_path)) == [name]
    if name.endswith(".ark"):
        assert [key for key, _ in kaldiio.load_ark(path)] == ["global"]


def test_read_cmvn_stats_errors(tmp_path):
    path = str(tmp_path / "other.ark")
    kaldiio.save_ark(path, {"spk1": np.ones((2, 3))})
    with pytest.raises(ValueError, match="other.ark.*spk1"):
        read_cmvn_stats(path)
    bad = str(tmp_path / "bad.npy")
    np.save(bad, np.ones((3, 3)))
    with pytest.raises(ValueError, match="bad.npy.*shape"):
        read_cmvn_stats(bad)
    # Kaldi's text form (copy-matrix --binary=false) reads as the binary one; a malformed one is one line naming it.
    text = tmp_path / "text.ark"
    text.write_text("global  [\n  10 20 30 5\n  100 200 300 0 ]\n")
    np.testing.assert_array_equal(read_cmvn_stats(str(text)), [[10, 20, 30, 5], [100, 200, 300, 0]])
    text.write_text("global  [\n  mean 20 30 5\n  100 200 300 0 ]\n")
    with pytest.raises(ValueError, match=f"^{text}: not a Kaldi ark of CMVN statistics [(][^\n]*[)]$"):
        read_cmvn_stats(str(text))


# ---------------------------------------------------------------------------------------------
# compute_fbank CLI


def _make_wav_scp(tmp_path):
    rng = np.random.default_rng(4)
    mono = (0.3 * rng.standard_normal(8000)).clip(-1, 1)
    stereo48 = (0.2 * rng.standard_normal((24000, 2))).clip(-1, 1)
    soundfile.write(tmp_path / "a.wav", mono, 16000)
    soundfile.write(tmp_path / "b.wav", stereo48, 48000, subtype="PCM_24")
    entries = [("spk1-a", str(tmp_path / "a.wav")), ("spk1-b", f"cat {tmp_path / 'b.wav'} |")]
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text("".join(f"{key} {spec}\n" for key, spec in entries))
    return wav_scp, entries


def _outputs(tmp_path):
    dump = tmp_path / "dump"
    return [str(dump / "raw_fbank.1.ark"), str(dump / "feats.1.scp"), str(dump / "utt2num_frames.1")]


@pytest.mark.parametrize("compress", ["true", "false"])
def test_compute_fbank_cli_writes_readable_features(tmp_path, compress):
    wav_scp, entries = _make_wav_scp(tmp_path)
    ark, scp, frames_file = _outputs(tmp_path)
    conf = tmp_path / "fbank.conf"
    conf.write_text("--num-mel-bins=40\n--min-duration=0.2\n")
    argv = ["--config", str(conf), "--compress", compress, str(wav_scp), ark, scp, frames_file]
    assert compute_fbank_cli.main(argv) == 0
    assert sorted(os.listdir(os.path.dirname(ark))) == sorted(os.path.basename(p) for p in (ark, scp, frames_file))
    with open(scp) as lines:
        assert all(line.split()[1].rsplit(":", 1)[0] == ark for line in lines)
    feats = dict(kaldiio.load_scp(scp))
    with open(frames_file) as lines:
        frames = {key: int(count) for key, count in (line.split() for line in lines)}
    assert list(feats) == list(frames) == [key for key, _ in entries]
    opts = read_fbank_conf(str(conf))
    for key, spec in entries:
        expected = compute_fbank(load_mono(spec, 16000, command_allowed=True), opts)
        assert feats[key].shape == (frames[key], 40) == expected.shape
        tolerance = 1e-6 if compress == "false" else (expected.max() - expected.min()) / 65535
        assert np.max(np.abs(feats[key] - expected)) <= tolerance


def test_compute_fbank_cli_bad_line_leaves_nothing_finished(tmp_path):
    wav_scp, entries = _make_wav_scp(tmp_path)
    ark, scp, frames_file = _outputs(tmp_path)
    os.makedirs(os.path.dirname(ark))
    for stale in (scp, frames_file):  # finished outputs of an earlier run must not survive
        open(stale, "w").write("old 1\n")
    lines = [f"{key} {spec}\n" for key, spec in entries]
    lines.insert(1, f"spk1-gone {tmp_path / 'gone.wav'}\n")
    wav_scp.write_text("".join(lines))
    result = subprocess.run(
        [sys.executable, "-m", "ser.bin.compute_fbank", str(wav_scp), ark, scp, frames_file],
        cwd=REPO_ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    assert result.returncode == 1
    assert f"{wav_scp}:2: utterance spk1-gone" in result.stderr and "gone.wav" in result.stderr
    assert os.listdir(os.path.dirname(ark)) == []


@pytest.mark.parametrize(
    "content, message",
    [
        ("spk1-a\n", "wav.scp:1: expected"),
        ("", "no utterances"),
        ("spk1-a {a}\nspk1-a {a}\n", "wav.scp:2: duplicate utterance id spk1-a"),
        ("spk1-a {a}\nspk1-z {tiny}\n", "wav.scp:2: utterance spk1-z"),
    ],
)
def test_compute_fbank_cli_input_errors(tmp_path, capsys, content, message):
    wav_scp, _ = _make_wav_scp(tmp_path)
    soundfile.write(tmp_path / "tiny.wav", np.zeros(100), 16000)  # shorter than one frame
    wav_scp.write_text(content.format(a=tmp_path / "a.wav", tiny=tmp_path / "tiny.wav"))
    ark, scp, frames_file = _outputs(tmp_path)
    os.makedirs(os.path.dirname(ark))
    for stale in (ark, scp, frames_file):  # outputs of an earlier run must not survive
        open(stale, "w").write("old 1\n")
    assert compute_fbank_cli.main([str(wav_scp), ark, scp, frames_file]) == 1
    assert message in capsys.readouterr().err
    assert not any(os.path.exists(p) for p in (scp, frames_file, ark))
    assert not [name for name in os.listdir(os.path.dirname(scp)) if ".tmp" in name]  # no temporary file left


def test_compute_fbank_cut_short_wav_error_or_warn(tmp_path):
    """--truncated-audio error (the default) stops naming the wav and leaves no feats.scp; warn computes the
    features of the samples the file holds, names the wav in a warning and counts it in the summary."""
    wav_scp, entries = _make_wav_scp(tmp_path)
    key, spec = entries[0]
    data = open(spec, "rb").read()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) * 2 // 3])
    wav_scp.write_text(wav_scp.read_text().replace(spec, str(cut)))
    ark, scp, frames_file = _outputs(tmp_path)
    command = [sys.executable, "-m", "ser.bin.compute_fbank", str(wav_scp), ark, scp, frames_file]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    failed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert failed.returncode == 1 and not os.path.exists(scp)
    assert f"{wav_scp}:1: utterance {key}: audio file {cut} is cut short" in failed.stderr
    warned = subprocess.run(command + ["--truncated-audio", "warn"], cwd=REPO_ROOT, capture_output=True, text=True,
                            env=env)
    assert warned.returncode == 0, warned.stderr
    warnings = [line for line in warned.stderr.splitlines() if ": warning: " in line]
    assert len(warnings) == 1 and f"utterance {key}: audio file {cut} is cut short" in warnings[0]
    assert warned.stderr.strip().splitlines()[-1].endswith("; 1 wav(s) were cut short and read as far as they go "
                                                           "(see the warnings)")
    held_bytes = len(data) * 2 // 3 - (data.index(b"data") + 8)
    held = soundfile.read(spec, dtype="int16")[0][: held_bytes // 2]  # the whole file's first samples (int16 range)
    expected = compute_fbank(held.astype(np.float32), dict(FBANK_DEFAULTS))
    feats = dict(kaldiio.load_scp(scp))
    assert feats[key].shape == expected.shape
    assert np.max(np.abs(feats[key] - expected)) <= (expected.max() - expected.min()) / 65535
