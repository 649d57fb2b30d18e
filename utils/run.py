#!/usr/bin/env python3
"""Run jobs on this machine, in parallel, one log per job (Kaldi's run.pl convention).

    utils/run.py [options] JOB=1:4 exp/log/train.JOB.log python -m ser.bin.train --fold JOB

See ``utils/run.py --help`` and ser/jobs.py for the command line, shared with
utils/slurm.py.
"""
from __future__ import annotations

import collections
import ctypes
import functools
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ser import jobs  # noqa: E402

RUNNER_NOTES = """
utils/run.py runs the jobs on this machine. --gpu N gives each job N GPUs of its own
through CUDA_VISIBLE_DEVICES, taken from the GPUs in CUDA_VISIBLE_DEVICES or else
those nvidia-smi lists; a job waits until enough are free. With no GPU found, jobs
run without that assignment (a warning says so). --mem, --num-threads, --time,
--partition and --sbatch-opts are accepted and ignored. Stopping the runner with
SIGINT, SIGTERM or SIGHUP kills the running jobs; on Linux they also die with a
runner killed otherwise (SIGKILL included). Jobs inherit the descriptors the runner
inherited (the workspace lock of egs/TEMPLATE/ser.sh).
"""
KILL_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
try:  # loaded here: between fork and exec a job's child process only calls it
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: jobs are not tied to the runner's life
    _prctl = None


def _terminate_with_parent(parent_pid: int) -> None:
    """In a job's child process before exec: SIGTERM when the runner (``parent_pid``) dies, however it dies.

    The kernel sends that signal only if the parent dies after it was asked for, so a runner killed between the
    fork and this call would leave the job running (in a session of its own, beyond a kill of the run's process
    group): the child checks that its parent is still the runner, and exits at once if it is not."""
    if _prctl is None:
        return
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(128 + signal.SIGTERM)


def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES (up to its first invalid,
    negative entry, as CUDA reads it) if set, else the indices nvidia-smi lists."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        try:
            listed = subprocess.run(
                ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                capture_output=True, text=True, check=True,
            ).stdout.replace("\n", ",")
        except (OSError, subprocess.CalledProcessError):
            return []
    gpus = []
    for entry in (e.strip() for e in listed.split(",")):
        if entry.startswith("-"):
            break
        if entry:
            gpus.append(entry)
    return gpus


class LocalBackend(jobs.Backend):
    def __init__(self, options: jobs.JobOptions, prog: str):
        self.gpus_per_job = options.gpu
        self.free_gpus: collections.deque[str] = collections.deque()
        if options.gpu:
            self.free_gpus.extend(visible_gpus())
            if not self.free_gpus:
                print(f"{prog}: warning: --gpu {options.gpu} asked but no GPU found; "
                      "jobs run without CUDA_VISIBLE_DEVICES assignment", file=sys.stderr)
            elif options.gpu > len(self.free_gpus):
                raise jobs.JobCommandError(
                    f"--gpu {options.gpu} asked but only {len(self.free_gpus)} GPU(s) "
                    f"visible: {','.join(self.free_gpus)}")
        self.assigns_gpus = bool(self.free_gpus)
        self.running: dict[jobs.Job, tuple[subprocess.Popen, list[str]]] = {}
        self.ended: queue.Queue[jobs.Job] = queue.Queue()

    def can_start(self, job: jobs.Job) -> bool:
        return not self.assigns_gpus or len(self.free_gpus) >= self.gpus_per_job

    def start(self, job: jobs.Job) -> None:
        env = dict(os.environ)
        gpus = []
        if self.assigns_gpus:
            gpus = [self.free_gpus.popleft() for _ in range(self.gpus_per_job)]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        try:
            with open(job.log, "w") as log:
                # A session of its own: the job's whole process group can be killed (stop_all). A kill of the
                # run's process group does not reach it; the job dies with the runner instead, however the runner
                # dies: the kernel sends its wrapper SIGTERM (the parent-death signal, set before exec), and the
                # wrapper kills the job's group. close_fds=False: the job inherits what the runner inherited (ser.sh's
                # workspace locks, fds Python itself opens are not inheritable), so a job left running keeps its
                # workspace locked and is named by the next run (utils/lock_workspace.sh).
                process = subprocess.Popen(
                    ["bash", "-c", jobs.wrapper_script(job, stop_group_on_term=True)], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, close_fds=False,
                    preexec_fn=functools.partial(_terminate_with_parent, os.getpid()))
        except OSError as error:
            self.free_gpus.extend(gpus)
            raise jobs.JobStartError(f"could not start: {error}") from None
        self.running[job] = (process, gpus)
        threading.Thread(target=self._report_end, args=(job, process), daemon=True).start()

    def _report_end(self, job: jobs.Job, process: subprocess.Popen) -> None:
        process.wait()
        self.ended.put(job)

    def wait_any(self) -> list[tuple[jobs.Job, str | None]]:
        ended = [self.ended.get()]
        while not self.ended.empty():
            ended.append(self.ended.get())
        results = []
        for job in ended:
            process, gpus = self.running.pop(job)
            self.free_gpus.extend(gpus)
            code = process.returncode
            failure = None
            if code < 0:
                failure = f"killed by {signal.Signals(-code).name}"
            elif code > 0:
                failure = f"exit code {code}"
            results.append((job, failure))
        return results

    def stop_all(self) -> int:
        processes = [process for process, _ in self.running.values()]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for process in processes:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
            try:
                for process in processes:
                    process.wait(timeout=KILL_GRACE_S)
                break
            except subprocess.TimeoutExpired:
                continue
        return len(processes)


if __name__ == "__main__":
    prog = "utils/run.py"
    sys.exit(jobs.main(sys.argv[1:], prog, lambda request: LocalBackend(request.options, prog),
                       RUNNER_NOTES))
