"""The classic reference (openSMILE functionals + logistic regression), speaker normalisation and fused functionals.

References: scikit-learn's LogisticRegression fit on all features, numpy per-speaker statistics written out by
hand, and opensmile's own process_file on the same audio.
"""

from __future__ import annotations

import json
import os
import subprocess

import kaldiio
import numpy as np
import pytest

from support import CLASSES, PYTHON, python_env, write_class_functionals

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is installed by tools/install.sh --test/--opensmile")


def write_functionals_dirs(root, dim=40, seed=0):
    """data dirs train (spk1-4), valid (spk1-4), test (spk5-6) and one functionals archive of all utterances:
    a class-dependent mean plus a large per-speaker offset (what per-speaker normalisation removes)."""
    rng = np.random.default_rng(seed)
    parts = {"train": (["spk1", "spk2", "spk3", "spk4"], 6), "valid": (["spk1", "spk2", "spk3", "spk4"], 1),
             "test": (["spk5", "spk6"], 6)}
    class_means = rng.normal(0, 1.0, size=(len(CLASSES), dim))
    offsets = {f"spk{i}": rng.normal(0, 3.0, size=dim) for i in range(1, 7)}
    rows = {}
    for part, (speakers, per_class) in parts.items():
        d = root / part
        d.mkdir(parents=True)
        utt2emo, utt2spk = {}, {}
        for spk in speakers:
            for c, emo in enumerate(CLASSES):
                for n in range(per_class):
                    utt = f"{spk}-{part}-{emo}{n:02d}"
                    rows[utt] = (class_means[c] + offsets[spk] + rng.normal(0, 1.0, dim)).astype(np.float32)
                    utt2emo[utt], utt2spk[utt] = emo, spk
        for name, table in (("utt2emo", utt2emo), ("utt2spk", utt2spk)):
            (d / name).write_text("".join(f"{k} {table[k]}\n" for k in sorted(table)))
    with kaldiio.WriteHelper(f"ark,scp:{root}/func.ark,{root}/func.scp") as w:
        for k in sorted(rows):
            w(k, rows[k][None])
    return root, str(root / "func.scp"), rows


@pytest.fixture()
def functionals_dirs(tmp_path):
    return write_functionals_dirs(tmp_path)


def test_row_space_fit_equals_a_fit_on_all_features():
    """Fitting in the span of the rows is exact for L2 logistic regression: scikit-learn on all features agrees."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ser.classic import fit_path

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 300))
    y = np.repeat(np.arange(3), 20)
    x[:, :5] += y[:, None]
    for c, model in zip([0.01, 0.1], fit_path(x, y, [0.01, 0.1], max_iter=5000)):  # the default tol, 1e-6
        scaler = StandardScaler().fit(x)
        ref = LogisticRegression(C=c, max_iter=5000, tol=1e-8).fit(scaler.transform(x), y)
        np.testing.assert_allclose(model.coef, ref.coef_, atol=2e-4 * np.abs(ref.coef_).max())
        x_new = rng.normal(size=(20, 300))
        np.testing.assert_allclose(model.posteriors(x_new), ref.predict_proba(scaler.transform(x_new)), atol=2e-4)
        assert 0 < model.iterations < 5000


def test_a_fit_that_stops_at_max_iter_is_a_warning_and_recorded(caplog):
    from ser.classic import fit_path

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 20))
    y = np.repeat(np.arange(3), 20)
    (model,) = fit_path(x, y, [1.0], max_iter=3)
    assert model.iterations == 3
    assert "logistic regression at C=1 stopped at max_iter=3 before reaching tol=1e-06" in caplog.text


def test_speaker_statistics_match_a_direct_computation():
    from ser.speaker_norm import SpeakerNormaliser, speaker_statistics

    rng = np.random.default_rng(1)
    mats = [rng.normal(3.0, 2.0, size=(int(rng.integers(5, 30)), 4)) for _ in range(9)]
    speakers = ["a", "b", "c"] * 3
    stats = speaker_statistics(mats, speakers)
    for spk in "abc":
        frames = np.concatenate([m for m, s in zip(mats, speakers) if s == spk])
        np.testing.assert_allclose(stats[spk][0], frames.mean(0), rtol=1e-10)
        np.testing.assert_allclose(stats[spk][1], frames.std(0), rtol=1e-8)
    normed = np.concatenate([SpeakerNormaliser(stats)(m, s) for m, s in zip(mats, speakers) if s == "b"])
    np.testing.assert_allclose(normed.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normed.std(0), 1, atol=1e-5)
    with pytest.raises(KeyError, match="'z'"):
        SpeakerNormaliser(stats)(mats[0], "z")


def test_cross_validation_never_splits_a_speaker(functionals_dirs, monkeypatch):
    import ser.classic as classic

    root, scp, _ = functionals_dirs
    x, y, speakers, _ = classic.load_functionals(scp, [str(root / "train"), str(root / "valid")], CLASSES)
    seen = []
    real_fit_path = classic.fit_path

    def recording_fit_path(x_fit, y_fit, *args):
        seen.append(len(x_fit))
        return real_fit_path(x_fit, y_fit, *args)

    monkeypatch.setattr(classic, "fit_path", recording_fit_path)
    config = classic.resolve_classic_config({"feature_set": "eGeMAPSv02", "cv_folds": 4})
    cv = classic.cross_validate_c(x, y, speakers, config)
    assert set(cv) == set(config["c_grid"])
    # 4 speakers, 4 groups: every fit holds out exactly one whole speaker (28 of its rows)
    assert seen == [len(y) - 28] * 4


def test_classic_reference_learns_and_speaker_norm_uses_each_speakers_own_rows(functionals_dirs, tmp_path):
    from ser.classic import classify_classic, resolve_classic_config, train_classic_run
    from ser.speaker_norm import speaker_normalise_rows

    root, scp, rows = functionals_dirs
    scores = {}
    for norm in ("none", "cmvn"):
        config = resolve_classic_config({"feature_set": "eGeMAPSv02", "speaker_norm": norm, "cv_folds": 4})
        outdir = tmp_path / norm
        selection = train_classic_run(config, CLASSES, scp, [str(root / "train"), str(root / "valid")], str(outdir))
        assert selection["train_speakers"] == ["spk1", "spk2", "spk3", "spk4"]
        assert selection["solver"]["name"] == "newton-cg" and selection["solver"]["tol"] == 1e-6
        assert selection["solver"]["converged"] and 0 < selection["solver"]["iterations"] < 1000
        with open(outdir / "run.json") as f:
            assert json.load(f)["git_revision"] != ""
        keys, post = classify_classic(config, str(outdir), scp, str(root / "test"))
        labels = np.array([CLASSES.index(k.split("-")[2][:3]) for k in keys])
        scores[norm] = (post.argmax(1) == labels).mean()
        assert np.allclose(post.sum(1), 1, atol=1e-5)
    assert scores["cmvn"] > 0.9 and scores["cmvn"] >= scores["none"]
    # The normalised test rows depend on the test speaker's own rows only.
    test_keys = sorted(k for k in rows if k.startswith("spk5"))
    x = np.stack([rows[k] for k in test_keys]).astype(np.float64)
    expected = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(speaker_normalise_rows(x, ["spk5"] * len(x)), expected, atol=1e-4)


def test_training_fold_normalisation_never_includes_a_test_speaker(feature_dirs):
    """The neural path: per-speaker CMVN statistics of training come from train+valid only; at test time each test
    speaker is normalised with its own test frames."""
    import yaml

    from ser.config import resolve_config
    from ser.dataset import load_labelled_set
    from ser.inputs import prepare_test_inputs, prepare_training_inputs
    from ser.speaker_norm import speaker_statistics

    config = resolve_config({"speaker_norm": "cmvn"})
    train = load_labelled_set(str(feature_dirs / "train"), CLASSES)
    valid = load_labelled_set(str(feature_dirs / "valid"), CLASSES)
    norm = prepare_training_inputs(config, train, valid, str(feature_dirs / "train"), str(feature_dirs / "valid"),
                                   None, None)
    test_speakers = {line.split()[1] for line in open(feature_dirs / "test" / "utt2spk")}
    assert set(norm.speakers) == {"spk1", "spk2", "spk3"} and not set(norm.speakers) & test_speakers
    spk1 = [f for f, s in zip(train.feats + valid.feats, train.speakers + valid.speakers) if s == "spk1"]
    mean, std = speaker_statistics(spk1, ["spk1"] * len(spk1))["spk1"]
    np.testing.assert_allclose(norm.stats["spk1"][0], mean, rtol=1e-5)
    test = load_labelled_set(str(feature_dirs / "test"), CLASSES)
    test_norm = prepare_test_inputs(config, test, str(feature_dirs / "test"), "", None, None)
    assert test_norm.speakers == ["spk4"]
    frames = np.concatenate(test.feats)
    np.testing.assert_allclose(test_norm.stats["spk4"][0], frames.mean(0), rtol=1e-5)
    assert yaml.safe_dump(config)  # the resolved config stays writable


def test_classic_config_errors_name_the_key():
    from ser.classic import resolve_classic_config
    from ser.config import ConfigError

    with pytest.raises(ConfigError, match="feature_set"):
        resolve_classic_config({"feature_set": "GeMAPS"}, "x.yaml")
    with pytest.raises(ConfigError, match="max_epoch"):
        resolve_classic_config({"max_epoch": 3}, "x.yaml")
    with pytest.raises(ConfigError, match="c_grid"):
        resolve_classic_config({"c_grid": [0.1, -1]}, "x.yaml")
    with pytest.raises(ConfigError, match="speaker_norm"):
        resolve_classic_config({"speaker_norm": "global"}, "x.yaml")


@pytest.mark.slow
def test_fused_functionals_train_and_classify_through_the_bins(feature_dirs, tmp_path):
    """A FLAM model fusing utterance functionals trains, keeps its standardisation, and refuses to run without
    them; its classic sibling runs through the same bins."""
    import yaml

    write_class_functionals([feature_dirs / part for part in ("train", "valid", "test")], tmp_path)
    config = {"encoder_conf": {"d_model": 32, "num_heads": 4, "conv_channels": 8, "embed_dim": 16,
                               "fusion_dim": 8}, "functionals": "eGeMAPSv02", "max_epoch": 4, "batch_size": 8,
              "num_threads": 1, "log_interval": 0, "optim_conf": {"lr": 3.0e-3}}
    (tmp_path / "fuse.yaml").write_text(yaml.safe_dump(config))
    base = [PYTHON, "-m", "ser.bin.train", "--config", str(tmp_path / "fuse.yaml"), "--classes",
            str(feature_dirs / "classes.txt"), "--train-dir", str(feature_dirs / "train"), "--valid-dir",
            str(feature_dirs / "valid"), "--cmvn", str(feature_dirs / "train" / "cmvn.ark")]
    missing = subprocess.run(base + ["--outdir", str(tmp_path / "no")], env=python_env(), capture_output=True,
                             text=True)
    assert missing.returncode != 0 and "--functionals-scp" in missing.stderr
    proc = subprocess.run(base + ["--outdir", str(tmp_path / "run"), "--functionals-scp", str(tmp_path / "f.scp")],
                          env=python_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "utterance_norm.npz").exists()
    decode = subprocess.run([PYTHON, "-m", "ser.bin.infer", "--model-dir", str(tmp_path / "run"), "--data-dir",
                             str(feature_dirs / "test"), "--outdir", str(tmp_path / "run" / "decode"),
                             "--functionals-scp", str(tmp_path / "f.scp")], env=python_env(), capture_output=True,
                            text=True)
    assert decode.returncode == 0, decode.stderr[-2000:]
    predictions = dict(line.split() for line in open(tmp_path / "run" / "decode" / "predictions"))
    test_labels = dict(line.split() for line in open(feature_dirs / "test" / "utt2emo"))
    accuracy = np.mean([predictions[k] == test_labels[k] for k in test_labels])
    assert accuracy > 0.6  # the functionals alone carry the class; chance is 0.25
    with open(tmp_path / "run" / "selection.json") as f:
        assert json.load(f)["epoch"] >= 1


def test_fusion_is_exact_under_padding_and_absent_when_off():
    import torch

    from ser.models import build_model

    conf = {"d_model": 32, "num_heads": 4, "conv_channels": 8, "embed_dim": 16, "fusion_dim": 8}
    torch.manual_seed(0)
    fused = build_model("flam", conf, 20, 4, utterance_dim=12).eval()
    torch.manual_seed(0)
    plain = build_model("flam", conf, 20, 4).eval()
    assert not any("utterance" in k for k in plain.state_dict())
    # Everything before the head starts out identical (the head's embedding reads a wider input).
    shared = {k: v for k, v in fused.state_dict().items() if not k.startswith("head.")}
    assert len(shared) > 5
    for k, v in shared.items():
        assert torch.equal(v, plain.state_dict()[k]), k
    feats, lengths, utt = torch.randn(3, 50, 20), torch.tensor([50, 31, 17]), torch.randn(3, 12)
    with torch.no_grad():
        batch = fused(feats, lengths, utt).logits
        alone = fused(feats[2:, :17], lengths[2:], utt[2:]).logits
    torch.testing.assert_close(batch[2:], alone, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="fuses utterance-level features"):
        fused(feats, lengths)
    with pytest.raises(ValueError, match="without utterance-level features"):
        plain(feats, lengths, utt)


def test_functionals_match_opensmile_on_the_same_audio(tmp_path):
    opensmile = pytest.importorskip("opensmile", reason="opensmile is installed by tools/install.sh --opensmile")
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wav = tmp_path / "a.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 180 * t * (1 + 0.2 * t)) + 0.01 * rng.normal(size=t.size)),
             16000, subtype="PCM_16")
    (tmp_path / "wav.scp").write_text(f"utt1 {wav}\nutt2 {tmp_path / 'missing.wav'}\n")
    proc = subprocess.run([PYTHON, "-m", "ser.bin.compute_functionals", "--feature-set", "eGeMAPSv02",
                           str(tmp_path / "wav.scp"), str(tmp_path / "f.ark"), str(tmp_path / "f.scp"),
                           str(tmp_path / "n")], env=python_env(), capture_output=True, text=True)
    assert proc.returncode != 0 and "wav.scp:2" in proc.stderr and "utt2" in proc.stderr
    assert not os.path.exists(tmp_path / "f.scp") and not os.path.exists(tmp_path / "f.ark")
    (tmp_path / "wav.scp").write_text(f"utt1 {wav}\n")
    proc = subprocess.run([PYTHON, "-m", "ser.bin.compute_functionals", "--feature-set", "eGeMAPSv02",
                           str(tmp_path / "wav.scp"), str(tmp_path / "f.ark"), str(tmp_path / "f.scp"),
                           str(tmp_path / "n")], env=python_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ours = kaldiio.load_scp(str(tmp_path / "f.scp"))["utt1"]
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    reference = smile.process_file(str(wav)).to_numpy()
    assert ours.shape == (1, 88)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def test_an_opensmile_that_cannot_be_imported_is_named_with_its_import_error(monkeypatch):
    """The recipe finds opensmile without importing it (ser.bin.recipe); one installed but broken (say its native
    library is missing) stops stage 1 with its own import error, not a claim that it is not installed."""
    import sys

    from ser.functionals import FunctionalsUnavailable, make_extractor

    monkeypatch.setitem(sys.modules, "opensmile", None)  # `import opensmile` now raises ImportError
    with pytest.raises(FunctionalsUnavailable, match=r"cannot be imported \(import of opensmile halted"):
        make_extractor("eGeMAPSv02")
