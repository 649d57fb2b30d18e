"""The trainer: one fold, one seed, read top to bottom.

exp dir layout (one per fold and seed):
  config.yaml        the resolved config (re-run from it)      run.json     what identifies this run
  checkpoint.pt      the last finished epoch: model, optimizers, schedulers, RNG states, history
  best.pth last.pth  model weights by validation UA / of the last epoch
  model.pth          the weights chosen by config.model_selection   selection.json  which epoch and why
  history.json       per-epoch train loss terms and validation scores    train.log, tensorboard/
  model_card.json    what the model is (ser.card); run.json's data paths are relative to the run dir
A re-run resumes from checkpoint.pt when run.json matches; a run whose config or data changed is moved aside
(``<dir>.bak<N>``), never overwritten. Epoch data depend only on (seed, epoch), so a resumed run reproduces an
uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ser.atomic import atomic_path, write_json
from ser.augment import build_augment, mixup_record
from ser.card import write_card
from ser.config import config_hash, write_config
from ser.dataset import LabelledSet, TrainBatches, batch_loader
from ser.distributed import Distributed
from ser.frontends import frontend_of
from ser.infer import predict
from ser.inputs import prepare_training_inputs, uses_functionals, write_utterance_norm
from ser.losses import MultiLoss, NonFiniteLossError, reads_speakers
from ser.metrics import classification_scores
from ser.models import model_of
from ser.optim import build_optimizer, build_scheduler
from ser.rundir import claim_run_dir, free_name, git_revision
from ser.specaug import SPECAUGS
from ser.speed import SpeedPerturbation, fbank_tables
from ser.stamps import inputs_digest

log = logging.getLogger("ser.train")


class TrainingError(RuntimeError):
    pass


def atomic_torch_save(obj, path: str) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG's state as tensors and plain Python values, which a weights-only load accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(config: dict, classes: list[str], train_dir: str, valid_dir: str, cmvn_path: str | None, outdir: str,
          device: str = "cpu", extra_files: dict[str, str] | None = None, functionals_scp: str | None = None) -> dict:
    """Train one model; returns selection.json's content. ``extra_files`` are copied into outdir (e.g. fbank.conf).

    cmvn_path (global CMVN of the training fold) is needed by the fbank front-end only (unless speaker_norm);
    functionals_scp (functionals of data/all) by configs that fuse functionals.
    """
    frontend = frontend_of(config)
    if frontend.uses_fold_cmvn and config["speaker_norm"] == "none" and not cmvn_path:
        raise TrainingError(f"the {frontend.name} front-end needs the training fold's CMVN statistics (--cmvn)")
    if uses_functionals(config) and not functionals_scp:
        raise TrainingError(f"the config fuses {config['functionals']} functionals: give their archive "
                            "(--functionals-scp)")
    identity = {
        "config_hash": config_hash(config),
        "classes": classes,
        "train_data": frontend.digest(train_dir),
        "valid_data": frontend.digest(valid_dir),
        "cmvn": inputs_digest([cmvn_path])[:12] if frontend.uses_fold_cmvn else None,
    }
    if uses_functionals(config):
        identity["functionals"] = inputs_digest([functionals_scp])[:12]
    dist = Distributed(device)
    if not dist.is_main:
        log.setLevel(logging.WARNING)
    try:
        # Everything that can fail on the config or the data fails here, before a file of outdir is touched.
        run = _build(config, classes, train_dir, valid_dir, cmvn_path, functionals_scp, outdir, dist,
                     (extra_files or {}).get("fbank.conf"))
        if dist.is_main:
            claim_run_dir(outdir, identity)
        dist.barrier()
        selection_path = os.path.join(outdir, "selection.json")
        if os.path.isfile(selection_path):
            log.info("%s: already trained; nothing to do", outdir)
            with open(selection_path) as f:
                return json.load(f)
        file_log = None
        if dist.is_main:
            os.makedirs(outdir, exist_ok=True)
            file_log = logging.FileHandler(os.path.join(outdir, "train.log"))
            file_log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(message)s"))
            log.addHandler(file_log)
            write_config(config, os.path.join(outdir, "config.yaml"))
            for name, src in (extra_files or {}).items():
                shutil.copyfile(src, os.path.join(outdir, name))
            here = lambda path: path and os.path.relpath(path, outdir)  # noqa: E731 (a run dir can be moved whole)
            write_json(os.path.join(outdir, "run.json"), {
                "identity": identity, "train_dir": here(train_dir), "valid_dir": here(valid_dir),
                "cmvn": here(cmvn_path), "functionals_scp": here(functionals_scp), "paths_relative_to": "run dir",
                "device": dist.device, "world_size": dist.world,
                "mixup": mixup_record(config["augment"], frontend.augment_domain),
                "num_workers": config["num_workers"], "git_revision": git_revision()})
            if cmvn_path:
                shutil.copyfile(cmvn_path, os.path.join(outdir, "cmvn.ark"))
            write_utterance_norm(outdir, run.train_set)
        dist.barrier()
        try:
            selection = _train(run)
            if dist.is_main:
                write_card(outdir)  # rewritten with test metrics when stage 4 scores the experiment
            return selection
        finally:
            if file_log:
                log.removeHandler(file_log)
                file_log.close()
    finally:
        dist.close()


def _autocast(config: dict, device: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config["amp"])
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype is not None)


@dataclass
class Run:
    """Everything one training run works with, built once by ``_build``."""

    config: dict
    outdir: str
    dist: Distributed
    train_set: LabelledSet
    valid_set: LabelledSet
    normaliser: object | None
    batches: TrainBatches
    model: torch.nn.Module  # the model itself (its weights are saved)
    trained_model: torch.nn.Module  # what the steps call: the model, or its DDP wrapper
    criterion: MultiLoss  # the loss; it owns and updates its terms' own parameters (e.g. the centres)
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    num_classes: int
    loader: object = None  # batch_loader over ``batches`` when config num_workers > 0, made when training starts

    @property
    def device(self) -> str:
        return self.dist.device


def _train(run: Run) -> dict:
    """(After _build) resume, then per epoch: train, validate, checkpoint; finally select the model."""
    config, dist = run.config, run.dist
    log.info("model %s/%s: %.2fM parameters (%.2fM trained); %d train / %d valid utterances; device %s x %d",
             config["frontend"], config["encoder"], sum(p.numel() for p in run.model.parameters()) / 1e6,
             sum(p.numel() for p in run.model.parameters() if p.requires_grad) / 1e6,
             len(run.train_set.keys), len(run.valid_set.keys), dist.device, dist.world)
    history = _resume(run)
    writer = _tensorboard(run, start_epoch=len(history) + 1)
    for epoch in range(len(history) + 1, config["max_epoch"] + 1):
        t0 = time.time()
        lr = run.optimizer.param_groups[0]["lr"]  # the rate this epoch trains with
        train_terms, train_acc = _train_epoch(run, epoch)
        valid = _validate(run)
        history.append({"epoch": epoch, "train": train_terms, "train_acc": train_acc,
                        "valid": {k: valid[k] for k in ("ua", "wa", "macro_f1")}, "seconds": time.time() - t0,
                        "lr": lr})
        log.info("epoch %d: train loss %.4f acc %.2f | valid UA %.2f WA %.2f | %.1fs", epoch, train_terms["total"],
                 train_acc, valid["ua"], valid["wa"], history[-1]["seconds"])
        _checkpoint(run, history, writer)
        dist.barrier()
    if writer:
        writer.close()
    return _select(run, history)


def _build(config, classes, train_dir, valid_dir, cmvn_path, functionals_scp, outdir, dist: Distributed,
           fbank_conf: str | None = None) -> Run:
    """Data, model, loss and optimizers, in a fixed order of random draws (seeded first)."""
    device = dist.device
    if config["amp"] == "fp16" and not device.startswith("cuda"):
        raise TrainingError("amp: fp16 needs a GPU (--ngpu 1); on a CPU use bf16 or none")
    if config["num_threads"] > 0:
        torch.set_num_threads(config["num_threads"])
    set_seed(config["seed"])
    frontend = frontend_of(config)
    # With workers, a front-end that reads audio reads the training utterances in them, each when it is used.
    train_set = frontend.load(train_dir, classes, lazy=config["num_workers"] > 0)
    valid_set = frontend.load(valid_dir, classes)
    normaliser = prepare_training_inputs(config, train_set, valid_set, train_dir, valid_dir, cmvn_path,
                                         functionals_scp)
    utterance_dim = 0 if train_set.utterance is None else train_set.utterance.shape[1]
    num_classes = len(classes)
    mixup = build_augment(config["augment"], config["augment_conf"], domain=frontend.augment_domain)
    specaug = SPECAUGS.build(config["specaug"], config["specaug_conf"])
    batches = TrainBatches(train_set, num_classes, normaliser, config["batch_size"],
                           int(round(config["crop_seconds"] * frontend.inputs_per_second)), config["bucketing"],
                           mixup, config["seed"], shard=(dist.rank, dist.world), specaug=specaug,
                           speaker_targets=reads_speakers(config["loss_conf"]),
                           speed=_speed_perturbation(config, frontend, train_set, train_dir, fbank_conf))

    model = model_of(config, train_set.feat_dim, num_classes, utterance_dim).to(device)
    num_speakers = len(set(train_set.speakers)) if train_set.speakers is not None else 0
    criterion = MultiLoss(config["loss_conf"], num_classes, config["encoder_conf"]["embed_dim"],
                          num_speakers).to(device)
    optimizer = build_optimizer(config, [p for p in model.parameters() if p.requires_grad])
    scheduler = build_scheduler(config, optimizer)
    criterion.attach_optimizers(config, lambda o: build_scheduler(config, o))
    scaler = torch.amp.GradScaler("cuda", enabled=config["amp"] == "fp16")
    trained_model = model
    if dist.world > 1:
        trained_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[int(device.split(":")[1])] if device.startswith("cuda") else None)
    return Run(config, outdir, dist, train_set, valid_set, normaliser, batches, model, trained_model, criterion,
               optimizer, scheduler, scaler, num_classes)


def _speed_perturbation(config, frontend, train_set: LabelledSet, train_dir: str,
                        fbank_conf: str | None) -> SpeedPerturbation | None:
    """config.speed_perturb over the training set (ser.speed): fbank precomputed per factor, waveforms on the fly."""
    factors = config["speed_perturb"]
    if not factors:
        return None
    if frontend.name == "fbank":
        if not fbank_conf:
            raise TrainingError("speed_perturb with the fbank front-end computes the perturbed features with "
                                "stage 1's fbank config: give it (--fbank-conf)")
        return SpeedPerturbation(factors, fbank_tables(train_dir, train_set.keys, factors, fbank_conf))
    if train_set.feat_dim is not None:
        raise TrainingError(f"speed_perturb needs the audio: the fbank front-end or a waveform one, not "
                            f"{frontend.name}, whose inputs are precomputed")
    return SpeedPerturbation(factors)


def _resume(run: Run) -> list[dict]:
    """Restore the state after the last finished epoch from checkpoint.pt, if any; returns the history so far."""
    checkpoint_path = os.path.join(run.outdir, "checkpoint.pt")
    state = _read_checkpoint(checkpoint_path, run.dist.is_main)
    if state is None:
        return []
    run.model.load_state_dict(state["model"])
    run.criterion.load_state_dict(state["criterion"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.criterion.load_optimizer_state(state["criterion_optimizer"])
    restore_rng_state(state["rng"])
    log.info("resuming after epoch %d from %s", state["epoch"], checkpoint_path)
    return state["history"]


def _read_checkpoint(path: str, is_main: bool) -> dict | None:
    """checkpoint.pt, loaded weights-only (nothing in it is executed), or None when there is none. A file that
    cannot be read (truncated, not a checkpoint) is moved aside by the main rank, and training starts from
    scratch; one that holds objects other than tensors and plain values is refused."""
    if not os.path.isfile(path):
        return None
    try:
        # Loaded on the CPU: RNG states must stay CPU tensors; parameters and optimizer states follow the model.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0]
        raise TrainingError(f"{path}: refusing to load it: it holds objects that a weights-only load does not "
                            f"allow ({reason}); ser executes nothing from a checkpoint. Move it aside to train "
                            "from scratch") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if is_main:
            aside = free_name(path + ".corrupt")
            os.rename(path, aside)
            log.warning("%s cannot be read (%s); moved to %s; training starts from scratch", path, reason, aside)
        return None


def _tensorboard(run: Run, start_epoch: int):
    if not run.dist.is_main:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(os.path.join(run.outdir, "tensorboard"), purge_step=start_epoch)


def _train_epoch(run: Run, epoch: int) -> tuple[dict[str, float], float]:
    """One pass over the epoch's batches; returns the mean loss terms and the training accuracy over all ranks."""
    config, device, criterion = run.config, run.device, run.criterion
    run.trained_model.train()
    run.batches.set_epoch(epoch)
    sums: dict[str, float] = {}
    num_batches, correct, seen = 0, 0, 0
    if config["num_workers"] > 0 and run.loader is None:
        run.loader = batch_loader(run.batches, config["num_workers"], pin_memory=device.startswith("cuda"),
                                  persistent_workers=config["persistent_workers"])
    source = iter(run.loader) if run.loader is not None else (run.batches[step] for step in range(len(run.batches)))
    progress = tqdm(source, total=len(run.batches), desc=f"epoch {epoch}",
                    disable=None if run.dist.is_main else True, leave=False, mininterval=10)
    for step, batch in enumerate(progress):
        feats, lengths = batch["feats"].to(device, non_blocking=True), batch["lengths"].to(device, non_blocking=True)
        targets = batch["targets"].to(device, non_blocking=True)
        utterance = batch["utterance"].to(device, non_blocking=True) if "utterance" in batch else None
        with _autocast(config, device):
            out = run.trained_model(feats, lengths, utterance)
        try:
            loss, terms = criterion(out.logits.float(), out.embedding.float(), out.contrastive_embedding.float(),
                                    targets, run.dist, rows=int(batch["rows"]),
                                    speakers=batch["speakers"].to(device) if "speakers" in batch else None)
        except NonFiniteLossError as e:
            raise TrainingError(f"epoch {epoch}, batch {step + 1}: loss term {e.term!r} is not finite "
                                f"(utterances {[run.train_set.keys[i] for i in batch['indices']]})") from None
        run.optimizer.zero_grad(set_to_none=True)
        criterion.zero_grad()
        run.scaler.scale(loss).backward()
        if config["grad_clip"] > 0:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), config["grad_clip"])
        run.scaler.step(run.optimizer)
        criterion.step(run.dist.average_, run.scaler.get_scale() if run.scaler.is_enabled() else None)
        run.scaler.update()
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value
        num_batches += 1
        rows = int(batch["rows"])  # this rank's examples (0: a stand-in)
        correct += int((out.logits[:rows].argmax(-1) == targets[:rows].argmax(-1)).sum())
        seen += rows
        if config["log_interval"] and (step + 1) % config["log_interval"] == 0:
            log.info("epoch %d batch %d/%d: loss %.4f", epoch, step + 1, len(run.batches), sums["total"] / num_batches)
    run.scheduler.step()
    criterion.end_epoch()
    keys = sorted(sums)
    totals = run.dist.sum_(np.array([sums[k] for k in keys] + [num_batches, correct, seen], dtype=np.float64))
    # plain floats: the history is saved in the checkpoint, which is loaded weights-only
    return {k: float(v / totals[-3]) for k, v in zip(keys, totals)}, float(100.0 * totals[-2] / totals[-1])


def _validate(run: Run) -> dict:
    posteriors = predict(run.model, run.valid_set, run.normaliser, run.device, run.num_classes, dist=run.dist)
    return classification_scores(run.valid_set.labels, posteriors.argmax(1), run.num_classes)


def _checkpoint(run: Run, history: list[dict], writer) -> None:
    """After an epoch (main rank): tensorboard scalars, best.pth/last.pth, checkpoint.pt and history.json."""
    if not run.dist.is_main:
        return
    record, outdir = history[-1], run.outdir
    for key, value in record["train"].items():
        writer.add_scalar(f"train/{key}", value, record["epoch"])
    for key, value in record["valid"].items():
        writer.add_scalar(f"valid/{key}", value, record["epoch"])
    writer.flush()
    model_state = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
    if record["valid"]["ua"] > max((h["valid"]["ua"] for h in history[:-1]), default=-1.0):
        atomic_torch_save(model_state, os.path.join(outdir, "best.pth"))
    atomic_torch_save(model_state, os.path.join(outdir, "last.pth"))
    atomic_torch_save({"epoch": record["epoch"], "model": model_state, "criterion": run.criterion.state_dict(),
                       "criterion_optimizer": run.criterion.optimizer_state(),
                       "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                       "scaler": run.scaler.state_dict(), "rng": rng_state(), "history": history},
                      os.path.join(outdir, "checkpoint.pt"))
    write_json(os.path.join(outdir, "history.json"), history, indent=1)


def _select(run: Run, history: list[dict]) -> dict:
    """The model of config.model_selection (written to model.pth) and why (selection.json)."""
    config, outdir = run.config, run.outdir
    if config["model_selection"] == "valid_ua":
        chosen = max(history, key=lambda h: h["valid"]["ua"])  # the first epoch reaching the best UA
        rule = "best validation UA (validation split of training-fold speakers; the test fold is never seen)"
        source = "best.pth"
    else:
        chosen = history[-1]
        rule = "last epoch"
        source = "last.pth"
    selection = {"rule": config["model_selection"], "description": rule, "epoch": chosen["epoch"],
                 "valid": chosen["valid"], "epochs_trained": len(history)}
    if run.dist.is_main:
        shutil.copyfile(os.path.join(outdir, source), os.path.join(outdir, "model.pth"))
        write_json(os.path.join(outdir, "selection.json"), selection)
    log.info("selected epoch %d (%s): valid UA %.2f", chosen["epoch"], config["model_selection"], chosen["valid"]["ua"])
    run.dist.barrier()
    return selection
