"""The logic of the stage script egs/TEMPLATE/ser.sh, which keeps the list of stages and the commands each runs.

    python -m ser.bin.recipe setup     (ser.sh's options in the environment: stage, stop_stage, ... template_dir)
        checks ser.sh's options and resolves its experiments (the training config, then the classic references:
        tag, trainer options, system, seeds, what each reads); prints shell assignments for ser.sh to eval
    python -m ser.bin.recipe corpus NAME PATH
        stage 0's check that the corpus (a directory, or the manifest file) exists; else says where it is obtained
    python -m ser.bin.recipe folds DATA_DIR FOLDS [--speaker-norm none|cmvn]
        the folds to run: FOLDS, each checked against DATA_DIR/protocol.json, or all of its folds; with a speaker
        normalisation, warns where the corpus's speakers cover the classes poorly (ser.speaker_norm.class_coverage)
    python -m ser.bin.recipe todo STEP [--exp-dir ... --folds ...]
        what of a stage step is not up to date with its inputs (stdout: the folds, comma-separated, or the step's
        name; nothing when all is), saying "nothing to do" of the rest on stderr
    python -m ser.bin.recipe done STEP [...]
        records the stamps of what the step just made (the folds given)
    python -m ser.bin.recipe gather NAME OUT DEST [--tables --data-dir DATA_DIR]
        stage 1's jobs' parts OUT/feats.<n>.scp (and OUT/utt2num_frames.<n>) -> DEST/feats.scp (--tables: and
        utt2num_frames, and DATA_DIR/all's tables), sorted; warns of the wavs the jobs read cut short (their logs
        OUT/log/NAME.<n>.log)
    python -m ser.bin.recipe running PID
        exit status 0 if process PID runs, 1 if it has ended (a zombie too: ser.jobs.process_start)
    python -m ser.bin.recipe lock-holders LOCK_FILE
        the processes, other than the one asking and its ancestors, that hold LOCK_FILE open: "pid N (command
        line)", comma-separated (utils/lock_workspace.sh names a dead run's jobs that still hold its workspace)

STEP: fbank, functionals (stage 1), train (2), decode (3), score (4), final (5). Each step's stamp and inputs are
named once, in ``stamp_of``: the paths and their order are those ser.sh has always used, so the stamps of earlier
runs stay valid (ser.stamps digests the input paths' names with their content).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import re
import shlex
import sys
import time

from ser.cli import error_text
from ser.datadir import read_table
from ser.speaker_norm import class_coverage, coverage_warning
from ser.stamps import STAGE0_DONE, is_up_to_date, write_stamp

STEPS = ("fbank", "functionals", "train", "decode", "score", "final")
FOLD_STEPS = ("train", "decode")  # one stamp per fold (and seed); the others have one
STAGE_OF = {"fbank": 1, "functionals": 1, "train": 2, "decode": 3, "score": 4, "final": 5}
OPENSMILE = "tools/install.sh --opensmile"
LICENCE = "audEERING's research licence, non-commercial use"


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} (recipe.py) {message}", file=sys.stderr, flush=True)


def fail(message: str) -> None:
    log(f"error: {message}")
    sys.exit(1)


def _found(exp_dir: str, path: str) -> list[str]:
    """The files <exp_dir>/seed*/fold*/<path>, sorted (LC_ALL=C, as ls sorted them in ser.sh)."""
    return sorted(glob.glob(f"{glob.escape(exp_dir)}/seed*/fold*/{path}"))


def _predictions(exp_dir: str) -> list[str]:
    # The validation predictions judge the seed ensemble: decoded later, they make the scores out of date too.
    return _found(exp_dir, "decode_test/predictions") + _found(exp_dir, "decode_valid/predictions")


def stamp_of(step: str, a, fold: str = "") -> tuple[str, list[str], str]:
    """(stamp, inputs, extra: the step's options that are not files) of a step, or of one fold of it."""
    run, feats = f"{a.exp_dir}/seed{a.seed}/fold{fold}", f"{a.feats_dir}/fold{fold}"
    if step == "fbank":
        return f"{a.dump_dir}/.stage1.done", [a.data_dir, a.fbank_conf], "nj-independent"
    if step == "functionals":
        return f"{a.out_dir}/.stage1.done", [f"{a.data_dir}/all"], a.feature_set
    if step == "train":
        scp = [a.functionals_scp] if a.functionals_scp else []
        return f"{run}/.stage2.done", [a.config, f"{feats}/train", f"{feats}/valid", *scp], a.extra
    if step == "decode":
        return f"{run}/decode_{a.set}/.stage3.done", [f"{run}/{a.model_file}", f"{feats}/{a.set}"], ""
    if step == "score":
        return f"{a.exp_dir}/.stage4.done", [f"{a.data_dir}/protocol.json", *_predictions(a.exp_dir)], ""
    return f"{a.exp_dir}/final/.stage5.done", [a.config, f"{a.feats_dir}/all", *_found(a.exp_dir, "selection.json")], \
        a.extra


def _current(step: str, a, fold: str = "") -> bool:
    stamp, inputs, extra = stamp_of(step, a, fold)
    try:
        return is_up_to_date(stamp, inputs, extra)
    except FileNotFoundError:  # an input is missing: not up to date
        return False


def todo(step: str, a) -> list[str]:
    """What of the step is to be (re)made, saying so of the rest; stops with an error where an input is missing."""
    stage = f"stage {STAGE_OF[step]}:"
    if step == "fbank":
        if not os.path.isfile(os.path.join(a.data_dir, STAGE0_DONE)):
            fail(f"{a.data_dir} is not prepared; run stage 0 first")
        if _current(step, a):
            log(f"{stage} {a.dump_dir} is up to date with {a.data_dir} and {a.fbank_conf}; nothing to do")
            return []
    elif step == "functionals":
        if _current(step, a):
            log(f"{stage} {a.out_dir} is up to date with {a.data_dir}/all; nothing to do")
            return []
    elif step in FOLD_STEPS:
        folds = []
        for fold in a.folds.replace(",", " ").split():
            run = f"{a.exp_dir}/seed{a.seed}/fold{fold}"
            if step == "train":
                finished = os.path.isfile(f"{run}/selection.json")
                if finished and _current(step, a, fold):
                    log(f"{stage} {run} is trained and up to date; nothing to do")
                    continue
                if finished:
                    log(f"WARNING: {run} holds a finished run of other settings (config, --train-args or data): it "
                        f"is moved aside to {run}.bak<N> and retrained (--tag NAME keeps both)")
            else:
                if not os.path.isfile(f"{run}/{a.model_file}"):
                    fail(f"{run} has no trained model; run stage 2 first")
                if _current(step, a, fold):
                    log(f"{stage} {run}/decode_{a.set} is up to date; nothing to do")
                    continue
                _remove(stamp_of(step, a, fold)[0])
            folds.append(fold)
        return folds
    elif step == "score":
        if not _found(a.exp_dir, "decode_test/predictions"):
            fail(f"{a.exp_dir} has no test predictions; run stage 3 first")
        if os.path.isfile(f"{a.exp_dir}/results.json") and _current(step, a):
            log(f"{stage} {a.exp_dir}/results.json is up to date; nothing to do")
            return []
    else:
        if a.system != "neural":
            log(f"stage 5: {os.path.basename(a.exp_dir)} is a classic reference; the final model is trained for the "
                "neural experiment only")
            return []
        if not _found(a.exp_dir, "selection.json"):
            fail(f"{a.exp_dir} has no trained folds; run stage 2 first")
        if _current(step, a):
            log(f"{stage} {a.exp_dir}/final is up to date; nothing to do")
            return []
        _remove(stamp_of(step, a)[0])
    return [step]


def _remove(path: str) -> None:
    if os.path.lexists(path):
        os.remove(path)


def done(step: str, a) -> None:
    for fold in a.folds.replace(",", " ").split() if step in FOLD_STEPS else [""]:
        write_stamp(*stamp_of(step, a, fold))


TABLES = ("wav.scp", "utt2spk", "spk2utt", "utt2emo", "spk2gender", "utt2dur", "classes.txt")


def gather(name: str, out: str, dest: str, tables: bool, data_dir: str) -> None:
    for table in ("feats", "utt2num_frames"):
        pattern = f"{glob.escape(out)}/feats.*.scp" if table == "feats" else f"{glob.escape(out)}/utt2num_frames.*"
        parts, lines = glob.glob(pattern), []
        for part in parts:
            with open(part, "rb") as f:
                lines += [line if line.endswith(b"\n") else line + b"\n" for line in f]
        if table == "feats" or tables:
            with open(f"{dest}/{'feats.scp' if table == 'feats' else table}", "wb") as f:
                f.writelines(sorted(lines))  # as sort did under LC_ALL=C (path.sh)
        for part in parts:
            os.remove(part)
    if tables:
        import shutil

        for table in TABLES:
            if os.path.isfile(f"{data_dir}/all/{table}"):
                shutil.copyfile(f"{data_dir}/all/{table}", f"{dest}/{table}")
    count = 0
    for job_log in glob.glob(f"{glob.escape(out)}/log/{glob.escape(name)}.*.log"):
        with open(job_log, errors="replace") as f:
            count += sum(1 for line in f if re.search(": warning: .* is cut short", line))
    if count:  # --truncated-audio warn
        log(f"stage 1: WARNING: {count} wav(s) were cut short and read as far as they go: see {out}/log/{name}.*.log")


def _parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])  # the field after the (name), which may hold spaces


def lock_holders(path: str) -> list[str]:
    """The processes that hold ``path`` open (Linux /proc; those of other users are not seen), leaving out this
    process and its ancestors (the run asking, which holds it open too): "pid N (command line)"."""
    target = os.path.realpath(path)
    asking, pid = set(), os.getpid()
    while pid > 1:
        asking.add(pid)
        try:
            pid = _parent_pid(pid)
        except (OSError, ValueError, IndexError):
            break
    holders = []
    for entry in sorted((e for e in os.listdir("/proc") if e.isdigit()), key=int):
        if int(entry) in asking:
            continue
        try:
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == target for fd in os.listdir(f"/proc/{entry}/fd")):
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    command = f.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
                holders.append(f"pid {entry} ({command})")
        except OSError:  # ended meanwhile, or not ours
            pass
    return holders


def corpus(name: str, path: str) -> None:
    """Stage 0's check of the corpus: a manifest file, or a corpus directory (else where it is obtained)."""
    if name == "manifest" and not os.path.isfile(path):
        fail(f"manifest {path} does not exist")
    if name != "manifest" and not os.path.isdir(path):
        from ser.corpora import corpus_module  # the corpus module only on this error path: recipe starts light

        module = corpus_module(name)
        fail(f"corpus directory {path} does not exist (set --corpus-dir); {module.CORPUS} is obtained from "
             f"{getattr(module, 'OBTAIN', '(its module does not say)')}")


def folds(data_dir: str, given: str, speaker_norm: str = "none") -> str:
    """The folds to run: those given (each one of the data dir's), else all of protocol.json's. With a speaker
    normalisation, a warning where the corpus's speakers cover the classes poorly (stage 0's record of it)."""
    try:
        with open(os.path.join(data_dir, "protocol.json")) as f:
            protocol = json.load(f)
        all_folds = " ".join(sorted(protocol["folds"], key=int))
    except (OSError, ValueError, KeyError, TypeError):
        protocol, all_folds = {}, ""
    for fold in given.split():
        if all_folds and fold not in all_folds.split():
            fail(f"--folds: {data_dir} has no fold {fold} (its folds: {all_folds})")
    if speaker_norm != "none" and protocol:
        coverage = protocol.get("speaker_class_coverage") or _coverage_of(data_dir, protocol["classes"])
        warning = coverage_warning(coverage, protocol.get("corpus", data_dir))
        if warning:
            log(warning)
    return given or all_folds


def _coverage_of(data_dir: str, classes: list[str]) -> dict:
    """Class coverage from data_dir/all (a protocol.json written before stage 0 recorded it)."""
    utt2spk = read_table(os.path.join(data_dir, "all", "utt2spk"), min_fields=2, max_fields=2)
    utt2emo = read_table(os.path.join(data_dir, "all", "utt2emo"), min_fields=2, max_fields=2)
    return class_coverage(((utt2spk[utt], utt2emo[utt]) for utt in utt2emo if utt in utt2spk), classes)


# setup: ser.sh's options, checked, and its experiments.
SETUP_OPTIONS = ("corpus", "corpus_dir", "corpus_manifest", "stage", "stop_stage", "folds", "seeds", "data_dir",
                 "dump_dir",
                 "functionals_dir", "ssl_cache_dir", "truncated_audio", "fbank_conf", "speaker_norm", "classic_configs",
                 "train_args", "train_config", "tag", "print_config", "template_dir", "ngpu", "train_jobs")

def _template_file(path: str, template_dir: str) -> str:
    """A config path: as given when it exists, else the template's file of that relative path (conf/train.yaml)."""
    if os.path.exists(path) or path.startswith("/") or not os.path.exists(f"{template_dir}/{path}"):
        return path
    return f"{template_dir}/{path}"


def _stem(path: str) -> str:
    name = os.path.basename(path)
    return name[:-5] if name.endswith(".yaml") and name != ".yaml" else name


def _classic_list(value: str) -> list[str]:
    """--classic-configs: comma- or newline-separated when the value holds either (entries trimmed), else
    separated by spaces."""
    if "," in value or "\n" in value:
        entries = (entry.strip(" \t\n\v\f\r") for entry in re.split("[,\n]", value))
    else:
        entries = re.split("[ \t]+", value)
    return [entry for entry in entries if entry]


def _importable(*modules: str) -> bool:
    """Whether every module is installed, found without importing it (opensmile and scikit-learn take seconds)."""
    return all(importlib.util.find_spec(module) is not None for module in modules)


def _shell(name: str, value) -> str:
    if isinstance(value, list):
        return f"{name}=({' '.join(shlex.quote(str(v)) for v in value)})"
    return f"{name}={shlex.quote(str(value))}"


def setup(a) -> list[str]:
    """Shell assignments: the options normalised, and per experiment i exp_<field>[i] and the array exp_argv_<i>."""
    if a.corpus_manifest:  # a user's own data: the manifest is the corpus
        a.corpus, a.corpus_dir = "manifest", a.corpus_manifest
    if not a.corpus:
        fail("--corpus is not set (the recipe's run.sh sets it, or give --corpus-manifest FILE.csv)")
    for option in ("stage", "stop_stage"):
        value = getattr(a, option)
        if not re.fullmatch("[0-5]", value):
            fail(f"--{option.replace('_', '-')} must be a stage from 0 to 5, got '{value}'")
    if a.stage == "5" and a.stop_stage == "4":
        a.stop_stage = "5"  # --stage 5 alone: the optional stage, asked for
    if int(a.stage) > int(a.stop_stage):
        fail(f"--stage {a.stage} is after --stop-stage {a.stop_stage}: nothing would run")
    if int(a.stage) >= 1 and not os.path.isfile(os.path.join(a.data_dir, STAGE0_DONE)):
        # checked before the workspace is locked: a run that cannot start creates nothing
        fail(f"{a.data_dir} is not prepared; run stage 0 first")
    a.folds = a.folds.replace(",", " ")  # "1,3" and "1 3" alike
    for option in ("folds", "seeds"):
        value = getattr(a, option)
        if not all(re.fullmatch("[0-9]+", word) for word in value.split()):
            fail(f"--{option} takes numbers separated by spaces, got '{value}'")
    base = a.dump_dir[:-len("/fbank")] if a.dump_dir.endswith("/fbank") else a.dump_dir
    a.functionals_dir = a.functionals_dir or f"{base}/functionals"
    a.ssl_cache_dir = a.ssl_cache_dir or f"{base}/ssl"
    if a.truncated_audio not in ("error", "warn"):
        fail(f"--truncated-audio must be error or warn, got '{a.truncated_audio}'")
    a.fbank_conf = _template_file(a.fbank_conf, a.template_dir)
    if a.speaker_norm not in ("none", "cmvn"):
        fail(f"--speaker-norm must be none or cmvn, got '{a.speaker_norm}'")
    norm = a.speaker_norm != "none"
    tag_suffix, norm_args = (f"_spk{a.speaker_norm}", f"--set speaker_norm={a.speaker_norm}") if norm else ("", "")
    classic = [_template_file(path, a.template_dir) for path in _classic_list(a.classic_configs)]
    try:  # --train-args as words, split as the shell splits them (quotes group, nothing runs)
        train_words = shlex.split(a.train_args)
    except ValueError as error:  # unbalanced quotes
        sys.exit(f"error: --train-args: cannot split {a.train_args!r} into words: {error}")

    # The experiments: the training config, then the classic references. Without openSMILE (an optional extra),
    # the default config is the fbank-only one and the classic references are skipped, said in one line.
    have_opensmile = _importable("opensmile", "sklearn")
    if not a.train_config:
        a.train_config = "conf/train_fusion.yaml"
        if not have_opensmile:
            a.train_config = "conf/train.yaml"
            log("note: opensmile or scikit-learn is not installed: running the fbank-only model (conf/train.yaml) "
                f"instead of the default fused one, and no classic reference; {OPENSMILE} installs them ({LICENCE})")
            classic = []
    a.train_config = _template_file(a.train_config, a.template_dir)
    experiments = [a.train_config]
    a.tag = a.tag or _stem(a.train_config)
    if classic:
        if have_opensmile:
            experiments += classic
        else:
            log(f"note: opensmile or scikit-learn is not installed ({OPENSMILE}; {LICENCE}): the classic references "
                "are skipped")
    # --train-args and --tag belong to the training config only; args (one string) is what the stamps record.
    out = [_shell(name, getattr(a, name)) for name in ("corpus", "corpus_dir", "stop_stage", "folds", "fbank_conf",
                                                       "functionals_dir", "ssl_cache_dir", "train_config", "tag")]
    fields = {name: [] for name in ("config", "tag", "args", "system", "seeds", "functionals", "caches_frames",
                                    "model_file")}
    argvs = []
    for i, config in enumerate(experiments):
        train = config == a.train_config
        argv = (train_words if train else []) + (["--set", f"speaker_norm={a.speaker_norm}"] if norm else [])
        argvs.append(argv)
        out.append(_shell(f"exp_argv_{i}", argv))
        fields["config"].append(config)
        fields["tag"].append((a.tag if train else _stem(config)) + tag_suffix)
        fields["args"].append(f"{a.train_args} {norm_args}" if train else norm_args)
    if a.print_config == "true":  # ser.sh prints the resolved training config and nothing else
        return out
    import ser.components  # noqa: F401 (fills the registries the configs are resolved by; torch, so only here)
    from ser.bin.config_info import config_fields
    from ser.config import ConfigError, load_any_config, parse_overrides

    for i, config in enumerate(experiments):
        if not os.path.isfile(config):
            fail(f"config {config} does not exist")
        parser = argparse.ArgumentParser(prog="config_info.py")
        parser.add_argument("--set", action="append", default=[])
        try:
            overrides = parse_overrides(parser.parse_args(argvs[i]).set)
            info = config_fields(load_any_config(config, overrides))
        except (ConfigError, SystemExit) as e:
            if isinstance(e, ConfigError):
                print(f"error: {error_text(e)}", file=sys.stderr)
            fail(f"bad config {config} (see above)")
        for name in ("system", "functionals", "caches_frames", "model_file"):
            fields[name].append(str(info[name]))
        # The frame cache is made when a stage that reads it runs (2, 3 or 5).
        stages = range(int(a.stage), int(a.stop_stage) + 1)
        if not any(stage in stages for stage in (2, 3, 5)):
            fields["caches_frames"][-1] = "false"
        if i == 0:
            train_seeds = " ".join(a.seeds.split()) or str(info["seed"])
        # A classic reference is deterministic: it runs with its config's seed only.
        fields["seeds"].append(train_seeds if info["system"] == "neural" else str(info["seed"]))
    if fields["functionals"][0] != "none" and not _importable("opensmile"):
        fail(f"{a.train_config} reads openSMILE functionals, and opensmile is not installed: run {OPENSMILE} "
             f"(audEERING's research licence, non-commercial use only)")
    out += [_shell(f"exp_{name}", values) for name, values in fields.items()]
    # The functionals each reads (stage 1's output), or "".
    scps = ["" if f == "none" else f"{a.functionals_dir}/{f}/feats.scp" for f in fields["functionals"]]
    out.append(_shell("exp_scp", scps))
    # With several seeds the validation sets are decoded too: the seed ensemble of stage 4 is judged on them.
    out.append(_shell("exp_sets", ["valid test" if len(seeds.split()) > 1 else "test" for seeds in fields["seeds"]]))
    # Stage 2: threads per training job; more than one GPU per fold: data-parallel, one process per GPU (torchrun).
    out.append(_shell("threads", max(1, len(os.sched_getaffinity(0)) // max(1, int(a.train_jobs)))))
    torchrun = f"python -m torch.distributed.run --standalone --nproc_per_node {a.ngpu} "
    out.append(_shell("trainer", (torchrun if int(a.ngpu) > 1 else "python ") + "-m ser.bin.train"))
    # Stage 1's openSMILE feature sets: those the experiments read.
    out.append(_shell("feature_sets", sorted(set(fields["functionals"]) - {"none"})))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="ser.sh's options from the environment: " + " ".join(SETUP_OPTIONS))
    c = sub.add_parser("corpus")
    c.add_argument("name")
    c.add_argument("path")
    f = sub.add_parser("folds")
    f.add_argument("data_dir")
    f.add_argument("folds")
    f.add_argument("--speaker-norm", default="none", help="ser.sh's --speaker-norm: warn where it cannot work")
    for command in ("todo", "done"):
        t = sub.add_parser(command)
        t.add_argument("step", choices=STEPS)
        for name in ("exp_dir", "seed", "folds", "feats_dir", "dump_dir", "data_dir", "fbank_conf", "out_dir",
                     "feature_set", "config", "extra", "functionals_scp", "model_file", "set", "system"):
            t.add_argument(f"--{name.replace('_', '-')}", default="")
    g = sub.add_parser("gather")
    for name in ("name", "out", "dest"):
        g.add_argument(name)
    g.add_argument("--tables", action="store_true")
    g.add_argument("--data-dir", default="")
    sub.add_parser("lock-holders").add_argument("lock_file")
    sub.add_parser("running").add_argument("pid", type=int)
    a = p.parse_args(argv)
    if a.command == "setup":
        a = argparse.Namespace(**{name: os.environ.get(name, "") for name in SETUP_OPTIONS})
        print("\n".join(setup(a)))
    elif a.command == "gather":
        gather(a.name, a.out, a.dest, a.tables, a.data_dir)
    elif a.command == "corpus":
        corpus(a.name, a.path)
    elif a.command == "folds":
        print(folds(a.data_dir, a.folds, a.speaker_norm))
    elif a.command == "lock-holders":
        print(", ".join(lock_holders(a.lock_file)))
    elif a.command == "running":
        from ser.jobs import process_start

        sys.exit(0 if process_start(a.pid) is not None else 1)
    elif a.command == "todo":
        print(",".join(todo(a.step, a)))
    else:
        try:
            done(a.step, a)
        except OSError as e:  # e.g. a stage's output dir that is not writable
            sys.exit(f"error: {error_text(e)}")


if __name__ == "__main__":
    main()
