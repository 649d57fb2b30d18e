"""The synthetic emotional speech corpus: determinism, layout, preparation errors, folds, and learnability."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import lfilter
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ser.corpora import synth
from ser.corpora.synth import (
    SYNTH_CLASSES,
    SynthCorpusError,
    generate_synth_corpus,
    prepare_synth,
    synth_folds,
)

NUM_SPEAKERS, UTTS_PER_CLASS = 8, 12


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The default corpus (8 speakers x 4 classes x 12 utterances)."""
    corpus_dir = str(tmp_path_factory.mktemp("synth") / "corpus")
    generate_synth_corpus(corpus_dir)
    return corpus_dir


@pytest.fixture(scope="module")
def features(corpus):
    """Utterances of the default corpus and their summary features (one row each)."""
    utterances = prepare_synth(corpus)
    return utterances, np.array([_utterance_features(utt.wav) for utt in utterances])


def _utterance_features(path):
    """Per-utterance statistics computed with plain numpy, independently of the generator.

    Columns: log-energy mean and std, log-F0 mean, std and slope (autocorrelation pitch over voiced
    frames), voiced fraction, voicing-change rate, high/low band ratio mean and std, then the mean
    log power of 8 bands between 0 and 4 kHz relative to their mean (spectral envelope).
    """
    samples, sample_rate = sf.read(path, dtype="float64")
    frame, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    num_frames = 1 + (len(samples) - frame) // hop
    frames = samples[np.arange(frame)[None, :] + hop * np.arange(num_frames)[:, None]] * np.hanning(frame)
    power = np.abs(np.fft.rfft(frames, 2 * frame)) ** 2
    log_energy = np.log(power.sum(axis=1) + 1e-10)
    voiced = log_energy > log_energy.max() - np.log(10**2.5)  # within 25 dB of the loudest frame
    autocorrelation = np.fft.irfft(power, axis=1)[:, :frame]
    shortest, longest = int(sample_rate / 500), int(sample_rate / 60)
    lag = shortest + np.argmax(autocorrelation[voiced, shortest:longest], axis=1)
    log_f0 = np.log(sample_rate / lag)
    freqs = np.fft.rfftfreq(2 * frame, 1 / sample_rate)
    voiced_power = power[voiced]
    band_ratio = np.log(
        voiced_power[:, (freqs >= 1000) & (freqs < 4000)].sum(axis=1) / voiced_power[:, freqs < 1000].sum(axis=1)
    )
    band_edges = np.linspace(0, 4000, 9)
    bands = np.log(
        [
            voiced_power[:, (freqs >= low) & (freqs < high)].sum(axis=1).mean()
            for low, high in zip(band_edges, band_edges[1:])
        ]
    )
    slope = np.polyfit(np.linspace(0, 1, len(log_f0)), log_f0, 1)[0]
    energy = log_energy[voiced]
    return np.concatenate(
        [
            [energy.mean(), energy.std(), log_f0.mean(), log_f0.std(), slope, voiced.mean()],
            [np.abs(np.diff(voiced.astype(float))).mean(), band_ratio.mean(), band_ratio.std()],
            bands - bands.mean(),
        ]
    )


def _read_files(directory):
    contents = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                contents[os.path.relpath(path, directory)] = handle.read()
    return contents


def _classifier():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))


# --- generation ---


def test_generation_is_deterministic_and_seeded(tmp_path):
    for name, seed in (("first", 3), ("second", 3), ("other_seed", 4)):
        generate_synth_corpus(str(tmp_path / name), num_speakers=2, utts_per_class=2, seed=seed)
    first, second, other = (_read_files(tmp_path / name) for name in ("first", "second", "other_seed"))
    assert len(first) == 2 * 4 * 2 + 2
    assert first == second
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first if name.endswith(".wav"))


def test_default_corpus_layout_and_audio_format(corpus):
    with open(os.path.join(corpus, "labels.txt"), encoding="utf-8") as labels:
        rows = [line.split() for line in labels]
    assert len(rows) == NUM_SPEAKERS * len(SYNTH_CLASSES) * UTTS_PER_CLASS
    wavs_on_disk = {
        os.path.relpath(os.path.join(root, name), corpus)
        for root, _, names in os.walk(corpus)
        for name in names
        if name.endswith(".wav")
    }
    assert wavs_on_disk == {row[0] for row in rows}
    assert not os.path.exists(corpus + ".partial")
    speakers = {row[2]: row[3] for row in rows}
    assert sorted(speakers) == [f"spk{index:02d}" for index in range(1, NUM_SPEAKERS + 1)]
    assert sorted(speakers.values()).count("m") == NUM_SPEAKERS // 2
    for speaker in speakers:
        for emotion in SYNTH_CLASSES:
            names = [row[0] for row in rows if row[2] == speaker and row[1] == emotion]
            assert names == [f"{speaker}/{speaker}_{emotion}_{number:03d}.wav" for number in range(UTTS_PER_CLASS)]
    for row in rows[:: len(rows) // 24]:
        info = sf.info(os.path.join(corpus, row[0]))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        assert 1.0 <= info.duration <= 2.5
        samples, _ = sf.read(os.path.join(corpus, row[0]), dtype="int16")
        assert 500 < np.abs(samples).max() < 32767  # audible, not clipped
    with open(os.path.join(corpus, "README.txt"), encoding="utf-8") as readme:
        text = readme.read()
    for line in ("num_speakers 8", "utts_per_class 12", "sample_rate 16000", "seed 0"):
        assert line in text.splitlines()


def test_generation_refuses_existing_dir_and_replaces_stale_partial(tmp_path):
    out_dir = tmp_path / "corpus"
    out_dir.mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        generate_synth_corpus(str(out_dir), num_speakers=2, utts_per_class=1)
    stale = tmp_path / "fresh.partial"
    stale.mkdir()
    (stale / "junk.wav").write_bytes(b"junk")
    generate_synth_corpus(str(tmp_path / "fresh"), num_speakers=2, utts_per_class=1)
    assert not stale.exists()
    assert "junk.wav" not in os.listdir(tmp_path / "fresh")


def test_interrupted_generation_leaves_no_corpus(tmp_path, monkeypatch):
    calls, real_write = [], sf.write

    def failing_write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(synth.sf, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        generate_synth_corpus(str(tmp_path / "corpus"), num_speakers=2, utts_per_class=2)
    assert len(calls) == 3
    assert not os.listdir(tmp_path)  # neither the corpus nor its .partial dir


@pytest.mark.parametrize("sample_rate", [8000, 22050])
def test_other_sample_rates(tmp_path, sample_rate):
    generate_synth_corpus(str(tmp_path / "corpus"), num_speakers=2, utts_per_class=1, sample_rate=sample_rate)
    for utt in prepare_synth(str(tmp_path / "corpus")):
        samples, rate = sf.read(utt.wav, dtype="int16")
        assert rate == sample_rate
        assert 1.0 <= len(samples) / rate <= 2.5
        assert 500 < np.abs(samples).max() < 32767


def test_generation_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="even"):
        generate_synth_corpus(str(tmp_path / "a"), num_speakers=3)
    with pytest.raises(ValueError, match="utts_per_class"):
        generate_synth_corpus(str(tmp_path / "b"), utts_per_class=0)
    assert not os.listdir(tmp_path)


# --- numerical building blocks, against independent references ---


def test_resonator_denominators_have_the_resonator_poles():
    formants = np.array([[500.0, 1500.0, 2500.0, 3500.0], [300.0, 2200.0, 2900.0, 3700.0]])
    bandwidths = np.array([[60.0, 90.0, 150.0, 200.0], [80.0, 100.0, 120.0, 250.0]])
    denominators = synth._resonator_denominators(formants, bandwidths, 16000)
    for row in range(2):
        poles = np.exp((-np.pi * bandwidths[row] + 2j * np.pi * formants[row]) / 16000)
        expected = np.poly(np.concatenate([poles, poles.conj()])).real
        np.testing.assert_allclose(denominators[row], expected, atol=1e-12)


def test_time_varying_all_pole_matches_per_sample_recursion():
    rng = np.random.default_rng(0)
    block, num_blocks, order = 16, 6, 4
    signal = rng.standard_normal(block * num_blocks - 5)  # last block shorter
    formants = rng.uniform(300, 3000, size=(num_blocks, order // 2))
    denominators = synth._resonator_denominators(formants, np.full_like(formants, 100.0), 8000)
    gains = rng.uniform(0.5, 2.0, num_blocks)
    output = synth._time_varying_all_pole(signal, gains, denominators, block)
    expected = np.zeros(len(signal))
    for n in range(len(signal)):
        a = denominators[n // block]
        expected[n] = gains[n // block] * signal[n] - sum(a[k] * expected[n - k] for k in range(1, order + 1) if n >= k)
    np.testing.assert_allclose(output, expected, rtol=1e-9, atol=1e-9)
    constant = synth._time_varying_all_pole(
        signal, np.full(num_blocks, gains[0]), np.repeat(denominators[:1], num_blocks, axis=0), block
    )
    np.testing.assert_allclose(constant, lfilter([gains[0]], denominators[0], signal), rtol=1e-9, atol=1e-9)


# --- preparation ---


def test_prepare_synth_returns_utterances(corpus):
    utterances = prepare_synth(corpus)
    assert len(utterances) == NUM_SPEAKERS * len(SYNTH_CLASSES) * UTTS_PER_CLASS
    first = utterances[0]
    assert first.utt_id == "spk01-spk01_ang_000"
    assert (first.spk_id, first.emotion, first.gender) == ("spk01", "ang", "m")
    assert first.wav == os.path.join(os.path.abspath(corpus), "spk01", "spk01_ang_000.wav")
    assert len({utt.utt_id for utt in utterances}) == len(utterances)
    assert {utt.emotion for utt in utterances} == set(SYNTH_CLASSES)
    assert all(os.path.isabs(utt.wav) and os.path.isfile(utt.wav) for utt in utterances)


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("spk01/spk01_ang_000.wav ang spk01\n", "expected '<wav> <emotion> <speaker> <gender>'"),
        ("spk01/spk01_ang_000.wav fear spk01 m\n", "unknown emotion 'fear'"),
        ("spk01/spk01_ang_099.wav ang spk01 m\n", "spk01_ang_099.wav does not exist"),
        ("spk01/spk01_ang_000.wav ang spk01 x\n", "gender must be 'm' or 'f'"),
        ("spk01/spk01_ang_000.wav ang spk01 m\n", "already listed on line 1"),
        ("spk01/spk01_hap_000.wav hap spk01 f\n", "speaker spk01 has gender f"),
    ],
)
def test_prepare_synth_errors_name_file_and_line(tmp_path, bad_line, message):
    corpus_dir = tmp_path / "corpus"
    for emotion in ("ang", "hap"):
        (corpus_dir / "spk01").mkdir(parents=True, exist_ok=True)
        sf.write(str(corpus_dir / "spk01" / f"spk01_{emotion}_000.wav"), np.zeros(1600, np.int16), 16000)
    labels = corpus_dir / "labels.txt"
    labels.write_text("spk01/spk01_ang_000.wav ang spk01 m\n" + bad_line, encoding="utf-8")
    with pytest.raises(SynthCorpusError) as error:
        prepare_synth(str(corpus_dir))
    assert f"{labels}:2: " in str(error.value)
    assert message in str(error.value)


def test_prepare_synth_without_labels(tmp_path):
    with pytest.raises(SynthCorpusError, match="labels.txt not found"):
        prepare_synth(str(tmp_path))


# --- folds ---


def test_folds_are_speaker_independent_and_gender_balanced(corpus):
    folds = synth_folds(NUM_SPEAKERS)
    assert sorted(folds) == [1, 2, 3, 4]
    gender = {utt.spk_id: utt.gender for utt in prepare_synth(corpus)}
    all_speakers = [speaker for fold in folds.values() for speaker in fold]
    assert sorted(all_speakers) == sorted(gender)
    for speakers in folds.values():
        assert sorted(gender[speaker] for speaker in speakers) == ["f", "m"]
    assert synth_folds(12)[6] == ["spk11", "spk12"]
    for bad in (2, 7):
        with pytest.raises(ValueError):
            synth_folds(bad)


# --- the corpus is a meaningful SER task ---


def test_emotions_are_learnable_across_speakers_but_overlap(features):
    utterances, table = features
    emotions = np.array([utt.emotion for utt in utterances])
    speakers = np.array([utt.spk_id for utt in utterances])
    accuracies = []
    for test_speakers in synth_folds(NUM_SPEAKERS).values():
        test = np.isin(speakers, test_speakers)
        model = _classifier().fit(table[~test], emotions[~test])
        accuracies.append(model.score(table[test], emotions[test]))
    assert np.mean(accuracies) > 0.45  # chance is 0.25
    assert max(accuracies) < 1.0
    assert np.mean(accuracies) < 0.95


def test_prosody_follows_the_emotion_design(features):
    utterances, table = features
    emotions = np.array([utt.emotion for utt in utterances])
    speakers = np.array([utt.spk_id for utt in utterances])
    log_f0, log_energy = table[:, 2].copy(), table[:, 0].copy()
    for speaker in set(speakers):  # relative to the speaker's own neutral speech
        own, neutral = speakers == speaker, (speakers == speaker) & (emotions == "neu")
        log_f0[own] -= log_f0[neutral].mean()
        log_energy[own] -= log_energy[neutral].mean()
    pitch = {emotion: log_f0[emotions == emotion].mean() for emotion in SYNTH_CLASSES}
    loudness = {emotion: log_energy[emotions == emotion].mean() for emotion in SYNTH_CLASSES}
    assert pitch["sad"] < 0 < min(pitch["ang"], pitch["hap"])
    assert loudness["sad"] < 0 < loudness["hap"] < loudness["ang"]


def test_speakers_differ(features):
    utterances, table = features
    speakers = np.array([utt.spk_id for utt in utterances])
    numbers = np.array([int(utt.utt_id[-3:]) for utt in utterances])
    train = numbers % 2 == 0  # half of every speaker's utterances of every class
    model = _classifier().fit(table[train], speakers[train])
    assert model.score(table[~train], speakers[~train]) > 3 / NUM_SPEAKERS
    voices = {voice.spk_id: voice for voice in synth._make_speakers(NUM_SPEAKERS, seed=0)}
    median_f0 = {speaker: np.exp(np.median(table[speakers == speaker, 2])) for speaker in voices}
    male = [median_f0[speaker] for speaker, voice in voices.items() if voice.gender == "m"]
    female = [median_f0[speaker] for speaker, voice in voices.items() if voice.gender == "f"]
    assert max(male) < min(female)
    base = [voices[speaker].f0_base_hz for speaker in voices]
    assert np.corrcoef(base, [median_f0[speaker] for speaker in voices])[0, 1] > 0.9
