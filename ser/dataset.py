"""Training and evaluation data: labelled utterances of a data dir, length-bucketed batches, crops, mixup, CMVN.

An utterance is either its fbank features (T, D) read from feats.scp, or its waveform (N,) read through wav.scp
(for SSL front-ends), in the int16 range as Kaldi reads audio, resampled and down-mixed as in stage 1.

Every random choice of an epoch (batch order, crops, mixup partners and segments) is drawn from generators
seeded by (seed, epoch[, utterance index]), so an epoch's data is the same whether the run was interrupted or not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import kaldiio
import numpy as np
import torch

from ser.augment import soft_label
from ser.datadir import DataDirError, read_table, read_utt2emo
from ser.features import CmvnNormaliser
from ser.speaker_norm import SpeakerNormaliser


@dataclass
class LabelledSet:
    """The utterances of a data dir with their class indices and raw inputs (fbank before CMVN, or waveforms)."""

    keys: list[str]
    labels: np.ndarray  # (N,) class indices
    feats: list[np.ndarray]  # each (T, D) float32 fbank, or (N,) float32 samples
    speakers: list[str] | None = None  # from utt2spk; read when a speaker normalisation needs them
    utterance: np.ndarray | None = None  # (N, F) normalised utterance-level features fused into the model
    utterance_norm: tuple[np.ndarray, np.ndarray] | None = None  # (mean, scale) that standardised them
    stacker: tuple | None = None  # stacking: (the classic LinearModel fit on this set, its record)

    @property
    def lengths(self) -> np.ndarray:
        if isinstance(self.feats, LazyWaves):
            return self.feats.lengths.copy()
        return np.array([f.shape[0] for f in self.feats], dtype=np.int64)

    @property
    def feat_dim(self) -> int | None:
        """Feature dimension; None for waveforms."""
        if isinstance(self.feats, LazyWaves):
            return None
        return int(self.feats[0].shape[1]) if self.feats[0].ndim == 2 else None


class LazyWaves:
    """The waveforms of a wav.scp read when indexed (in DataLoader workers), not held in memory. Lengths are known
    up front: from the file header (resampled length as ser.audio.resample gives it), or for ``cmd |`` entries
    by reading the audio once. A read whose length differs from the one known is an error naming the line."""

    def __init__(self, scp: str, entries: list[tuple[int, str]], sample_rate: int, channel: int | None,
                 min_duration: float):
        from ser.audio import AudioError, check_duration

        self.scp, self.entries, self.sample_rate, self.channel = scp, entries, sample_rate, channel
        lengths = []
        for lineno, spec in entries:
            try:
                n = self._length(spec)
                check_duration(n, sample_rate, min_duration, spec)
            except AudioError as e:
                raise DataDirError(f"{scp}:{lineno}: {e}") from None
            lengths.append(n)
        self.lengths = np.array(lengths, dtype=np.int64)

    def _length(self, spec: str) -> int:
        from ser.audio import header_length

        spec = spec.strip()
        if spec.endswith("|"):
            return len(self._read(spec))
        return header_length(spec, self.sample_rate)

    def _read(self, spec: str) -> np.ndarray:
        from ser.audio import load_mono

        return load_mono(spec, self.sample_rate, self.channel, 0.0, command_allowed=True)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> np.ndarray:
        from ser.audio import AudioError

        lineno, spec = self.entries[index]
        try:
            wave = self._read(spec)
        except AudioError as e:
            raise DataDirError(f"{self.scp}:{lineno}: {e}") from None
        if len(wave) != self.lengths[index]:
            raise DataDirError(f"{self.scp}:{lineno}: read {len(wave)} samples, {self.lengths[index]} expected "
                               "(the audio changed since training started?)")
        return wave


def read_labels(data_dir: str, classes: list[str]) -> dict[str, int]:
    """utt2emo -> {utt: class index}; a label outside ``classes`` is an error naming utt2emo's line."""
    index = {c: i for i, c in enumerate(classes)}
    return {utt: index[emo] for utt, emo in read_utt2emo(data_dir, classes).items()}


def load_labelled_set(data_dir: str, classes: list[str], dtype=np.float32) -> LabelledSet:
    """Read feats.scp and utt2emo of a data dir (features are loaded into memory as ``dtype``)."""
    labels = read_labels(data_dir, classes)
    scp = os.path.join(data_dir, "feats.scp")
    entries = read_table(scp, min_fields=2)  # the value is the rest of the line: paths may hold spaces
    missing = sorted(set(entries) ^ set(labels))
    if missing:
        raise DataDirError(f"{data_dir}: feats.scp and utt2emo hold different utterances (e.g. {missing[0]}); "
                           f"run utils/fix_data_dir.sh {data_dir}")
    if not entries:
        raise DataDirError(f"{scp}: no utterances")
    keys, feats = [], []
    for lineno, (utt, spec) in enumerate(entries.items(), 1):
        try:
            mat = kaldiio.load_mat(spec)
        except Exception as e:  # kaldiio raises many types for unreadable archives
            raise DataDirError(f"{scp}:{lineno}: cannot read features of {utt} from {spec}: {e}") from None
        if mat.ndim != 2 or mat.shape[0] == 0:
            raise DataDirError(f"{scp}:{lineno}: features of {utt} have shape {mat.shape}")
        keys.append(utt)
        feats.append(np.ascontiguousarray(mat, dtype=dtype))
    if len({f.shape[1] for f in feats}) != 1:
        raise DataDirError(f"{scp}: utterances have different feature dimensions")
    return LabelledSet(keys, np.array([labels[k] for k in keys], dtype=np.int64), feats)


def load_wave_set(data_dir: str, classes: list[str], sample_rate: int, channel: int | None = None,
                  min_duration: float = 0.1, lazy: bool = False) -> LabelledSet:
    """Read the waveforms of wav.scp (paths or ``cmd |`` entries) and utt2emo; audio errors name wav.scp's line.
    lazy: only their lengths now, each waveform when it is used (LazyWaves)."""
    from ser.audio import AudioError, load_mono

    labels = read_labels(data_dir, classes)
    scp = os.path.join(data_dir, "wav.scp")
    entries = read_table(scp, min_fields=2)
    if set(entries) != set(labels):
        odd = sorted(set(entries) ^ set(labels))
        raise DataDirError(f"{data_dir}: wav.scp and utt2emo hold different utterances (e.g. {odd[0]}); "
                           f"run utils/fix_data_dir.sh {data_dir}")
    if lazy:
        waves = LazyWaves(scp, [(lineno, spec) for lineno, spec in enumerate(entries.values(), 1)], sample_rate,
                          channel, min_duration)
        return LabelledSet(list(entries), np.array([labels[k] for k in entries], dtype=np.int64), waves)
    keys, waves = [], []
    for lineno, (utt, spec) in enumerate(entries.items(), 1):
        try:
            waves.append(load_mono(spec, sample_rate, channel, min_duration, command_allowed=True))
        except AudioError as e:
            raise DataDirError(f"{scp}:{lineno}: {utt}: {e}") from None
        keys.append(utt)
    return LabelledSet(keys, np.array([labels[k] for k in keys], dtype=np.int64), waves)


def make_batches(lengths: np.ndarray, batch_size: int, bucketing: bool, rng: np.random.Generator) -> list[np.ndarray]:
    """Split utterance indices into batches in a random order.

    With bucketing, utterances are sorted by a randomly jittered length (+-10%), so a batch holds similar lengths
    (little padding) while its composition still changes from epoch to epoch.
    """
    n = len(lengths)
    if bucketing:
        order = np.argsort(lengths * rng.uniform(0.9, 1.1, size=n), kind="stable")
    else:
        order = rng.permutation(n)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def padding_fraction(batches: list[np.ndarray], lengths: np.ndarray) -> float:
    """Share of the frames of padded batches that are padding."""
    padded = sum(len(b) * lengths[b].max() for b in batches)
    return float(1.0 - sum(lengths[b].sum() for b in batches) / padded)


def pad_batch(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, D) arrays (or (N_i,) waveforms) into a zero-padded (B, T_max[, D]) tensor and their lengths."""
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    out = torch.zeros(len(feats), int(lengths.max()), *feats[0].shape[1:])
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = torch.from_numpy(f)
    return out, lengths


class TrainBatches(torch.utils.data.Dataset):
    """One item per batch of an epoch: cropped, mixed, (spec-)augmented, normalised inputs and soft labels.

    Call set_epoch(e) before iterating an epoch. Items are pure functions of (seed, epoch, batch), so a DataLoader
    with worker processes gives the same batches as the main process (``batch_loader``: its keys are
    (epoch, batch), so persistent workers follow the epoch).
    """

    def __init__(self, data: LabelledSet, num_classes: int, normaliser: CmvnNormaliser | None, batch_size: int,
                 max_frames: int, bucketing: bool, mixup, seed: int, shard: tuple[int, int] = (0, 1),
                 specaug=None, speaker_targets: bool = False, speed=None):
        self.data, self.num_classes, self.normaliser = data, num_classes, normaliser
        self.speed = speed  # ser.speed.SpeedPerturbation or None
        # speaker_targets: batches carry "speakers", (B, S) targets over the sorted training speakers (data.speakers),
        # mixed with the label's weights
        self.speaker_index = None
        if speaker_targets:
            names = sorted(set(data.speakers))
            lookup = {spk: i for i, spk in enumerate(names)}
            self.speaker_index = np.array([lookup[spk] for spk in data.speakers], dtype=np.int64)
        self.batch_size, self.max_frames, self.bucketing = batch_size, max_frames, bucketing
        self.mixup, self.specaug, self.seed = mixup, specaug, seed
        self.rank, self.world = shard
        self.set_epoch(1)

    def cropped_lengths(self) -> np.ndarray:
        lengths = self.data.lengths
        return np.minimum(lengths, self.max_frames) if self.max_frames > 0 else lengths

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, epoch, 0])
        self.batches = make_batches(self.cropped_lengths(), self.batch_size, self.bucketing, rng)

    def __len__(self) -> int:
        return len(self.batches)

    def _crop(self, feats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.max_frames <= 0 or feats.shape[0] <= self.max_frames:
            return feats
        start = int(rng.integers(0, feats.shape[0] - self.max_frames + 1))
        return feats[start:start + self.max_frames]

    def _inputs(self, index: int) -> np.ndarray:
        """Utterance ``index``'s inputs this epoch: at its drawn speed when speed perturbation is on."""
        if self.speed is None:
            return self.data.feats[index]
        return self.speed(self.data.feats[index], index, self.seed, self.epoch)

    def example(self, index: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(normalised features, soft label, mixing weight) of one training utterance this epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, 1, int(index)])
        feats = self._crop(self._inputs(index), rng)
        label = self.data.labels[index]
        partner, partner_label, lam = index, label, 0.0
        if self.mixup is not None:
            partner = int(rng.integers(0, len(self.data.keys)))  # uniform over the training fold
            partner_label = self.data.labels[partner]
            feats, lam = self.mixup(feats, self._inputs(partner), rng)
        target = soft_label(int(label), int(partner_label), lam, self.num_classes)
        if self.specaug is None:
            return normalise(self.normaliser, feats, self.data, index), target.astype(np.float32), lam, partner
        feats = self.specaug.mask(normalise(self.normaliser, self.specaug.warp(feats, rng), self.data, index), rng)
        return feats, target.astype(np.float32), lam, partner

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        """The batch (key: its index this epoch, or (epoch, index)), or with several ranks this rank's share of it
        (examples rank, rank + world, ...). ``rows``: how many of the batch's rows are this rank's examples. A rank
        whose share is empty (a batch smaller than the number of ranks) gets the batch's first example as a stand-in
        with rows 0: it takes part in the ranks' collective steps and its loss weighs nothing (ser.losses)."""
        if isinstance(key, tuple):
            epoch, key = key
            if epoch != self.epoch:
                self.set_epoch(epoch)
        indices = self.batches[key][self.rank::self.world]
        rows = len(indices)
        if rows == 0:
            indices = self.batches[key][:1]
        examples = [self.example(i) for i in indices]
        feats, lengths = pad_batch([e[0] for e in examples])
        batch = {"feats": feats, "lengths": lengths, "targets": torch.from_numpy(np.stack([e[1] for e in examples])),
                 "indices": torch.as_tensor(indices), "rows": torch.tensor(rows)}
        if self.speaker_index is not None:
            spk, count = self.speaker_index, int(self.speaker_index.max()) + 1
            batch["speakers"] = torch.from_numpy(np.stack([
                soft_label(int(spk[i]), int(spk[partner]), lam, count).astype(np.float32)
                for i, (_, _, lam, partner) in zip(indices, examples)]))
        if self.data.utterance is not None:
            # Utterance-level features are mixed with the label's weights (mixup in their own domain).
            u = self.data.utterance
            batch["utterance"] = torch.from_numpy(np.stack([(1.0 - lam) * u[i] + lam * u[partner]
                                                            for i, (_, _, lam, partner) in zip(indices, examples)]))
        return batch


class _EpochKeys(torch.utils.data.Sampler):
    """The keys (epoch, batch) of the dataset's current epoch, read when each epoch's iteration starts."""

    def __init__(self, batches: TrainBatches):
        self.batches = batches

    def __iter__(self):
        return iter([(self.batches.epoch, i) for i in range(len(self.batches))])

    def __len__(self) -> int:
        return len(self.batches)


def batch_loader(batches: TrainBatches, num_workers: int, pin_memory: bool = False,
                 persistent_workers: bool = False) -> torch.utils.data.DataLoader:
    """The batches of each epoch (after batches.set_epoch) prepared by ``num_workers`` worker processes, in order.
    Items depend on (seed, epoch, batch) only, so they equal the training process's own bit for bit; the loader
    has a generator of its own, so it draws nothing from torch's global RNG (the model's dropout stays as with
    num_workers 0)."""
    return torch.utils.data.DataLoader(batches, batch_size=None, sampler=_EpochKeys(batches), num_workers=num_workers,
                                       pin_memory=pin_memory, persistent_workers=persistent_workers and num_workers > 0,
                                       generator=torch.Generator())


def normalise(normaliser, x: np.ndarray, data: LabelledSet, index: int) -> np.ndarray:
    """Global CMVN (CmvnNormaliser) or per-speaker CMVN (SpeakerNormaliser) for fbank; waveforms pass unchanged
    (SSL front-ends normalise each utterance themselves)."""
    if normaliser is None:
        return x
    if isinstance(normaliser, SpeakerNormaliser):
        return normaliser(x, data.speakers[index])
    return normaliser(x)


def eval_batches(data: LabelledSet, normaliser: CmvnNormaliser | None, batch_size: int,
                 shard: tuple[int, int] = (0, 1)):
    """Whole utterances in batches of similar length (sorted), for validation and inference.

    shard (rank, world): this process's share of the batches when evaluation is split across processes.
    """
    order = np.argsort(data.lengths, kind="stable")
    rank, world = shard
    for number, start in enumerate(range(0, len(order), batch_size)):
        if number % world != rank:
            continue
        indices = order[start:start + batch_size]
        feats, lengths = pad_batch([normalise(normaliser, data.feats[i], data, i) for i in indices])
        utterance = None if data.utterance is None else torch.from_numpy(data.utterance[indices])
        yield indices, feats, lengths, utterance
