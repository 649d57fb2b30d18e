"""Export: the in-graph Kaldi fbank against ser's own (kaldi-native-fbank), ONNX posteriors under onnxruntime against
PyTorch's (ser's recognizer) on real and generated utterances, alone and batched, for an fbank and a fused model; the
numpy/soundfile/onnxruntime example; clean failures on a full disk."""

from __future__ import annotations

import errno
import glob
import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess

import numpy as np
import pytest
import soundfile
import torch

import ser.atomic
from ser.audio import INT16_SCALE, load_mono
from ser.cli import error_text
from ser.config import resolve_config, write_config
from ser.export import export_model
from ser.fbank_graph import KaldiFbank
from ser.features import FBANK_DEFAULTS, accumulate_cmvn, compute_fbank, read_fbank_conf, write_cmvn_stats
from ser.models import model_of

from support import CLASSES, PYTHON, REPO, SHARED_CORPORA, python_env

FBANK_CONF = os.path.join(REPO, "egs", "TEMPLATE", "conf", "fbank.conf")
EXAMPLE = os.path.join(REPO, "utils", "onnx_classify.py")
# log-mel values lie in about [-16, 25]; the graph's float32 DFT-by-matrix and kaldi-native-fbank's float32 FFT
# differ by rounding, relative to each frame's energy: most where a bin holds ~1e-10 of it (the lowest bins after
# pre-emphasis). Measured: at most 1.5e-3 over 24 RAVDESS files, 1.2e-4 on the generated ones.
FBANK_ATOL = 5e-3
POSTERIOR_ATOL = 1e-5
FUNCTIONALS_SET = "eGeMAPSv02"


def generated_wavs(folder, seconds=(0.55, 1.3, 2.05)) -> list[str]:
    """Harmonic tones in noise with a DC offset, 16-bit PCM at 16 kHz, one length each."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i, length in enumerate(seconds):
        t = np.arange(int(16000 * length)) / 16000
        f0 = 120 + 90 * i + 30 * np.sin(2 * np.pi * 1.5 * t)
        phase = 2 * np.pi * np.cumsum(f0) / 16000
        x = sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) + 0.02 * rng.normal(size=t.size) + 0.01
        paths.append(os.path.join(folder, f"gen{i}.wav"))
        soundfile.write(paths[-1], x.astype(np.float32), 16000, subtype="PCM_16")
    return paths


def ravdess_wavs(count=3) -> list[str]:
    wavs = sorted(glob.glob(os.path.join(SHARED_CORPORA, "RAVDESS", "Actor_0[1-3]", "*.wav")))
    if not wavs:
        pytest.skip(f"no RAVDESS audio under {SHARED_CORPORA}/RAVDESS (the real-utterance checks need it)")
    return wavs[::max(1, len(wavs) // count)][:count]


def build_model_dir(path, functionals: str = "none", wavs: list[str] = ()) -> str:
    """A fold's model dir as training leaves it (config.yaml, run.json, fbank.conf, cmvn.ark, model.pth and, when
    fusing functionals, utterance_norm.npz from those of ``wavs``), with seeded random weights: export must
    reproduce any weights."""
    os.makedirs(path, exist_ok=True)
    config = resolve_config({"frontend": "fbank", "encoder": "flam", "functionals": functionals,
                             "encoder_conf": {"d_model": 32, "num_heads": 4, "conv_channels": 8, "embed_dim": 16}})
    write_config(config, os.path.join(path, "config.yaml"))
    with open(os.path.join(path, "run.json"), "w") as f:
        json.dump({"identity": {"classes": CLASSES}}, f)
    shutil.copyfile(FBANK_CONF, os.path.join(path, "fbank.conf"))
    rng = np.random.default_rng(0)
    opts = read_fbank_conf(FBANK_CONF)
    write_cmvn_stats(os.path.join(path, "cmvn.ark"),
                     accumulate_cmvn(compute_fbank(rng.normal(size=16000) * 3000, opts) for _ in range(2)))
    utterance_dim = 88 if functionals != "none" else 0  # eGeMAPSv02's functionals
    torch.manual_seed(0)
    model = model_of(config, 80, len(CLASSES), utterance_dim)
    with torch.no_grad():  # sharper posteriors than an untrained head gives, so that differences show
        for p in model.parameters():
            p.mul_(2.0)
    torch.save(model.state_dict(), os.path.join(path, "model.pth"))
    if utterance_dim:
        values = functionals_of(wavs)
        mean = values.mean(axis=0, keepdims=True)
        np.savez(os.path.join(path, "utterance_norm.npz"), mean=mean,
                 scale=values.std(axis=0, keepdims=True) + 0.1 * np.abs(mean) + 1e-3)
    return str(path)


def padded(waves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(w) for w in waves], dtype=np.int64)
    out = np.zeros((len(waves), int(lengths.max())), dtype=np.float32)
    for row, wave in enumerate(waves):
        out[row, :len(wave)] = wave
    return out, lengths


def waveform(path: str) -> np.ndarray:
    """Mono 16 kHz samples in [-1, 1] as ser reads them (resampled when the file has another rate)."""
    return load_mono(path, 16000) / INT16_SCALE


# ------------------------------------------------------------------------------------------- fbank in a graph

@pytest.mark.parametrize("options", [
    {}, {"snip-edges": False}, {"use-energy": True},
    {"use-energy": True, "raw-energy": False, "htk-compat": True, "energy-floor": 1.0},
    {"window-type": "hamming", "round-to-power-of-two": False, "use-power": False},
    {"window-type": "blackman", "remove-dc-offset": False, "num-mel-bins": 40, "low-freq": 60, "high-freq": -400},
    {"window-type": "hanning", "preemphasis-coefficient": 0.0, "frame-length": 20, "frame-shift": 12.5}])
def test_graph_fbank_equals_sers_fbank_alone_and_batched(options, tmp_path):
    """ser.fbank_graph against ser.features.compute_fbank (kaldi-native-fbank) for each option that changes the
    computation; every row of a padded batch gives the frames of the row alone."""
    waves = [waveform(w) for w in generated_wavs(tmp_path)]
    fbank = KaldiFbank({**FBANK_DEFAULTS, **options})
    batch, lengths = padded(waves)
    with torch.no_grad():
        feats, frame_lengths = fbank(torch.from_numpy(batch), torch.from_numpy(lengths))
    for row, wave in enumerate(waves):
        expected = compute_fbank(wave * INT16_SCALE, options)
        assert frame_lengths[row] == expected.shape[0]
        np.testing.assert_allclose(feats[row, :expected.shape[0]].numpy(), expected, atol=FBANK_ATOL, rtol=1e-4)


def test_graph_fbank_refuses_dither():
    with pytest.raises(ValueError, match="--dither=1.0 must be 0"):
        KaldiFbank({**FBANK_DEFAULTS, "dither": 1.0})


# ------------------------------------------------------------------------------------------------ ONNX export

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An fbank model and a model fusing functionals, each exported to ONNX."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is installed by tools/install.sh --test/--onnx")
    pytest.importorskip("onnxscript", reason="onnxscript is installed by tools/install.sh --test/--onnx")
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, functionals in (("fbank", "none"), ("fused", FUNCTIONALS_SET)):
        if functionals != "none" and importlib.util.find_spec("opensmile") is None:
            continue  # the tests of the fused model skip, saying why
        model_dir = build_model_dir(root / name, functionals, generated_wavs(root / "audio", (0.8, 1.1, 1.7, 2.3)))
        out[name] = (model_dir, export_model(model_dir, str(root / f"{name}_onnx"), "onnx"))
    return out


def session(path):
    import onnxruntime

    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def functionals_of(paths: list[str]) -> np.ndarray:
    from ser.functionals import compute_functionals, make_extractor

    extractor = make_extractor(FUNCTIONALS_SET)
    return np.concatenate([compute_functionals(extractor, load_mono(p, 16000)) for p in paths])


@pytest.mark.slow
def test_onnx_fbank_graph_equals_sers_fbank(exported, tmp_path):
    """fbank.onnx under onnxruntime against compute_fbank, on real and generated utterances, alone and batched."""
    paths = generated_wavs(tmp_path) + ravdess_wavs()
    waves = [waveform(p) for p in paths]
    fbank = session(os.path.join(os.path.dirname(exported["fbank"][1]), "fbank.onnx"))
    batch, lengths = padded(waves)
    feats, frame_lengths = fbank.run(None, {"waveform": batch, "lengths": lengths})
    for row, wave in enumerate(waves):
        expected = compute_fbank(wave * INT16_SCALE, {})
        alone, alone_lengths = fbank.run(None, {"waveform": wave[None], "lengths": lengths[row:row + 1]})
        assert frame_lengths[row] == alone_lengths[0] == expected.shape[0] == alone.shape[1]
        np.testing.assert_allclose(alone[0], expected, atol=FBANK_ATOL, rtol=1e-4)
        np.testing.assert_allclose(feats[row, :expected.shape[0]], expected, atol=FBANK_ATOL, rtol=1e-4)


@pytest.mark.slow
def test_onnx_fbank_with_centred_frames_and_energy_equals_sers_fbank(tmp_path):
    """snip-edges false (frames reflected at each row's own ends) and the energy column, exported and batched."""
    pytest.importorskip("onnxscript", reason="onnxscript is installed by tools/install.sh --test/--onnx")
    from ser.export import onnx_model_bytes

    options = {"snip-edges": False, "use-energy": True, "raw-energy": False}
    graph = onnx_model_bytes(KaldiFbank({**FBANK_DEFAULTS, **options}), (torch.randn(2, 16000) * 0.1, torch.tensor(
        [16000, 12000])), ["waveform", "lengths"], ["feats", "frame_lengths"])
    waves = [waveform(p) for p in generated_wavs(tmp_path)]
    batch, lengths = padded(waves)
    feats, frame_lengths = session(graph).run(None, {"waveform": batch, "lengths": lengths})
    for row, wave in enumerate(waves):
        expected = compute_fbank(wave * INT16_SCALE, options)
        assert frame_lengths[row] == expected.shape[0]
        np.testing.assert_allclose(feats[row, :expected.shape[0]], expected, atol=FBANK_ATOL, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fbank", "fused"])
def test_onnx_posteriors_equal_pytorchs_alone_and_batched(exported, kind, tmp_path):
    """model.onnx (waveform in) under onnxruntime against ser's recognizer (kaldi-native-fbank, CMVN and the model
    in PyTorch) on generated utterances, and on RAVDESS ones when the corpus is there; the fused model takes the
    raw openSMILE functionals as its third input."""
    from ser import EmotionRecognizer

    paths = generated_wavs(tmp_path)
    if glob.glob(os.path.join(SHARED_CORPORA, "RAVDESS", "Actor_01", "*.wav")):
        paths += ravdess_wavs()
    if kind not in exported:
        pytest.skip("opensmile is installed by tools/install.sh --test/--opensmile (the fused model needs it)")
    model_dir, onnx_path = exported[kind]
    recognizer = EmotionRecognizer.from_dir(model_dir)
    expected = np.array([list(recognizer.classify_file(p).posteriors.values()) for p in paths])
    assert np.ptp(expected, axis=0).max() > 1000 * POSTERIOR_ATOL  # the utterances' posteriors tell them apart
    model = session(onnx_path)
    waves = [waveform(p) for p in paths]
    feeds = [{"waveform": w[None], "lengths": np.array([len(w)])} for w in waves]
    batch, lengths = padded(waves)
    batch_feeds = {"waveform": batch, "lengths": lengths}
    if kind == "fused":
        assert [i.name for i in model.get_inputs()] == ["waveform", "lengths", "functionals"]
        functionals = functionals_of(paths)
        for row, feed in enumerate(feeds):
            feed["functionals"] = functionals[row:row + 1]
        batch_feeds["functionals"] = functionals
    alone = np.concatenate([model.run(None, feed)[0] for feed in feeds])
    np.testing.assert_allclose(alone, expected, atol=POSTERIOR_ATOL)
    np.testing.assert_allclose(model.run(None, batch_feeds)[0], expected, atol=POSTERIOR_ATOL)
    meta = json.loads(open(os.path.join(os.path.dirname(onnx_path), "model.json")).read())
    assert meta["format"] == "onnx" and meta["classes"] == CLASSES and meta["sample_rate"] == 16000
    assert not os.path.isabs(meta["source"])  # nothing in an export names this machine
    assert ("openSMILE cannot run in the graph" in meta["inputs"][-1]) == (kind == "fused")


NO_TORCH_RUNNER = ("import runpy, sys\n"
                   "sys.argv = sys.argv[1:]\n"
                   "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
                   "except SystemExit as e:\n    code = e.code\n"
                   "loaded = sorted({'torch', 'ser', 'kaldi_native_fbank', 'scipy'} & set(sys.modules))\n"
                   "print('loaded:', ','.join(loaded), file=sys.stderr)\n"
                   "sys.exit(code)\n")


def run_example(*args):
    """utils/onnx_classify.py in a fresh interpreter outside the repository, reporting which of torch, ser,
    kaldi_native_fbank and scipy it loaded."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([PYTHON, "-c", NO_TORCH_RUNNER, EXAMPLE, *map(str, args)], capture_output=True,
                          text=True, env=env, cwd="/")
    assert proc.stderr.splitlines()[-1] == "loaded: ", proc.stderr
    return proc


@pytest.mark.slow
def test_example_runs_the_exported_models_with_numpy_soundfile_onnxruntime_only(exported, tmp_path):
    from ser import EmotionRecognizer

    paths = generated_wavs(tmp_path)
    for kind in exported:  # the fused model where opensmile is installed
        model_dir, onnx_path = exported[kind]
        export_dir = os.path.dirname(onnx_path)
        args = [export_dir, *paths]
        if kind == "fused":
            refused = run_example(*args)
            assert refused.returncode == 1 and refused.stderr.count("\n") == 2  # one line, then the runner's
            assert "fuses openSMILE functionals, which cannot run inside an ONNX graph" in refused.stderr
            np.save(tmp_path / "functionals.npy", functionals_of(paths))
            args += ["--functionals", tmp_path / "functionals.npy"]
        proc = run_example(*args, "--batch-size", "2")
        assert proc.returncode == 0, proc.stderr
        header, *rows = proc.stdout.splitlines()
        assert header.split("\t") == ["file", *CLASSES, "prediction"]
        recognizer = EmotionRecognizer.from_dir(model_dir)
        for path, row in zip(paths, rows, strict=True):
            fields = row.split("\t")
            expected = recognizer.classify_file(path)
            assert fields[0] == path and fields[-1] == expected.label
            np.testing.assert_allclose(np.array(fields[1:-1], dtype=float), list(expected.posteriors.values()),
                                       atol=2e-6)
    other_rate = tmp_path / "22k.wav"
    soundfile.write(other_rate, np.zeros(22050, np.float32), 22050)
    proc = run_example(os.path.dirname(exported["fbank"][1]), paths[0], other_rate)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines()[0] == f"error: {other_rate}: 22050 Hz; the model takes 16000 Hz (resample it first)"


# --------------------------------------------------------------------------------------- failures while writing

@pytest.fixture(scope="module")
def fbank_model_dir(tmp_path_factory):
    return build_model_dir(tmp_path_factory.mktemp("model") / "fold1")


def full_disk_open(real_open, free: int):
    """open() on a disk with ``free`` bytes left: a write past them fails as on a full disk."""
    left = [free]

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            if len(data) > left[0]:
                self.f.write(data[:left[0]])
                left[0] = 0
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            left[0] -= len(data)
            return self.f.write(data)

        def read(self, *args):
            return self.f.read(*args)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    return lambda *a, **k: Full(real_open(*a, **k))


@pytest.mark.parametrize("fmt", ["torchscript",
                                 pytest.param("onnx", marks=pytest.mark.slow)])
def test_export_on_a_full_disk_leaves_nothing_and_names_the_file(fbank_model_dir, fmt, tmp_path, monkeypatch,
                                                                 request):
    """The disk fills while the model is written (after the files beside it), or while the first file is: either
    way one line names the file, and no file of the export (complete or temporary) is left. (ONNX: the model only;
    the files before it are written alike.)"""
    if fmt == "onnx":
        exported = request.getfixturevalue("exported")
        fbank_model_dir, complete = exported["fbank"][0], os.path.dirname(exported["fbank"][1])
        model = "model.onnx"
    else:
        complete = tmp_path / "complete"
        model = os.path.basename(export_model(fbank_model_dir, str(complete), fmt))
    beside = sum(os.path.getsize(os.path.join(complete, name)) for name in os.listdir(complete) if name != model)
    for free, failing in ((beside + 1000, model), (10, "fbank.conf"))[:1 if fmt == "onnx" else 2]:
        out = tmp_path / f"free{free}"
        with monkeypatch.context() as patch:
            patch.setattr(ser.atomic, "open", full_disk_open(open, free), raising=False)
            with pytest.raises(OSError) as caught:
                export_model(fbank_model_dir, str(out), fmt)
        assert error_text(caught.value) == f"No space left on device while writing {out / failing}"
        assert os.listdir(out) == []


def test_export_cli_on_a_file_size_limit_fails_in_one_line_and_leaves_nothing(fbank_model_dir, tmp_path):
    """A real failed write (the kernel's file-size limit, as a full disk fails writes) inside the exporter's process:
    one line naming the file, exit status 1, no temporary file left."""
    out = tmp_path / "export"

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run([PYTHON, "-m", "ser.bin.export_model", "--format", "torchscript", "--model-dir",
                           fbank_model_dir, "--out", str(out)], capture_output=True, text=True, env=python_env(),
                          preexec_fn=limit_file_size)
    assert proc.returncode == 1
    note, error = proc.stderr.splitlines()  # the deprecation note, then the error
    assert note.startswith("note: TorchScript is deprecated")
    assert error == f"error: File too large while writing {out / 'model.ts'}"
    assert os.listdir(out) == []
