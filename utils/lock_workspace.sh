#!/usr/bin/env bash
# Sourced by egs/TEMPLATE/ser.sh after its options: one run per workspace.
#   . utils/lock_workspace.sh DIR...     (ser.sh: its data, dump and exp dirs)
# A lock on each DIR this run writes, held until the run ends. The kernel releases it when the run dies, however it
# dies, so a dead run's lock is simply taken over; the lock file names the holder. Jobs inherit it: a workspace
# stays locked while a job of the run still writes to it (utils/run.py passes it on). A dead run's workspace still
# locked is refused at once, naming the processes that hold it. Needs log, recipe and command_line (ser.sh's) and
# exp_root.
# Then Slurm jobs of a killed run, which would go on writing this workspace, are cancelled: utils/slurm.py records
# the ids it submits in $exp_root/.ser.slurm, and those of a dead run still queued or running are cancelled now
# (saying so).

lock_workspace() {
  local dir
  if ! command -v flock >/dev/null; then
    log "warning: flock (util-linux) is missing: two runs at once in this workspace are not refused"
    return 0
  fi
  # Lock files already there first, opened as they are: a run refused creates nothing (no dir, no lock file).
  for dir in "$@"; do [ -f "$dir/.ser.lock" ] && take_lock "$dir" "<"; done
  for dir in "$@"; do [ -f "$dir/.ser.lock" ] || { mkdir -p "$dir" && take_lock "$dir" ">>"; }; done
  for dir in "$@"; do
    printf 'pid %s, started %s, command: %s\n' "$$" "$(date '+%Y-%m-%d %H:%M:%S')" "$command_line" \
      > "$dir/.ser.lock"
  done
}

# take_lock DIR MODE: DIR/.ser.lock opened (MODE: < or >>) and locked for as long as this run lives, or exit 1.
take_lock() {
  local dir=$1 fd holder
  if [ "$2" = "<" ]; then exec {fd}<"$dir/.ser.lock"; else exec {fd}>>"$dir/.ser.lock"; fi
  flock -n "$fd" && return 0
  holder=$(sed -n 's/^pid \([0-9]*\),.*/\1/p' "$dir/.ser.lock")
  if [ -n "$holder" ] && ! recipe running "$holder"; then  # a zombie has ended too
    # The run is dead and its jobs, which inherited the lock, are being stopped (utils/run.py: SIGTERM, then
    # SIGKILL 2 s later); what still holds it then escaped the dead run: named, not waited for.
    log "note: the run that held $dir (pid $holder) has ended; waiting up to 5 s for its jobs to stop"
    flock -w 5 "$fd" && return 0
    log "error: processes of the ended run $holder still hold $dir/.ser.lock:" \
      "$(recipe lock-holders "$dir/.ser.lock"); stop them, then start again"
  else
    log "error: another run is using $dir: $(cat "$dir/.ser.lock") (lock: $dir/.ser.lock)"
  fi
  exit 1
}
lock_workspace "$@"
export SER_SLURM_RECORD_DIR=$exp_root/.ser.slurm
if compgen -G "$SER_SLURM_RECORD_DIR/slurm_jobs.*" >/dev/null; then
  "$SER_ROOT/utils/slurm.py" --cancel-recorded "$SER_SLURM_RECORD_DIR"
fi
