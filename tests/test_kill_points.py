"""A run killed at any point resumes, on a rerun of the same command, to exactly an uninterrupted run.

The fault model: the ``frugal run`` process dies at once (SIGKILL: no handler, no ``finally``, Python's
buffers lost), at any instant, and may die again while the rerun resumes it. What it had handed to
the kernel survives (the page cache outlives the process); a power loss, which could also lose
what was written but not yet synced, is not modelled. Stop signals (SIGTERM, SIGINT) may come at
any instant too.

- kill -9 at random times: a fraction of an uninterrupted run's wall time, drawn by hypothesis;
- kill -9 at each write boundary: ``fault_runner.py`` kills the process just before or just after
  the N-th call of a function that writes the run directory (config.json, the CSVs, orbax's
  arrays, a rename, a removal), in a new run and in a resumed one;
- SIGTERM and SIGINT at random times and in each phase of a run (JAX starting, before the loop,
  in the loop, after the run).

After the faults, a rerun to the end exits 0 and its run directory holds the three CSVs of the
uninterrupted run byte for byte, no temporary file, and the checkpoints the uninterrupted run kept
(no more: ``checkpoint/keep`` holds after a fault too).
The random and the full sweeps are ``slow``; one kill per kind of boundary runs in the default suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from fault_runner import BOUNDARIES, COUNTS

RUNNER = Path(__file__).with_name("fault_runner.py")
# 8 segments of 500 env steps; a checkpoint after each (2 kept), an evaluation every other one
GRID = {
    "num_seeds": [2],
    "total_steps": [4000],
    "network": [{"hidden": [[16]]}],
    "replay": [{"capacity": [1000]}],
    "train": [{"learning_starts": [500]}],
    "eval": [{"every": [1000], "episodes": [2]}],
    "checkpoint": [{"every": [500], "keep": [2], "final": [True]}],
}
RUN = Path("kill_points") / "1"  # the run directory under --logs
CSVS = ("result_Train.csv", "result_Test.csv", "metrics.csv")
# hypothesis keeps no database and does not shrink a failure (each example takes seconds): it reports the draw
RANDOM = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.too_slow]}
NO_SHRINK = (Phase.explicit, Phase.generate)


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run: its CSVs, the checkpoints it kept, what each write boundary wrote (in
    order), and its wall time once compiled programs are cached (as for every later process)."""

    config: Path
    env: dict[str, str]
    csvs: dict[str, bytes]
    checkpoints: list[str]
    calls: dict[str, list[str]]
    wall: float = 0.0
    started: float = 0.0  # seconds until config.json exists: JAX has started and the run begins


# -- processes ---------------------------------------------------------------------------------
def frugal_args(config: Path, logs: Path) -> list[str]:
    return ["run", str(config), "--logs", str(logs), "--no-progress"]


def cli(reference: Reference, logs: Path) -> list[str]:
    return [sys.executable, "-m", "frugalrl.cli", *frugal_args(reference.config, logs)]


def runner(reference: Reference, logs: Path, fault: str, n: int | None = None) -> list[str]:
    """``fault_runner.py``: ``fault`` 'count', or 'BOUNDARY:when' killed at call ``n``."""
    head = [fault] if n is None else [fault, str(n)]
    return [sys.executable, str(RUNNER), *head, "--", *frugal_args(reference.config, logs)]


def launch(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def signal_after(process: subprocess.Popen, seconds: float, signum: int) -> bool:
    """Send ``signum`` once ``seconds`` have passed; False if the process had ended before."""
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signum)
        return True


def signal_when(process: subprocess.Popen, ready: Callable[[], bool], signum: int) -> bool:
    """Send ``signum`` as soon as ``ready()``; False if the process ended first."""
    while process.poll() is None:
        if ready():
            process.send_signal(signum)
            return True
        time.sleep(0.005)
    return False


# -- what a rerun must leave --------------------------------------------------------------------
def checkpoint_steps(run_dir: Path) -> list[str]:
    folder = run_dir / "checkpoints"
    return sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []


def first_difference(got: bytes | None, expected: bytes) -> str:
    if got is None:
        return "missing"
    got_lines, lines = got.splitlines(), expected.splitlines()
    for number, (line, wanted) in enumerate(zip(got_lines, lines, strict=False)):
        if line != wanted:
            return f"line {number + 1} is {line!r}, expected {wanted!r}"
    return f"{len(got_lines)} lines, expected {len(lines)}"


def differences(run_dir: Path, reference: Reference) -> list[str]:
    """How a finished run directory differs from the uninterrupted run's (none: [])."""
    found = []
    for name in CSVS:
        got = (run_dir / name).read_bytes() if (run_dir / name).exists() else None
        if got != reference.csvs[name]:
            found.append(f"{name}: {first_difference(got, reference.csvs[name])}")
    temporary = sorted(str(path.relative_to(run_dir)) for path in run_dir.rglob("*tmp*"))
    if temporary:
        found.append(f"temporary files left: {temporary}")
    if checkpoint_steps(run_dir) != reference.checkpoints:
        found.append(
            f"checkpoints {checkpoint_steps(run_dir)} left, the uninterrupted run kept {reference.checkpoints}"
        )
    return found


def rerun(reference: Reference, logs: Path) -> list[str]:
    """Run the plain command to the end: how its run directory differs from the uninterrupted run's."""
    status, _, err = finish(launch(cli(reference, logs), reference.env))
    if status != 0:
        return [f"the rerun exited {status}: {err.strip().splitlines()[-1:] or err!r}"]
    return differences(logs / RUN, reference)


def on_disk(run_dir: Path) -> str:
    """What a killed run left: the files of its directory and its complete checkpoints."""
    if not run_dir.exists():
        return "no run directory"
    files = sorted(entry.name for entry in run_dir.iterdir())
    complete = [step for step in checkpoint_steps(run_dir) if (run_dir / "checkpoints" / step / "COMMITTED").exists()]
    return f"files {files}, complete checkpoints {complete}"


# -- the uninterrupted run -------------------------------------------------------------------------
def counted(out: str) -> dict[str, list[str]]:
    line = next(line for line in reversed(out.splitlines()) if line.startswith(COUNTS))
    return json.loads(line[len(COUNTS) :])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """``fault_runner.py count`` uninterrupted (compiling, and filling this module's XLA cache): the
    CSVs and checkpoints every faulty run must end with, and the calls of each write boundary."""
    folder = tmp_path_factory.mktemp("kill_points")
    config = folder / "kill_points.json"
    config.write_text(json.dumps(GRID))
    env = {**os.environ, "FRUGAL_XLA_CACHE": str(folder / "xla")}
    env.pop("XLA_FLAGS", None)  # the CLI picks the device count, as in test_faults
    unknown = Reference(config, env, {}, [], {})
    status, out, err = finish(launch(runner(unknown, folder / "counted", "count"), env))
    assert status == 0, err
    run_dir = folder / "counted" / RUN
    csvs = {name: (run_dir / name).read_bytes() for name in CSVS}
    return Reference(config, env, csvs, checkpoint_steps(run_dir), counted(out))


@pytest.fixture(scope="module")
def timed(reference, tmp_path_factory) -> Reference:
    """The plain CLI uninterrupted, its programs cached as for every later process: it ends as the
    counting run did (the runner changes nothing), and its wall time scales the random faults."""
    logs = tmp_path_factory.mktemp("plain")
    began = time.perf_counter()
    process = launch(cli(reference, logs), reference.env)
    while not (logs / RUN / "config.json").exists() and process.poll() is None:
        time.sleep(0.01)
    started = time.perf_counter() - began
    status, _, err = finish(process)
    wall = time.perf_counter() - began
    assert status == 0 and differences(logs / RUN, reference) == [], err
    return replace(reference, wall=wall, started=started)


# -- kill -9 at random times -----------------------------------------------------------------------
def kill_9_after(reference: Reference, logs: Path, fraction: float) -> str:
    """The plain command, killed ``fraction`` of the way through an uninterrupted run's training (from
    config.json to the end); a negative fraction lands that share of JAX's start before it."""
    process = launch(cli(reference, logs), reference.env)
    span = reference.wall - reference.started if fraction >= 0 else reference.started
    signal_after(process, reference.started + fraction * span, signal.SIGKILL)
    status, _, err = finish(process)
    killed = status == -signal.SIGKILL  # a kill sent as the process exited (a resume ends early) is no kill
    assert status in (-signal.SIGKILL, 0), err
    at = f"{fraction:+.3f} of training (started at {reference.started:.2f} s, ended at {reference.wall:.2f} s)"
    return f"killed at {at}: {on_disk(logs / RUN)}" if killed else "ended first"


@pytest.mark.slow
@settings(max_examples=20, phases=NO_SHRINK, **RANDOM)
@given(first=st.floats(min_value=-0.2, max_value=1.0), second=st.none() | st.floats(min_value=-0.2, max_value=1.0))
def test_a_run_killed_at_random_times_resumes_to_the_uninterrupted_run(timed, tmp_path_factory, first, second):
    """kill -9 at a drawn time, and maybe again while the rerun resumes; a last rerun ends it."""
    logs = tmp_path_factory.mktemp("killed")
    for fraction in (first, second):
        if fraction is not None:
            landed = kill_9_after(timed, logs, fraction)
            note(landed)
            print(landed)  # shown by -rP: where the kills landed
    assert rerun(timed, logs) == []


# -- kill -9 at each write boundary --------------------------------------------------------------
def kill_9_at(reference: Reference, logs: Path, fault: str, n: int) -> list[str]:
    """Kill at call ``n`` of ``fault`` ('BOUNDARY:when'), rerun to the end; what differs."""
    status, _, err = finish(launch(runner(reference, logs, fault, n), reference.env))
    if status != -signal.SIGKILL:
        return [f"the run was not killed (exit {status}): {err.strip().splitlines()[-1:]}"]
    return rerun(reference, logs)


def spread(count: int) -> list[int]:
    """Every call of a rare boundary; the first, second, middle, last but one and last of a frequent one."""
    if count <= 8:
        return list(range(1, count + 1))
    return sorted({1, 2, (count + 1) // 2, count - 1, count})


def sweep(reference: Reference, calls: dict[str, list[str]], fault: str, folder: Callable[[], Path]) -> list[str]:
    """Kill at a spread of the calls of ``fault``, each in a fresh ``folder()``; every difference found."""
    boundary = fault.partition(":")[0]
    found = []
    for n in spread(len(calls[boundary])):
        logs = folder()
        found += [f"{fault} #{n} ({calls[boundary][n - 1]}): {d}" for d in kill_9_at(reference, logs, fault, n)]
    return found


FAULTS = [f"{boundary}:{when}" for boundary in BOUNDARIES for when in ("before", "after")]
QUICK = [
    ("RunDir.write_config:after", "first"),  # config.json written, nothing else
    pytest.param("CsvLog.write:after", "middle", marks=pytest.mark.slow),  # rows in Python's buffer only
    ("CsvLog.flush:after", "middle"),  # rows on disk beyond the last checkpoint
    ("os.replace:before", "middle"),  # a checkpoint's meta.json or COMMITTED not renamed yet
    ("orbax.save:after", "middle"),  # orbax writing the arrays in the background
    ("shutil.rmtree:before", "first"),  # a checkpoint beyond `keep` not yet removed
]


@pytest.mark.parametrize(("fault", "position"), QUICK)
def test_a_run_killed_at_a_write_boundary_resumes_to_the_uninterrupted_run(reference, tmp_path, fault, position):
    count = len(reference.calls[fault.partition(":")[0]])
    n = {"first": 1, "middle": (count + 1) // 2, "last": count}[position]
    assert kill_9_at(reference, tmp_path, fault, n) == []


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_a_run_killed_at_any_call_of_a_write_boundary_resumes_to_the_uninterrupted_run(
    reference, tmp_path_factory, fault
):
    assert sweep(reference, reference.calls, fault, lambda: tmp_path_factory.mktemp("boundary")) == []


@pytest.fixture(scope="module")
def interrupted(reference, tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """A run killed as its checkpoint at step 2500 began (its CSVs hold rows beyond the one at 2000,
    which the resume cuts back), and the calls of each write boundary of its resume."""
    logs = tmp_path_factory.mktemp("interrupted")
    status, _, err = finish(launch(runner(reference, logs, "orbax.save:before", 5), reference.env))
    assert status == -signal.SIGKILL, err
    counting = tmp_path_factory.mktemp("resumed")
    shutil.copytree(logs, counting, dirs_exist_ok=True)
    status, out, err = finish(launch(runner(reference, counting, "count"), reference.env))
    assert status == 0 and differences(counting / RUN, reference) == [], err
    return logs, counted(out)


def a_copy(template: Path, folder: Path) -> Path:
    shutil.copytree(template, folder, dirs_exist_ok=True)
    return folder


RESUME_FAULTS = [
    f"{boundary}:{when}"
    for boundary in ("RunDir.write_config", "CsvLog.open", "os.replace")
    for when in ("before", "after")
]


@pytest.mark.slow
@pytest.mark.parametrize("fault", RESUME_FAULTS)
def test_a_resume_killed_at_a_write_boundary_resumes_to_the_uninterrupted_run(
    reference, interrupted, tmp_path_factory, fault
):
    """Killed again while it resumes: writing config.json, cutting the CSVs back (the renames of
    config.json, the three CSVs and the next checkpoint's meta.json are os.replace's first five)."""
    template, calls = interrupted
    if fault.startswith("os.replace"):
        calls = {**calls, "os.replace": calls["os.replace"][:5]}
    assert calls["os.replace"][1:4] == ["1/result_Train.csv", "1/result_Test.csv", "1/metrics.csv"]
    assert sweep(reference, calls, fault, lambda: a_copy(template, tmp_path_factory.mktemp("resume"))) == []


# -- stop signals -----------------------------------------------------------------------------------
def stop_lines(err: str) -> list[str]:
    return [line for line in err.strip().splitlines() if line.startswith("frugal: error")]


def signalled(reference: Reference, logs: Path, send: Callable[[subprocess.Popen], bool]) -> tuple[bool, int, str]:
    """The plain command, given a signal by ``send``: whether it was sent, the exit status, stderr."""
    process = launch(cli(reference, logs), reference.env)
    sent = send(process)
    status, _, err = finish(process)
    return sent, status, err


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@settings(max_examples=5, phases=NO_SHRINK, **RANDOM)
@given(fraction=st.floats(min_value=0.0, max_value=1.2))
def test_a_stop_signal_at_a_random_time_leaves_a_run_that_resumes_to_the_uninterrupted_run(
    timed, tmp_path_factory, signum, fraction
):
    """Whenever the signal lands (JAX starting, compiling, in the loop, after the run), nothing is
    corrupted; a run it stopped says so in one line and exits with 128 + the signal."""
    logs = tmp_path_factory.mktemp("signalled")
    sent, status, err = signalled(timed, logs, lambda p: signal_after(p, fraction * timed.wall, signum))
    note(f"sent {sent} at {fraction:.3f} x {timed.wall:.2f} s: exit {status}, stderr {err!r}")
    if f"stopped by {signal.Signals(signum).name}" in err or "interrupted; rerun" in err:
        assert status == 128 + signum and len(stop_lines(err)) == 1 and "Traceback" not in err, (status, err)
    assert rerun(timed, logs) == []


def csv_rows(path: Path) -> int:
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


def finished(run_dir: Path) -> bool:
    """log.txt ends with the line that marks a run finished."""
    lines = (run_dir / "log.txt").read_text().strip().splitlines() if (run_dir / "log.txt").exists() else []
    return bool(lines) and "INFO: Time elapsed" in lines[-1]


RUN_PHASES = {
    "JAX starting": lambda run_dir, began: time.perf_counter() - began > 0.5,
    "before the loop": lambda run_dir, began: (run_dir / "config.json").exists(),
    "in the loop": lambda run_dir, began: csv_rows(run_dir / "metrics.csv") > 0,
}


@pytest.mark.slow
@pytest.mark.parametrize("phase", RUN_PHASES)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_in_each_phase_exits_with_its_status_and_one_line(reference, tmp_path, signum, phase):
    """Before the training loop too, a stop signal ends the run in order: 128 + the signal, one
    line naming it, no traceback; the rerun ends as the uninterrupted run."""
    began, run_dir = time.perf_counter(), tmp_path / RUN
    sent, status, err = signalled(
        reference, tmp_path, lambda p: signal_when(p, lambda: RUN_PHASES[phase](run_dir, began), signum)
    )
    assert sent, f"the run ended before the phase {phase!r} was seen"
    assert rerun(reference, tmp_path) == []
    assert status == 128 + signum and len(stop_lines(err)) == 1 and "Traceback" not in err, (status, err)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_after_the_run_finished_corrupts_nothing(reference, tmp_path, signum):
    """Sent once log.txt says the run finished (the process still exiting): the rerun finds it done."""
    sent, status, err = signalled(
        reference, tmp_path, lambda p: signal_when(p, lambda: finished(tmp_path / RUN), signum)
    )
    assert sent and "Traceback" not in err, (status, err)
    assert rerun(reference, tmp_path) == []
