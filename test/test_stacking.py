"""Stacking (config ``stacking: classic``): the classic reference's out-of-fold log-posteriors fused beside the
functionals, computed inside the training speakers only, and kept with the run for inference.

References: scikit-learn's LogisticRegression on StandardScaler-ed rows of the other speakers (out-of-fold), and
the softmax of the stored arrays written out in numpy (inference).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from support import CLASSES, FAST_CONFIG, tiny_fbank_conf, write_class_functionals

pytest.importorskip("sklearn", reason="scikit-learn is installed by tools/install.sh --test/--opensmile")

STACK_CONFIG = {"encoder_conf": {**FAST_CONFIG["encoder_conf"], "fusion_dim": 8}, "functionals": "eGeMAPSv02",
                "stacking": "classic"}


def reference_log_posteriors(x_fit, y_fit, c, x):
    """log p(class | x) of an independent fit: scikit-learn on standardised rows, to a tight tolerance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_fit)
    clf = LogisticRegression(C=c, tol=1e-10, max_iter=10000).fit(scaler.transform(x_fit), y_fit)
    return np.maximum(np.log(clf.predict_proba(scaler.transform(x))), np.log(1e-6))


def test_out_of_fold_features_come_from_a_fit_without_the_speaker():
    """Every training row's stacked features are the log-posteriors of a fit on the other speakers' rows only
    (checked against scikit-learn fit on exactly those rows); the row's own speaker changes nothing of them."""
    from ser.classic import CLASSIC_DEFAULTS, fit_stacker

    rng = np.random.default_rng(0)
    speakers = [f"spk{s}" for s in range(4) for _ in range(24)]
    y = np.tile(np.repeat(np.arange(4), 6), 4)
    x = rng.normal(size=(len(y), 10)) + 1.5 * np.eye(4, 10)[y]
    config = {**CLASSIC_DEFAULTS, "cv_folds": 4, "c_grid": [0.1]}  # one speaker per fold; C fixed
    oof, model, record = fit_stacker(x, y, speakers, 4, config)
    assert record["cv_folds"] == 4 and record["C"] == 0.1 and record["train_speakers"] == ["spk0", "spk1", "spk2",
                                                                                           "spk3"]
    for s in range(4):
        own = np.array(speakers) == f"spk{s}"
        expected = reference_log_posteriors(x[~own], y[~own], 0.1, x[own])
        np.testing.assert_allclose(oof[own], expected, atol=2e-3)
        # The speaker's own labels do not reach its features (they reach the other speakers').
        y2 = y.copy()
        y2[own] = rng.permutation(y2[own])
        permuted = fit_stacker(x, y2, speakers, 4, config)[0]
        np.testing.assert_array_equal(permuted[own], oof[own])
        assert not np.allclose(permuted[~own], oof[~own], atol=1e-3)
    # The final model is the fit on every row (its in-sample features are not the out-of-fold ones).
    np.testing.assert_allclose(np.log(model.posteriors(x[:5])), reference_log_posteriors(x, y, 0.1, x[:5]),
                               atol=2e-3)
    assert not np.allclose(np.log(model.posteriors(x)), oof, atol=1e-2)


def test_training_inputs_stack_out_of_fold_for_train_and_the_full_fit_for_valid(feature_dirs, tmp_path):
    """The train dir's rows get out-of-fold features, the valid dir's those of the fit on all train rows; the valid
    dir is not in the fit, and nothing of the test fold is read (a test archive of noise changes nothing)."""
    from ser.classic import stacked_features
    from ser.config import resolve_config
    from ser.dataset import load_labelled_set
    from ser.inputs import prepare_training_inputs

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    scp = write_class_functionals([feature_dirs / p for p in ("train", "valid", "test")], tmp_path / "a")
    config = resolve_config({**STACK_CONFIG})
    inputs = {}
    for name, archive in (("a", scp), ("b", _noisy_test_rows(scp, feature_dirs / "test", tmp_path / "b"))):
        train = load_labelled_set(str(feature_dirs / "train"), CLASSES)
        valid = load_labelled_set(str(feature_dirs / "valid"), CLASSES)
        prepare_training_inputs(config, train, valid, str(feature_dirs / "train"), str(feature_dirs / "valid"),
                                str(feature_dirs / "train" / "cmvn.ark"), archive, len(CLASSES))
        inputs[name] = (train, valid)
    train, valid = inputs["a"]
    np.testing.assert_array_equal(train.utterance, inputs["b"][0].utterance)
    np.testing.assert_array_equal(valid.utterance, inputs["b"][1].utterance)
    np.testing.assert_array_equal(train.stacker[0].coef, inputs["b"][0].stacker[0].coef)
    assert train.utterance.shape == (len(train.keys), 12 + len(CLASSES))
    model, record = train.stacker
    assert record["train_speakers"] == ["spk1", "spk2", "spk3"] and record["train_utterances"] == len(train.keys)
    mean, scale = train.utterance_norm
    raw_valid = valid.utterance * scale + mean
    np.testing.assert_allclose(raw_valid[:, 12:], stacked_features(model, raw_valid[:, :12]), atol=1e-4)
    # The fixture's valid utterances repeat train ones (same ids, same functionals): in-sample for the full fit,
    # out of fold for the training rows, so the two differ.
    raw_train = dict(zip(train.keys, train.utterance * scale + mean))
    assert not np.allclose(np.stack([raw_train[k][12:] for k in valid.keys]), raw_valid[:, 12:], atol=1e-3)


def _noisy_test_rows(scp, test_dir, out_dir) -> str:
    """A copy of the archive ``scp`` whose test-dir rows are noise."""
    import kaldiio

    test_keys = {line.split()[0] for line in open(test_dir / "utt2emo")}
    rng = np.random.default_rng(7)
    with kaldiio.WriteHelper(f"ark,scp:{out_dir}/f.ark,{out_dir}/f.scp") as w:
        for key, mat in kaldiio.load_scp_sequential(scp):
            w(key, rng.normal(size=mat.shape).astype(np.float32) if key in test_keys else mat)
    return str(out_dir / "f.scp")


def test_stacking_needs_fused_functionals_and_is_no_op_by_default():
    from ser.config import ConfigError, config_hash, resolve_config

    with pytest.raises(ConfigError, match="stacking: classic stacks the classic reference on the fused functionals"):
        resolve_config({"stacking": "classic"})
    with pytest.raises(ConfigError, match="stacking: unknown value 'lr'"):
        resolve_config({"functionals": "eGeMAPSv02", "stacking": "lr"})
    fused = {"functionals": "eGeMAPSv02"}
    assert config_hash(resolve_config(fused)) == config_hash(resolve_config({**fused, "stacking": "none"}))
    assert config_hash(resolve_config(fused)) != config_hash(resolve_config({**fused, "stacking": "classic"}))


@pytest.mark.slow
def test_a_stacking_run_learns_resumes_exactly_and_classifies_audio_from_its_archive(feature_dirs, tmp_path):
    """A tiny stacking run learns from its fused inputs; 1 + 1 epochs equal 2; the test decode ignores the test
    labels; its archive carries the stacked classic model, and the recognizer classifies a file with it exactly as
    the stored arrays say (numpy softmax of the stored model, then the network); export refuses it in one line."""
    import soundfile

    import ser.train
    from ser import EmotionRecognizer
    from ser.card import read_card
    from ser.config import resolve_config
    from ser.export import exportable
    from ser.functionals import compute_functionals, make_extractor
    from ser.infer import classify_data_dir, load_trained
    from ser.packing import pack, unpack
    from ser.train import train

    pytest.importorskip("opensmile")
    scp = write_class_functionals([feature_dirs / p for p in ("train", "valid", "test")], tmp_path, dim=88)
    fbank_conf = tiny_fbank_conf(tmp_path / "fbank.conf")

    def run(outdir, epochs):
        config = resolve_config({**FAST_CONFIG, **STACK_CONFIG, "max_epoch": epochs})
        train(config, CLASSES, str(feature_dirs / "train"), str(feature_dirs / "valid"),
              str(feature_dirs / "train" / "cmvn.ark"), str(outdir), extra_files={"fbank.conf": fbank_conf},
              functionals_scp=scp)

    run(tmp_path / "run", 4)
    real_checkpoint = ser.train._checkpoint

    def checkpoint_then_die(run_, history, writer):
        real_checkpoint(run_, history, writer)
        raise Killed  # as a kill right after the first epoch's checkpoint

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ser.train, "_checkpoint", checkpoint_then_die)
        with pytest.raises(Killed):
            run(tmp_path / "resumed", 4)
    run(tmp_path / "resumed", 4)  # resumes after epoch 1, the stacked features computed again
    for name, value in torch.load(tmp_path / "run" / "model.pth").items():
        assert torch.equal(value, torch.load(tmp_path / "resumed" / "model.pth")[name]), name

    trained = load_trained(str(tmp_path / "run"))
    data, posteriors = classify_data_dir(trained, str(feature_dirs / "test"), functionals_scp=scp)
    labels = np.array([CLASSES.index(line.split()[1]) for line in open(feature_dirs / "test" / "utt2emo")])
    assert (posteriors.argmax(1) == labels).mean() > 0.6  # the functionals carry the class; chance is 0.25
    permuted = tmp_path / "test_permuted"
    shutil.copytree(feature_dirs / "test", permuted)
    keys = [line.split()[0] for line in open(permuted / "utt2emo")]
    emos = np.random.default_rng(0).permutation([line.split()[1] for line in open(permuted / "utt2emo")])
    (permuted / "utt2emo").write_text("".join(f"{k} {e}\n" for k, e in zip(keys, emos)))
    np.testing.assert_array_equal(classify_data_dir(trained, str(permuted), functionals_scp=scp)[1], posteriors)

    assert read_card(str(tmp_path / "run"))["model"]["stacking"] == "classic"
    pack(str(tmp_path / "run"), str(tmp_path / "model.tar.gz"))
    (unpacked,) = unpack(str(tmp_path / "model.tar.gz"), str(tmp_path / "unpacked"))
    assert os.path.isfile(os.path.join(unpacked, "stack_classic.npz"))
    recognizer = EmotionRecognizer.from_dir(unpacked)
    wav = tmp_path / "a.wav"
    t = np.arange(16000) / 16000
    soundfile.write(wav, 0.3 * np.sin(2 * np.pi * 200 * t), 16000, subtype="PCM_16")
    got = recognizer.classify_file(str(wav))
    m = recognizer.members[0]
    samples = soundfile.read(wav, dtype="float32")[0] * 32768.0
    functionals = compute_functionals(make_extractor("eGeMAPSv02"), samples).astype(np.float64)
    with np.load(os.path.join(unpacked, "stack_classic.npz")) as z:
        logits = ((functionals - z["mean"]) / z["scale"]) @ z["coef"].T + z["intercept"]
    log_post = np.maximum(logits - logits.max() - np.log(np.exp(logits - logits.max()).sum()), np.log(1e-6))
    with np.load(os.path.join(unpacked, "utterance_norm.npz")) as z:
        utterance = ((np.concatenate([functionals, log_post], 1) - z["mean"]) / z["scale"]).astype(np.float32)
    feats = m.frontend.inputs_of_samples(samples, m.model_dir, m.normaliser)
    with torch.no_grad():
        expected = torch.softmax(m.model(torch.from_numpy(feats)[None], torch.tensor([feats.shape[0]]),
                                         torch.from_numpy(utterance)).logits, -1)[0].numpy()
    np.testing.assert_allclose([got.posteriors[c] for c in CLASSES], expected, atol=2e-5)
    with pytest.raises(ValueError, match="export does not take stacking models"):
        exportable(str(tmp_path / "run"))


class Killed(Exception):
    pass
