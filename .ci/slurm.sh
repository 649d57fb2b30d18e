#!/usr/bin/env bash
# Start or stop a real single-node Slurm cluster on this machine, for CI and for
# testing utils/slurm.py.
#
#   .ci/slurm.sh start   install (Debian/Ubuntu packages, as root) if missing, write a
#                        minimal slurm.conf, start munged, slurmctld and slurmd by hand
#                        (no systemd), wait until the node is idle
#   .ci/slurm.sh stop    stop the daemons started by "start"
#
# Both are idempotent. When Slurm cannot be set up (not root, no network, no apt, a
# foreign slurm.conf already in place), "start" prints a warning and exits 0: CI goes
# on and the Slurm tests skip themselves.
set -u -o pipefail

readonly SLURM_CONF=/etc/slurm/slurm.conf
readonly CONF_MARKER="# Written by ser .ci/slurm.sh (single-node test cluster)."
readonly STATE_DIR=/var/spool/slurmctld
readonly SPOOL_DIR=/var/spool/slurmd
readonly LOG_DIR=/var/log/slurm
readonly CTLD_PIDFILE=/run/slurmctld.pid
readonly SLURMD_PIDFILE=/run/slurmd.pid
readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_PIDFILE=/run/munge/munged.pid
readonly IDLE_TIMEOUT_S=60

say() { echo "slurm.sh: $*"; }
give_up() { say "WARNING: $* -- Slurm not started; the Slurm tests will skip."; exit 0; }

# True when the pid in file $1 names a live process.
pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_name() { hostname -s; }

# The node's state as sinfo reports it ("idle", "mixed", "down*", ...); empty if no answer.
node_state() { timeout 10 sinfo --noheader --nodes="$(node_name)" --format=%T 2>/dev/null | head -n 1; }

install_packages() {
  local missing=() cmd
  for cmd in slurmctld slurmd sbatch munged; do
    command -v "$cmd" >/dev/null || missing+=("$cmd")
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || give_up "missing ${missing[*]} and no apt-get to install them"
  say "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
  export DEBIAN_FRONTEND=noninteractive
  local packages=(slurmctld slurmd slurm-client munge)
  if ! apt-get install -y -q --no-install-recommends "${packages[@]}"; then
    say "apt-get install failed; retrying after apt-get update"
    apt-get update -q && apt-get install -y -q --no-install-recommends "${packages[@]}" || give_up "apt-get install failed"
  fi
}

start_munge() {
  if [[ ! -s $MUNGE_KEY ]]; then
    say "creating munge key $MUNGE_KEY"
    mkdir -p "$(dirname "$MUNGE_KEY")"
    dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
  fi
  chown munge:munge "$MUNGE_KEY" && chmod 400 "$MUNGE_KEY"
  if pid_alive "$MUNGE_PIDFILE"; then
    say "munged already running (pid $(cat "$MUNGE_PIDFILE"))"
  else
    say "starting munged"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    runuser -u munge -- munged || give_up "munged did not start"
  fi
  munge -n | unmunge >/dev/null || give_up "munge credentials do not verify"
}

# The node line: what slurmd detects here (CPUs, sockets, cores, RealMemory), so the
# node is not drained for a mismatch; falls back to nproc and /proc/meminfo.
node_line() {
  local detected
  detected=$(slurmd -C 2>/dev/null | grep -m 1 '^NodeName=')
  if [[ -z $detected ]]; then
    detected="NodeName=$(node_name) CPUs=$(nproc) RealMemory=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
  fi
  # The node is this machine: reach it over loopback whatever the hostname resolves to.
  echo "$detected NodeAddr=127.0.0.1 State=UNKNOWN"
}

write_conf() {
  if [[ -e $SLURM_CONF ]] && ! grep -qxF "$CONF_MARKER" "$SLURM_CONF"; then
    give_up "$SLURM_CONF exists and was not written by this script; leaving it alone"
  fi
  local new
  new=$(cat <<EOF
$CONF_MARKER
ClusterName=ser-ci
SlurmctldHost=$(node_name)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$CTLD_PIDFILE
SlurmdPidFile=$SLURMD_PIDFILE
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
$(node_line)
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
  if [[ -e $SLURM_CONF && $(cat "$SLURM_CONF") == "$new" ]]; then
    say "$SLURM_CONF is up to date"
    return 1
  fi
  say "writing $SLURM_CONF"
  mkdir -p "$(dirname "$SLURM_CONF")"
  printf '%s\n' "$new" >"$SLURM_CONF"
  return 0
}

# Stop the daemon whose pid is in file $1 (named $2) and wait until it has exited.
stop_daemon() {
  local pidfile=$1 name=$2 pid i
  if ! pid_alive "$pidfile"; then
    say "$name not running"
    return 0
  fi
  pid=$(cat "$pidfile")
  say "stopping $name (pid $pid)"
  kill "$pid"
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  say "$name did not stop on SIGTERM; sending SIGKILL"
  kill -9 "$pid" 2>/dev/null
  return 0
}

start() {
  local t0=$SECONDS state
  ((EUID == 0)) || give_up "must run as root to install and start Slurm"
  install_packages
  start_munge
  mkdir -p "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"
  if write_conf; then
    # A changed configuration needs fresh daemons.
    stop_daemon "$SLURMD_PIDFILE" slurmd
    stop_daemon "$CTLD_PIDFILE" slurmctld
  fi
  if pid_alive "$CTLD_PIDFILE"; then
    say "slurmctld already running (pid $(cat "$CTLD_PIDFILE"))"
  else
    say "starting slurmctld (state cleared)"
    slurmctld -c || give_up "slurmctld did not start; see $LOG_DIR/slurmctld.log"
  fi
  if pid_alive "$SLURMD_PIDFILE"; then
    say "slurmd already running (pid $(cat "$SLURMD_PIDFILE"))"
  else
    say "starting slurmd"
    slurmd || give_up "slurmd did not start; see $LOG_DIR/slurmd.log"
  fi
  say "waiting for node $(node_name) to become idle"
  for ((i = 0; i < IDLE_TIMEOUT_S; i++)); do
    state=$(node_state)
    case $state in
      idle | mixed | allocated)
        say "Slurm is up: node $(node_name) is $state ($((SECONDS - t0)) s)"
        return 0 ;;
      down* | drain* | drained*)
        scontrol update nodename="$(node_name)" state=resume >/dev/null 2>&1 ;;
    esac
    sleep 1
  done
  give_up "node $(node_name) not idle after ${IDLE_TIMEOUT_S} s (state: '${state:-no answer}'); see $LOG_DIR"
}

stop() {
  stop_daemon "$SLURMD_PIDFILE" slurmd
  stop_daemon "$CTLD_PIDFILE" slurmctld
  stop_daemon "$MUNGE_PIDFILE" munged
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
