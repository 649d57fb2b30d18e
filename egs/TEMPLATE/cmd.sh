# How the stages run their jobs (Kaldi's convention). Each *_cmd takes `JOB=1:N LOG COMMAND...`.
# Locally (default): run.py (utils/, on PATH) runs the jobs in parallel on this machine. A *_cmd already set in the
# environment wins (e.g. `train_cmd="slurm.py --gpu 1" ./run.sh --stage 2`).
# On a Slurm cluster: uncomment the slurm lines (and set partition/GPU/memory to your site's).
export feats_cmd="${feats_cmd:-run.py}"
export train_cmd="${train_cmd:-run.py}"
export decode_cmd="${decode_cmd:-run.py}"

# export feats_cmd="slurm.py --mem 4G"
# export train_cmd="slurm.py --gpu 1 --mem 16G --time 24:00:00"
# export decode_cmd="slurm.py --gpu 1 --mem 8G"
