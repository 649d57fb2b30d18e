"""The trainer: one fold, one seed, read top to bottom.

exp dir layout (one per fold and seed):
  config.yaml        the resolved config (re-run from it)      run.json     what identifies this run
  checkpoint.pt      the last finished epoch: model, optimizers, schedulers, RNG states, history
  best.pth last.pth  model weights by validation UA / of the last epoch
  model.pth          the weights chosen by config.model_selection   selection.json  which epoch and why
  history.json       per-epoch train loss terms and validation scores    train.log, tensorboard/
A re-run resumes from checkpoint.pt when run.json matches; a run whose config or data changed is moved aside
(``<dir>.bak<N>``), never overwritten. Epoch data depend only on (seed, epoch), so a resumed run reproduces an
uninterrupted one.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import shutil
import subprocess
import time

import numpy as np
import torch
from tqdm import tqdm

from ser.augment import build_augment
from ser.config import config_hash, write_config
from ser.dataset import LabelledSet, TrainBatches, eval_batches, load_labelled_set, load_wave_set
from ser.frontends import FBANK_FRAMES_PER_SECOND, WAVE_SAMPLE_RATE
from ser.inputs import prepare_training_inputs, uses_functionals
from ser.losses import MultiLoss, NonFiniteLossError
from ser.metrics import classification_scores
from ser.models import build_model
from ser.stamps import inputs_digest

log = logging.getLogger("ser.train")


class TrainingError(RuntimeError):
    pass


def git_revision() -> str:
    """The git revision of the ser checkout (with -dirty when modified), or 'unknown'."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def atomic_torch_save(obj, path: str) -> None:
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_optimizer(config: dict, params) -> torch.optim.Optimizer:
    conf = dict(config["optim_conf"])
    if "betas" in conf:
        conf["betas"] = tuple(conf["betas"])
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[config["optim"]]
    return cls(params, **conf)


def build_center_optimizer(config: dict, params) -> torch.optim.Optimizer:
    """The centres' own optimizer (their gradient is taken before the loss weight, as in Wen et al.): plain SGD, or
    Adam with default moments, as in the LAM lineage, at center_lr."""
    if config["center_optim"] == "adam":
        return torch.optim.Adam(params, lr=config["center_lr"])
    return torch.optim.SGD(params, lr=config["center_lr"])


def build_scheduler(config: dict, optimizer):
    if config["scheduler"] == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config["scheduler_conf"]["gamma"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


class Distributed:
    """Data-parallel context: torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; a plain run is rank 0 of 1.

    Each batch of the single-process schedule is split across the ranks (rank r takes examples r, r+W, ...), so
    the number of updates, the length buckets and the data of every epoch are those of a one-process run.
    """

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch.distributed as dist

            if device.startswith("cuda"):
                local_rank = int(os.environ.get("LOCAL_RANK", "0"))
                self.device = f"cuda:{local_rank}"
                torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl" if self.device.startswith("cuda") else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def average_(self, tensors) -> None:
        """Average tensors (e.g. gradients of parameters outside DDP) over the ranks, in place."""
        if self.world > 1:
            for t in tensors:
                torch.distributed.all_reduce(t)
                t.div_(self.world)

    def sum_(self, array: np.ndarray) -> np.ndarray:
        if self.world == 1:
            return array
        t = torch.from_numpy(array).to(self.device if self.device.startswith("cuda") else "cpu")
        torch.distributed.all_reduce(t)
        return t.cpu().numpy()

    def close(self) -> None:
        if self.world > 1:
            # Free the (now unreachable) DDP wrapper first: a reducer that outlives its process group is destroyed
            # during interpreter shutdown, where gloo's threads abort the process (SIGABRT) now and then.
            gc.collect()
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def load_inputs(config: dict, data_dir: str, classes: list[str]) -> LabelledSet:
    """What the front-end reads: fbank features (feats.scp) or 16 kHz waveforms (wav.scp)."""
    if config["frontend"] == "fbank":
        return load_labelled_set(data_dir, classes)
    return load_wave_set(data_dir, classes, WAVE_SAMPLE_RATE)


def inputs_per_second(config: dict) -> int:
    return FBANK_FRAMES_PER_SECOND if config["frontend"] == "fbank" else WAVE_SAMPLE_RATE


def data_digest(config: dict, data_dir: str) -> str:
    """Digest of what training reads from a data dir: its tables by content, the feature archives they point to by
    size and modification time (recomputed features change it even when feats.scp reads the same)."""
    from ser.datadir import read_table

    if config["frontend"] != "fbank":
        return inputs_digest([os.path.join(data_dir, "wav.scp"), os.path.join(data_dir, "utt2emo")])[:12]
    scp = os.path.join(data_dir, "feats.scp")
    arks = sorted({spec.rsplit(":", 1)[0] for spec in read_table(scp, 2, 2).values()})
    return inputs_digest([scp, os.path.join(data_dir, "utt2emo"), *arks])[:12]


@torch.no_grad()
def predict(model, data: LabelledSet, normaliser, device, num_classes: int,
            batch_size: int = 16, dist: Distributed | None = None) -> np.ndarray:
    """Posteriors (N, C) of whole utterances, in the order of data.keys (shared out over ranks when distributed)."""
    model.eval()
    shard = (dist.rank, dist.world) if dist else (0, 1)
    posteriors = np.zeros((len(data.keys), num_classes), dtype=np.float32)
    for indices, feats, lengths, utterance in eval_batches(data, normaliser, batch_size, shard):
        out = model(feats.to(device), lengths.to(device), None if utterance is None else utterance.to(device))
        posteriors[indices] = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
    return dist.sum_(posteriors) if dist else posteriors


def _move_aside(outdir: str, reason: str) -> None:
    n = 1
    while os.path.exists(f"{outdir}.bak{n}"):
        n += 1
    log.warning("%s: %s; moving the old run to %s.bak%d", outdir, reason, outdir, n)
    os.rename(outdir, f"{outdir}.bak{n}")


def claim_run_dir(outdir: str, identity: dict) -> None:
    """Move a run dir aside (``<dir>.bak<N>``) when it holds a run of another identity; never overwrite it."""
    run_json = os.path.join(outdir, "run.json")
    if os.path.isdir(outdir) and os.listdir(outdir):
        previous = None
        if os.path.isfile(run_json):
            with open(run_json) as f:
                previous = json.load(f).get("identity")
        if previous != identity:
            _move_aside(outdir, "it holds a run with another config, class set or data")


def train(config: dict, classes: list[str], train_dir: str, valid_dir: str, cmvn_path: str | None, outdir: str,
          device: str = "cpu", extra_files: dict[str, str] | None = None, functionals_scp: str | None = None) -> dict:
    """Train one model; returns selection.json's content. ``extra_files`` are copied into outdir (e.g. fbank.conf).

    cmvn_path (global CMVN of the training fold) is needed by the fbank front-end only (unless speaker_norm);
    functionals_scp (functionals of data/all) by configs that fuse functionals.
    """
    if config["frontend"] == "fbank" and config["speaker_norm"] == "none" and not cmvn_path:
        raise TrainingError("the fbank front-end needs the training fold's CMVN statistics (--cmvn)")
    if uses_functionals(config) and not functionals_scp:
        raise TrainingError(f"the config fuses {config['functionals']} functionals: give their archive "
                            "(--functionals-scp)")
    identity = {
        "config_hash": config_hash(config),
        "classes": classes,
        "train_data": data_digest(config, train_dir),
        "valid_data": data_digest(config, valid_dir),
        "cmvn": inputs_digest([cmvn_path])[:12] if config["frontend"] == "fbank" else None,
    }
    if uses_functionals(config):
        identity["functionals"] = inputs_digest([functionals_scp])[:12]
    dist = Distributed(device)
    if not dist.is_main:
        log.setLevel(logging.WARNING)
    try:
        run_json = os.path.join(outdir, "run.json")
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
            with open(run_json + ".tmp", "w") as f:
                json.dump({"identity": identity, "train_dir": train_dir, "valid_dir": valid_dir, "cmvn": cmvn_path,
                           "functionals_scp": functionals_scp,
                           "device": dist.device, "world_size": dist.world, "git_revision": git_revision()}, f, indent=2)
            os.replace(run_json + ".tmp", run_json)
            if cmvn_path:
                shutil.copyfile(cmvn_path, os.path.join(outdir, "cmvn.ark"))
        dist.barrier()
        try:
            return _train(config, classes, train_dir, valid_dir, cmvn_path, functionals_scp, outdir, dist)
        finally:
            if file_log:
                log.removeHandler(file_log)
                file_log.close()
    finally:
        dist.close()


def _autocast(config: dict, device: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config["amp"])
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype is not None)


def _train(config, classes, train_dir, valid_dir, cmvn_path, functionals_scp, outdir, dist: Distributed) -> dict:
    device = dist.device
    if config["amp"] == "fp16" and not device.startswith("cuda"):
        raise TrainingError("amp: fp16 needs a GPU (--ngpu 1); on a CPU use bf16 or none")
    if config["num_threads"] > 0:
        torch.set_num_threads(config["num_threads"])
    set_seed(config["seed"])
    train_set = load_inputs(config, train_dir, classes)
    valid_set = load_inputs(config, valid_dir, classes)
    normaliser = prepare_training_inputs(config, train_set, valid_set, train_dir, valid_dir, cmvn_path,
                                         functionals_scp, outdir if dist.is_main else None)
    utterance_dim = 0 if train_set.utterance is None else train_set.utterance.shape[1]
    num_classes = len(classes)
    domain = "fbank" if config["frontend"] == "fbank" else "wave"
    mixup = build_augment(config["augment"], config["augment_conf"], domain=domain)
    batches = TrainBatches(train_set, num_classes, normaliser, config["batch_size"],
                           int(round(config["crop_seconds"] * inputs_per_second(config))), config["bucketing"],
                           mixup, config["seed"], shard=(dist.rank, dist.world))

    model = build_model(config["encoder"], config["encoder_conf"], train_set.feat_dim, num_classes,
                        frontend=config["frontend"], frontend_conf=config["frontend_conf"],
                        utterance_dim=utterance_dim).to(device)
    criterion = MultiLoss(config["loss_conf"], num_classes, config["encoder_conf"]["embed_dim"]).to(device)
    optimizer = build_optimizer(config, [p for p in model.parameters() if p.requires_grad])
    scheduler = build_scheduler(config, optimizer)
    center_params = criterion.center_parameters()
    center_optimizer = build_center_optimizer(config, center_params) if center_params else None
    center_scheduler = build_scheduler(config, center_optimizer) if center_optimizer else None
    scaler = torch.amp.GradScaler("cuda", enabled=config["amp"] == "fp16")
    log.info("model %s/%s: %.2fM parameters (%.2fM trained); %d train / %d valid utterances; device %s x %d",
             config["frontend"], config["encoder"], sum(p.numel() for p in model.parameters()) / 1e6,
             sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
             len(train_set.keys), len(valid_set.keys), device, dist.world)

    history: list[dict] = []
    start_epoch = 1
    checkpoint_path = os.path.join(outdir, "checkpoint.pt")
    if os.path.isfile(checkpoint_path):
        # Loaded on the CPU: RNG states must stay CPU tensors; parameters and optimizer states follow the model.
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state["criterion"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if center_optimizer:
            center_optimizer.load_state_dict(state["center_optimizer"])
            center_scheduler.load_state_dict(state["center_scheduler"])
        restore_rng_state(state["rng"])
        history = state["history"]
        start_epoch = state["epoch"] + 1
        log.info("resuming after epoch %d from %s", state["epoch"], checkpoint_path)

    trained_model = model
    if dist.world > 1:
        trained_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[int(device.split(":")[1])] if device.startswith("cuda") else None)
    writer = None
    if dist.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(os.path.join(outdir, "tensorboard"), purge_step=start_epoch)
    best_ua = max((h["valid"]["ua"] for h in history), default=-1.0)
    for epoch in range(start_epoch, config["max_epoch"] + 1):
        t0 = time.time()
        trained_model.train()
        batches.set_epoch(epoch)
        sums: dict[str, float] = {}
        num_batches, correct, seen = 0, 0, 0
        progress = tqdm(range(len(batches)), desc=f"epoch {epoch}", disable=None if dist.is_main else True,
                        leave=False, mininterval=10)
        for step in progress:
            batch = batches[step]
            if batch is None:  # a remainder batch smaller than the number of ranks
                continue
            feats, lengths = batch["feats"].to(device), batch["lengths"].to(device)
            targets = batch["targets"].to(device)
            utterance = batch["utterance"].to(device) if "utterance" in batch else None
            with _autocast(config, device):
                out = trained_model(feats, lengths, utterance)
            try:
                loss, terms = criterion(out.logits.float(), out.embedding.float(),
                                        out.contrastive_embedding.float(), targets)
            except NonFiniteLossError as e:
                raise TrainingError(f"epoch {epoch}, batch {step + 1}: loss term {e.term!r} is not finite "
                                    f"(utterances {[train_set.keys[i] for i in batch['indices']]})") from None
            optimizer.zero_grad(set_to_none=True)
            if center_optimizer:
                center_optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config["grad_clip"] > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config["grad_clip"])
            scaler.step(optimizer)
            if center_optimizer:
                # Centres are outside DDP: average their gradients here. Wen et al. update the centres at their
                # own rate, independent of the loss weight (and of fp16 loss scaling).
                grads = [p.grad for p in center_params if p.grad is not None]
                dist.average_(grads)
                for g in grads:
                    g.div_(config["loss_conf"]["center"] * scaler.get_scale() if scaler.is_enabled()
                           else config["loss_conf"]["center"])
                center_optimizer.step()
            scaler.update()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value
            num_batches += 1
            correct += int((out.logits.argmax(-1) == targets.argmax(-1)).sum())
            seen += len(lengths)
            if config["log_interval"] and (step + 1) % config["log_interval"] == 0:
                log.info("epoch %d batch %d/%d: loss %.4f", epoch, step + 1, len(batches), sums["total"] / num_batches)
        scheduler.step()
        if center_scheduler:
            center_scheduler.step()

        keys = sorted(sums)
        totals = dist.sum_(np.array([sums[k] for k in keys] + [num_batches, correct, seen], dtype=np.float64))
        train_terms = {k: float(v) / totals[-3] for k, v in zip(keys, totals)}
        posteriors = predict(model, valid_set, normaliser, device, num_classes, dist=dist)
        valid = classification_scores(valid_set.labels, posteriors.argmax(1), num_classes)
        record = {"epoch": epoch, "train": train_terms, "train_acc": 100.0 * totals[-2] / totals[-1],
                  "valid": {k: valid[k] for k in ("ua", "wa", "macro_f1")}, "seconds": time.time() - t0,
                  "lr": optimizer.param_groups[0]["lr"]}
        history.append(record)
        log.info("epoch %d: train loss %.4f acc %.2f | valid UA %.2f WA %.2f | %.1fs", epoch, train_terms["total"],
                 record["train_acc"], valid["ua"], valid["wa"], record["seconds"])
        if dist.is_main:
            for key, value in train_terms.items():
                writer.add_scalar(f"train/{key}", value, epoch)
            for key in ("ua", "wa", "macro_f1"):
                writer.add_scalar(f"valid/{key}", valid[key], epoch)
            writer.flush()
            model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            if valid["ua"] > best_ua:
                atomic_torch_save(model_state, os.path.join(outdir, "best.pth"))
            atomic_torch_save(model_state, os.path.join(outdir, "last.pth"))
            state = {"epoch": epoch, "model": model_state, "criterion": criterion.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict(), "rng": rng_state(), "history": history}
            if center_optimizer:
                state["center_optimizer"] = center_optimizer.state_dict()
                state["center_scheduler"] = center_scheduler.state_dict()
            atomic_torch_save(state, checkpoint_path)
            with open(os.path.join(outdir, "history.json.tmp"), "w") as f:
                json.dump(history, f, indent=1)
            os.replace(os.path.join(outdir, "history.json.tmp"), os.path.join(outdir, "history.json"))
        best_ua = max(best_ua, valid["ua"])
        dist.barrier()
    if writer:
        writer.close()

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
    if dist.is_main:
        shutil.copyfile(os.path.join(outdir, source), os.path.join(outdir, "model.pth"))
        selection_path = os.path.join(outdir, "selection.json")
        with open(selection_path + ".tmp", "w") as f:
            json.dump(selection, f, indent=2)
        os.replace(selection_path + ".tmp", selection_path)
    log.info("selected epoch %d (%s): valid UA %.2f", chosen["epoch"], config["model_selection"], chosen["valid"]["ua"])
    dist.barrier()
    return selection

