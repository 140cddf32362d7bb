"""Faults a cluster throws at a run: a second writer on its directory, and stop signals.

A second process on a run directory refuses in one line and nothing is mixed; SIGTERM, SIGINT or
SIGUSR1 stop a run after its current segment and a checkpoint, and the rerun resumes it to exactly
the CSVs of an uninterrupted run.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from frugalrl.errors import RunLockedError
from frugalrl.runs.lock import RunLock

# long enough that the first process still runs when the second arrives 3 s later
GRID = {
    "num_seeds": [2],
    "total_steps": [20000],
    "network": [{"hidden": [[64, 64]]}],
    "replay": [{"capacity": [5000], "batch_size": [64]}],
    "train": [{"learning_starts": [1000], "train_every": [1]}],
    "eval": [{"every": [5000], "episodes": [2]}],
    "checkpoint": [{"every": [5000]}],
}
CSVS = ("result_Train.csv", "result_Test.csv", "metrics.csv")


def start(config: Path, logs: Path, prefix: tuple[str, ...] | list[str] = ()) -> subprocess.Popen:
    """``frugal run`` of ``config`` in a process of its own, its XLA device count left to the CLI."""
    env = {**os.environ, "FRUGAL_XLA_CACHE": "off"}
    env.pop("XLA_FLAGS", None)  # the CLI picks the count: the cores it may use, or the checkpoint's
    command = [*prefix, sys.executable, "-m", "frugalrl.cli", "run", str(config), "--logs", str(logs), "--no-progress"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lock")
    config = folder / "locked.json"
    config.write_text(json.dumps(GRID))
    process = start(config, folder / "alone")
    assert process.wait(timeout=600) == 0, process.stderr.read()
    return config, {name: (folder / "alone" / "locked" / "1" / name).read_text() for name in CSVS}


@pytest.mark.parametrize("offset", [0.0, 0.5, 1.0, 3.0])
def test_a_second_writer_refuses_and_the_first_run_is_a_single_runs(offset, single_run, tmp_path):
    config, expected = single_run
    first = start(config, tmp_path)
    time.sleep(offset)
    second = start(config, tmp_path)
    outcomes = [(process.wait(timeout=600), process.stderr.read()) for process in (first, second)]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 1], outcomes
    refusal = next(err for code, err in outcomes if code == 1).strip().splitlines()
    assert len(refusal) == 1 and "is in use by another frugal run (PID" in refusal[0], refusal
    run_dir = tmp_path / "locked" / "1"
    assert {name: (run_dir / name).read_text() for name in CSVS} == expected


def test_a_lock_is_free_again_once_its_holder_is_gone(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from frugalrl.runs.lock import RunLock; from pathlib import Path; "
            f"lock = RunLock(Path({str(tmp_path)!r})); lock.acquire(); print('held', flush=True); "
            "import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLockedError, match=f"PID {holder.pid} on "):
        RunLock(tmp_path).acquire()
    holder.kill()  # as kill -9: the kernel releases the lock
    holder.wait()
    lock = RunLock(tmp_path)
    lock.acquire()  # a stale lock is taken over
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()


def rows(path: Path) -> int:
    return len(path.read_text().splitlines()) - 1 if path.exists() else 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_a_stop_signal_checkpoints_and_the_rerun_ends_as_an_uninterrupted_run(signum, single_run, tmp_path):
    config, expected = single_run
    run_dir = tmp_path / "locked" / "1"
    process = start(config, tmp_path)
    deadline = time.time() + 300
    while rows(run_dir / "metrics.csv") < 1 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # until the loop runs (stop signals are noted from then on)
    process.send_signal(signum)
    status, err = process.wait(timeout=600), process.stderr.read().strip().splitlines()
    name = signal.Signals(signum).name
    errors = [line for line in err if line.startswith("frugal: error")]
    assert status == 128 + signum and len(errors) == 1 and f"stopped by {name} at step" in err[-1], (status, err)
    stopped_at = int(err[-1].split("at step ")[1].split(",")[0])
    assert 0 < stopped_at < 20000 and (run_dir / "checkpoints" / str(stopped_at) / "COMMITTED").exists()
    assert start(config, tmp_path).wait(timeout=600) == 0
    assert {name: (run_dir / name).read_text() for name in CSVS} == expected


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
def test_a_run_resumed_on_one_core_keeps_its_device_layout(single_run, tmp_path):
    """Resumed under `taskset -c 0` (a requeue onto a smaller node), the run keeps the two XLA devices
    its checkpoint recorded, and ends as the uninterrupted run did."""
    config, expected = single_run
    run_dir = tmp_path / "locked" / "1"
    process = start(config, tmp_path)
    while rows(run_dir / "metrics.csv") < 1 and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=600) == 128 + signal.SIGTERM
    resumed = start(config, tmp_path, prefix=["taskset", "-c", "0"])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert {name: (run_dir / name).read_text() for name in CSVS} == expected


def test_resuming_on_another_device_layout_is_refused_with_the_fix(tmp_path):
    from frugalrl.config import resolve
    from frugalrl.errors import TrainingError
    from frugalrl.train.run import run

    raw = {"num_seeds": 2, "total_steps": 2000, "network": {"hidden": [16]}, "train": {"learning_starts": 500}}
    cfg = resolve({**raw, "eval": {"every": 1000, "episodes": 1}, "checkpoint": {"every": 1000, "final": False}})
    run(cfg, tmp_path / "run", progress=False)
    meta_path = tmp_path / "run" / "checkpoints" / "1000" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["xla_devices"] == 2 and meta["seed_devices"] == 2
    meta_path.write_text(json.dumps({**meta, "xla_devices": 1, "seed_devices": 1}))  # as if written on one core
    with pytest.raises(TrainingError, match="xla_force_host_platform_device_count=1 "):
        run(cfg, tmp_path / "run", progress=False)
