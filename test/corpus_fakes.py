"""Small fake corpora in the real release layouts and label formats, traps included, for test_corpora.

Each builder writes short generated wavs and returns the truth it wrote: {utterance id: FakeUtt}, the
speaker and label taken from the builder's own loops (never by parsing what it wrote).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile

DURATION_S = 0.3


@dataclass(frozen=True)
class FakeUtt:
    spk: str
    raw_label: str
    gender: str
    wav: str
    duration: float


def write_wav(path: str, rate: int, channels: int = 1, seconds: float = DURATION_S, seed: int = 0) -> float:
    """A short noise burst; returns its duration in seconds."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frames = int(round(seconds * rate))
    samples = 0.1 * np.random.default_rng(seed).standard_normal((frames, channels))
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return frames / rate


# ------------------------------------------------------------------------------------------ IEMOCAP

IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
# Per speaker of every session: the labels of its turns (hap and exc are both happiness, fru/xxx/sur excluded).
IEMOCAP_SPEAKER_LABELS = ("neu", "hap", "exc", "ang", "sad", "fru", "xxx", "neu", "sad", "ang", "sur")


def _iemocap_block(start: float, turn: str, label: str) -> str:
    return (f"[{start:.4f} - {start + 2.0:.4f}]\t{turn}\t{label}\t[2.5000, 3.0000, 2.5000]\n"
            "C-E1:\tNeutral;\t()\n"
            "C-E2:\tNeutral; Frustration;\t(a bit tense)\n"
            "A-E3:\tval 3; act 2; dom  2;\t()\n"
            "\n")


def build_iemocap(root: str) -> dict[str, FakeUtt]:
    """Session1..5; every speaker's turns spread over dialogs of both gender prefixes, as in the release.

    Session 1 holds the traps: dialogs impro04 (prefix F, male turns such as Ses01F_impro04_M012),
    impro05a and script01_1b.
    """
    truth: dict[str, FakeUtt] = {}
    for session in range(1, 6):
        session_dir = os.path.join(root, f"Session{session}")
        dialogs = [f"Ses{session:02d}F_impro01", f"Ses{session:02d}M_impro02"]
        if session == 1:
            dialogs += ["Ses01F_impro04", "Ses01M_impro05a", "Ses01F_script01_1b"]
        label_texts = {dialog: IEMOCAP_HEADER for dialog in dialogs}
        for gender in "FM":
            spk = f"Ses{session:02d}{gender}"
            for index, label in enumerate(IEMOCAP_SPEAKER_LABELS):
                dialog = dialogs[index % len(dialogs)]
                turn = f"{dialog}_{gender}{index + 10:03d}"
                label_texts[dialog] += _iemocap_block(1.0 + index, turn, label)
                wav = os.path.join(session_dir, "sentences", "wav", dialog, turn + ".wav")
                truth[f"{spk}-{turn}"] = FakeUtt(spk, label, gender.lower(), wav, write_wav(wav, 16000, seed=index))
        for dialog, text in label_texts.items():
            label_file = os.path.join(session_dir, "dialog", "EmoEvaluation", dialog + ".txt")
            os.makedirs(os.path.dirname(label_file), exist_ok=True)
            with open(label_file, "w") as f:
                f.write(text)
        # The release also holds per-annotator files in sub-directories; they are not label files.
        os.makedirs(os.path.join(session_dir, "dialog", "EmoEvaluation", "Categorical"), exist_ok=True)
        with open(os.path.join(session_dir, "dialog", "EmoEvaluation", "Categorical",
                               f"{dialogs[0]}_e1_cat.txt"), "w") as f:
            f.write(f"{dialogs[0]}_F010 :Neutral state; ()\n")
    return truth


# --------------------------------------------------------------------------------------- MSP-IMPROV

MSP_LABEL_WORDS = {"A": "Angry", "H": "Happy", "N": "Neutral", "S": "Sad", "O": "Other", "X": "Other"}
# Per speaker: (sentence+target, recording type, dyad turn, consensus label)
MSP_SPEAKER_CLIPS = (("S01A", "P", "FM01", "A"), ("S01A", "R", "FM01", "N"), ("S02H", "P", "MF01", "H"),
                     ("S05S", "T", "FM02", "S"), ("S07N", "S", "MF02", "N"), ("S09H", "P", "FM03", "O"),
                     ("S11A", "P", "FM04", "X"), ("S12S", "R", "MF03", "S"), ("S15H", "T", "FM05", "H"))


def build_msp_improv(root: str, audio_subdir: str = "", label_file_name: str = "Evaluation.txt"
                     ) -> dict[str, FakeUtt]:
    """Sessions 1..6 with speakers F0k/M0k; sentence numbers (S05, S12, ...) differ from the sessions."""
    truth: dict[str, FakeUtt] = {}
    lines = []
    for session in range(1, 7):
        for gender in "FM":
            spk = f"{gender}{session:02d}"
            for index, (sentence, recording, turn, label) in enumerate(MSP_SPEAKER_CLIPS):
                clip = f"{sentence}-{spk}-{recording}-{turn}"
                lines.append(f"UTD-IMPROV-{clip}.avi; {label}; A:2.800000; V:3.200000; D:3.000000 ; N:3.600000;")
                for rater in range(3):
                    lines.append(f"pr{session}{index}{rater:02d}; {MSP_LABEL_WORDS[label]}; ; "
                                 f"A:3.000000; V:3.000000; D:3.000000; N:4.000000;")
                lines.append("")
                wav = os.path.join(root, audio_subdir, f"session{session}", sentence, recording,
                                   f"MSP-IMPROV-{clip}.wav")
                truth[f"{spk}-MSP-IMPROV-{clip}"] = FakeUtt(spk, label, gender.lower(), wav,
                                                           write_wav(wav, 44100, seed=index))
    with open(os.path.join(root, label_file_name), "w") as f:
        f.write("\n".join(lines) + "\n")
    return truth


# ------------------------------------------------------------------------------------------ RAVDESS

# Per actor: (emotion code, intensity, statement, repetition) of its speech files.
RAVDESS_ACTOR_FILES = (("01", "01", "01", "01"), ("02", "01", "02", "02"), ("03", "01", "02", "01"),
                       ("05", "02", "02", "02"), ("08", "01", "01", "02"))
RAVDESS_STEREO = ("Actor_05", "03-01-02-01-02-02-05.wav")


def build_ravdess(root: str) -> dict[str, FakeUtt]:
    """Actor_01..24 of 48 kHz speech files, one stereo, plus song files (03-02) that must be skipped."""
    truth: dict[str, FakeUtt] = {}
    for actor in range(1, 25):
        actor_dir = os.path.join(root, f"Actor_{actor:02d}")
        gender = "m" if actor % 2 == 1 else "f"
        for emotion, intensity, statement, repetition in RAVDESS_ACTOR_FILES:
            name = f"03-01-{emotion}-{intensity}-{statement}-{repetition}-{actor:02d}.wav"
            wav = os.path.join(actor_dir, name)
            channels = 2 if (os.path.basename(actor_dir), name) == RAVDESS_STEREO else 1
            duration = write_wav(wav, 48000, channels=channels, seed=actor)
            truth[f"Actor{actor:02d}-{name[:-4]}"] = FakeUtt(f"Actor{actor:02d}", emotion, gender, wav, duration)
        write_wav(os.path.join(actor_dir, f"03-02-03-01-01-01-{actor:02d}.wav"), 48000)  # song
    return truth


# -------------------------------------------------------------------------------------------- SAVEE

SAVEE_FILES = ("a01", "a02", "d01", "f01", "h01", "n01", "n02", "n03", "sa01", "sa02", "su01", "su02")


def build_savee(root: str, layout: str) -> dict[str, FakeUtt]:
    """layout "nested": AudioData/<SPK>/<code><NN>.wav; "flat": <SPK>_<code><NN>.wav; 44.1 kHz."""
    truth: dict[str, FakeUtt] = {}
    for spk in ("DC", "JE", "JK", "KL"):
        for index, name in enumerate(SAVEE_FILES):
            code = name.rstrip("0123456789")
            if layout == "nested":
                wav = os.path.join(root, "AudioData", spk, f"{name}.wav")
            else:
                wav = os.path.join(root, f"{spk}_{name}.wav")
            truth[f"{spk}-{name}"] = FakeUtt(spk, code, "m", wav, write_wav(wav, 44100, seed=index))
    return truth
