#!/usr/bin/env bash
# ser.sh: the stages of every ser recipe, written once. A recipe's run.sh sets its corpus and calls this script.
#
#   0  data preparation: corpus -> data/all and data/fold<k>/{train,valid,test} (Kaldi data dirs), validated
#   1  features: fbank of data/all in --nj jobs -> dump/fbank/; per-fold copies; global CMVN of each training fold;
#      openSMILE functionals of data/all -> dump/functionals/<set>/ for every experiment that reads them
#   2  training: one job per fold and seed -> exp/<tag>/seed<s>/fold<k>/ (resumes from the last checkpoint); the
#      classic references (openSMILE functionals + logistic regression) train beside the neural experiment. A
#      config with frontend ssl_cached first has its frozen encoder's frames of data/all cached once ->
#      dump/ssl/<key>/ (ser.bin.cache_ssl; up to date: nothing to do), which stages 2, 3 and 5 then read
#   3  inference on each fold's test set -> exp/<tag>/seed<s>/fold<k>/decode_test/{predictions,posteriors}; with
#      several seeds also on the validation sets (decode_valid/), which judge the seed ensemble
#   4  scoring: UA, WA, macro-F1, confusion per fold; mean +- std -> exp/<tag>/results.json and RESULTS.md; with
#      several seeds also their ensemble (posteriors averaged per fold), reported apart
#   5  (optional: --stage 5 --stop-stage 5) one model on every speaker for the epoch count the folds chose ->
#      exp/<tag>/final/ (for use; its estimate is the folds' score)
#
# Each stage checks whether its outputs are up to date with its inputs; if so it does nothing and says so.
# Options (defaults in brackets; --name value or --name=value):
#   --stage 0 --stop-stage 4      stages to run
#   --folds "1 3"                 only these folds (stages 2-4; "1,3" also works) [all]
#   --seeds "0 1 2"               train/score each seed; scores aggregate over seeds [the config's seed]
#   --nj 4                        parallel feature jobs
#   --train-jobs N                folds trained at once by the local runner [2]
#   --ngpu 0                      GPUs per training job (0 = CPU; > 1 = data-parallel with torchrun)
#   --train-config conf/train.yaml  --tag NAME  [conf/train_fusion.yaml, the best system measured (fbank + fused
#                                 ComParE functionals); conf/train.yaml (fbank only) when openSMILE is not installed]
#                                 [tag: the config's file name without .yaml]. A conf/ path the recipe lacks is the
#                                 template's (egs/TEMPLATE/conf/...)
#   --train-args "--set max_epoch=5"  extra trainer options, split into words as the shell splits them (quotes
#                                 group and nothing runs): --train-args "--set 'frontend_conf.path=/my models/wavlm'"
#   --classic-configs "conf/classic/egemaps.yaml conf/classic/compare.yaml"  classic references run beside the
#                                 experiment, each its own tag ("" = none; skipped with a note without opensmile).
#                                 Separated by spaces, or by commas or newlines when the value holds either; then a
#                                 path may hold spaces: "my confs/egemaps.yaml,conf/classic/compare.yaml", or one
#                                 path with a comma after it: "my confs/egemaps.yaml,"
#   --truncated-audio error|warn  a wav cut short (its header promises more samples than the file holds) in stage 1:
#                                 error stops naming it; warn reads what it holds, names it in the job log, and the
#                                 stage counts them [error]
#   --speaker-norm none|cmvn      protocol: per-speaker normalisation of every experiment's inputs (a transductive
#                                 protocol; tags get the suffix _spkcmvn) [none]
#   --corpus-dir DIR --class-set NAME --strict-counts true|false  (corpus recipes)
#   --corpus-manifest FILE.csv    your own data: columns path,label,speaker [,fold,gender,start,end] (no corpus
#                                 module needed; see README "Your own data")
#   --fold-scheme default|kfold|loso|emobox  default: the corpus's own rule; kfold: --num-folds speaker-grouped,
#                                 class-stratified folds; loso: leave one speaker out; emobox where the corpus has it
#   --num-folds 5                 folds of --fold-scheme kfold (and of a manifest without a fold column)
#   --download-dir DIR            stage 0 first fetches the corpus into DIR (checksum, resumed when cut off) where its
#                                 licence allows (ser.bin.download); other corpora say where they are obtained
#   --valid-fraction 0.1 --valid-mode utt|spk --data-seed 0        (validation split from training-fold speakers)
#   --print-config true           print the resolved training config (every default, --train-args applied); exit
set -euo pipefail

log() { echo "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*" >&2; }

# Set by the recipe's run.sh
corpus=""
corpus_dir=""
class_set=""
strict_counts=true
# Stages and selection
stage=0
stop_stage=4
folds=""
seeds=""
nj=4
train_jobs=2
ngpu=0
train_config=""      # [conf/train_fusion.yaml; conf/train.yaml without openSMILE]
fbank_conf=conf/fbank.conf
tag=""
train_args=""
classic_configs="conf/classic/egemaps.yaml conf/classic/compare.yaml"
speaker_norm=none
truncated_audio=error
valid_fraction=0.1
valid_mode=utt
fold_scheme=default
num_folds=5
corpus_manifest=""
download_dir=""
data_seed=0
print_config=false
data_dir=data
dump_dir=dump/fbank
functionals_dir=""   # [beside the fbank dump dir: dump/functionals]
ssl_cache_dir=""     # [beside the fbank dump dir: dump/ssl]
exp_root=exp

# Recorded with the results, each word quoted so that it re-runs as written; not an option.
readonly command_line="$(printf '%q ' "$0" "$@" | sed 's/ $//')"
# The template dir (this script's) serves every recipe: a recipe's own path.sh, cmd.sh and conf/<file> win, and
# what it lacks is taken from here, so a recipe dir needs no links.
readonly template_dir="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
. "$template_dir/../../utils/parse_options.sh"
[ $# -eq 0 ] || { log "error: unexpected arguments: $*"; exit 1; }
if [ -n "$corpus_manifest" ]; then  # a user's own data: the manifest is the corpus
  corpus=manifest
  corpus_dir=$corpus_manifest
fi
[ -n "$corpus" ] || { log "error: --corpus is not set (the recipe's run.sh sets it, or give --corpus-manifest FILE.csv)"; exit 1; }
# The stage range, folds and seeds are checked before any work.
for option in stage stop_stage; do
  [[ "${!option}" =~ ^[0-5]$ ]] || { log "error: --${option//_/-} must be a stage from 0 to 5, got '${!option}'"; exit 1; }
done
[ "$stage" != 5 ] || [ "$stop_stage" != 4 ] || stop_stage=5  # --stage 5 alone: the optional stage, asked for
[ "$stage" -le "$stop_stage" ] || { log "error: --stage $stage is after --stop-stage $stop_stage: nothing would run"; exit 1; }
folds=${folds//,/ }  # "1,3" and "1 3" alike
for option in folds seeds; do
  for value in ${!option}; do
    [[ "$value" =~ ^[0-9]+$ ]] || { log "error: --$option takes numbers separated by spaces, got '${!option}'"; exit 1; }
  done
done
[ -n "$functionals_dir" ] || functionals_dir=${dump_dir%/fbank}/functionals
[ -n "$ssl_cache_dir" ] || ssl_cache_dir=${dump_dir%/fbank}/ssl
[[ "$truncated_audio" =~ ^(error|warn)$ ]] || { log "error: --truncated-audio must be error or warn, got '$truncated_audio'"; exit 1; }

# shellcheck disable=SC1091
if [ -f path.sh ]; then . ./path.sh; else . "$template_dir/path.sh"; fi
# shellcheck disable=SC1091
if [ -f cmd.sh ]; then . ./cmd.sh; else . "$template_dir/cmd.sh"; fi
# A config path: as given when it exists, else the template's file of that relative path (conf/train.yaml).
template_file() {
  if [ -e "$1" ] || [[ "$1" = /* ]] || [ ! -e "$template_dir/$1" ]; then echo "$1"; else echo "$template_dir/$1"; fi
}
fbank_conf=$(template_file "$fbank_conf")

norm_args=""
case "$speaker_norm" in
  none) tag_suffix="" ;;
  cmvn) tag_suffix=_spk$speaker_norm; norm_args="--set speaker_norm=$speaker_norm" ;;
  *) log "error: --speaker-norm must be none or cmvn, got '$speaker_norm'"; exit 1 ;;
esac
stamp() { python -m ser.bin.stamp "$@"; }
# Stage 1's count of the wavs its jobs read cut short (--truncated-audio warn), from the job logs given.
report_cut_short() {
  local count
  count=$(cat "$@" | grep -c ': warning: .* is cut short' || true)
  [ "$count" -eq 0 ] || log "stage 1: WARNING: $count wav(s) were cut short and read as far as they go: see ${1%.*.log}.*.log"
}
config_info() { python -m ser.bin.config_info "$@"; }

# --classic-configs as a list: comma- or newline-separated when the value holds either (entries trimmed), else
# space-separated.
classic_list=()
if [[ $classic_configs == *[,$'\n']* ]]; then
  while IFS= read -r entry; do
    entry=${entry#"${entry%%[![:space:]]*}"}
    entry=${entry%"${entry##*[![:space:]]}"}
    [ -z "$entry" ] || classic_list+=("$entry")
  done < <(tr ',' '\n' <<< "$classic_configs")
else
  read -ra classic_list <<< "$classic_configs"
fi
for i in "${!classic_list[@]}"; do classic_list[i]=$(template_file "${classic_list[i]}"); done
# --train-args as words, split as the shell splits them (quotes group, nothing runs); one NUL-terminated word each.
shell_words() {
  python -c 'import shlex, sys
try:
    sys.stdout.write("".join(word + "\0" for word in shlex.split(sys.argv[1])))
except ValueError as error:  # unbalanced quotes
    sys.exit(f"error: --train-args: cannot split {sys.argv[1]!r} into words: {error}")' "$1"
}
shell_words "$train_args" >/dev/null || exit 1
mapfile -d '' -t train_argv < <(shell_words "$train_args")

# The experiments of this run: the training config, then the classic references. Without openSMILE (an optional
# extra), the default config is the fbank-only one and the classic references are skipped, said in one line.
have_opensmile=true
python -c "import opensmile, sklearn" 2>/dev/null || have_opensmile=false
if [ -z "$train_config" ]; then
  train_config=conf/train_fusion.yaml
  if [ "$have_opensmile" = false ]; then
    train_config=conf/train.yaml
    log "note: opensmile or scikit-learn is not installed: running the fbank-only model (conf/train.yaml) instead of the default fused one, and no classic reference; tools/install.sh --opensmile installs them (audEERING's research licence, non-commercial use)"
    classic_list=()
  fi
fi
train_config=$(template_file "$train_config")
experiments=("$train_config")
[ -n "$tag" ] || tag=$(basename "$train_config" .yaml)
if [ ${#classic_list[@]} -gt 0 ]; then
  if [ "$have_opensmile" = true ]; then
    experiments+=("${classic_list[@]}")
  else
    log "note: opensmile or scikit-learn is not installed (tools/install.sh --opensmile; audEERING's research licence, non-commercial use): the classic references are skipped"
  fi
fi
# The tag and trainer options of an experiment: --train-args and --tag belong to the training config only.
tag_of() { if [ "$1" = "$train_config" ]; then echo "$tag$tag_suffix"; else echo "$(basename "$1" .yaml)$tag_suffix"; fi; }
# args_of: as one string, which the stage stamps record; argv_of CONFIG ARRAY: as words, into the array named.
args_of() { if [ "$1" = "$train_config" ]; then echo "$train_args $norm_args"; else echo "$norm_args"; fi; }
argv_of() {
  local -n argv=$2
  argv=()
  [ "$1" != "$train_config" ] || argv=("${train_argv[@]}")
  [ -z "$norm_args" ] || argv+=(--set "speaker_norm=$speaker_norm")
}
argv_of "$train_config" train_exp_argv
if [ "$print_config" = true ]; then  # the resolved training config, then nothing else
  config_info "$train_config" resolved "${train_exp_argv[@]}"
  exit
fi
# What the stages need of each experiment's config, read once (one Python start-up per config, which also checks
# it): info[<config>:<field>] for the fields below, its trainer options applied.
declare -A info
info_fields=(system functionals frontend model_file)
for config in "${experiments[@]}"; do
  [ -f "$config" ] || { log "error: config $config does not exist"; exit 1; }
  argv_of "$config" config_argv
  answer=$(config_info "$config" "${info_fields[@]}" "${config_argv[@]}") || { log "error: bad config $config (see above)"; exit 1; }
  mapfile -t values <<< "$answer"
  i=0
  for field in "${info_fields[@]}"; do info[$config:$field]=${values[i]}; i=$((i + 1)); done
done
if [ "${info[$train_config:functionals]}" != none ] && ! python -c "import opensmile" 2>/dev/null; then
  log "error: $train_config reads openSMILE functionals, and opensmile is not installed: run tools/install.sh --opensmile (audEERING's research licence, non-commercial use only)"
  exit 1
fi

# One run per workspace: a lock on each dir this run writes (data, dump, exp), held until the run ends. The kernel
# releases it when the run dies, however it dies, so a dead run's lock is simply taken over; the lock file names
# the holder. Jobs inherit it: a workspace stays locked while a job of the run still writes to it.
lock_workspace() {
  local dir fd
  if ! command -v flock >/dev/null; then
    log "warning: flock (util-linux) is missing: two runs at once in this workspace are not refused"
    return 0
  fi
  for dir in "$data_dir" "$dump_dir" "$exp_root"; do
    mkdir -p "$dir"
    exec {fd}>>"$dir/.ser.lock"
    if ! flock -n "$fd"; then
      local holder
      holder=$(sed -n 's/^pid \([0-9]*\),.*/\1/p' "$dir/.ser.lock")
      if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then
        # The run is dead and its jobs, which inherited the lock, are being stopped (utils/run.py).
        log "note: the run that held $dir (pid $holder) has ended; waiting for its jobs to stop"
        flock -w 30 "$fd" || { log "error: jobs of the ended run $holder still hold $dir/.ser.lock"; exit 1; }
      else
        log "error: another run is using $dir: $(cat "$dir/.ser.lock") (lock: $dir/.ser.lock)"
        exit 1
      fi
    fi
    printf 'pid %s, started %s, command: %s\n' "$$" "$(date '+%Y-%m-%d %H:%M:%S')" "$command_line" \
      > "$dir/.ser.lock"
  done
}
lock_workspace
# Slurm jobs of a killed run would go on writing this workspace: utils/slurm.py records the ids it submits here,
# and those of a dead run that are still queued or running are cancelled now (saying so).
export SER_SLURM_RECORD_DIR=$exp_root/.ser.slurm
if compgen -G "$SER_SLURM_RECORD_DIR/slurm_jobs.*" >/dev/null; then
  "$SER_ROOT/utils/slurm.py" --cancel-recorded "$SER_SLURM_RECORD_DIR"
fi

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ -n "$download_dir" ]; then
    log "stage 0: fetching $corpus into $download_dir"
    corpus_dir=$(python -m ser.bin.download --corpus "$corpus" --download-dir "$download_dir")
  fi
  [ -n "$corpus_dir" ] || { log "error: --corpus-dir is not set"; exit 1; }
  prep_opts=(--corpus "$corpus" --corpus-dir "$corpus_dir" --data-dir "$data_dir" --strict-counts "$strict_counts"
             --valid-fraction "$valid_fraction" --valid-mode "$valid_mode" --seed "$data_seed"
             --fold-scheme "$fold_scheme" --num-folds "$num_folds")
  [ -z "$class_set" ] || prep_opts+=(--class-set "$class_set")
  if [ -x local/data.sh ]; then
    log "stage 0: local/data.sh $corpus_dir"
    local/data.sh "$corpus_dir"
  fi
  if [ "$corpus" = manifest ]; then
    [ -f "$corpus_dir" ] || { log "error: manifest $corpus_dir does not exist"; exit 1; }
  else
    [ -d "$corpus_dir" ] || { log "error: corpus directory $corpus_dir does not exist (set --corpus-dir); $(python -m ser.bin.prepare_data --obtain --corpus "$corpus")"; exit 1; }
  fi
  log "stage 0: data preparation: $corpus_dir -> $data_dir"
  python -m ser.bin.prepare_data "${prep_opts[@]}" --skip-if-up-to-date
fi

all_folds=$(python -c "import json,sys; print(' '.join(sorted(json.load(open(sys.argv[1]))['folds'], key=int)))" \
  "$data_dir/protocol.json" 2>/dev/null || true)
[ -n "$folds" ] || folds=$all_folds
for fold in $folds; do
  [ -z "$all_folds" ] || [[ " $all_folds " == *" $fold "* ]] || \
    { log "error: --folds: $data_dir has no fold $fold (its folds: $all_folds)"; exit 1; }
done
[ -n "$seeds" ] || [ "$stop_stage" -lt 2 ] || seeds=$(config_info "$train_config" seed)  # stages 2-5 use it

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  python -m ser.bin.prepare_data --is-prepared --data-dir "$data_dir" || { log "error: $data_dir is not prepared; run stage 0 first"; exit 1; }
  if stamp check "$dump_dir/.stage1.done" --extra "nj-independent" "$data_dir" "$fbank_conf"; then
    log "stage 1: $dump_dir is up to date with $data_dir and $fbank_conf; nothing to do"
  else
    log "stage 1: fbank features of $data_dir/all ($nj jobs) -> $dump_dir"
    rm -rf "$dump_dir"
    mkdir -p "$dump_dir/all" "$dump_dir/log"
    split_dirs=$(python -m ser.bin.datadir split "$data_dir/all" "$nj")
    n_parts=$(printf '%s\n' "$split_dirs" | wc -l)  # one part dir per line (paths may hold spaces)
    part_dir=$(dirname "$(echo "$split_dirs" | head -n 1)")
    ark_dir=$(cd "$dump_dir" && pwd)
    ${feats_cmd} JOB=1:"$n_parts" "$dump_dir/log/fbank.JOB.log" \
      python -m ser.bin.compute_fbank --config "$fbank_conf" "$part_dir/JOB/wav.scp" \
        "$ark_dir/raw_fbank.JOB.ark" "$dump_dir/feats.JOB.scp" "$dump_dir/utt2num_frames.JOB" \
        --truncated-audio "$truncated_audio"
    report_cut_short "$dump_dir"/log/fbank.*.log
    for f in wav.scp utt2spk spk2utt utt2emo spk2gender utt2dur classes.txt; do
      [ ! -f "$data_dir/all/$f" ] || cp "$data_dir/all/$f" "$dump_dir/all/$f"
    done
    for n in $(seq "$n_parts"); do cat "$dump_dir/feats.$n.scp"; done | sort > "$dump_dir/all/feats.scp"
    for n in $(seq "$n_parts"); do cat "$dump_dir/utt2num_frames.$n"; done | sort > "$dump_dir/all/utt2num_frames"
    rm -f "$dump_dir"/feats.*.scp "$dump_dir"/utt2num_frames.*
    python -m ser.bin.datadir validate --need-feats "$dump_dir/all"
    # Per-fold feature dirs, and CMVN statistics from each fold's training set only (never its validation or
    # test speakers' data)
    python -m ser.bin.fold_features --data-dir "$data_dir" --dump-dir "$dump_dir"
    stamp write "$dump_dir/.stage1.done" --extra "nj-independent" "$data_dir" "$fbank_conf"
  fi
  for feature_set in $(for config in "${experiments[@]}"; do echo "${info[$config:functionals]}"; done | sort -u); do
    [ "$feature_set" != none ] || continue
    out=$functionals_dir/$feature_set
    if stamp check "$out/.stage1.done" --extra "$feature_set" "$data_dir/all"; then
      log "stage 1: $out is up to date with $data_dir/all; nothing to do"
      continue
    fi
    log "stage 1: openSMILE $feature_set functionals of $data_dir/all ($nj jobs) -> $out"
    rm -rf "$out"
    mkdir -p "$out/log"
    split_dirs=$(python -m ser.bin.datadir split "$data_dir/all" "$nj")
    n_parts=$(printf '%s\n' "$split_dirs" | wc -l)  # one part dir per line (paths may hold spaces)
    part_dir=$(dirname "$(echo "$split_dirs" | head -n 1)")
    ark_dir=$(cd "$out" && pwd)
    ${feats_cmd} JOB=1:"$n_parts" "$out/log/functionals.JOB.log" \
      python -m ser.bin.compute_functionals --feature-set "$feature_set" "$part_dir/JOB/wav.scp" \
        "$ark_dir/functionals.JOB.ark" "$out/feats.JOB.scp" "$out/utt2num_frames.JOB" \
        --truncated-audio "$truncated_audio"
    report_cut_short "$out"/log/functionals.*.log
    for n in $(seq "$n_parts"); do cat "$out/feats.$n.scp"; done | sort > "$out/feats.scp"
    rm -f "$out"/feats.*.scp "$out"/utt2num_frames.*
    stamp write "$out/.stage1.done" --extra "$feature_set" "$data_dir/all"
  done
fi

# Stages 2-4 of one experiment (a config and its tag). Jobs of stages 2-3 are numbered by fold; seeds run one after
# the other.
run_experiment() {
  local config=$1 tag=$2
  local exp_dir=$exp_root/$tag exp_args exp_argv feature_set=${info[$config:functionals]} functionals_scp=""
  local model_file=${info[$config:model_file]} seeds=$seeds
  exp_args=$(args_of "$config")
  argv_of "$config" exp_argv
  [ "$feature_set" = none ] || functionals_scp=$functionals_dir/$feature_set/feats.scp
  # A classic reference is deterministic: it runs with its config's seed only.
  [ "${info[$config:system]}" = neural ] || seeds=$(config_info "$config" seed)
  # Stages 2-3 read the fold dirs of the features dir: the fbank dump, or for frontend ssl_cached the cache of its
  # frozen encoder's frames (data/all, each utterance once, on the training device), made here when not up to date.
  local feats_dir=$dump_dir
  if [ "$stop_stage" -ge 2 ] && { [ "$stage" -le 3 ] || [ "$stop_stage" -ge 5 ]; } && \
      [ "${info[$config:frontend]}" = ssl_cached ]; then
    feats_dir=$(python -m ser.bin.cache_ssl --config "$config" "${exp_argv[@]}" --data-dir "$data_dir" \
      --cache-root "$ssl_cache_dir" --print-dir)
    log "frozen SSL frames of $data_dir/all -> $feats_dir (log: $exp_dir/log/cache_ssl.1.log)"
    mkdir -p "$exp_dir/log"
    # shellcheck disable=SC2086
    ${train_cmd} --gpu "$ngpu" JOB=1 "$exp_dir/log/cache_ssl.JOB.log" \
      python -m ser.bin.cache_ssl --config "$config" "${exp_argv[@]}" --data-dir "$data_dir" --cache-root "$ssl_cache_dir" \
        --ngpu "$(( ngpu > 0 ? 1 : 0 ))"
  fi
  if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
    [ -f "$dump_dir/.stage1.done" ] || { log "error: features are missing; run stage 1 first"; return 1; }
    mkdir -p "$exp_dir"
    [ -f "$exp_dir/train_config.yaml" ] && ! cmp -s "$config" "$exp_dir/train_config.yaml" && \
      log "note: $config differs from the config this experiment was started with; changed folds are retrained and the old runs moved aside"
    threads=$(( $(nproc) / train_jobs )); [ "$threads" -ge 1 ] || threads=1
    # More than one GPU per fold: data-parallel training, one process per GPU, launched by torchrun.
    trainer="python -m ser.bin.train"
    [ "$ngpu" -le 1 ] || trainer="python -m torch.distributed.run --standalone --nproc_per_node $ngpu -m ser.bin.train"
    for seed in $seeds; do
      todo=""
      for fold in $folds; do
        run_dir=$exp_dir/seed$seed/fold$fold
        if [ -f "$run_dir/selection.json" ] && stamp check "$run_dir/.stage2.done" --extra "$exp_args" \
            "$config" "$feats_dir/fold$fold/train" "$feats_dir/fold$fold/valid" ${functionals_scp:+"$functionals_scp"}; then
          log "stage 2: $run_dir is trained and up to date; nothing to do"
        else
          [ ! -f "$run_dir/selection.json" ] || log "WARNING: $run_dir holds a finished run of other settings (config," \
            "--train-args or data): it is moved aside to $run_dir.bak<N> and retrained (--tag NAME keeps both)"
          todo="$todo${todo:+,}$fold"
        fi
      done
      [ -n "$todo" ] || continue
      log "stage 2: training seed $seed, folds $todo -> $exp_dir/seed$seed/fold<k> (log: $exp_dir/seed$seed/log/train.<k>.log)"
      # shellcheck disable=SC2086
      OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads} ${train_cmd} --max-jobs-run "$train_jobs" --gpu "$ngpu" \
        JOB="$todo" "$exp_dir/seed$seed/log/train.JOB.log" \
        $trainer --config "$config" --classes "$dump_dir/all/classes.txt" \
          --train-dir "$feats_dir/foldJOB/train" --valid-dir "$feats_dir/foldJOB/valid" \
          --cmvn "$dump_dir/foldJOB/train/cmvn.ark" --fbank-conf "$fbank_conf" \
          --outdir "$exp_dir/seed$seed/foldJOB" --seed "$seed" --ngpu "$ngpu" \
          ${functionals_scp:+--functionals-scp "$functionals_scp"} "${exp_argv[@]}"
      for fold in ${todo//,/ }; do
        stamp write "$exp_dir/seed$seed/fold$fold/.stage2.done" --extra "$exp_args" \
          "$config" "$feats_dir/fold$fold/train" "$feats_dir/fold$fold/valid" ${functionals_scp:+"$functionals_scp"}
      done
    done
    # Recorded once its folds trained: a run that fails leaves an earlier experiment's record as it was.
    cp "$config" "$exp_dir/train_config.yaml"
  fi

  if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
    # With several seeds the validation sets are decoded too: the seed ensemble of stage 4 is judged on them.
    sets=test
    [ "$(wc -w <<< "$seeds")" -lt 2 ] || sets="valid test"
    for seed in $seeds; do
      for set in $sets; do
        todo=""
        for fold in $folds; do
          run_dir=$exp_dir/seed$seed/fold$fold
          [ -f "$run_dir/$model_file" ] || { log "error: $run_dir has no trained model; run stage 2 first"; return 1; }
          if stamp check "$run_dir/decode_$set/.stage3.done" "$run_dir/$model_file" "$feats_dir/fold$fold/$set"; then
            log "stage 3: $run_dir/decode_$set is up to date; nothing to do"
          else
            rm -f "$run_dir/decode_$set/.stage3.done"
            todo="$todo${todo:+,}$fold"
          fi
        done
        [ -n "$todo" ] || continue
        log "stage 3: inference on the $set sets, seed $seed, folds $todo"
        ${decode_cmd} --max-jobs-run "$train_jobs" --gpu "$ngpu" JOB="$todo" \
          "$exp_dir/seed$seed/log/decode_$set.JOB.log" \
          python -m ser.bin.infer --model-dir "$exp_dir/seed$seed/foldJOB" --data-dir "$feats_dir/foldJOB/$set" \
            --outdir "$exp_dir/seed$seed/foldJOB/decode_$set" --ngpu "$ngpu" \
            ${functionals_scp:+--functionals-scp "$functionals_scp"}
        for fold in ${todo//,/ }; do
          run_dir=$exp_dir/seed$seed/fold$fold
          stamp write "$run_dir/decode_$set/.stage3.done" "$run_dir/$model_file" "$feats_dir/fold$fold/$set"
        done
      done
    done
  fi

  if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    predictions=$(ls "$exp_dir"/seed*/fold*/decode_test/predictions 2>/dev/null || true)
    [ -n "$predictions" ] || { log "error: $exp_dir has no test predictions; run stage 3 first"; return 1; }
    # The validation predictions judge the seed ensemble: decoded later, they make the scores out of date too.
    predictions="$predictions $(ls "$exp_dir"/seed*/fold*/decode_valid/predictions 2>/dev/null || true)"
    # shellcheck disable=SC2086
    if [ -f "$exp_dir/results.json" ] && stamp check "$exp_dir/.stage4.done" "$data_dir/protocol.json" $predictions; then
      log "stage 4: $exp_dir/results.json is up to date; nothing to do"
    else
      log "stage 4: scoring $exp_dir"
      python -m ser.bin.score --exp-dir "$exp_dir" --data-dir "$data_dir" --command "$command_line"
      # shellcheck disable=SC2086
      stamp write "$exp_dir/.stage4.done" "$data_dir/protocol.json" $predictions
    fi
  fi

  # Stage 5 (only when asked for, e.g. --stage 5 --stop-stage 5): one model on every speaker, for use.
  if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
    if [ "${info[$config:system]}" != neural ]; then
      log "stage 5: $tag is a classic reference; the final model is trained for the neural experiment only"
      return 0
    fi
    selections=$(ls "$exp_dir"/seed*/fold*/selection.json 2>/dev/null || true)
    [ -n "$selections" ] || { log "error: $exp_dir has no trained folds; run stage 2 first"; return 1; }
    # shellcheck disable=SC2086
    if stamp check "$exp_dir/final/.stage5.done" --extra "$exp_args" "$config" "$feats_dir/all" $selections; then
      log "stage 5: $exp_dir/final is up to date; nothing to do"
    else
      log "stage 5: one model on every speaker -> $exp_dir/final (log: $exp_dir/log/final.log)"
      rm -f "$exp_dir/final/.stage5.done"
      # shellcheck disable=SC2086
      ${train_cmd} --gpu "$ngpu" "$exp_dir/log/final.log" \
        python -m ser.bin.final_model --exp-dir "$exp_dir" --config "$config" --classes "$dump_dir/all/classes.txt" \
          --dump-dir "$feats_dir" --fbank-conf "$fbank_conf" --seed "${seeds%% *}" --ngpu "$ngpu" \
          ${functionals_scp:+--functionals-scp "$functionals_scp"} "${exp_argv[@]}"
      # shellcheck disable=SC2086
      stamp write "$exp_dir/final/.stage5.done" --extra "$exp_args" "$config" "$feats_dir/all" $selections
    fi
  fi
}

for config in "${experiments[@]}"; do
  run_experiment "$config" "$(tag_of "$config")"
done

log "done: stages $stage-$stop_stage of $(basename "$(pwd)") (tag $tag)"
