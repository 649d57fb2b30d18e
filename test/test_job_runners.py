"""The job runners: utils/run.py (local), utils/slurm.py (on a real Slurm, started
by `.ci/slurm.sh start`; those tests skip when no Slurm answers) and ser/jobs.py."""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ser import jobs

REPO = Path(__file__).resolve().parent.parent
RUN = str(REPO / "utils" / "run.py")
SLURM = str(REPO / "utils" / "slurm.py")

def _load_script_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slurm = _load_script_module(REPO / "utils" / "slurm.py")


def run_runner(runner: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 60):
    return subprocess.run([sys.executable, runner, *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=timeout)


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def assert_log(path: Path, command: str, output: list[str], code: int) -> None:
    """A job log: the command, the start time, the output, the exit code."""
    lines = log_lines(path)
    assert lines[0] == "# " + command
    assert lines[1].startswith("# Started at ")
    assert lines[2:-1] == output
    assert lines[-1].startswith(f"# Ended (code {code}) at ")


# ---- ser/jobs.py ----------------------------------------------------------------------

@pytest.mark.parametrize("spec, ids", [
    ("1:3", [1, 2, 3]), ("4", [4]), ("1,3,5", [1, 3, 5]), ("5,1", [1, 5]),
    ("1:2,7,9:10", [1, 2, 7, 9, 10]),
])
def test_parse_job_ids(spec, ids):
    assert jobs.parse_job_ids(spec) == ids


@pytest.mark.parametrize("spec", ["", "0:2", "3:1", "1,,2", "a", "1:2:3", "1,2,2", "1:3,2", "-1"])
def test_parse_job_ids_rejects(spec):
    with pytest.raises(jobs.JobCommandError, match="bad job spec"):
        jobs.parse_job_ids(spec)


def test_parse_command_line_substitutes_every_occurrence():
    request = jobs.parse_command_line(
        ["--gpu", "1", "--mem=16G", "--sbatch-opts", "--qos=low --exclusive", "JOB=2,4",
         "exp/JOB/log/train.JOB.log", "python", "-m", "x", "--fold", "JOB", "--out", "dJOB"],
        prog="test")
    assert request.options.gpu == 1 and request.options.mem == "16G"
    assert request.options.sbatch_opts == ["--qos=low", "--exclusive"]
    assert [(j.id, str(j.log), j.command, j.name) for j in request.jobs] == [
        (2, "exp/2/log/train.2.log", "python -m x --fold 2 --out d2", "train.2"),
        (4, "exp/4/log/train.4.log", "python -m x --fold 4 --out d4", "train.4"),
    ]


def test_parse_command_line_other_variable_name_and_no_spec():
    (job,) = jobs.parse_command_line(["log/a.log", "echo JOB"], prog="test").jobs
    assert (job.id, str(job.log), job.command) == (None, "log/a.log", "echo JOB")
    request = jobs.parse_command_line(["N=1:2", "log/N.log", "echo N JOB"], prog="test")
    assert [j.command for j in request.jobs] == ["echo 1 JOB", "echo 2 JOB"]


def test_shell_command_quotes_every_word_but_operators():
    assert jobs.shell_command(["echo a | wc"]) == "echo a | wc"
    assert jobs.shell_command(["echo", "a b", "|", "wc", "it's"]) == "echo 'a b' | wc 'it'\"'\"'s'"
    assert jobs.shell_command(["ls", "/x/R&D/a;b", "$(id)", "`id`", "2>&1"]) == \
        "ls '/x/R&D/a;b' '$(id)' '`id`' 2>&1"


def test_nothing_in_a_path_runs(tmp_path):
    """Paths holding &, ;, $( ), backticks and spaces reach the command as they are; nothing in them runs."""
    odd = tmp_path / "R&D; $(touch ran1) `touch ran2` x"
    odd.mkdir()
    (odd / "in.txt").write_text("hello\n")
    proc = subprocess.run([sys.executable, RUN, str(tmp_path / "log"), "cat", str(odd / "in.txt")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hello" in (tmp_path / "log").read_text()
    assert not (tmp_path / "ran1").exists() and not (tmp_path / "ran2").exists()


@pytest.mark.parametrize("args, message", [
    (["--bogus", "1", "log", "true"], "unknown option '--bogus'"),
    (["--gpu", "x", "log", "true"], "bad value 'x' for --gpu"),
    (["--mem", "lots", "log", "true"], "bad value 'lots' for --mem"),
    (["--time", "1h", "log", "true"], "bad value '1h' for --time"),
    (["--num-threads", "0", "log", "true"], "bad value '0' for --num-threads"),
    (["--sbatch-opts", "'unbalanced", "log", "true"], "bad value"),
    (["JOB=1:2", "log/a.log", "true"], "must contain JOB"),
    (["JOB=1:2", "log/a.JOB.log"], "expected a log file and a command"),
    (["--gpu"], "needs a value"),
])
def test_parse_command_line_errors(args, message):
    with pytest.raises(jobs.JobCommandError, match=message):
        jobs.parse_command_line(args, prog="test")


# ---- utils/run.py ---------------------------------------------------------------------

def test_local_jobs_run_in_parallel_with_their_own_logs(tmp_path):
    # Each job waits (up to 30 s) until all three have started: it succeeds only if
    # the three run at the same time.
    barrier = ('touch started.JOB; for i in $(seq 300); do '
               '[ "$(ls started.* | wc -l)" -ge 3 ] && break; sleep 0.1; done; '
               '[ "$(ls started.* | wc -l)" -ge 3 ] && echo job JOB && echo to stderr >&2')
    result = run_runner(RUN, "JOB=1:3", "exp/log/barrier.JOB.log", barrier, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # The runner's own output: one line as each job ends (the jobs' output goes to their logs).
    assert sorted(line.split(" (")[0] for line in result.stderr.splitlines()) == \
        [f"utils/run.py: job {i} done" for i in (1, 2, 3)]
    for i in (1, 2, 3):
        assert_log(tmp_path / f"exp/log/barrier.{i}.log", barrier.replace("JOB", str(i)),
                   [f"job {i}", "to stderr"], code=0)


def test_local_explicit_job_list(tmp_path):
    result = run_runner(RUN, "JOB=1,3", "log/echo.JOB.log", "echo", "id", "JOB", "a  b",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["echo.1.log", "echo.3.log"]
    for i in (1, 3):
        assert_log(tmp_path / f"log/echo.{i}.log", f"echo id {i} 'a  b'", [f"id {i} a  b"], 0)


def test_local_single_job_shell_string_with_pipe(tmp_path):
    command = "printf 'b\\na\\n' | sort | tr a-z A-Z; echo \"$((6 * 7))\""
    result = run_runner(RUN, "one.log", command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_log(tmp_path / "one.log", command, ["A", "B", "42"], 0)


def test_local_failing_jobs_fail_the_runner_and_are_named(tmp_path):
    command = "echo JOB; [ JOB -ne 2 ] && [ JOB -ne 4 ] || exit 3"
    result = run_runner(RUN, "JOB=1:4", "log/f.JOB.log", command, cwd=tmp_path)
    assert result.returncode == 1
    failed = [line for line in result.stderr.splitlines() if " failed (" in line]
    assert failed == [f"utils/run.py: job {i} failed (exit code 3), log: log/f.{i}.log"
                      for i in (2, 4)]
    assert "2 of 4 job(s) failed" in result.stderr
    # Each job that ends well is announced; a failed one shows the end of its log (its own output only).
    assert sorted(line.split(" (")[0] for line in result.stderr.splitlines() if " done (" in line) == \
        ["utils/run.py: job 1 done", "utils/run.py: job 3 done"]
    lines = result.stderr.splitlines()
    tail = lines[lines.index("utils/run.py: job 2 failed (exit code 3), log: log/f.2.log") + 1]
    assert tail == "utils/run.py:   | 2"
    for i in (1, 2, 3, 4):  # the other jobs ran to the end
        assert_log(tmp_path / f"log/f.{i}.log", command.replace("JOB", str(i)), [str(i)],
                   3 if i in (2, 4) else 0)


def test_local_pipefail(tmp_path):
    result = run_runner(RUN, "p.log", "false | cat", cwd=tmp_path)
    assert result.returncode == 1
    assert "the job failed (exit code 1), log: p.log" in result.stderr


def test_a_failed_jobs_message_reaches_the_console(tmp_path):
    command = "for i in $(seq 1 30); do echo noise $i; done; echo 'config.yaml: unknown key max_epochs' >&2; exit 1"
    result = run_runner(RUN, "t.log", command, cwd=tmp_path)
    assert result.returncode == 1
    shown = [line.split("| ", 1)[1] for line in result.stderr.splitlines() if "   | " in line]
    assert shown == [f"noise {i}" for i in range(24, 31)] + ["config.yaml: unknown key max_epochs"]


def test_local_bad_command_line_exits_2(tmp_path):
    result = run_runner(RUN, "JOB=1:2", "log/same.log", "true", cwd=tmp_path)
    assert result.returncode == 2
    assert "must contain JOB" in result.stderr
    assert not (tmp_path / "log").exists()


def test_local_max_jobs_run_limits_concurrency(tmp_path):
    # Each job counts the jobs running beside it; with --max-jobs-run 2 never above 2.
    command = ("touch running.JOB; ls running.* | wc -l > count.JOB; sleep 0.3; "
               "ls running.* | wc -l >> count.JOB; rm running.JOB")
    result = run_runner(RUN, "--max-jobs-run", "2", "JOB=1:5", "log/m.JOB.log", command,
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = [int(n) for i in range(1, 6) for n in (tmp_path / f"count.{i}").read_text().split()]
    assert max(counts) <= 2


def test_local_gpu_assignment_gives_each_job_its_own_gpus(tmp_path):
    # Jobs log start and end events; replaying them, a GPU is never held twice.
    command = ('echo "start JOB $CUDA_VISIBLE_DEVICES" >> events; sleep 0.2; '
               'echo "end JOB $CUDA_VISIBLE_DEVICES" >> events')
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="4,7,9")
    result = run_runner(RUN, "--gpu", "1", "JOB=1:6", "log/g.JOB.log", command, cwd=tmp_path,
                        env=env)
    assert result.returncode == 0, result.stderr
    held: set[str] = set()
    seen = {}
    for event, job, gpus in (line.split() for line in (tmp_path / "events").read_text().splitlines()):
        assert gpus in {"4", "7", "9"}
        if event == "start":
            assert gpus not in held
            held.add(gpus)
            seen[job] = gpus
        else:
            held.remove(gpus)
    assert sorted(seen) == [str(i) for i in range(1, 7)]

    too_many = run_runner(RUN, "--gpu", "4", "log/x.log", "true", cwd=tmp_path, env=env)
    assert too_many.returncode == 2 and "only 3 GPU(s) visible" in too_many.stderr


def test_local_gpu_two_per_job(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="0,1,2,3")
    result = run_runner(RUN, "--gpu", "2", "JOB=1:2", "log/g.JOB.log", "echo $CUDA_VISIBLE_DEVICES",
                        cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assigned = [log_lines(tmp_path / f"log/g.{i}.log")[2].split(",") for i in (1, 2)]
    assert all(len(gpus) == 2 for gpus in assigned)
    assert sorted(assigned[0] + assigned[1]) == ["0", "1", "2", "3"]


def test_local_gpus_from_nvidia_smi_or_none(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{fake_bin}:/usr/bin:/bin"
    command = "echo gpus=$CUDA_VISIBLE_DEVICES"
    no_gpu = run_runner(RUN, "--gpu", "1", "n.log", command, cwd=tmp_path, env=env)
    assert no_gpu.returncode == 0
    assert "no GPU found" in no_gpu.stderr
    assert log_lines(tmp_path / "n.log")[2] == "gpus="

    nvidia_smi = fake_bin / "nvidia-smi"
    nvidia_smi.write_text('#!/bin/sh\n[ "$*" = "--query-gpu=index --format=csv,noheader" ]'
                          ' && printf "0\\n1\\n"\n')
    nvidia_smi.chmod(0o755)
    result = run_runner(RUN, "--gpu", "1", "JOB=1:2", "g.JOB.log", command, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(log_lines(tmp_path / f"g.{i}.log")[2] for i in (1, 2)) == ["gpus=0", "gpus=1"]


def test_local_slurm_options_are_accepted(tmp_path):
    result = run_runner(RUN, "--mem", "16G", "--num-threads", "4", "--time", "24:00:00",
                        "--partition", "gpu", "--sbatch-opts", "--qos=high", "o.log", "echo ok",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert log_lines(tmp_path / "o.log")[2] == "ok"


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_local_signal_kills_running_jobs(tmp_path, signum):
    runner = subprocess.Popen(
        [sys.executable, RUN, "JOB=1:2", "log/s.JOB.log", "sleep 300 & echo $! > pid.JOB; wait"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    pid_files = [tmp_path / "pid.1", tmp_path / "pid.2"]
    for _ in range(300):
        if all(p.exists() and p.read_text().strip() for p in pid_files):
            break
        time.sleep(0.1)
    sleepers = [int(p.read_text()) for p in pid_files]
    # A job writes its pid before the runner, once scheduled, records it as running; on a loaded machine the signal
    # could otherwise come in between (that job still dies with the runner, by its parent-death signal).
    time.sleep(1.0)
    runner.send_signal(signum)
    _, stderr = runner.communicate(timeout=30)
    assert runner.returncode == 128 + signum
    assert "stopped 2 running job(s)" in stderr
    for _ in range(50):
        if all(process_gone(pid) for pid in sleepers):
            break
        time.sleep(0.1)
    assert all(process_gone(pid) for pid in sleepers)


# ---- utils/slurm.py: the batch script, without Slurm ----------------------------------

def test_batch_script_directives_and_exit_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    request = jobs.parse_command_line(
        ["--gpu", "2", "--mem", "16G", "--num-threads", "4", "--time", "4:00:00",
         "--partition", "gpu", "JOB=3", "exp/100%/train.JOB.log", "echo JOB; exit 5"], prog="t")
    (job,) = request.jobs
    directives = slurm.batch_directives(job, request.options)
    assert directives == [
        "#SBATCH --job-name=train.3",
        f"#SBATCH --output={tmp_path}/exp/100%%/train.3.log",
        "#SBATCH --open-mode=truncate",
        f"#SBATCH --chdir={tmp_path}",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16G",
        "#SBATCH --time=4:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:2",
    ]
    script, exit_file = slurm.SlurmBackend.script_paths(job)
    assert (script, exit_file) == (tmp_path / "exp/100%/q/train.3.sh",
                                   tmp_path / "exp/100%/q/train.3.exit")
    # Run the script as Slurm would (stdout to the log): log and exit status file.
    script.parent.mkdir(parents=True)
    script.write_text(jobs.wrapper_script(job, exit_file, directives))
    with open(job.log, "w") as log:
        code = subprocess.run(["bash", str(script)], stdout=log, stderr=subprocess.STDOUT).returncode
    assert code == 5
    assert exit_file.read_text() == "5\n"
    assert_log(job.log, "echo 3; exit 5", ["3"], 5)


def test_slurm_end_detection_from_exit_files_and_queue_states(tmp_path, monkeypatch):
    """How the Slurm runner decides that a job ended, with squeue's answers faked."""
    backend = slurm.SlurmBackend(jobs.JobOptions(), prog="t")
    names = ["ok", "bad", "cancelled", "gone"]
    queued = {name: jobs.Job(None, tmp_path / f"{name}.log", "true") for name in names}
    for i, name in enumerate(names):
        backend.queued[queued[name]] = slurm._Submitted(str(100 + i), tmp_path / f"{name}.exit")
    (tmp_path / "ok.exit").write_text("0\n")
    (tmp_path / "bad.exit").write_text("7\n")
    answers = iter([
        {"102": "CANCELLED", "103": "RUNNING"},
        {"103": "COMPLETED"},  # ended, its exit file may still be on its way
        {},  # then gone from the queue
    ])
    monkeypatch.setattr(backend, "squeue_states", lambda: next(answers))
    monkeypatch.setattr(slurm, "EXIT_FILE_GRACE_S", 0.2)
    ended = {job.log.stem: failure for job, failure in backend._ended()}
    assert ended == {"ok": None, "bad": "exit code 7",
                     "cancelled": "Slurm job 102 ended CANCELLED"}
    assert backend._ended() == []  # within the grace period
    time.sleep(0.3)
    ((job, failure),) = backend._ended()
    assert job is queued["gone"]
    assert failure == f"Slurm job 103 ended (COMPLETED) without writing {tmp_path}/gone.exit"
    assert backend.queued == {}


# ---- utils/slurm.py on a real Slurm ---------------------------------------------------

def slurm_unavailable_reason() -> str | None:
    if shutil.which("sbatch") is None:
        return "sbatch not on PATH (start a test cluster with .ci/slurm.sh start)"
    # scontrol ping answers at once; sinfo waits seconds for a controller that is down.
    for command in (["scontrol", "ping"], ["sinfo", "--noheader"]):
        try:
            answer = subprocess.run(command, capture_output=True, text=True, timeout=15)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{command[0]} does not respond: {error}"
        if answer.returncode != 0 or not answer.stdout.strip():
            reason = (answer.stdout + answer.stderr).strip().split("\n")[0] or "no answer"
            return f"Slurm does not respond to {' '.join(command)}: {reason}"
    return None


SLURM_UNAVAILABLE = slurm_unavailable_reason()
needs_slurm = pytest.mark.skipif(SLURM_UNAVAILABLE is not None, reason=str(SLURM_UNAVAILABLE))


@needs_slurm
def test_slurm_two_jobs_succeed_with_logs(tmp_path):
    command = "echo job JOB cpus $SLURM_CPUS_PER_TASK; sleep 1"
    result = run_runner(SLURM, "--num-threads", "1", "--mem", "10M", "JOB=1:2",
                        "exp/log/s.JOB.log", command, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    for i in (1, 2):
        assert_log(tmp_path / f"exp/log/s.{i}.log", command.replace("JOB", str(i)),
                   [f"job {i} cpus 1"], 0)
        assert (tmp_path / f"exp/log/q/s.{i}.exit").read_text() == "0\n"
        assert "#SBATCH --mem=10M" in (tmp_path / f"exp/log/q/s.{i}.sh").read_text()


@needs_slurm
def test_slurm_failing_job_fails_the_runner(tmp_path):
    result = run_runner(SLURM, "JOB=1,2", "log/f.JOB.log", "echo JOB; exit $((JOB * 2 - 2))",
                        cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "utils/slurm.py: job 2 failed (exit code 2), log: log/f.2.log" in result.stderr
    assert "job 1 failed" not in result.stderr
    assert_log(tmp_path / "log/f.2.log", "echo 2; exit $((2 * 2 - 2))", ["2"], 2)


@needs_slurm
def test_slurm_cancelled_job_fails_with_its_state(tmp_path):
    # No JOB= spec, so $SLURM_JOB_ID is left as it is.
    result = run_runner(SLURM, "c.log", "scancel $SLURM_JOB_ID; sleep 30", cwd=tmp_path,
                        timeout=120)
    assert result.returncode == 1
    assert "the job failed (Slurm job" in result.stderr
    assert "ended CANCELLED), log: c.log" in result.stderr
    assert not (tmp_path / "q/c.exit").exists()


@needs_slurm
def test_slurm_sigterm_cancels_the_jobs(tmp_path):
    runner, slurm_id = start_sleeping_slurm_job(tmp_path, "t.log")
    runner.send_signal(signal.SIGTERM)
    _, stderr = runner.communicate(timeout=30)
    assert runner.returncode == 128 + signal.SIGTERM
    assert "stopped 1 running job(s)" in stderr
    assert slurm_state(slurm_id) == "CANCELLED"


def start_sleeping_slurm_job(tmp_path, log: str) -> tuple[subprocess.Popen, str]:
    """A Slurm runner with one job that sleeps, and the job's Slurm id once it runs."""
    runner = subprocess.Popen(
        [sys.executable, SLURM, log, "echo $SLURM_JOB_ID > slurm_id; sleep 300"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    id_file = tmp_path / "slurm_id"
    for _ in range(300):
        if id_file.exists() and id_file.read_text().strip():
            break
        time.sleep(0.1)
    return runner, id_file.read_text().strip()


def slurm_state(slurm_id: str, until_not: tuple[str, ...] = ("RUNNING", "COMPLETING"), tries: int = 100) -> str:
    """The job's state once it has left ``until_not`` (or the last one seen)."""
    for _ in range(tries):
        state = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={slurm_id}"],
                               capture_output=True, text=True).stdout.strip()
        if state not in until_not:
            break
        time.sleep(0.1)
    return state


@needs_slurm
def test_slurm_sigkill_of_the_runner_then_the_next_start_cancels_its_job(tmp_path):
    runner, slurm_id = start_sleeping_slurm_job(tmp_path, "k.log")
    runner.kill()
    runner.communicate(timeout=30)
    assert slurm_state(slurm_id, until_not=(), tries=1) == "RUNNING"  # a killed runner cannot cancel it
    again = subprocess.run([sys.executable, SLURM, "--cancel-recorded", str(tmp_path / "q")],
                           capture_output=True, text=True, timeout=60)
    assert f"cancelled 1 Slurm job(s) of an earlier run that was killed (runner pid {runner.pid}" in again.stderr
    assert slurm_state(slurm_id) == "CANCELLED"


@needs_slurm
def test_slurm_rejected_submission_fails_the_runner(tmp_path):
    result = run_runner(SLURM, "--partition", "no_such_partition", "r.log", "true",
                        cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert "the job failed (sbatch" in result.stderr and "log: r.log" in result.stderr


def test_jobs_die_with_a_killed_runner(tmp_path):
    """kill -9 of the runner's process group (a killed run.sh) stops every job it started: nothing outlives it."""
    runner = subprocess.Popen([sys.executable, RUN, "JOB=1:2", "log/sleep.JOB.log",
                               "echo $$ > pid.JOB; exec sleep 60"], cwd=tmp_path, start_new_session=True)
    pid_files = [tmp_path / "pid.1", tmp_path / "pid.2"]
    deadline = time.time() + 30
    while not all(p.exists() and p.read_text().strip() for p in pid_files):
        assert time.time() < deadline, "the jobs did not start"
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in pid_files]
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.time() + 10
    while any(alive(pid) for pid in pids):
        assert time.time() < deadline, "a job outlived its runner"
        time.sleep(0.1)


def processes_with_env(marker: str) -> list[tuple[int, str]]:
    """Live processes (pid, command line) whose environment holds ``marker`` (a job's, and all it started)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                found.append((int(entry), Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except OSError:  # ended, or not ours
            pass
    return found


def wait_until_none_left(marker: str, seconds: float) -> list[tuple[int, str]]:
    """Wait for every process carrying ``marker`` to end; return (and then kill) those still there."""
    deadline = time.time() + seconds
    while (left := processes_with_env(marker)) and time.time() < deadline:
        time.sleep(0.1)
    for pid, _ in left:
        os.kill(pid, signal.SIGKILL)
    return left


def test_no_job_outlives_a_runner_killed_while_it_starts_them(tmp_path):
    """kill -9 of the runner's process group at once after it starts its jobs, when a job may not yet be set up to
    die with it, repeated to hit that moment: no job process survives (the death signal is set before exec, and a
    job whose runner died before that exits at once)."""
    marker = f"SER_TEST_JOB={tmp_path.name}"
    env = {**os.environ, "SER_TEST_JOB": tmp_path.name}
    for attempt in range(4):
        first_log = tmp_path / f"log{attempt}" / "j.1.log"
        runner = subprocess.Popen([sys.executable, RUN, "JOB=1:12", f"log{attempt}/j.JOB.log", "sleep 60"],
                                  cwd=tmp_path, env=env, start_new_session=True)
        while not first_log.exists() and runner.poll() is None:
            pass  # no sleep: the kill lands while the runner forks its jobs
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    assert wait_until_none_left(marker, 8) == []


# A runner killed while its job's child process is still being set up (between fork and exec): the set-up is
# slowed here to make that moment certain.
RUNNER_KILLED_DURING_SETUP = """
import importlib.util, os, signal, sys, threading, time
spec = importlib.util.spec_from_file_location("local_runner", sys.argv[1])
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)
set_up = runner._terminate_with_parent
def slow_set_up(*args):
    time.sleep(0.5)
    set_up(*args)
runner._terminate_with_parent = slow_set_up
request = runner.jobs.parse_command_line(["job.log", "sleep 60"], "run.py")
threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGKILL)).start()
runner.LocalBackend(request.options, "run.py").start(request.jobs[0])
time.sleep(60)
"""


def test_no_job_outlives_a_runner_killed_before_its_job_is_set_up(tmp_path):
    marker = f"SER_TEST_JOB={tmp_path.name}"
    subprocess.run([sys.executable, "-c", RUNNER_KILLED_DURING_SETUP, RUN], cwd=tmp_path, timeout=30,
                   env={**os.environ, "SER_TEST_JOB": tmp_path.name})
    assert wait_until_none_left(marker, 3) == []


# A run as ser.sh starts it (LOCKED_RUN COMMAND_LINE DIR... -- COMMAND...): the workspace DIRs locked
# (utils/lock_workspace.sh), then COMMAND (its jobs: utils/run.py).
LOCKED_RUN = """
set -euo pipefail
log() { echo "$*" >&2; }
recipe() { "$PYTHON" -m ser.bin.recipe "$@"; }
command_line=$1 exp_root=$PWD/exp dirs=()
shift
while [ "$1" != -- ]; do dirs+=("$PWD/$1"); shift; done
shift
. "$REPO/utils/lock_workspace.sh" "${dirs[@]}"
"$@"
"""


def locked_run_env(tmp_path) -> dict:
    return {**os.environ, "SER_TEST_JOB": tmp_path.name, "REPO": str(REPO), "PYTHON": sys.executable,
            "PYTHONPATH": str(REPO)}


def test_a_killed_run_s_job_left_running_keeps_its_workspace_and_is_named_at_once(tmp_path):
    """A job that escaped its killed run (a session of its own, beyond the job's group) inherited the workspace lock
    from the runner: the next start refuses within seconds, naming its pid and command line."""
    env = locked_run_env(tmp_path)
    first = subprocess.Popen(["bash", "-c", LOCKED_RUN, "bash", "first", "data", "exp", "--", sys.executable, RUN,
                              "j.log", "setsid sleep 60"], cwd=tmp_path, env=env, start_new_session=True)
    deadline = time.time() + 30
    while not [cmd for _, cmd in processes_with_env(f"SER_TEST_JOB={tmp_path.name}") if cmd == "sleep 60 "]:
        assert time.time() < deadline and first.poll() is None, "the job did not start"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    try:
        start = time.time()
        second = subprocess.run(["bash", "-c", LOCKED_RUN, "bash", "second", "data", "exp", "--", "echo", "started"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        (left_pid, _), = [p for p in processes_with_env(f"SER_TEST_JOB={tmp_path.name}") if p[1] == "sleep 60 "]
        assert second.returncode == 1 and "started" not in second.stdout
        assert f"processes of the ended run {first.pid} still hold {tmp_path / 'data' / '.ser.lock'}" in second.stderr
        assert f"pid {left_pid} (sleep 60)" in second.stderr
        assert time.time() - start < 15
    finally:
        wait_until_none_left(f"SER_TEST_JOB={tmp_path.name}", 0)


def test_a_run_killed_a_moment_ago_is_waited_for_even_before_it_is_reaped(tmp_path):
    """Right after kill -9 of a run's process group, its ser.sh can be a zombie (ended, not yet reaped) while a
    dying job still holds the lock: the next start waits for the job, as for any ended run, and is not refused as
    if the run were alive."""
    if shutil.which("flock") is None:
        pytest.skip("flock (util-linux) is not installed: workspaces are not locked without it")
    env = locked_run_env(tmp_path)
    (tmp_path / "data").mkdir()
    lock = tmp_path / "data" / ".ser.lock"
    zombie = subprocess.Popen(["true"])  # not waited for: a zombie until the finally below
    holder = None
    try:
        deadline = time.time() + 10
        while open(f"/proc/{zombie.pid}/stat").read().rsplit(") ", 1)[1][0] != "Z":
            assert time.time() < deadline, "the child did not end"
            time.sleep(0.01)
        lock.write_text(f"pid {zombie.pid}, started 2026-12-06 14:24:18, command: first\n")
        holder = subprocess.Popen(["flock", str(lock), "sleep", "1"])  # the dying job, for about a second
        while subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            assert time.time() < deadline and holder.poll() is None, "the lock was not taken"
            time.sleep(0.01)
        second = subprocess.run(["bash", "-c", LOCKED_RUN, "bash", "second", "data", "--", "echo", "started"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    finally:
        zombie.wait()
        if holder is not None:
            holder.wait()
    assert second.returncode == 0 and second.stdout == "started\n", second.stderr
    assert f"the run that held {tmp_path / 'data'} (pid {zombie.pid}) has ended; waiting" in second.stderr


def test_a_run_refused_by_a_busy_workspace_creates_nothing(tmp_path):
    """The exp dir held by another run, a second run that would also write new data and dump dirs is refused, and
    neither dir (nor a lock file) is made; the other run's lock file still names it."""
    env = locked_run_env(tmp_path)
    first = subprocess.Popen(["bash", "-c", LOCKED_RUN, "bash", "first", "exp", "--", "sleep", "60"], cwd=tmp_path,
                             env=env, start_new_session=True)
    lock = tmp_path / "exp" / ".ser.lock"
    deadline = time.time() + 30
    while not (lock.exists() and lock.read_text().startswith(f"pid {first.pid},")):
        assert time.time() < deadline and first.poll() is None, "the first run did not lock exp"
        time.sleep(0.05)
    try:
        second = subprocess.run(["bash", "-c", LOCKED_RUN, "bash", "second", "data", "dump", "exp", "--", "echo",
                                 "started"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode == 1 and "started" not in second.stdout
    assert f"another run is using {tmp_path / 'exp'}: pid {first.pid}, started" in second.stderr
    assert sorted(os.listdir(tmp_path)) == ["exp"] and lock.read_text().startswith(f"pid {first.pid},")


# ---- utils/slurm.py: a killed runner's jobs are cancelled, with fake Slurm commands -------------

def start_fake_slurm_runner(tmp_path, env, calls):
    """utils/slurm.py with two jobs, once both are submitted and recorded."""
    runner = subprocess.Popen([sys.executable, SLURM, "JOB=1:2", "log/k.JOB.log", "sleep 300"],
                              cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    records = tmp_path / "log" / "q"
    deadline = time.time() + 30
    while not (len(calls("sbatch")) == 2 and [r for r in records.glob("slurm_jobs.*")
                                                 if len(r.read_text().split()) == 4]):
        assert time.time() < deadline and runner.poll() is None, "the runner did not submit its jobs"
        time.sleep(0.05)
    (record,) = records.glob("slurm_jobs.*")
    assert record.name == f"slurm_jobs.{runner.pid}"
    assert record.read_text().split()[2:] == ["101", "102"]
    return runner, record


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_slurm_runner_stopped_by_a_signal_cancels_its_jobs(tmp_path, fake_slurm, signum):
    env, calls = fake_slurm
    runner, record = start_fake_slurm_runner(tmp_path, env, calls)
    runner.send_signal(signum)
    _, stderr = runner.communicate(timeout=30)
    assert runner.returncode == 128 + signum
    assert "stopped 2 running job(s)" in stderr
    assert calls("scancel") == ["scancel 101 102"]
    assert not record.exists()


def test_slurm_jobs_of_a_killed_runner_are_cancelled_at_the_next_start(tmp_path, fake_slurm):
    """SIGKILL leaves the runner no chance: its record names its jobs, and the next runner in that log dir (or
    --cancel-recorded) cancels those still queued, saying so."""
    env, calls = fake_slurm
    runner, record = start_fake_slurm_runner(tmp_path, env, calls)
    runner.kill()
    runner.communicate(timeout=30)
    assert calls("scancel") == [] and record.exists()
    (tmp_path / "fake_slurm" / "queue").write_text("102\n")  # 101 has ended meanwhile
    # A new runner in the same log dir: it cancels 102 first; its own job then fails at once (sbatch refuses it).
    (tmp_path / "fake_bin" / "sbatch").write_text("#!/bin/bash\necho 'refused' >&2; exit 1\n")
    again = run_runner(SLURM, "JOB=1", "log/k.JOB.log", "true", cwd=tmp_path, env=env)
    assert calls("scancel") == ["scancel 102"]
    assert (f"utils/slurm.py: cancelled 1 Slurm job(s) of an earlier run that was killed (runner pid {runner.pid}, "
            f"record {record}): 102") in again.stderr
    assert again.returncode == 1 and "refused" in again.stderr
    assert list(record.parent.glob("slurm_jobs.*")) == []  # the failed runner removed its own record too


def test_cancel_recorded_leaves_live_runners_and_forgets_ended_jobs(tmp_path, fake_slurm):
    env, calls = fake_slurm
    records = tmp_path / "records"
    records.mkdir()
    live = records / f"slurm_jobs.{os.getpid()}"  # this process: alive, with its own start time
    live.write_text(f"{os.getpid()} {jobs.process_start(os.getpid())}\n7\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    ended = records / f"slurm_jobs.{dead.pid}"
    ended.write_text(f"{dead.pid} 1\n8\n9\n")  # neither 8 nor 9 is queued any more
    reused = records / f"slurm_jobs.{os.getpid() + 0}x"  # not a record of ours: ignored
    reused.write_text("garbage")
    (tmp_path / "fake_slurm" / "queue").write_text("7\n")
    result = subprocess.run([sys.executable, SLURM, "--cancel-recorded", str(records)], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    assert calls("scancel") == []
    assert live.exists() and not ended.exists() and reused.exists()
    # The same pid, started at another time (a reused pid): that runner is dead, its queued job is cancelled.
    live.write_text(f"{os.getpid()} 1\n7\n")
    result = subprocess.run([sys.executable, SLURM, "--cancel-recorded", str(records)], env=env,
                            capture_output=True, text=True)
    assert calls("scancel") == ["scancel 7"] and "cancelled 1 Slurm job(s)" in result.stderr
    assert not live.exists()


def test_a_runner_killed_a_moment_ago_is_ended_before_it_is_reaped(tmp_path, fake_slurm):
    """A runner killed with its process group can be a zombie (ended, not yet reaped) when the next run starts: its
    record is a dead runner's, and its jobs still queued are cancelled (ser.jobs.process_start)."""
    env, calls = fake_slurm
    records = tmp_path / "records"
    records.mkdir()
    zombie = subprocess.Popen(["sleep", "0.2"])  # not waited for: a zombie until the finally below
    try:
        started = jobs.process_start(zombie.pid)
        stat = f"/proc/{zombie.pid}/stat"
        deadline = time.time() + 10
        while open(stat).read().rsplit(") ", 1)[1][0] != "Z":
            assert time.time() < deadline, "the child did not end"
            time.sleep(0.01)
        assert started and jobs.process_start(zombie.pid) is None
        (records / f"slurm_jobs.{zombie.pid}").write_text(f"{zombie.pid} {started}\n7\n")
        (tmp_path / "fake_slurm" / "queue").write_text("7\n")
        result = subprocess.run([sys.executable, SLURM, "--cancel-recorded", str(records)], env=env,
                                capture_output=True, text=True)
    finally:
        zombie.wait()
    assert calls("scancel") == ["scancel 7"] and f"(runner pid {zombie.pid}" in result.stderr
