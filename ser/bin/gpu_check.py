"""The GPU check of the WavLM set-up (egs/ravdess/local/gpu_check.sh runs it), at most about 8 minutes on one GPU:

(a) WavLM Large's architecture (random weights; no download) + the FLAM encoder of conf/train_wavlm.yaml trained
    on batches of 16 x 6 s in fp32 and in bf16 (autocast): seconds per step, peak GPU memory, and the loader wait
    (seconds per step that the loop waits for its next batch, from a DataLoader with 2 workers cropping the corpus's
    audio);
(b) one fold of the recipe for 2 epochs with that model (`frontend: wavlm`, frontend_conf.path at the saved random
    checkpoint, conf/train_wavlm.yaml with overrides) and the decoding of its test set (whole utterances);
(c) what it measured, written between marker lines into the config's header and docs/gpu.md, so that a re-run
    replaces the block (the files must hold the markers).

--tiny runs it all on the CPU at a tiny scale (a tiny WavLM, batches of 4 x 1 s, the synth recipe on a generated
corpus of 2 utterances per class and speaker), to test the script end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
YAML_MARKERS = ("# >>> gpu_check", "# <<< gpu_check")
README_MARKERS = ("<!-- gpu_check begin -->", "<!-- gpu_check end -->")
LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
             conv_dim=(512,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True)


def save_random_wavlm_large(path: str) -> str:
    """WavLM Large's architecture with random weights (transformers' WavLMConfig), saved to `path`."""
    from ser.models.ssl import build_tiny_ssl

    if not os.path.isfile(os.path.join(path, "config.json")):
        build_tiny_ssl(path, "wavlm", **LARGE, num_buckets=320, max_bucket_distance=800,
                       num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)
    return path


class Crops:
    """Random crops of `seconds` of the data dir's audio at 16 kHz, in the int16 range (noise without a data dir)."""

    def __init__(self, wav_scp: str | None, seconds: float, count: int):
        self.samples = int(seconds * 16000)
        self.count = count
        self.specs = []
        if wav_scp:
            with open(wav_scp) as f:
                self.specs = [line.split(maxsplit=1)[1].strip() for line in f if line.strip()]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        import numpy as np

        from ser.audio import load_mono

        rng = np.random.default_rng(index)
        if not self.specs:
            return (rng.normal(size=self.samples) * 3000).astype(np.float32)
        wave = load_mono(self.specs[index % len(self.specs)], 16000, None, command_allowed=True)
        if wave.size < self.samples:
            wave = np.pad(wave, (0, self.samples - wave.size))
        start = int(rng.integers(0, wave.size - self.samples + 1))
        return wave[start:start + self.samples].astype(np.float32)


def benchmark(checkpoint: str, config_file: str, encoder_overrides: dict, wav_scp: str | None, batch: int,
              seconds: float, steps: int, warmup: int, device: str) -> dict:
    """(a): {mode: {step_s, peak_gib, loader_wait_s}} for fp32 and bf16 training steps of the config's model
    (its encoder_conf updated with encoder_overrides)."""
    import torch
    import yaml

    from ser.models import build_model

    with open(config_file) as f:
        config = yaml.safe_load(f)
    results = {}
    for mode in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_model(config["encoder"], {**config["encoder_conf"], **encoder_overrides}, None, 8, "wavlm",
                            {**config["frontend_conf"], "path": checkpoint, "download": False}).to(device).train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        loader = torch.utils.data.DataLoader(Crops(wav_scp, seconds, batch * (steps + warmup)), batch_size=batch,
                                             num_workers=2, persistent_workers=False)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)
        step_times, waits = [], []
        batches = iter(loader)
        for step in range(steps + warmup):
            waited = time.perf_counter()
            wave = next(batches).to(device)
            started = time.perf_counter()
            lengths = torch.full((wave.size(0),), wave.size(1), dtype=torch.long, device=device)
            labels = torch.arange(wave.size(0), device=device) % 8
            with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=mode == "bf16"):
                loss = torch.nn.functional.cross_entropy(model(wave, lengths).logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize(device)
            if step >= warmup:
                step_times.append(time.perf_counter() - started)
                waits.append(started - waited)
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.startswith("cuda") else None
        results[mode] = {"step_s": statistics.median(step_times), "peak_gib": peak,
                         "loader_wait_s": statistics.mean(waits)}
        del model, optimizer, loader, batches
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return results


def run_recipe(recipe: str, work: str, corpus_dir: str, config_file: str, checkpoint: str, overrides: list[str],
               ngpu: int, extra: list[str]) -> dict:
    """(b): stages 0-4 of `recipe` on fold 1, seed 0, into `work`; the fold's UA, epoch times and the wall time."""
    sets = " ".join(f"--set {o}" for o in [f"frontend_conf.path={checkpoint}", *overrides])
    cmd = [os.path.join(REPO, "egs", recipe, "run.sh"), "--corpus-dir", corpus_dir,
           "--data-dir", os.path.join(work, "data"), "--dump-dir", os.path.join(work, "dump", "fbank"),
           "--exp-root", os.path.join(work, "exp"), "--train-config", os.path.abspath(config_file),
           "--tag", "gpu_check", "--folds", "1", "--seeds", "0", "--ngpu", str(ngpu), "--classic-configs", "",
           "--train-args", sets, *extra]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"gpu_check: the recipe failed:\n{proc.stderr[-4000:]}")
    wall = time.perf_counter() - started
    exp = os.path.join(work, "exp", "gpu_check")
    with open(os.path.join(exp, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(exp, "seed0", "log", "train.1.log")) as f:
        epochs = [float(s) for s in re.findall(r"epoch \d+: .*\| ([0-9.]+)s$", f.read(), re.M)]
    return {"ua": results["runs"]["0"]["1"]["ua"], "epoch_s": epochs, "wall_s": wall,
            "test_utts": results["runs"]["0"]["1"]["num_utts"]}


def replace_block(path: str, markers: tuple[str, str], lines: list[str]) -> None:
    """Replace the lines between the marker lines of `path` (kept) with `lines`; a link's target is rewritten
    (a link is kept as a link)."""
    from ser.atomic import write_text

    path = os.path.realpath(path)
    with open(path) as f:
        text = f.read()
    begin, end = (re.escape(m) for m in markers)
    found = re.search(rf"^([ \t]*{begin}[^\n]*\n)(.*?)^([ \t]*{end}[^\n]*\n)", text, re.M | re.S)
    if not found:
        raise SystemExit(f"gpu_check: {path} has no block between {markers[0]!r} and {markers[1]!r} lines")
    write_text(path, text[:found.start(2)] + "".join(line + "\n" for line in lines) + text[found.end(2):])


def report_lines(scale: str, device_name: str, bench: dict, recipe: dict, batch: int, seconds: float) -> list[str]:
    def memory(mode):
        peak = bench[mode]["peak_gib"]
        return "n/a (CPU)" if peak is None else f"{peak:.1f} GiB"

    lines = [f"gpu_check ({scale}) on {device_name}, {time.strftime('%Y-%m-%d')}:"]
    for mode in ("fp32", "bf16"):
        b = bench[mode]
        lines.append(f"- {mode}: {b['step_s']:.3f} s per step of {batch} x {seconds:g} s, peak memory "
                     f"{memory(mode)}, loader wait {b['loader_wait_s']:.3f} s per step")
    epochs = ", ".join(f"{s:.1f}" for s in recipe["epoch_s"])
    lines.append(f"- recipe, fold 1, {len(recipe['epoch_s'])} epochs (random-init weights, so the UA means nothing): "
                 f"epochs {epochs} s; {recipe['test_utts']} test utterances decoded; UA {recipe['ua']:.2f}; "
                 f"stages 0-4 in {recipe['wall_s']:.0f} s")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="CPU, tiny model, synth corpus: the script end to end")
    p.add_argument("--corpus-dir", default="", help="RAVDESS (not with --tiny)")
    p.add_argument("--work-dir", required=True, help="checkpoint, data, dump and exp of the check")
    p.add_argument("--config-file", default=os.path.join(REPO, "egs", "TEMPLATE", "conf", "train_wavlm.yaml"),
                   help="the training config: read for the model, its marked header block rewritten")
    p.add_argument("--readme", default=os.path.join(REPO, "docs", "gpu.md"),
                   help="the page whose marked block is rewritten")
    args = p.parse_args(argv)

    import torch

    import ser.components  # noqa: F401 (fills the registries the config is resolved by)

    work = os.path.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    checkpoint = os.path.join(work, "wavlm_checkpoint")
    if args.tiny:
        from ser.corpora.synth import generate_synth_corpus
        from ser.models.ssl import build_tiny_ssl

        corpus = os.path.join(work, "corpus")
        if not os.path.isdir(corpus):
            generate_synth_corpus(corpus, utts_per_class=2)
        if not os.path.isdir(checkpoint):
            build_tiny_ssl(checkpoint, "wavlm")
        recipe, device, ngpu, batch, seconds, steps, warmup = "synth", "cpu", 0, 4, 1.0, 3, 1
        overrides = ["max_epoch=2", "batch_size=4", "crop_seconds=1.0", "encoder_conf.d_model=32",
                     "encoder_conf.num_heads=4", "encoder_conf.embed_dim=16", "amp=bf16"]
        device_name, extra = "CPU (tiny scale: a tiny WavLM, the synth corpus)", ["--nj", "2"]
        encoder_overrides = {"d_model": 32, "num_heads": 4, "embed_dim": 16}
    else:
        if not args.corpus_dir:
            raise SystemExit("gpu_check: --corpus-dir (RAVDESS) is required without --tiny")
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no GPU visible (use --tiny to run it on the CPU)")
        corpus = args.corpus_dir
        save_random_wavlm_large(checkpoint)
        recipe, device, ngpu, batch, seconds, steps, warmup = "ravdess", "cuda", 1, 16, 6.0, 10, 3
        overrides, extra = ["max_epoch=2", "amp=bf16"], ["--nj", "8"]
        device_name, encoder_overrides = torch.cuda.get_device_name(0), {}

    result = {"recipe": run_recipe(recipe, work, corpus, args.config_file, checkpoint, overrides, ngpu, extra)}
    train_scp = os.path.join(work, "dump", "fbank", "fold1", "train", "wav.scp")
    result["benchmark"] = benchmark(checkpoint, args.config_file, encoder_overrides,
                                    train_scp if os.path.isfile(train_scp) else None, batch, seconds, steps, warmup,
                                    device)
    lines = report_lines("tiny" if args.tiny else "WavLM Large", device_name, result["benchmark"],
                         result["recipe"], batch, seconds)
    replace_block(args.config_file, YAML_MARKERS, ["# " + line for line in lines])
    replace_block(args.readme, README_MARKERS, ["  " + line for line in lines])  # inside a list item
    with open(os.path.join(work, "gpu_check.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
