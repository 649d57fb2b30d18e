#!/usr/bin/env python3
"""Run jobs on a Slurm cluster, one sbatch job and one log per job (the interface of
utils/run.py, so a recipe's cmd.sh can switch between them).

    utils/slurm.py --gpu 1 --mem 16G --time 24:00:00 JOB=1:5 exp/log/train.JOB.log \\
        python -m ser.bin.train --fold JOB

See ``utils/slurm.py --help`` and ser/jobs.py for the command line.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ser import jobs  # noqa: E402

RUNNER_NOTES = """
utils/slurm.py submits each job with sbatch: the batch script it writes to
LOGDIR/q/NAME.sh (NAME: the log's file name without .log) asks for --cpus-per-task
(--num-threads), --mem, --time, --partition and --gres=gpu:N (--gpu N > 0), sends the
output to the log, and writes the command's exit status to LOGDIR/q/NAME.exit as its
last act. --sbatch-opts are added to the sbatch command line and override these.
The runner polls squeue until every job has ended (no accounting database needed);
a job that leaves the queue without an exit status (cancelled, time or memory limit,
node failure) fails with its last Slurm state. Stopping the runner with SIGINT,
SIGTERM or SIGHUP cancels its jobs (scancel). --max-jobs-run K keeps at most K jobs queued.

A runner killed outright (SIGKILL) cannot cancel its jobs: it records each job id it
submits in DIR/slurm_jobs.PID (DIR: $SER_SLURM_RECORD_DIR, which ser.sh sets to
EXP_ROOT/.ser.slurm, else LOGDIR/q), and removes that file when it ends. A runner
that starts, and `utils/slurm.py --cancel-recorded DIR`, cancel the jobs of the
dead runners recorded in DIR that are still queued or running, and say so.
"""
RECORD_DIR_ENV = "SER_SLURM_RECORD_DIR"
POLL_FIRST_S = 1.0  # first poll; the interval then grows to POLL_MAX_S
POLL_MAX_S = 10.0
# States in which the batch script was killed: it will never write its exit status.
KILLED_STATES = {"BOOT_FAIL", "CANCELLED", "DEADLINE", "NODE_FAIL", "OUT_OF_MEMORY",
                 "PREEMPTED", "REVOKED", "TIMEOUT"}
# States after the batch script ended by itself: its exit status file may still be
# on its way through a network file system, so it is awaited this long.
ENDED_STATES = {"COMPLETED", "FAILED"}
EXIT_FILE_GRACE_S = 60.0


def batch_directives(job: jobs.Job, options: jobs.JobOptions) -> list[str]:
    """The ``#SBATCH`` lines of ``job``'s batch script."""
    # In --output, % starts a Slurm pattern (%j); %% is a literal %.
    log = str(job.log.resolve()).replace("%", "%%")
    args = [f"--job-name={job.name}", f"--output={log}", "--open-mode=truncate",
            f"--chdir={os.getcwd()}", f"--cpus-per-task={options.num_threads}"]
    if options.mem:
        args.append(f"--mem={options.mem}")
    if options.time:
        args.append(f"--time={options.time}")
    if options.partition:
        args.append(f"--partition={options.partition}")
    if options.gpu:
        args.append(f"--gres=gpu:{options.gpu}")
    return [f"#SBATCH {arg}" for arg in args]


class _Submitted:
    """A job in the queue: its Slurm id, its exit status file, what squeue last said."""

    def __init__(self, slurm_id: str, exit_file: Path):
        self.slurm_id = slurm_id
        self.exit_file = exit_file
        self.state = "PENDING"
        self.ended_at: float | None = None  # when squeue first showed it ended or gone


def squeue_states(ids: list[str]) -> tuple[dict[str, str] | None, str]:
    """(Slurm id -> state of those of ``ids`` squeue still knows, or None when it failed; squeue's stderr)."""
    answer = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i %T", f"--jobs={','.join(ids)}"],
                            capture_output=True, text=True)
    if answer.returncode != 0:
        if "Invalid job id" in answer.stderr:  # every job is gone from the queue
            return {}, answer.stderr
        return None, answer.stderr
    return {i: state.strip() for i, state in (line.split(maxsplit=1) for line in answer.stdout.splitlines()
                                              if line.strip())}, answer.stderr


def _queued_ids(ids: list[str]) -> list[str] | None:
    """Those of ``ids`` that squeue shows queued or running; None when squeue fails."""
    states, _ = squeue_states(ids)
    if states is None:
        return None
    live = {"PENDING", "RUNNING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED", "STOPPED"}
    return [i for i in ids if states.get(i) in live]


def cancel_recorded_jobs(record_dir: Path, prog: str) -> int:
    """Cancel the jobs that dead runners recorded in ``record_dir`` (``slurm_jobs.PID`` files, see RUNNER_NOTES)
    and are still queued or running; say so on stderr; remove those records. Returns how many were cancelled.
    The record of a runner still alive is left alone."""
    cancelled = 0
    for record in sorted(record_dir.glob("slurm_jobs.*")):
        try:
            lines = record.read_text().split()
        except FileNotFoundError:
            continue
        if len(lines) < 2 or not lines[0].isdigit():
            continue
        pid, started, ids = int(lines[0]), lines[1], lines[2:]
        now = jobs.process_start(pid)
        if now is not None and now in ("", started):
            continue  # that runner still runs and watches its jobs
        if ids:
            live = _queued_ids(ids)
            if live is None:
                print(f"{prog}: warning: squeue failed; the jobs of the killed runner {pid} recorded in {record} "
                      "may still run", file=sys.stderr)
                continue
            if live:
                subprocess.run(["scancel", *live])
                cancelled += len(live)
                print(f"{prog}: cancelled {len(live)} Slurm job(s) of an earlier run that was killed "
                      f"(runner pid {pid}, record {record}): {' '.join(live)}", file=sys.stderr)
        record.unlink(missing_ok=True)
    return cancelled


class SlurmBackend(jobs.Backend):
    def __init__(self, options: jobs.JobOptions, prog: str, record_dir: Path | None = None):
        self.options = options
        self.prog = prog
        self.queued: dict[jobs.Job, _Submitted] = {}
        self.record: Path | None = None
        if record_dir is not None:
            record_dir.mkdir(parents=True, exist_ok=True)
            cancel_recorded_jobs(record_dir, prog)
            self.record = record_dir / f"slurm_jobs.{os.getpid()}"
            self.record.write_text(f"{os.getpid()} {jobs.process_start(os.getpid()) or '-'}\n")

    @staticmethod
    def script_paths(job: jobs.Job) -> tuple[Path, Path]:
        """The batch script and the exit status file of ``job``."""
        q_dir = job.log.resolve().parent / "q"
        return q_dir / f"{job.name}.sh", q_dir / f"{job.name}.exit"

    def start(self, job: jobs.Job) -> None:
        script, exit_file = self.script_paths(job)
        script.parent.mkdir(parents=True, exist_ok=True)
        exit_file.unlink(missing_ok=True)  # left by an earlier run
        preamble = batch_directives(job, self.options)
        if self.options.sbatch_opts:
            preamble.append("# sbatch options given on the command line: "
                            + " ".join(self.options.sbatch_opts))
        script.write_text(jobs.wrapper_script(job, exit_file, preamble))
        # A signal that comes while sbatch runs waits until the job is known, so that it is cancelled.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, jobs.TERMINATION_SIGNALS)
        try:
            try:
                submitted = subprocess.run(
                    ["sbatch", "--parsable", *self.options.sbatch_opts, str(script)],
                    capture_output=True, text=True)
            except OSError as error:
                raise jobs.JobStartError(f"sbatch could not run: {error}") from None
            if submitted.returncode != 0:
                raise jobs.JobStartError(
                    f"sbatch {script} failed: {submitted.stderr.strip() or submitted.returncode}")
            # --parsable prints "jobid" or "jobid;cluster"
            slurm_id = submitted.stdout.strip().split(";")[0]
            self.queued[job] = _Submitted(slurm_id, exit_file)
            if self.record is not None:
                with open(self.record, "a") as record:
                    record.write(slurm_id + "\n")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def squeue_states(self) -> dict[str, str] | None:
        """Slurm id -> state of the queued jobs squeue still knows; None if it failed."""
        states, stderr = squeue_states([s.slurm_id for s in self.queued.values()])
        if states is None:
            print(f"{self.prog}: warning: squeue failed, will retry: {stderr.strip()}", file=sys.stderr)
        return states

    def _ended(self) -> list[tuple[jobs.Job, str | None]]:
        """Jobs that have ended, from their exit status files and then squeue."""
        ended = []
        for job, submitted in self.queued.items():
            if submitted.exit_file.exists():
                ended.append((job, self._failure_from_exit_file(submitted)))
        for job, _ in ended:
            del self.queued[job]
        if not self.queued:
            return ended
        states = self.squeue_states()
        if states is None:
            return ended
        now = time.monotonic()
        for job, submitted in list(self.queued.items()):
            state = states.get(submitted.slurm_id)
            submitted.state = state or submitted.state
            if state in KILLED_STATES:
                failure = f"Slurm job {submitted.slurm_id} ended {state}"
            elif state is None or state in ENDED_STATES:
                submitted.ended_at = submitted.ended_at or now
                if submitted.exit_file.exists():
                    failure = self._failure_from_exit_file(submitted)
                elif now - submitted.ended_at > EXIT_FILE_GRACE_S:
                    failure = (f"Slurm job {submitted.slurm_id} ended ({submitted.state}) "
                               f"without writing {submitted.exit_file}")
                else:
                    continue
            else:
                continue
            del self.queued[job]
            ended.append((job, failure))
        return ended

    @staticmethod
    def _failure_from_exit_file(submitted: _Submitted) -> str | None:
        text = submitted.exit_file.read_text().strip()
        if not re.fullmatch(r"[0-9]+", text):
            return f"unreadable exit status '{text}' in {submitted.exit_file}"
        return None if text == "0" else f"exit code {text}"

    def wait_any(self) -> list[tuple[jobs.Job, str | None]]:
        interval = POLL_FIRST_S
        while True:
            ended = self._ended()
            if ended:
                return ended
            time.sleep(interval)
            interval = min(1.5 * interval, POLL_MAX_S)

    def stop_all(self) -> int:
        ids = [s.slurm_id for s in self.queued.values()]
        if ids:
            subprocess.run(["scancel", *ids])
        self.queued.clear()
        return len(ids)

    def finish(self) -> None:
        if self.record is not None:
            self.record.unlink(missing_ok=True)


def record_dir_of(request: jobs.JobRequest) -> Path:
    """Where this runner records its job ids: $SER_SLURM_RECORD_DIR, else the first job's log dir's q/."""
    return Path(os.environ.get(RECORD_DIR_ENV) or request.jobs[0].log.resolve().parent / "q")


if __name__ == "__main__":
    prog = "utils/slurm.py"
    if sys.argv[1:2] == ["--cancel-recorded"]:
        if len(sys.argv) != 3:
            sys.exit(f"usage: {prog} --cancel-recorded DIR")
        cancel_recorded_jobs(Path(sys.argv[2]), prog)
        sys.exit(0)
    sys.exit(jobs.main(sys.argv[1:], prog,
                       lambda request: SlurmBackend(request.options, prog, record_dir_of(request)),
                       RUNNER_NOTES))
