"""A synthetic emotional speech corpus, generated deterministically, for the download-free recipe egs/synth.

Each utterance is built like a formant synthesiser builds speech: a glottal pulse train (Rosenberg flow
derivative) with an F0 contour, jitter, shimmer and aspiration noise, shaped by a spectral-tilt filter,
gated into syllables, passed through four formant resonators that move between vowel targets, with
fricative and stop-burst noise before the vowels and background noise throughout.

Speakers (half male, half female) have their own F0 base, formant scaling (vocal-tract length), tempo,
loudness, voice quality and noise floor. Emotions differ in prosody and voice quality (pitch level, range
and contour, tempo, loudness, jitter/shimmer, breathiness, spectral tilt, articulation), each drawn per
utterance around the class mean, so that classes overlap: a classifier learns them, but not perfectly.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass, fields

import numpy as np
import scipy  # scipy.signal loads on first use (about 1 s): importing this module for its LICENCE stays light
import soundfile as sf

from .common import Utterance

SYNTH_CLASSES = ("ang", "hap", "neu", "sad")
GENERATOR_VERSION = 1
DURATION_RANGE_S = (1.0, 2.5)


class SynthCorpusError(ValueError):
    """A malformed synthetic corpus; the message names labels.txt and the line."""


@dataclass(frozen=True)
class EmotionStyle:
    """Prosody and voice quality of one emotion: class means, or their per-utterance standard deviations."""

    pitch_level_st: float  # F0 level above the speaker's base, semitones
    accent_st: float  # height of pitch accents, semitones
    declination_st: float  # F0 change from the start to the end of the utterance, semitones
    final_rise_st: float  # terminal F0 rise over the end of the utterance, semitones
    syllable_rate_hz: float  # tempo
    level_db: float  # loudness relative to the speaker's neutral level
    jitter: float  # cycle-to-cycle relative F0 perturbation (standard deviation)
    shimmer: float  # cycle-to-cycle relative amplitude perturbation (standard deviation)
    open_quotient: float  # glottal open phase / period: low = pressed voice, high = lax voice
    breathiness: float  # aspiration noise RMS relative to the voiced source RMS
    tilt: float  # one-pole filter coefficient on the source: higher = steeper spectral tilt, below 0 = pressed
    formant_shift: float  # relative shift of all formants (lip spreading, smiling raises them)
    f1_shift: float  # relative shift of F1 (jaw opening)
    vowel_reduction: float  # pull of vowel targets toward the neutral vowel, 0..1
    bandwidth_scale: float  # formant bandwidth factor (lax, breathy voice damps the formants)


EMOTION_STYLES = {
    "ang": EmotionStyle(5.0, 5.0, -4.0, 0.0, 5.6, 7.0, 0.020, 0.12, 0.40, 0.04, -0.05, 0.02, 0.10, 0.10, 0.9),
    "hap": EmotionStyle(4.0, 5.5, -0.5, 3.0, 5.2, 4.0, 0.010, 0.07, 0.55, 0.08, 0.15, 0.05, 0.05, 0.10, 1.0),
    "neu": EmotionStyle(0.0, 2.5, -2.0, 0.0, 4.3, 0.0, 0.008, 0.05, 0.60, 0.06, 0.25, 0.00, 0.00, 0.20, 1.0),
    "sad": EmotionStyle(-1.5, 1.2, -3.0, 0.0, 3.3, -4.0, 0.015, 0.09, 0.72, 0.20, 0.50, -0.02, -0.05, 0.40, 1.3),
}
# Per-utterance standard deviation of every style parameter around its class mean.
UTTERANCE_SPREAD = EmotionStyle(1.5, 1.0, 1.2, 1.0, 0.5, 2.5, 0.004, 0.02, 0.05, 0.03, 0.10, 0.02, 0.03, 0.10, 0.1)
# Physically meaningful range of every style parameter; drawn values are clipped into it.
_STYLE_LIMITS = {
    "syllable_rate_hz": (2.0, 8.0),
    "jitter": (0.0, 0.05),
    "shimmer": (0.0, 0.3),
    "open_quotient": (0.3, 0.85),
    "breathiness": (0.0, 0.6),
    "tilt": (-0.3, 0.85),
    "vowel_reduction": (0.0, 0.8),
    "bandwidth_scale": (0.6, 2.0),
}

# Vowel formant targets F1-F3 in Hz of adult male speakers (Peterson & Barney 1952, averages).
_VOWEL_FORMANTS = np.array(
    [
        [270, 2290, 3010],  # i
        [390, 1990, 2550],  # I
        [530, 1840, 2480],  # E
        [660, 1720, 2410],  # ae
        [730, 1090, 2440],  # a
        [570, 840, 2410],  # O
        [440, 1020, 2240],  # U
        [300, 870, 2240],  # u
        [640, 1190, 2390],  # V
    ],
    dtype=float,
)
_NEUTRAL_VOWEL = np.array([500.0, 1500.0, 2500.0])
_F4_HZ = 3500.0
_BANDWIDTHS_HZ = np.array([60.0, 90.0, 150.0, 200.0])
# Noise bands (Hz) of consonants before a vowel: fricatives like s, sh, f, and the burst of a stop.
_CONSONANT_BANDS = {"s": (3800.0, 7500.0), "sh": (1800.0, 5500.0), "f": (1000.0, 7000.0), "burst": (800.0, 6000.0)}
_FRICATIVES = ("s", "sh", "f")


@dataclass(frozen=True)
class SpeakerVoice:
    """The fixed characteristics of one synthetic speaker."""

    spk_id: str
    gender: str  # "m" or "f"
    f0_base_hz: float
    formant_scale: float  # vocal-tract length: formants relative to the average male
    expressiveness: float  # scales how far each emotion departs from the speaker's neutral style
    rate_scale: float  # speaking-rate factor
    level_db: float  # RMS of neutral voiced speech, dBFS
    noise_floor_db: float  # RMS of the background noise, dBFS
    open_quotient_offset: float
    breathiness_offset: float
    tilt_offset: float


def synth_speaker_ids(num_speakers: int) -> list[tuple[str, str]]:
    """(speaker id, gender) of every speaker: spk01 (m), spk02 (f), spk03 (m), ..."""
    if num_speakers < 2 or num_speakers % 2:
        raise ValueError(f"num_speakers must be even and at least 2 (half male, half female), got {num_speakers}")
    width = max(2, len(str(num_speakers)))
    return [(f"spk{index:0{width}d}", "m" if index % 2 else "f") for index in range(1, num_speakers + 1)]


def synth_folds(num_speakers: int = 8) -> dict[int, list[str]]:
    """Speaker-independent folds, numbered from 1: each holds one male and one female speaker."""
    speakers = synth_speaker_ids(num_speakers)
    if num_speakers < 4:
        raise ValueError(f"cross-validation needs at least 2 folds, i.e. 4 speakers; got {num_speakers}")
    return {fold + 1: [speakers[2 * fold][0], speakers[2 * fold + 1][0]] for fold in range(num_speakers // 2)}


def _spread_positions(rng: np.random.Generator, count: int) -> np.ndarray:
    """count positions in [0, 1), one in each of count equal strata, in random order: speakers differ."""
    return rng.permutation((np.arange(count) + rng.uniform(0.15, 0.85, count)) / count)


def _make_speakers(num_speakers: int, seed: int) -> list[SpeakerVoice]:
    rng = np.random.default_rng([seed, 0])
    ids = synth_speaker_ids(num_speakers)
    per_gender = num_speakers // 2
    f0_ranges = {"m": (90.0, 145.0), "f": (170.0, 250.0)}
    formant_ranges = {"m": (0.92, 1.06), "f": (1.10, 1.24)}
    f0_positions = {gender: iter(_spread_positions(rng, per_gender)) for gender in "mf"}
    formant_positions = {gender: iter(_spread_positions(rng, per_gender)) for gender in "mf"}
    speakers = []
    for spk_id, gender in ids:
        f0_lo, f0_hi = f0_ranges[gender]
        fs_lo, fs_hi = formant_ranges[gender]
        speakers.append(
            SpeakerVoice(
                spk_id=spk_id,
                gender=gender,
                f0_base_hz=f0_lo + (f0_hi - f0_lo) * next(f0_positions[gender]),
                formant_scale=fs_lo + (fs_hi - fs_lo) * next(formant_positions[gender]),
                expressiveness=rng.uniform(0.6, 1.2),
                rate_scale=rng.uniform(0.88, 1.12),
                level_db=rng.uniform(-30.0, -24.0),
                noise_floor_db=rng.uniform(-66.0, -52.0),
                open_quotient_offset=rng.uniform(-0.05, 0.05),
                breathiness_offset=rng.uniform(-0.02, 0.05),
                tilt_offset=rng.uniform(-0.1, 0.1),
            )
        )
    return speakers


def _draw_style(rng: np.random.Generator, emotion: str, voice: SpeakerVoice) -> EmotionStyle:
    """One utterance's style: the speaker's version of the class mean plus per-utterance variation."""
    neutral, target = EMOTION_STYLES["neu"], EMOTION_STYLES[emotion]
    speaker_offsets = {
        "open_quotient": voice.open_quotient_offset,
        "breathiness": voice.breathiness_offset,
        "tilt": voice.tilt_offset,
    }
    values = {}
    for field in fields(EmotionStyle):
        name = field.name
        mean = getattr(neutral, name) + voice.expressiveness * (getattr(target, name) - getattr(neutral, name))
        value = mean + speaker_offsets.get(name, 0.0) + getattr(UTTERANCE_SPREAD, name) * rng.standard_normal()
        low, high = _STYLE_LIMITS.get(name, (-np.inf, np.inf))
        values[name] = float(np.clip(value, low, high))
    return EmotionStyle(**values)


def _raised_cosine_envelope(length: int, attack: int, release: int) -> np.ndarray:
    envelope = np.ones(length)
    attack, release = min(attack, length // 2), min(release, length // 2)
    envelope[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    envelope[length - release :] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(release) + 1) / release)
    return envelope


def _resonator_denominators(formants_hz: np.ndarray, bandwidths_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Denominator of the cascade of second-order resonators, one row per frame.

    formants_hz, bandwidths_hz: (frames, resonators). Returns (frames, 2 * resonators + 1), leading 1.
    """
    radius = np.exp(-np.pi * bandwidths_hz / sample_rate)
    angle = 2 * np.pi * formants_hz / sample_rate
    sections = np.stack([np.ones_like(radius), -2 * radius * np.cos(angle), radius**2], axis=-1)
    denominator = sections[:, 0, :]
    for index in range(1, sections.shape[1]):
        section = sections[:, index, :]
        product = np.zeros((denominator.shape[0], denominator.shape[1] + 2))
        for power in range(3):
            product[:, power : power + denominator.shape[1]] += section[:, power : power + 1] * denominator
        denominator = product
    return denominator


def _time_varying_all_pole(signal: np.ndarray, gains: np.ndarray, denominators: np.ndarray, block: int) -> np.ndarray:
    """y[n] = g_b x[n] - sum_k a_b[k] y[n-k], with (g_b, a_b) the coefficients of the block of n.

    The recursion runs on the true output history across block boundaries, as an LPC synthesis
    filter does: changing the coefficients never resets or rescales the filter's memory.
    """
    order = denominators.shape[1] - 1
    # lfilter's initial state that continues an all-pole recursion with output history h (h[0] newest):
    # zi[k] = -sum_j a[1 + k + j] h[j] for k + j < order.
    index = np.arange(order)[:, None] + np.arange(order)[None, :]
    history_to_state = -np.where(index < order, denominators[:, 1:][:, np.minimum(index, order - 1)], 0.0)
    padded = np.zeros(order + len(signal))  # output after `order` zeros of history
    for block_index, start in enumerate(range(0, len(signal), block)):
        stop = min(start + block, len(signal))
        history = padded[start : start + order][::-1]
        padded[order + start : order + stop], _ = scipy.signal.lfilter(
            gains[block_index : block_index + 1],
            denominators[block_index],
            signal[start:stop],
            zi=history_to_state[block_index] @ history,
        )
    return padded[order:]


def _consonant_filters(sample_rate: int) -> dict[str, np.ndarray]:
    nyquist_safe = 0.45 * sample_rate
    filters = {}
    for name, (low, high) in _CONSONANT_BANDS.items():
        high = min(high, nyquist_safe)
        filters[name] = scipy.signal.butter(4, [min(low, 0.5 * high), high], btype="bandpass", fs=sample_rate,
                                            output="sos")
    return filters


def _synthesize_utterance(
    voice: SpeakerVoice,
    style: EmotionStyle,
    duration_s: float,
    sample_rate: int,
    rng: np.random.Generator,
    consonant_filters: dict[str, np.ndarray],
) -> np.ndarray:
    """Float samples in [-1, 1] of one utterance."""
    num_samples = int(round(duration_s * sample_rate))
    time_s = np.arange(num_samples) / sample_rate

    # Syllable timing: lead and trail silence, maybe one phrase pause, syllables of varying length.
    lead_s, trail_s = rng.uniform(0.05, 0.15, size=2)
    speech_s = duration_s - lead_s - trail_s
    rate_hz = style.syllable_rate_hz * voice.rate_scale
    pause_s = rng.uniform(0.12, 0.3) if rng.random() < 0.4 and speech_s * rate_hz >= 6 else 0.0
    num_syllables = max(2, int(round((speech_s - pause_s) * rate_hz)))
    syllable_s = rng.lognormal(0.0, 0.25, num_syllables)
    syllable_s *= (speech_s - pause_s) / syllable_s.sum()
    starts_s = lead_s + np.concatenate([[0.0], np.cumsum(syllable_s)[:-1]])
    if pause_s:
        starts_s[rng.integers(1, num_syllables) :] += pause_s

    voicing = np.zeros(num_samples)  # syllable amplitude envelope of the voiced source
    consonants = np.zeros(num_samples)  # consonant noise, relative to the voiced RMS
    accents = np.zeros(num_samples)  # pitch accent shape, 0..1
    formant_times_s, formant_targets = [], []
    for start_s, length_s in zip(starts_s, syllable_s):
        onset = rng.choice(["none", "fricative", "stop"], p=[0.3, 0.4, 0.3])
        vowel_start_s = start_s
        if onset == "fricative":
            vowel_start_s = start_s + rng.uniform(0.2, 0.35) * length_s
            noise_band = _FRICATIVES[rng.integers(len(_FRICATIVES))]
            noise_start_s, noise_s = start_s, vowel_start_s - start_s
        elif onset == "stop":
            closure_s = min(rng.uniform(0.1, 0.2) * length_s, 0.06)
            noise_band, noise_start_s, noise_s = "burst", start_s + closure_s, 0.008
            vowel_start_s = noise_start_s + noise_s
        if onset != "none":
            first, count = int(noise_start_s * sample_rate), max(8, int(noise_s * sample_rate))
            noise = scipy.signal.sosfilt(consonant_filters[noise_band], rng.standard_normal(count + 256))[256:]
            noise *= _raised_cosine_envelope(count, count // 4, count // 4) / np.sqrt(np.mean(noise**2))
            gain = 10 ** (rng.uniform(-18.0, -8.0) / 20)
            consonants[first : first + count] += gain * noise[: num_samples - first]
        vowel_first, vowel_last = int(vowel_start_s * sample_rate), int((start_s + length_s) * sample_rate)
        vowel_len = vowel_last - vowel_first
        prominence = 0.0 if rng.random() < 0.45 else rng.uniform(0.4, 1.0)
        amplitude = rng.lognormal(0.0, 0.2) * (1.0 + 0.3 * prominence)
        voicing[vowel_first:vowel_last] = amplitude * _raised_cosine_envelope(
            vowel_len, int(rng.uniform(0.015, 0.03) * sample_rate), int(rng.uniform(0.03, 0.06) * sample_rate)
        )
        centre_s = 0.5 * (vowel_start_s + start_s + length_s)
        width_s = 0.3 * length_s
        near = slice(max(0, int((centre_s - 4 * width_s) * sample_rate)), int((centre_s + 4 * width_s) * sample_rate))
        accents[near] += prominence * np.exp(-0.5 * ((time_s[near] - centre_s) / width_s) ** 2)
        vowel = _VOWEL_FORMANTS[rng.integers(len(_VOWEL_FORMANTS))]
        formant_times_s.append(vowel_start_s + 0.4 * (start_s + length_s - vowel_start_s))
        formant_targets.append((1 - style.vowel_reduction) * vowel + style.vowel_reduction * _NEUTRAL_VOWEL)

    # F0 contour in semitones above the speaker's base.
    progress = np.clip((time_s - lead_s) / speech_s, 0.0, 1.0)
    final_part = np.clip((progress - 0.7) / 0.3, 0.0, 1.0)
    drift_hz, drift_phase = rng.uniform(0.5, 2.0, size=2), rng.uniform(0, 2 * np.pi, size=2)
    drift = 0.4 * np.sin(2 * np.pi * drift_hz[:, None] * time_s + drift_phase[:, None]).sum(axis=0)
    semitones = (
        style.pitch_level_st
        + style.accent_st * accents
        + style.declination_st * (progress - 0.5)
        + style.final_rise_st * final_part**2 * (3 - 2 * final_part)
        + drift
    )
    f0_hz = np.clip(voice.f0_base_hz * 2 ** (semitones / 12), 50.0, 500.0)

    # Glottal source: Rosenberg pulses with per-cycle jitter and shimmer, plus aspiration noise.
    cycle_of_sample = np.floor(np.cumsum(f0_hz) / sample_rate).astype(int)
    jitter = 1 + style.jitter * rng.standard_normal(cycle_of_sample[-1] + 1)
    phase = np.cumsum(f0_hz * jitter[cycle_of_sample]) / sample_rate
    cycle, within_cycle = np.floor(phase).astype(int), phase % 1.0
    opening, closing = 0.65 * style.open_quotient, 0.35 * style.open_quotient
    flow = np.where(
        within_cycle < opening,
        0.5 - 0.5 * np.cos(np.pi * within_cycle / opening),
        np.where(within_cycle < style.open_quotient, np.cos(0.5 * np.pi * (within_cycle - opening) / closing), 0.0),
    )
    pulses = np.diff(flow, prepend=0.0) * (1 + style.shimmer * rng.standard_normal(cycle[-1] + 1))[cycle]
    pulses /= np.sqrt(np.mean(pulses**2))
    open_phase = within_cycle < style.open_quotient
    aspiration = style.breathiness * rng.standard_normal(num_samples) * np.where(open_phase, 1.0, 0.4)
    source = scipy.signal.lfilter([1 - style.tilt], [1, -style.tilt], pulses + aspiration) * voicing

    # Vocal tract: four resonators moving between the vowel targets, coefficients updated every 10 ms.
    block = sample_rate // 100
    block_centres_s = (np.arange(0, num_samples, block) + 0.5 * block) / sample_rate
    targets = np.array(formant_targets)
    formants = np.stack(
        [np.interp(block_centres_s, formant_times_s, targets[:, index]) for index in range(3)]
        + [np.full(len(block_centres_s), _F4_HZ)],
        axis=1,
    )
    formants *= voice.formant_scale * (1 + style.formant_shift)
    formants[:, 0] *= 1 + style.f1_shift
    formants = np.minimum(formants, 0.45 * sample_rate)
    bandwidths = np.broadcast_to(_BANDWIDTHS_HZ * style.bandwidth_scale, formants.shape)
    denominators = _resonator_denominators(formants, bandwidths, sample_rate)
    speech = _time_varying_all_pole(source, denominators.sum(axis=1), denominators, block)

    # Loudness, consonants, background noise, headroom.
    voiced = voicing > 0.5 * voicing.max()
    target_rms = 10 ** ((voice.level_db + style.level_db) / 20)
    speech *= target_rms / np.sqrt(np.mean(speech[voiced] ** 2))
    speech += target_rms * consonants
    background = scipy.signal.lfilter([1.0], [1.0, -0.7], rng.standard_normal(num_samples))
    background *= 10 ** ((voice.noise_floor_db + rng.uniform(-3.0, 3.0)) / 20) / np.sqrt(np.mean(background**2))
    audio = speech + background
    peak = np.max(np.abs(audio))
    return audio * (0.95 / peak) if peak > 0.95 else audio


def _readme_text(speakers: list[SpeakerVoice], utts_per_class: int, sample_rate: int, seed: int) -> str:
    style_names = [field.name for field in fields(EmotionStyle)]
    speaker_names = [field.name for field in fields(SpeakerVoice)]
    lines = [
        "Synthetic emotional speech corpus generated by ser.corpora.synth (no recorded speech).",
        "",
        "Formant synthesis: glottal pulses (Rosenberg flow derivative) with an F0 contour, jitter, shimmer and",
        "aspiration noise; spectral tilt; syllable envelopes; four formant resonators moving between vowel",
        "targets; fricative and stop-burst noise; background noise. Emotions differ in prosody and voice",
        "quality, drawn per utterance around the class means below, so the classes overlap.",
        "",
        f"generator_version {GENERATOR_VERSION}",
        f"num_speakers {len(speakers)}",
        f"utts_per_class {utts_per_class}",
        f"sample_rate {sample_rate}",
        f"seed {seed}",
        f"classes {' '.join(SYNTH_CLASSES)}",
        f"duration_range_s {DURATION_RANGE_S[0]} {DURATION_RANGE_S[1]}",
        "format: mono 16-bit PCM wav",
        "",
        "Files: <spk>/<spk>_<emotion>_<NNN>.wav; labels.txt lines: <wav path> <emotion> <speaker> <gender>",
        "",
        "Speakers:",
        " ".join(speaker_names),
    ]
    for voice in speakers:
        values = [getattr(voice, name) for name in speaker_names]
        lines.append(" ".join(value if isinstance(value, str) else f"{value:.3f}" for value in values))
    lines += ["", "Emotion styles (class mean; per-utterance standard deviation in the row 'spread'):"]
    lines.append("class " + " ".join(style_names))
    for name, style in list(EMOTION_STYLES.items()) + [("spread", UTTERANCE_SPREAD)]:
        lines.append(name + " " + " ".join(f"{getattr(style, field):g}" for field in style_names))
    return "\n".join(lines) + "\n"


def _write_corpus(
    corpus_dir: str, speakers: list[SpeakerVoice], utts_per_class: int, sample_rate: int, seed: int
) -> None:
    consonant_filters = _consonant_filters(sample_rate)
    label_lines = []
    for speaker_index, voice in enumerate(speakers):
        os.makedirs(os.path.join(corpus_dir, voice.spk_id))
        for class_index, emotion in enumerate(SYNTH_CLASSES):
            for number in range(utts_per_class):
                rng = np.random.default_rng([seed, 1, speaker_index, class_index, number])
                style = _draw_style(rng, emotion, voice)
                duration_s = rng.uniform(*DURATION_RANGE_S)
                audio = _synthesize_utterance(voice, style, duration_s, sample_rate, rng, consonant_filters)
                relative_path = f"{voice.spk_id}/{voice.spk_id}_{emotion}_{number:03d}.wav"
                samples = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
                # Encoded in memory: soundfile fsyncs every file it closes on disk, slow for hundreds of files.
                wav_bytes = io.BytesIO()
                sf.write(wav_bytes, samples, sample_rate, subtype="PCM_16", format="WAV")
                with open(os.path.join(corpus_dir, relative_path), "wb") as wav_file:
                    wav_file.write(wav_bytes.getvalue())
                label_lines.append(f"{relative_path} {emotion} {voice.spk_id} {voice.gender}\n")
    with open(os.path.join(corpus_dir, "labels.txt"), "w", encoding="utf-8") as labels:
        labels.writelines(sorted(label_lines))
    with open(os.path.join(corpus_dir, "README.txt"), "w", encoding="utf-8") as readme:
        readme.write(_readme_text(speakers, utts_per_class, sample_rate, seed))


def generate_synth_corpus(
    out_dir: str, num_speakers: int = 8, utts_per_class: int = 12, sample_rate: int = 16000, seed: int = 0
) -> None:
    """Write the corpus to out_dir (which must not exist): wavs, labels.txt and README.txt.

    Deterministic: the same arguments give the same bytes. Every utterance has its own random stream,
    so one utterance does not depend on how many others are generated. The corpus is written into
    out_dir + ".partial" and renamed at the end, so an interrupted run never leaves a complete-looking
    corpus (a killed run's .partial dir is removed by the next run).
    """
    if utts_per_class < 1:
        raise ValueError(f"utts_per_class must be at least 1, got {utts_per_class}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz, got {sample_rate}")
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        raise FileExistsError(f"{out_dir} already exists; remove it to generate the corpus again")
    speakers = _make_speakers(num_speakers, seed)
    partial_dir = out_dir + ".partial"
    shutil.rmtree(partial_dir, ignore_errors=True)
    try:
        _write_corpus(partial_dir, speakers, utts_per_class, sample_rate, seed)
    except BaseException:
        shutil.rmtree(partial_dir, ignore_errors=True)
        raise
    os.rename(partial_dir, out_dir)


# The corpus interface of ser.corpora (as ravdess.py etc.): one class set; the counts are the generator's choice,
# so there are no published counts to check them against.
CLASS_SETS: dict[str, dict[str, str]] = {"4class": {emotion: emotion for emotion in SYNTH_CLASSES}}
CORPUS = "synth"
LICENCE = "none needed: synthetic audio generated by ser itself (no recorded speech)"
SYNTHETIC = True  # a model trained on it says so when it is loaded (ser.card)
DEFAULT_CLASS_SET = "4class"
EXPECTED_COUNTS: dict[str, dict[str, int]] = {}
FOLD_SCHEME = "one male and one female speaker per fold"


def prepare(corpus_dir: str, class_set: str = DEFAULT_CLASS_SET, strict: bool = True) -> list[Utterance]:
    return prepare_synth(corpus_dir)


def folds(utts: list[Utterance]) -> dict[int, list[str]]:
    return synth_folds(len({u.spk_id for u in utts}))


def prepare_synth(corpus_dir: str) -> list[Utterance]:
    """Utterances listed in corpus_dir/labels.txt, in file order; wav paths are absolute."""
    labels_path = os.path.join(os.path.abspath(corpus_dir), "labels.txt")
    if not os.path.isfile(labels_path):
        raise SynthCorpusError(f"{labels_path} not found: is {corpus_dir} a corpus made by generate_synth_corpus?")
    utterances, line_of_utt, gender_of_speaker = [], {}, {}
    with open(labels_path, encoding="utf-8") as labels:
        for line_number, line in enumerate(labels, start=1):
            where = f"{labels_path}:{line_number}"
            columns = line.split()
            if len(columns) != 4:
                raise SynthCorpusError(f"{where}: expected '<wav> <emotion> <speaker> <gender>', got {line.rstrip()!r}")
            relative_path, emotion, spk_id, gender = columns
            if emotion not in SYNTH_CLASSES:
                raise SynthCorpusError(f"{where}: unknown emotion {emotion!r}; known: {' '.join(SYNTH_CLASSES)}")
            if gender not in ("m", "f"):
                raise SynthCorpusError(f"{where}: gender must be 'm' or 'f', got {gender!r}")
            if gender_of_speaker.setdefault(spk_id, gender) != gender:
                raise SynthCorpusError(f"{where}: speaker {spk_id} has gender {gender}, earlier lines say otherwise")
            if not relative_path.endswith(".wav"):
                raise SynthCorpusError(f"{where}: {relative_path!r} is not a .wav path")
            wav_path = os.path.abspath(os.path.join(os.path.dirname(labels_path), relative_path))
            if not os.path.isfile(wav_path):
                raise SynthCorpusError(f"{where}: wav file {wav_path} does not exist")
            utt_id = f"{spk_id}-{os.path.basename(relative_path)[: -len('.wav')]}"
            if utt_id in line_of_utt:
                raise SynthCorpusError(f"{where}: utterance {utt_id} already listed on line {line_of_utt[utt_id]}")
            line_of_utt[utt_id] = line_number
            utterances.append(Utterance(utt_id=utt_id, spk_id=spk_id, wav=wav_path, emotion=emotion, gender=gender))
    if not utterances:
        raise SynthCorpusError(f"{labels_path}: no utterances listed")
    return utterances
