"""What the job runners utils/run.py (local) and utils/slurm.py (Slurm) share.

Both take the same command line, Kaldi's convention::

    RUNNER [options] [JOB=1:N | JOB=1,3,5] LOG COMMAND...

Every occurrence of the variable name (``JOB``) in LOG and COMMAND is replaced by
the job id; without a JOB= spec there is one job.  A single COMMAND argument is a
shell string run as is (pipes, redirections and quotes work); several arguments are
joined with spaces, every one shell-quoted (so a path holding ``&``, ``;``, ``$( )``, backticks
or spaces is a path, and nothing in it runs) except a word that is exactly a shell operator
(``|``, ``&&``, ``>``, ...), so an escaped ``\\|`` still acts as a pipe.
The command runs under ``bash -o pipefail -c``.

Each job writes one log: ``# COMMAND`` and the start time first, then the
command's stdout and stderr, then ``# Ended (code N) at TIME, elapsed S s``.
"""
from __future__ import annotations

import abc
import collections
import dataclasses
import os
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

USAGE = """\
usage: {prog} [options] [JOB=1:N | JOB=1,3,5] LOG COMMAND...

Runs COMMAND once per job id, replacing every JOB in LOG and COMMAND by the id,
inside words too ($SLURM_JOB_ID included: give the variable another name, N=1:3,
when the command needs such words). JOB=1:N is the ids 1..N, JOB=1,3,5 a list
(items may be ranges: JOB=1:3,7). Without a JOB= spec there is one job. A single COMMAND argument is a shell
string (pipes and quotes work); the command runs under `bash -o pipefail -c`.
Exit status: 0 if every job succeeded, 1 if any failed (each failed job and its
log are named on stderr), 2 for a bad command line, 128+N when stopped by signal N.

options (both runners accept all of them, so cmd.sh can switch runners):
  --gpu N             GPUs per job (default 0)
  --mem M             memory per job, Slurm syntax: 16G, 500M (default: none asked)
  --num-threads T     CPUs per job (default 1)
  --time T            time limit, Slurm syntax: 30, 4:00:00, 2-00:00:00
  --partition P       Slurm partition
  --sbatch-opts S     extra sbatch options, one shell-quoted string
  --max-jobs-run K    at most K jobs at a time (default: all)
{runner_notes}"""


class JobCommandError(ValueError):
    """A bad runner command line."""


@dataclasses.dataclass
class JobOptions:
    gpu: int = 0
    mem: Optional[str] = None
    num_threads: int = 1
    time: Optional[str] = None
    partition: Optional[str] = None
    sbatch_opts: list[str] = dataclasses.field(default_factory=list)
    max_jobs_run: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Job:
    id: Optional[int]  # None when the command line has no JOB= spec
    log: Path
    command: str

    @property
    def name(self) -> str:
        """The log's file name without ``.log``: ``train.3`` for ``exp/log/train.3.log``."""
        name = self.log.name
        return name[: -len(".log")] if name.endswith(".log") and name != ".log" else name

    def describe(self) -> str:
        return "the job" if self.id is None else f"job {self.id}"


@dataclasses.dataclass
class JobRequest:
    options: JobOptions
    jobs: list[Job]


def _count(minimum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not re.fullmatch(r"[0-9]+", text) or int(text) < minimum:
            raise ValueError(f"expected an integer >= {minimum}")
        return int(text)

    return convert


def _pattern(regex: str, example: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if not re.fullmatch(regex, text):
            raise ValueError(f"expected e.g. {example}")
        return text

    return convert


def _split_shell_words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as error:  # unbalanced quotes
        raise ValueError(str(error)) from None


_SLURM_TIME = r"[0-9]+(:[0-9]+){0,2}|[0-9]+-[0-9]+(:[0-9]+){0,2}"
# option name -> (JobOptions field, converter of the option's text)
_OPTIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "--gpu": ("gpu", _count(0)),
    "--mem": ("mem", _pattern(r"[0-9]+[KMGTkmgt]?", "16G or 500M")),
    "--num-threads": ("num_threads", _count(1)),
    "--time": ("time", _pattern(_SLURM_TIME, "30, 4:00:00 or 1-12:00:00")),
    "--partition": ("partition", _pattern(r"[^\s,]+(,[^\s,]+)*", "gpu")),
    "--sbatch-opts": ("sbatch_opts", _split_shell_words),
    "--max-jobs-run": ("max_jobs_run", _count(1)),
}
_JOB_SPEC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)


def parse_job_ids(spec: str) -> list[int]:
    """Ids of a JOB= spec: ``1:4`` -> [1, 2, 3, 4], ``1,3,5`` -> [1, 3, 5], ``1:2,7``.

    Ids are positive integers; they come back sorted; a repeated id is an error.
    """
    ids: list[int] = []
    for item in spec.split(","):
        bounds = re.fullmatch(r"([0-9]+)(?::([0-9]+))?", item)
        if bounds is None:
            raise JobCommandError(
                f"bad job spec '{spec}': '{item}' is neither an id (3) nor a range (1:4)"
            )
        first = int(bounds.group(1))
        last = int(bounds.group(2)) if bounds.group(2) is not None else first
        if first < 1 or last < first:
            raise JobCommandError(
                f"bad job spec '{spec}': '{item}' needs 1 <= first <= last"
            )
        ids.extend(range(first, last + 1))
    repeated = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
    if repeated:
        raise JobCommandError(f"bad job spec '{spec}': repeated ids {repeated}")
    return sorted(ids)


# Words kept unquoted among several COMMAND words: the shell's operators, as Kaldi's runners allow.
SHELL_OPERATORS = frozenset({"|", "||", "&&", ";", ">", ">>", "<", "2>", "2>>", "2>&1", "&>", "|&"})


def shell_command(words: Sequence[str]) -> str:
    """The shell string run for COMMAND words (see the module docstring)."""
    if len(words) == 1:
        return words[0]
    return " ".join(w if w in SHELL_OPERATORS else shlex.quote(w) for w in words)


def parse_command_line(argv: Sequence[str], prog: str, runner_notes: str = "") -> JobRequest:
    """Parse ``[options] [JOB=spec] LOG COMMAND...``; print the usage and exit for -h."""
    options = JobOptions()
    args = list(argv)
    while args and args[0].startswith("-"):
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(USAGE.format(prog=prog, runner_notes=runner_notes), end="")
            sys.exit(0)
        if arg == "--":
            break
        name, has_value, value = arg.partition("=")
        if name not in _OPTIONS:
            raise JobCommandError(f"unknown option '{name}' (see --help)")
        if not has_value:
            if not args:
                raise JobCommandError(f"option {name} needs a value")
            value = args.pop(0)
        field, convert = _OPTIONS[name]
        try:
            setattr(options, field, convert(value))
        except ValueError as error:
            raise JobCommandError(f"bad value '{value}' for {name}: {error}") from None

    variable, ids = None, [None]
    spec = _JOB_SPEC.fullmatch(args[0]) if args else None
    if spec is not None:
        args.pop(0)
        variable = spec.group(1)
        ids = parse_job_ids(spec.group(2))
    if len(args) < 2:
        raise JobCommandError("expected a log file and a command (see --help)")
    log_template, command_template = args[0], shell_command(args[1:])
    if len(ids) > 1 and variable not in log_template:
        raise JobCommandError(
            f"log file '{log_template}' must contain {variable} for {len(ids)} jobs to "
            "write separate logs"
        )

    def substitute(text: str, job_id: Optional[int]) -> str:
        return text if variable is None else text.replace(variable, str(job_id))

    jobs = [
        Job(job_id, Path(substitute(log_template, job_id)), substitute(command_template, job_id))
        for job_id in ids
    ]
    return JobRequest(options, jobs)


def wrapper_script(
    job: Job, exit_file: Optional[Path] = None, preamble: Iterable[str] = (),
    stop_group_on_term: bool = False,
) -> str:
    """The bash script that runs one job with its stdout and stderr going to the log.

    It writes the log's header and footer and exits with the command's status; with
    ``exit_file`` it also records that status there (atomically) as its last act.
    ``preamble``: lines put right after the ``#!`` line (``#SBATCH`` directives).
    ``stop_group_on_term``: SIGTERM or SIGHUP to the script kills its whole process group (the
    job and everything it started); the script must lead its own group (a session of its own).
    """
    header = "\n".join("# " + line for line in job.command.split("\n"))
    lines = ["#!/bin/bash", *preamble]
    lines += [
        f"printf '%s\\n' {shlex.quote(header)}",
        "echo \"# Started at $(date '+%F %T %Z') on $(hostname)\"",
    ]
    if stop_group_on_term:
        # The command runs in the background so that the trap runs at once, not when it ends.
        lines += ["trap 'trap \"\" TERM HUP; kill -TERM -- -$$; sleep 2; kill -KILL -- -$$' TERM HUP",
                  f"bash -o pipefail -c {shlex.quote(job.command)} &",
                  "wait $!"]
    else:
        lines.append(f"bash -o pipefail -c {shlex.quote(job.command)}")
    lines += [
        "status=$?",
        "echo \"# Ended (code $status) at $(date '+%F %T %Z'), elapsed $SECONDS s\"",
    ]
    if exit_file is not None:
        partial = shlex.quote(f"{exit_file}.partial")
        lines.append(f'echo "$status" > {partial} && mv {partial} {shlex.quote(str(exit_file))}')
    lines.append('exit "$status"')
    return "\n".join(lines) + "\n"


TERMINATION_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """Raised in the main thread when the runner receives SIGINT, SIGTERM or SIGHUP."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), telling it from a later process given the
    same pid; "" where /proc is missing but the pid is in use; None if no such process runs. A zombie (ended, not
    yet reaped by its parent, as a run killed with its process group can be for a moment) has ended: None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after the (name), which may hold spaces
        return None if fields[0] == "Z" else fields[19]
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None
    except (OSError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def raise_on_termination_signals() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP (a lost terminal) into :class:`Interrupted`, so the runner can clean up."""

    def handler(signum, frame):
        raise Interrupted(signum)

    for signum in TERMINATION_SIGNALS:
        signal.signal(signum, handler)


class Backend(abc.ABC):
    """How one runner starts, watches and stops jobs; driven by :func:`run_jobs`."""

    def can_start(self, job: Job) -> bool:
        """Whether the resources ``job`` needs are free now (jobs running are counted apart)."""
        return True

    @abc.abstractmethod
    def start(self, job: Job) -> None:
        """Start ``job``; raise :class:`JobStartError` if it cannot be started."""

    @abc.abstractmethod
    def wait_any(self) -> list[tuple[Job, Optional[str]]]:
        """Block until at least one started job has ended; return the ended jobs, each
        with None when it succeeded or else why it failed (``exit code 1``)."""

    @abc.abstractmethod
    def stop_all(self) -> int:
        """Stop every job still running; return how many there were."""

    def finish(self) -> None:
        """Called once when the runner ends, however it ends (after :meth:`stop_all` when interrupted)."""


class JobStartError(RuntimeError):
    """A job that could not be started (its failure reason is the message)."""


LOG_TAIL_LINES = 8


def log_tail(path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a job log (its own command's output, without the runner's header lines)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith("# ")]
    return kept[-lines:]


def run_jobs(backend: Backend, jobs: Sequence[Job], max_jobs_run: Optional[int], prog: str) -> int:
    """Run ``jobs`` through ``backend``, at most ``max_jobs_run`` at a time; say on stderr when each job ends (a
    line per fold of a training stage) and, for a failed one, the end of its log; return the exit status."""
    limit = max_jobs_run or len(jobs)
    pending = collections.deque(jobs)
    running = 0
    failures: list[tuple[Job, str]] = []
    raise_on_termination_signals()
    try:
        while pending or running:
            while pending and running < limit and backend.can_start(pending[0]):
                job = pending.popleft()
                try:
                    job.log.parent.mkdir(parents=True, exist_ok=True)
                    backend.start(job)
                    running += 1
                except (JobStartError, OSError) as error:
                    failures.append((job, str(error)))
            if running:
                for job, failure in backend.wait_any():
                    running -= 1
                    if failure is not None:
                        failures.append((job, failure))
                    elif len(jobs) > 1:
                        done = len(jobs) - len(pending) - running - len(failures)
                        print(f"{prog}: {job.describe()} done ({done} of {len(jobs)}), log: {job.log}",
                              file=sys.stderr)
    except Interrupted as interruption:
        for signum in TERMINATION_SIGNALS:  # let the clean-up finish
            signal.signal(signum, signal.SIG_IGN)
        stopped = backend.stop_all()
        backend.finish()
        print(
            f"{prog}: {interruption}: stopped {stopped} running job(s), "
            f"{len(pending)} not started",
            file=sys.stderr,
        )
        return 128 + interruption.signum
    backend.finish()
    for job, failure in sorted(failures, key=lambda f: f[0].id or 0):
        print(f"{prog}: {job.describe()} failed ({failure}), log: {job.log}", file=sys.stderr)
        for line in log_tail(job.log):
            print(f"{prog}:   | {line}", file=sys.stderr)
    if failures:
        print(f"{prog}: {len(failures)} of {len(jobs)} job(s) failed", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str], prog: str, make_backend: Callable[[JobRequest], Backend],
         runner_notes: str = "") -> int:
    """A runner's entry point: parse ``argv``, build the backend, run the jobs."""
    try:
        request = parse_command_line(argv, prog, runner_notes)
        backend = make_backend(request)
    except JobCommandError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    return run_jobs(backend, request.jobs, request.options.max_jobs_run, prog)
