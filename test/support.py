"""Helpers shared by the test modules (conftest.py holds the fixtures, built on these).

- paths and the Python running the tests: REPO, SHARED_CORPORA, PYTHON, python_env
- feature data: CLASSES, write_feature_dir, write_class_functionals; waveform data: WAVE_CLASSES, write_wave_dir
- training: FAST_CONFIG (a small FLAM that trains in seconds), train_command, overfit_losses
- the embedded recipe: RECIPE, SMALL_ENCODER, RECIPE_TRAIN_ARGS, recipe_command, run_recipe
- the waveform encoders: make_wave, assert_alone_equals_batched
- a threaded local HTTP server of in-memory files (Range, ignored Range, dropped connections): Server
- small fake corpora in the real release layouts: FakeUtt, write_wav, build_iemocap, build_msp_improv,
  build_ravdess, build_savee (each builder returns the truth it wrote, {utterance id: FakeUtt}, the speaker and
  label taken from its own loops, never by parsing what it wrote)
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from dataclasses import dataclass

import kaldiio
import numpy as np
import soundfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_CORPORA = os.path.join(os.path.dirname(REPO), "shared", "corpora")
CLASSES = ["ang", "hap", "neu", "sad"]


def write_feature_dir(path: str, speakers: list[str], per_class: int, seed: int, dim: int = 20) -> None:
    """A data dir whose fbank-like features carry the class in their mean over a few bins (learnable, noisy)."""
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    feats, utt2emo, utt2spk = {}, {}, {}
    for spk in speakers:
        for c, emo in enumerate(CLASSES):
            for n in range(per_class):
                utt = f"{spk}-{emo}{n:03d}"
                frames = int(rng.integers(30, 120))
                x = rng.normal(0.0, 1.0, size=(frames, dim)).astype(np.float32) + 5.0
                x[:, 2 * c:2 * c + 3] += 1.0  # class-dependent band
                feats[utt], utt2emo[utt], utt2spk[utt] = x, emo, spk
    keys = sorted(feats)
    with kaldiio.WriteHelper(f"ark,scp:{path}/feats.ark,{path}/feats.scp") as w:
        for k in keys:
            w(k, feats[k])
    for name, table in (("utt2emo", utt2emo), ("utt2spk", utt2spk)):
        with open(os.path.join(path, name), "w") as f:
            f.writelines(f"{k} {table[k]}\n" for k in keys)
    with open(os.path.join(path, "utt2num_frames"), "w") as f:
        f.writelines(f"{k} {feats[k].shape[0]}\n" for k in keys)


def write_class_functionals(data_dirs: list, out_dir, dim: int = 12, seed: int = 0) -> str:
    """A functionals archive (out_dir/f.scp) of every utterance of ``data_dirs``: noise with the class's own
    dimension raised by 3 (what functionals fused into a model make learnable). Returns the scp."""
    rng = np.random.default_rng(seed)
    labels = {}  # (feature dirs may share utterance ids between parts; their labels agree)
    for data_dir in data_dirs:
        labels.update(dict(line.split() for line in open(os.path.join(str(data_dir), "utt2emo"))))
    with kaldiio.WriteHelper(f"ark,scp:{out_dir}/f.ark,{out_dir}/f.scp") as w:
        for key in sorted(labels):
            row = rng.normal(size=dim).astype(np.float32)
            row[CLASSES.index(labels[key])] += 3.0
            w(key, row[None])
    return os.path.join(str(out_dir), "f.scp")


def python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable


def overfit_losses(model, inputs, lengths, labels, steps: int, lr: float = 3e-3) -> list[float]:
    """Cross-entropy losses of `steps` Adam updates on one batch (a model that learns drives them down)."""
    import torch

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(inputs, lengths).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# ---------------------------------------------------------------------------------------------- training

FAST_CONFIG = {
    "encoder": "flam",
    "encoder_conf": {"d_model": 32, "num_heads": 4, "conv_channels": 8, "embed_dim": 16},
    "augment": "eam",
    "optim_conf": {"lr": 3.0e-3},
    "max_epoch": 10,
    "batch_size": 8,
    "num_threads": 1,
    "log_interval": 0,
}


def tiny_fbank_conf(path) -> str:
    """The template's fbank.conf at 20 mel bins (the dimension of write_feature_dir's features), written to path."""
    conf = open(os.path.join(REPO, "egs", "TEMPLATE", "conf", "fbank.conf")).read()
    with open(path, "w") as f:
        f.write(conf.replace("--num-mel-bins=80", "--num-mel-bins=20"))
    return str(path)


def train_tiny_run(train_dir, valid_dir, outdir, classes, fbank_conf, functionals_scp=None, **overrides) -> None:
    """One epoch of FAST_CONFIG (with overrides) on feature dirs: a real trained run dir that classifies audio
    (its fbank.conf reads audio into the features' 20 bins)."""
    from ser.config import resolve_config
    from ser.train import train

    config = resolve_config({**FAST_CONFIG, "max_epoch": 1, **overrides})
    train(config, classes, str(train_dir), str(valid_dir), os.path.join(str(train_dir), "cmvn.ark"), str(outdir),
          extra_files={"fbank.conf": str(fbank_conf)}, functionals_scp=functionals_scp)


def train_command(feature_dirs, config, outdir):
    return [PYTHON, "-m", "ser.bin.train", "--config", config, "--classes", str(feature_dirs / "classes.txt"),
            "--train-dir", str(feature_dirs / "train"), "--valid-dir", str(feature_dirs / "valid"),
            "--cmvn", str(feature_dirs / "train" / "cmvn.ark"), "--outdir", str(outdir)]


# -------------------------------------------------------------------------------------------- waveforms

WAVE_CLASSES = ["low", "high"]


def write_wave_dir(path, rng, n_per_class=10, sample_rate=22050):
    """Two classes of tones (low/high pitch) at 22.05 kHz, so the data path must resample to 16 kHz."""
    os.makedirs(path, exist_ok=True)
    wav_scp, utt2emo = [], []
    for c, (emo, f0) in enumerate(zip(WAVE_CLASSES, (150.0, 400.0))):
        for n in range(n_per_class):
            t = np.arange(int(sample_rate * rng.uniform(0.4, 0.8))) / sample_rate
            x = 0.3 * np.sin(2 * np.pi * f0 * rng.uniform(0.9, 1.1) * t) + 0.02 * rng.normal(size=t.size)
            utt = f"spk1-{emo}{n:02d}"
            wav = os.path.join(path, f"{utt}.wav")
            soundfile.write(wav, x.astype(np.float32), sample_rate, subtype="PCM_16")
            wav_scp.append(f"{utt} {wav}\n" if n % 2 else f"{utt} cat {wav} |\n")  # paths and commands
            utt2emo.append(f"{utt} {emo}\n")
    for name, lines in (("wav.scp", wav_scp), ("utt2emo", utt2emo)):
        with open(os.path.join(path, name), "w") as f:
            f.writelines(sorted(lines))


# ------------------------------------------------------------------------------------ the embedded recipe

RECIPE = os.path.join(REPO, "egs", "synth")
# The recipe tests train the recipe's FLAM (conf/train.yaml) at half its width (d_model 64 instead of 128, every
# size halved): what they check does not depend on the width, and a run costs about half the time. Its 3 epochs
# still reach a mean UA of about 55 on the synth folds (chance 25; test_all_stages_produce_scored_results asks > 40).
SMALL_ENCODER = ("--set encoder_conf.d_model=64 --set encoder_conf.num_heads=8 --set encoder_conf.conv_channels=16 "
                 "--set encoder_conf.embed_dim=32")
RECIPE_TRAIN_ARGS = f"--set max_epoch=3 {SMALL_ENCODER}"  # recipe_command's --train-args


def recipe_command(tmp, *args, env_extra=None):
    cmd = [os.path.join(RECIPE, "run.sh"), "--corpus-dir", str(tmp / "corpus"), "--data-dir", str(tmp / "data"),
           "--dump-dir", str(tmp / "dump"), "--exp-root", str(tmp / "exp"),
           "--train-args", RECIPE_TRAIN_ARGS, "--classic-configs", "", *args]  # later options in args win
    return cmd, recipe_env(**(env_extra or {}))


def recipe_env(**extra: str) -> dict:
    """The environment of a recipe run by a test: the Python running the tests first on PATH, and path.sh told to
    use it (SER_PYTHON_ENV=none) instead of activating tools/venv."""
    return {**os.environ, "SER_PYTHON_ENV": "none",
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], **extra}


def run_recipe(tmp, *args, check=True, env_extra=None):
    cmd, env = recipe_command(tmp, *args, env_extra=env_extra)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


# ------------------------------------------------------------------------------------ waveform encoders

def make_wave(lengths, seed=0, scale=3000.0):
    """int16-range noise padded to the longest length with random garbage (which must not leak)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randn(len(lengths), max(lengths), generator=gen) * scale, torch.tensor(lengths)


def assert_alone_equals_batched(model, layer, lengths, seed, tol):
    """Each utterance encoded alone gives the frames of its row in the padded batch (for "weighted", with
    unequal layer weights)."""
    import torch

    if layer == "weighted":
        with torch.no_grad():
            model.layer_weights.copy_(torch.tensor([0.3, -1.0, 0.8]))
    wave, wave_lengths = make_wave(lengths, seed=seed)
    with torch.no_grad():
        frames, frame_lengths = model(wave, wave_lengths)
        for row, length in enumerate(lengths):
            alone, alone_lengths = model(wave[row:row + 1, :length], wave_lengths[row:row + 1])
            assert alone_lengths.item() == frame_lengths[row].item() == alone.size(1)
            torch.testing.assert_close(frames[row, :alone.size(1)], alone[0], atol=tol, rtol=tol)


# ------------------------------------------------------------------------------------------ fake corpora

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


# ---- a local HTTP server (downloads are tested against it, never the internet) -----------------------------

class Server:
    """A threaded HTTP server of in-memory files, recording each request's Range header and the body bytes sent.
    mode: "range" (honours Range), "ignore-range" (always the whole file), "drop" (the first answer of each file
    stops halfway and closes the connection)."""

    def __init__(self, mode: str = "range"):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None, int]] = []  # (path, Range header, body bytes sent)
        self.mode = mode
        self.dropped: set[str] = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path
                data = server.files.get(path)
                range_header = self.headers.get("Range")
                if data is None:
                    server.requests.append((path, range_header, 0))  # recorded before the client can read it
                    self.send_error(404)
                    return
                start, status = 0, 200
                if range_header and server.mode != "ignore-range":
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        server.requests.append((path, range_header, 0))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if server.mode == "drop" and path not in server.dropped:
                    server.dropped.add(path)
                    body = body[:len(body) // 2]
                    server.requests.append((path, range_header, len(body)))
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                server.requests.append((path, range_header, len(body)))
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def sent(self) -> int:
        return sum(n for _, _, n in self.requests)


def assert_bad_names(prepare, corpus_dir, folder, rate: int, names_and_errors) -> None:
    """A bad file written into ``folder`` under each name in turn (renamed from the one before): ``prepare`` of
    corpus_dir must raise a CorpusError matching each name's pattern. The last name's file is removed after."""
    import pytest

    from ser.corpora.common import CorpusError

    previous = None
    for name, pattern in names_and_errors:
        path = os.path.join(folder, name)
        if previous is None:
            write_wav(path, rate)
        else:
            os.rename(previous, path)
        with pytest.raises(CorpusError, match=pattern):
            prepare(str(corpus_dir))
        previous = path
    os.remove(previous)


def assert_prepared(utts, truth: dict, class_map: dict) -> None:
    """A corpus module's prepare() gave exactly the builder's utterances of the class set: ids, speakers, classes,
    genders and absolute paths (labels outside the class set dropped)."""
    kept = {utt_id: t for utt_id, t in truth.items() if t.raw_label in class_map}
    assert {u.utt_id: (u.spk_id, u.emotion, u.gender, u.wav) for u in utts} == \
        {utt_id: (t.spk, class_map[t.raw_label], t.gender, os.path.abspath(t.wav)) for utt_id, t in kept.items()}


def assert_speakers_apart(folds: dict, utts) -> None:
    """Every speaker of the utterances is tested in exactly one fold."""
    tested = [spk for speakers in folds.values() for spk in speakers]
    assert sorted(tested) == sorted({u.spk_id for u in utts}), "every speaker tested in exactly one fold"


def train_stopped_after_epoch_1(monkeypatch, *args, **kwargs) -> None:
    """ser.train.train(*args, **kwargs) stopped right after epoch 1's checkpoint, as a kill there would leave it."""
    import ser.train

    class Stop(Exception):
        pass

    checkpoint_epoch = ser.train._checkpoint

    def stop_after_epoch_1(run, history, writer):
        checkpoint_epoch(run, history, writer)
        raise Stop

    with monkeypatch.context() as m:
        m.setattr(ser.train, "_checkpoint", stop_after_epoch_1)
        try:
            ser.train.train(*args, **kwargs)
        except Stop:
            return
    raise AssertionError("training ended without reaching the end of epoch 1")
