"""Frozen SSL frames cached once (ser.ssl_cache, ser.bin.cache_ssl) and the ssl_cached front-end that reads them:
the cache holds the encoder's own output (WavLM; Whisper window by window), a stale cache is refused or recomputed,
training learns from it, and decoding works from the cache and from audio files alike."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("transformers")

from ser.bin.cache_ssl import main as cache_ssl  # noqa: E402
from ser.config import ConfigError, resolve_config  # noqa: E402
from ser.frontends import make_frontend, resolve_frontend_conf  # noqa: E402
from ser.models.ssl import build_tiny_ssl, make_ssl_encoder  # noqa: E402
from ser.ssl_cache import SSLCacheError  # noqa: E402

CLASSES = ["low", "high"]
SPEAKERS = {"train": ["spk1", "spk2"], "test": ["spk3"]}


def write_recipe_data(root, per_class=6, sample_rate=22050, seed=0, seconds=(0.4, 0.8)):
    """data/all (tones of `seconds` (low, high), low or high pitch, at 22.05 kHz; paths and `cat |` commands),
    protocol.json and fold 1: train/valid from spk1-2 (every third utterance to valid), test spk3."""
    rng = np.random.default_rng(seed)
    all_dir = root / "data" / "all"
    all_dir.mkdir(parents=True)
    tables = {"wav.scp": {}, "utt2spk": {}, "utt2emo": {}}
    for spk in SPEAKERS["train"] + SPEAKERS["test"]:
        for emo, f0 in zip(CLASSES, (150.0, 400.0)):
            for n in range(per_class):
                utt = f"{spk}-{emo}{n:02d}"
                t = np.arange(int(sample_rate * rng.uniform(*seconds))) / sample_rate
                x = 0.3 * np.sin(2 * np.pi * f0 * rng.uniform(0.9, 1.1) * t) + 0.02 * rng.normal(size=t.size)
                wav = root / "audio" / f"{utt}.wav"
                wav.parent.mkdir(exist_ok=True)
                sf.write(wav, x.astype(np.float32), sample_rate, subtype="PCM_16")
                tables["wav.scp"][utt] = str(wav) if n % 2 else f"cat {wav} |"
                tables["utt2spk"][utt], tables["utt2emo"][utt] = spk, emo
    for name, table in tables.items():
        (all_dir / name).write_text("".join(f"{k} {table[k]}\n" for k in sorted(table)))
    spk2utt = {}
    for utt in sorted(tables["utt2spk"]):
        spk2utt.setdefault(tables["utt2spk"][utt], []).append(utt)
    (all_dir / "spk2utt").write_text("".join(f"{s} {' '.join(u)}\n" for s, u in sorted(spk2utt.items())))
    utts = sorted(tables["utt2spk"])
    train_utts = [u for u in utts if u.split("-")[0] in SPEAKERS["train"]]
    parts = {"train": [u for i, u in enumerate(train_utts) if i % 3], "valid": train_utts[::3],
             "test": [u for u in utts if u.split("-")[0] in SPEAKERS["test"]]}
    for part, members in parts.items():
        d = root / "data" / "fold1" / part
        d.mkdir(parents=True)
        d.joinpath("utt2spk").write_text("".join(f"{u} {tables['utt2spk'][u]}\n" for u in members))
    (root / "data" / "protocol.json").write_text(json.dumps({"classes": CLASSES, "folds": {"1": {}}}))
    return root / "data"


def write_config(path, checkpoint, **frontend_conf):
    import yaml

    config = {"frontend": "ssl_cached", "frontend_conf": {"path": str(checkpoint), **frontend_conf},
              "encoder": "flam", "encoder_conf": {"d_model": 32, "num_heads": 4, "embed_dim": 16},
              "augment": "featmix", "augment_conf": {"prob": 0.5}, "optim_conf": {"lr": 2.0e-3},
              "max_epoch": 8, "batch_size": 4, "crop_seconds": 0.5, "num_threads": 1, "log_interval": 0}
    path.write_text(yaml.safe_dump(config))
    return str(path)


def run_cache(capsys, config, data, root, *extra) -> str:
    capsys.readouterr()
    cache_ssl(["--config", config, "--data-dir", str(data), "--cache-root", str(root / "dump" / "ssl"), *extra])
    return capsys.readouterr().out.strip()


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("sslcache")
    data = write_recipe_data(root)
    checkpoint = build_tiny_ssl(str(root / "tiny_wavlm"))
    return root, data, checkpoint


def waves_of(data_dir):
    from ser.dataset import load_wave_set

    return load_wave_set(str(data_dir), CLASSES, 16000)


@pytest.fixture(scope="module")
def whisper_recipe(tmp_path_factory):
    """Utterances of 0.4-2.6 s and a tiny Whisper with 1 s windows (instead of 30 s): most span several windows."""
    root = tmp_path_factory.mktemp("sslcache_whisper")
    data = write_recipe_data(root, per_class=2, seconds=(0.4, 2.6))
    checkpoint = build_tiny_ssl(str(root / "tiny_whisper"), "whisper", max_source_positions=50)
    return root, data, checkpoint


def check_cached_frames(recipe, tmp_path, capsys, layer, dtype, reference_frontend, hidden, num_layers):
    """The cache of `layer` in `dtype` holds what the frozen on-the-fly front-end `reference_frontend` (whose
    normalize_wave default is what ssl_cached's "auto" must pick) gives each utterance alone; returns the record."""
    root, data, checkpoint = recipe
    cache = run_cache(capsys, write_config(tmp_path / "c.yaml", checkpoint, layer=layer, dtype=dtype), data,
                      tmp_path)
    frontend = make_frontend("ssl_cached", {"path": checkpoint, "layer": layer, "dtype": dtype})
    cached = frontend.load(os.path.join(cache, "all"), CLASSES)
    assert cached.feats[0].dtype == np.dtype(dtype)
    reference = make_ssl_encoder(resolve_frontend_conf(reference_frontend, {"path": checkpoint, "layer": layer,
                                                                            "freeze": "all"}), ("wavlm", "whisper"))
    layers = frontend.wrap(lambda dim: torch.nn.Identity(), None).frontend
    if layer == "weighted":
        assert cached.feat_dim == (num_layers + 1) * hidden  # input of layer 1 and the outputs of every layer
        with torch.no_grad():  # the same (non-uniform) layer weights in both
            reference.layer_weights.copy_(torch.linspace(-1.0, 0.8, num_layers + 1))
            layers.layer_weights.copy_(reference.layer_weights)
    waves = waves_of(os.path.join(data, "all"))
    assert cached.keys == waves.keys
    for feats, wave in zip(cached.feats, waves.feats):
        wave = torch.from_numpy(wave)[None]
        with torch.no_grad():
            expected = reference(wave, torch.tensor([wave.size(1)]))[0][0].numpy()
            frames = layers(torch.from_numpy(feats.astype(np.float32))[None], None)[0][0].numpy()
        assert frames.shape == expected.shape
        if dtype == "float32" and layer != "weighted":
            assert np.array_equal(frames, expected)
        else:  # rounded to float16: relative error <= 2**-11 per stored value
            np.testing.assert_allclose(frames, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    record = json.loads(open(os.path.join(cache, "all", "ssl_cache.json")).read())
    frames = sum(int(line.split()[1]) for line in open(os.path.join(cache, "all", "utt2num_frames")))
    assert record["frames"] == frames == sum(f.shape[0] for f in cached.feats)
    assert record["frames_per_second"] == 50 and record["hidden_size"] == hidden
    assert record["settings"]["normalize_wave"] == resolve_frontend_conf(reference_frontend, {})["normalize_wave"]
    return record, cached, waves


@pytest.mark.parametrize("layer, dtype", [(1, "float32"), (1, "float16"), ("last", "float16"),
                                          ("weighted", "float16")])
def test_cached_frames_are_the_encoders_output(recipe, tmp_path, capsys, layer, dtype):
    record, _, _ = check_cached_frames(recipe, tmp_path, capsys, layer, dtype, "ssl", hidden=32, num_layers=2)
    assert record["model_type"] == "wavlm" and record["settings"]["normalize_wave"] is True


@pytest.mark.parametrize("layer, dtype", [(1, "float32"), ("last", "float32"), ("weighted", "float16")])
def test_whisper_frames_are_cached_window_by_window(whisper_recipe, tmp_path, capsys, layer, dtype):
    """The reference is the whisper front-end, frozen: 1 s windows, each padded and encoded alone."""
    record, cached, waves = check_cached_frames(whisper_recipe, tmp_path, capsys, layer, dtype, "whisper",
                                                hidden=16, num_layers=2)
    assert record["model_type"] == "whisper" and record["settings"]["normalize_wave"] is False  # "auto"
    lengths = [wave.size for wave in waves.feats]
    assert sum(n > 16000 for n in lengths) >= len(lengths) // 2  # several windows
    assert [f.shape[0] for f in cached.feats] == [-(-n // 320) for n in lengths]  # ceil(samples / 320)


def test_a_stale_cache_is_refused_and_recomputed(recipe, tmp_path, capsys):
    root, data, _ = recipe
    checkpoint = build_tiny_ssl(str(tmp_path / "ckpt"), seed=1)
    config = write_config(tmp_path / "c.yaml", checkpoint)
    cache = run_cache(capsys, config, data, tmp_path)
    train_dir = os.path.join(cache, "fold1", "train")
    assert make_frontend("ssl_cached", {"path": checkpoint}).load(train_dir, CLASSES).feat_dim == 96
    for field, value in (("dtype", "float32"), ("layer", 1), ("normalize_wave", False)):
        with pytest.raises(SSLCacheError, match=f"stale cache.*frontend_conf.{field}"):
            make_frontend("ssl_cached", {"path": checkpoint, field: value}).load(train_dir, CLASSES)
        other = run_cache(capsys, config, data, tmp_path, "--set", f"frontend_conf.{field}={value}", "--print-dir")
        assert other != cache and not os.path.exists(other)  # another key: never the stale cache
    # Nothing changed: nothing is computed.
    assert run_cache(capsys, config, data, tmp_path) == cache
    # The same checkpoint path with other weights: refused, and cached anew under another key.
    build_tiny_ssl(checkpoint, seed=2)
    with pytest.raises(SSLCacheError, match="stale cache.*checkpoint content"):
        make_frontend("ssl_cached", {"path": checkpoint}).load(train_dir, CLASSES)
    renewed = run_cache(capsys, config, data, tmp_path)
    assert renewed != cache
    make_frontend("ssl_cached", {"path": checkpoint}).load(os.path.join(renewed, "fold1", "train"), CLASSES)
    # Other audio behind data/all/wav.scp: the cache of the same settings is recomputed.
    wav_scp = data / "all" / "wav.scp"
    original = wav_scp.read_text()
    try:
        wav_scp.write_text(original.replace("cat ", "cat  "))
        capsys.readouterr()
        cache_ssl(["--config", config, "--data-dir", str(data), "--cache-root", str(tmp_path / "dump" / "ssl")])
        assert "up to date" not in capsys.readouterr().err
    finally:
        wav_scp.write_text(original)
    # A data dir that is no cache is named as such.
    with pytest.raises(SSLCacheError, match="ser.bin.cache_ssl"):
        make_frontend("ssl_cached", {"path": checkpoint}).load(str(data / "all"), CLASSES)


def test_loading_a_cache_reads_an_unchanged_checkpoint_no_more(recipe, tmp_path, capsys, monkeypatch):
    """Training and decoding processes check the cache against the checkpoint by its files' names, sizes, times and
    first and last MiB as the record holds them; only a changed file makes them hash its whole content again."""
    import ser.ssl_cache

    root, data, _ = recipe
    checkpoint = build_tiny_ssl(str(tmp_path / "ckpt"), seed=3)
    cache = run_cache(capsys, write_config(tmp_path / "c.yaml", checkpoint), data, tmp_path)
    train_dir = os.path.join(cache, "fold1", "train")
    monkeypatch.setattr(ser.ssl_cache, "_digests", {})
    reads = []
    content_digest = ser.ssl_cache.content_digest
    monkeypatch.setattr(ser.ssl_cache, "content_digest", lambda *a: reads.append(1) or content_digest(*a))
    make_frontend("ssl_cached", {"path": checkpoint}).load(train_dir, CLASSES)
    assert run_cache(capsys, str(tmp_path / "c.yaml"), data, tmp_path, "--print-dir") == cache
    assert reads == []
    config_json = os.path.join(checkpoint, "config.json")
    os.utime(config_json, ns=(os.stat(config_json).st_atime_ns, os.stat(config_json).st_mtime_ns + 10**9))
    make_frontend("ssl_cached", {"path": checkpoint}).load(train_dir, CLASSES)  # same content: still this cache
    assert reads == [1]


def test_replaced_weights_of_the_same_size_and_time_are_not_a_cached_checkpoint(tmp_path, monkeypatch):
    """A file replaced with its size and times restored is detected by its first or last MiB (a whole-content
    hash tells it apart); only a change confined to the bytes in between keeps the record's digest, as docs/gpu.md
    says."""
    import ser.ssl_cache
    from ser.ssl_cache import SAMPLE_BYTES, checkpoint_digest, checkpoint_files

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    weights = checkpoint / "pytorch_model.bin"
    original = np.random.default_rng(0).bytes(3 * SAMPLE_BYTES)
    weights.write_bytes(original)
    times = (os.stat(weights).st_atime_ns, os.stat(weights).st_mtime_ns)
    record = {"checkpoint_path": str(checkpoint), "checkpoint_files": checkpoint_files(str(checkpoint)),
              "settings": {"checkpoint": checkpoint_digest(str(checkpoint))}}
    for at, detected in ((0, True), (3 * SAMPLE_BYTES - 1, True), (SAMPLE_BYTES + 7, False)):
        monkeypatch.setattr(ser.ssl_cache, "_digests", {})
        weights.write_bytes(original[:at] + bytes([original[at] ^ 1]) + original[at + 1:])
        os.utime(weights, ns=times)
        assert (checkpoint_digest(str(checkpoint), record) != record["settings"]["checkpoint"]) == detected
        assert checkpoint_digest(str(checkpoint)) != record["settings"]["checkpoint"]


class _RunsOnLoad:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_checkpoint_is_one_line_naming_it_and_nothing_in_it_runs(recipe, tmp_path, capsys):
    _, data, _ = recipe
    checkpoint = build_tiny_ssl(str(tmp_path / "crafted"))
    os.remove(os.path.join(checkpoint, "model.safetensors"))
    marker = tmp_path / "ran"
    torch.save({"weights": _RunsOnLoad(str(marker))}, os.path.join(checkpoint, "pytorch_model.bin"))
    with pytest.raises(SystemExit) as stop:
        run_cache(capsys, write_config(tmp_path / "c.yaml", checkpoint), data, tmp_path)
    assert stop.value.code == 1 and not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: {checkpoint}: cannot load the checkpoint's weights (pytorch_model.bin): they hold "
                       "objects other than tensors, refused (loaded weights-only: nothing in them ran)")


def test_a_full_disk_while_caching_names_the_file_and_leaves_no_partial_cache(recipe, tmp_path, capsys,
                                                                             monkeypatch):
    import errno
    import shutil

    import kaldiio

    _, data, checkpoint = recipe
    config = write_config(tmp_path / "c.yaml", checkpoint)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    cache = run_cache(capsys, config, data, tmp_path, "--print-dir")
    monkeypatch.setattr(kaldiio.WriteHelper, "__call__", no_space)
    with pytest.raises(SystemExit):
        run_cache(capsys, config, data, tmp_path)
    ark = os.path.join(cache, "all", "feats.ark")
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: No space left on device while writing {ark}"
    assert sorted(os.listdir(os.path.join(cache, "all"))) == []
    monkeypatch.undo()
    monkeypatch.setattr(shutil, "copyfile", no_space)
    with pytest.raises(SystemExit):
        run_cache(capsys, config, data, tmp_path)
    wav_scp = os.path.join(cache, "all", "wav.scp")
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: No space left on device while writing {wav_scp}"
    assert not [n for n in os.listdir(os.path.join(cache, "all")) if ".tmp" in n or n == "wav.scp"]
    assert not os.path.exists(os.path.join(cache, ".done"))


def test_waveform_eam_is_refused_on_cached_frames(recipe):
    _, _, checkpoint = recipe
    for augment in ("eam", "lam"):
        with pytest.raises(ConfigError, match=f"augment: {augment} acts on the waveform.*choose one of featmix"):
            resolve_config({"frontend": "ssl_cached", "frontend_conf": {"path": checkpoint}, "augment": augment})
    with pytest.raises(ConfigError, match="featmix acts on cached frame features"):
        resolve_config({"frontend": "ssl", "augment": "featmix"})


def test_training_from_the_cache_learns_and_decodes_test_utterances(recipe, tmp_path, capsys):
    from ser.train import train

    root, data, checkpoint = recipe
    config_path = write_config(tmp_path / "c.yaml", checkpoint)
    cache = run_cache(capsys, config_path, data, tmp_path)
    import yaml

    config = resolve_config(yaml.safe_load(open(config_path)))
    outdir = tmp_path / "exp"
    fold = os.path.join(cache, "fold1")
    train(config, CLASSES, os.path.join(fold, "train"), os.path.join(fold, "valid"), None, str(outdir))
    history = json.loads((outdir / "history.json").read_text())
    first, last = (np.mean([h["train"]["total"] for h in part]) for part in (history[:2], history[-2:]))
    assert last < 0.8 * first
    assert json.loads((outdir / "run.json").read_text())["mixup"] == "featmix on cached frame features"
    weights = torch.load(outdir / "model.pth")
    assert weights["frontend.layer_weights"].abs().max() > 0  # the layer weights trained on the cache
    assert not any(k.startswith("frontend.ssl") for k in weights)  # no encoder in the cached model

    assert_decoding_the_cache_equals_decoding_audio(outdir, fold, data)


def test_whisper_cache_trains_and_decodes_as_audio(whisper_recipe, tmp_path, capsys):
    from ser.train import train

    root, data, checkpoint = whisper_recipe
    config_path = write_config(tmp_path / "c.yaml", checkpoint, dtype="float32")
    cache = run_cache(capsys, config_path, data, tmp_path)
    import yaml

    config = resolve_config({**yaml.safe_load(open(config_path)), "max_epoch": 2})
    outdir = tmp_path / "exp"
    fold = os.path.join(cache, "fold1")
    train(config, CLASSES, os.path.join(fold, "train"), os.path.join(fold, "valid"), None, str(outdir))
    assert torch.load(outdir / "model.pth")["frontend.layer_weights"].abs().max() > 0
    assert_decoding_the_cache_equals_decoding_audio(outdir, fold, data)


def assert_decoding_the_cache_equals_decoding_audio(outdir, fold, data):
    """Decoding a test set reads its cache; a single file runs the encoder: both give the same posteriors."""
    from ser.infer import classify_data_dir, load_trained, model_input_of_wav

    trained = load_trained(str(outdir))
    test_set, posteriors = classify_data_dir(trained, os.path.join(fold, "test"))
    assert posteriors.shape == (len(test_set.keys), 2) and np.allclose(posteriors.sum(1), 1, atol=1e-5)
    wav_scp = dict(line.split(maxsplit=1) for line in open(data / "all" / "wav.scp"))
    trained.model.eval()
    for key, expected in zip(test_set.keys, posteriors):
        wav = wav_scp[key].strip().removeprefix("cat ").removesuffix(" |")
        feats, _ = model_input_of_wav(trained, wav)
        with torch.no_grad():
            logits = trained.model(torch.from_numpy(feats)[None], torch.tensor([len(feats)])).logits
        np.testing.assert_allclose(torch.softmax(logits, -1)[0].numpy(), expected, atol=1e-5)
