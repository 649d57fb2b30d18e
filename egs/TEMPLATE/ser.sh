#!/usr/bin/env bash
# ser.sh: the stages of every ser recipe, written once. A recipe's run.sh sets its corpus and calls this script.
#
#   0  data preparation: corpus -> data/all and data/fold<k>/{train,valid,test} (Kaldi data dirs), validated
#   1  features: fbank of data/all in --nj jobs -> dump/fbank/; per-fold copies; global CMVN of each training fold;
#      openSMILE functionals of data/all -> dump/functionals/<set>/ for every experiment that reads them
#   2  training: one job per fold and seed -> exp/<tag>/seed<s>/fold<k>/ (resumes from the last checkpoint); the
#      classic references (openSMILE functionals + logistic regression) train beside the neural experiment. A
#      front-end that caches its frames (ssl_cached) has those of data/all cached once first -> dump/ssl/<key>/
#      (ser.bin.cache_ssl), which stages 2, 3 and 5 then read
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
#                                 experiment, each its own tag ("" = none). Separated by spaces, or by commas when
#                                 the value holds one, and then paths may hold spaces: "my confs/egemaps.yaml,"
#   --truncated-audio error|warn  a wav cut short (its header promises more samples than it holds) in stage 1:
#                                 error stops naming it; warn reads what it holds and counts them [error]
#   --speaker-norm none|cmvn      protocol: per-speaker normalisation of every experiment's inputs (a transductive
#                                 protocol; tags get the suffix _spkcmvn; warns where stage 0 found that the speakers
#                                 cover the classes poorly: protocol.json speaker_class_coverage) [none]
#   --corpus-dir DIR --class-set NAME --strict-counts true|false  (corpus recipes)
#   --corpus-manifest FILE.csv    your own data: columns path,label,speaker [,fold,gender,start,end] (no corpus
#                                 module needed; see README "Your own data")
#   --fold-scheme default|kfold|loso|emobox  default: the corpus's own rule; kfold: --num-folds speaker-grouped,
#                                 class-stratified folds; loso: leave one speaker out; emobox where the corpus has it
#   --num-folds 5                 folds of --fold-scheme kfold (and of a manifest without a fold column)
#   --download-dir DIR            stage 0 first fetches the corpus into DIR (checksum, resumed when cut off) where its
#                                 licence allows (ser.bin.download); other corpora say where they are obtained
#   --valid-fraction 0.1 --valid-mode auto|spk|utt --data-seed 0  (validation from each fold's training part)
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
valid_mode=auto
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
# shellcheck disable=SC1091
if [ -f path.sh ]; then . ./path.sh; else . "$template_dir/path.sh"; fi
# shellcheck disable=SC1091
if [ -f cmd.sh ]; then . ./cmd.sh; else . "$template_dir/cmd.sh"; fi
recipe() { python -m ser.bin.recipe "$@"; }  # the stages' logic
runs() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

# Options checked and experiments (the training config, then the classic references) resolved before any work:
# experiment i is exp_config[i], exp_tag[i], ... with trainer options exp_argv_<i> (ser/bin/recipe.py).
setup=$(export corpus corpus_dir corpus_manifest stage stop_stage folds seeds data_dir dump_dir functionals_dir \
  ssl_cache_dir truncated_audio fbank_conf speaker_norm classic_configs train_args train_config tag print_config ngpu \
  train_jobs template_dir; recipe setup) || exit 1
eval "$setup"
if [ "$print_config" = true ]; then  # the resolved training config, then nothing else
  python -m ser.bin.config_info "$train_config" resolved "${exp_argv_0[@]}"
  exit
fi

# One run per workspace: a lock on each dir it writes; a dead run's Slurm jobs cancelled.
# shellcheck source=../../utils/lock_workspace.sh
. "$template_dir/../../utils/lock_workspace.sh" "$data_dir" "$dump_dir" "$exp_root"

if runs 0; then
  if [ -n "$download_dir" ]; then
    log "stage 0: fetching $corpus into $download_dir"
    corpus_dir=$(python -m ser.bin.download --corpus "$corpus" --download-dir "$download_dir")
  fi
  [ -n "$corpus_dir" ] || { log "error: --corpus-dir is not set"; exit 1; }
  if [ -x local/data.sh ]; then
    log "stage 0: local/data.sh $corpus_dir"
    local/data.sh "$corpus_dir"
  fi
  recipe corpus "$corpus" "$corpus_dir"  # it exists
  log "stage 0: data preparation: $corpus_dir -> $data_dir"
  python -m ser.bin.prepare_data --corpus "$corpus" --corpus-dir "$corpus_dir" --data-dir "$data_dir" \
    --strict-counts "$strict_counts" --valid-fraction "$valid_fraction" --valid-mode "$valid_mode" --seed "$data_seed" \
    --fold-scheme "$fold_scheme" --num-folds "$num_folds" ${class_set:+--class-set "$class_set"} --skip-if-up-to-date
fi

folds=$(recipe folds "$data_dir" "$folds" --speaker-norm "$speaker_norm")  # checked against protocol.json [all of
# them]; --speaker-norm warns where the speakers cover the classes poorly

# Stage 1's jobs: features NAME (fbank | functionals) of data/all in --nj jobs, archives OUT/ARK.<n>.ark ->
# DEST/feats.scp (--tables: and utt2num_frames, data/all's tables); further options go to ser.bin.compute_NAME.
compute_features() {
  local name=$1 ark=$2 out=$3 dest=$4 gather=$5 split_dirs n_parts part_dir ark_dir
  shift 5
  rm -rf "$out"
  mkdir -p "$dest" "$out/log"
  split_dirs=$(python -m ser.bin.datadir split "$data_dir/all" "$nj")
  n_parts=$(printf '%s\n' "$split_dirs" | wc -l)  # one part dir per line (paths may hold spaces)
  part_dir=$(dirname "$(echo "$split_dirs" | head -n 1)")
  ark_dir=$(cd "$out" && pwd)
  ${feats_cmd} JOB=1:"$n_parts" "$out/log/$name.JOB.log" \
    python -m "ser.bin.compute_$name" "$@" "$part_dir/JOB/wav.scp" "$ark_dir/$ark.JOB.ark" "$out/feats.JOB.scp" \
      "$out/utt2num_frames.JOB" --truncated-audio "$truncated_audio"
  # shellcheck disable=SC2086
  recipe gather "$name" "$out" "$dest" $gather --data-dir "$data_dir"  # parts merged; cut-short wavs counted
}

if runs 1; then
  fbank_opts=(--data-dir "$data_dir" --dump-dir "$dump_dir" --fbank-conf "$fbank_conf")
  todo=$(recipe todo fbank "${fbank_opts[@]}")
  if [ -n "$todo" ]; then
    log "stage 1: fbank features of $data_dir/all ($nj jobs) -> $dump_dir"
    compute_features fbank raw_fbank "$dump_dir" "$dump_dir/all" --tables --config "$fbank_conf"
    python -m ser.bin.datadir validate --need-feats "$dump_dir/all"
    # Per-fold feature dirs; CMVN statistics of each fold's training set only
    python -m ser.bin.fold_features --data-dir "$data_dir" --dump-dir "$dump_dir"
    recipe done fbank "${fbank_opts[@]}"
  fi
  for feature_set in "${feature_sets[@]}"; do
    out=$functionals_dir/$feature_set
    opts=(--data-dir "$data_dir" --out-dir "$out" --feature-set "$feature_set")
    todo=$(recipe todo functionals "${opts[@]}")
    [ -n "$todo" ] || continue
    log "stage 1: openSMILE $feature_set functionals of $data_dir/all ($nj jobs) -> $out"
    compute_features functionals functionals "$out" "$out" "" --feature-set "$feature_set"
    recipe done functionals "${opts[@]}"
  done
fi

# Stages 2-5 of experiment i (jobs of stages 2-3 numbered by fold). `recipe todo`: what is not up to date.
run_experiment() {
  local i=$1 config=${exp_config[$1]} seeds=${exp_seeds[$1]} exp_dir=$exp_root/${exp_tag[$1]} feats_dir=$dump_dir
  local -n argv=exp_argv_$i; local scp=() seed set todo
  [ -z "${exp_scp[i]}" ] || scp=(--functionals-scp "${exp_scp[i]}")
  # A front-end that caches its frames: the features dir of stages 2, 3 and 5, made when not up to date.
  if [ "${exp_caches_frames[i]}" = true ]; then
    local cache=(--config "$config" "${argv[@]}" --data-dir "$data_dir" --cache-root "$ssl_cache_dir")
    feats_dir=$(python -m ser.bin.cache_ssl "${cache[@]}" --print-dir)
    log "frozen SSL frames of $data_dir/all -> $feats_dir (log: $exp_dir/log/cache_ssl.1.log)"
    mkdir -p "$exp_dir/log"
    ${train_cmd} --gpu "$ngpu" JOB=1 "$exp_dir/log/cache_ssl.JOB.log" \
      python -m ser.bin.cache_ssl "${cache[@]}" --ngpu "$(( ngpu > 0 ? 1 : 0 ))"
  fi
  local stamp=(--exp-dir "$exp_dir" --config "$config" --data-dir "$data_dir" --feats-dir "$feats_dir" "${scp[@]}"
               --extra="${exp_args[i]}" --model-file "${exp_model_file[i]}" --system "${exp_system[i]}")

  if runs 2; then
    [ -f "$dump_dir/.stage1.done" ] || { log "error: features are missing; run stage 1 first"; return 1; }
    mkdir -p "$exp_dir"
    [ -f "$exp_dir/train_config.yaml" ] && ! cmp -s "$config" "$exp_dir/train_config.yaml" && \
      log "note: $config differs from the config this experiment was started with; changed folds are retrained and the old runs moved aside"
    for seed in $seeds; do
      todo=$(recipe todo train "${stamp[@]}" --seed "$seed" --folds "$folds")
      [ -n "$todo" ] || continue
      log "stage 2: training seed $seed, folds $todo -> $exp_dir/seed$seed/fold<k> (log: $exp_dir/seed$seed/log/train.<k>.log)"
      # shellcheck disable=SC2086
      OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads} ${train_cmd} --max-jobs-run "$train_jobs" --gpu "$ngpu" \
        JOB="$todo" "$exp_dir/seed$seed/log/train.JOB.log" \
        $trainer --config "$config" --classes "$dump_dir/all/classes.txt" \
          --train-dir "$feats_dir/foldJOB/train" --valid-dir "$feats_dir/foldJOB/valid" \
          --cmvn "$dump_dir/foldJOB/train/cmvn.ark" --fbank-conf "$fbank_conf" \
          --outdir "$exp_dir/seed$seed/foldJOB" --seed "$seed" --ngpu "$ngpu" "${scp[@]}" "${argv[@]}"
      recipe done train "${stamp[@]}" --seed "$seed" --folds "$todo"
    done
    # Recorded once its folds trained: a run that fails leaves an earlier experiment's record as it was.
    cp "$config" "$exp_dir/train_config.yaml"
  fi

  if runs 3; then
    for seed in $seeds; do
      for set in ${exp_sets[i]}; do  # valid too with several seeds: it judges their ensemble
        todo=$(recipe todo decode "${stamp[@]}" --seed "$seed" --set "$set" --folds "$folds")
        [ -n "$todo" ] || continue
        log "stage 3: inference on the $set sets, seed $seed, folds $todo"
        ${decode_cmd} --max-jobs-run "$train_jobs" --gpu "$ngpu" JOB="$todo" \
          "$exp_dir/seed$seed/log/decode_$set.JOB.log" \
          python -m ser.bin.infer --model-dir "$exp_dir/seed$seed/foldJOB" --data-dir "$feats_dir/foldJOB/$set" \
            --outdir "$exp_dir/seed$seed/foldJOB/decode_$set" --ngpu "$ngpu" "${scp[@]}"
        recipe done decode "${stamp[@]}" --seed "$seed" --set "$set" --folds "$todo"
      done
    done
  fi

  if runs 4; then
    todo=$(recipe todo score "${stamp[@]}")
    if [ -n "$todo" ]; then
      log "stage 4: scoring $exp_dir"
      python -m ser.bin.score --exp-dir "$exp_dir" --data-dir "$data_dir" --command "$command_line"
      recipe done score "${stamp[@]}"
    fi
  fi

  # Stage 5 (only when asked for: --stage 5): one neural model on every speaker, for use.
  if runs 5; then
    todo=$(recipe todo final "${stamp[@]}")
    if [ -n "$todo" ]; then
      log "stage 5: one model on every speaker -> $exp_dir/final (log: $exp_dir/log/final.log)"
      ${train_cmd} --gpu "$ngpu" "$exp_dir/log/final.log" \
        python -m ser.bin.final_model --exp-dir "$exp_dir" --config "$config" --classes "$dump_dir/all/classes.txt" \
          --dump-dir "$feats_dir" --fbank-conf "$fbank_conf" --seed "${seeds%% *}" --ngpu "$ngpu" "${scp[@]}" \
          "${argv[@]}"
      recipe done final "${stamp[@]}"
    fi
  fi
}

for i in "${!exp_config[@]}"; do
  run_experiment "$i"
done

log "done: stages $stage-$stop_stage of $(basename "$(pwd)") (tag $tag)"
