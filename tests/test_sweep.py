"""frugal sweep --run: every unfinished index of a grid on Ray, each run exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from frugalrl.runs.rundir import RunDir

GRID = {
    "optimizer/lr": [1e-3, 3e-4, 1e-4],
    "num_seeds": [1],
    "total_steps": [3000],
    "train": [{"learning_starts": [500]}],
    "eval": [{"every": [1500], "episodes": [2]}],
    "checkpoint": [{"every": [1000]}],
}
CSVS = ("result_Train.csv", "result_Test.csv", "metrics.csv")


def frugal(*args: str, devices: int | None = None) -> subprocess.Popen:
    """The ``frugal`` command in a process of its own (``devices``: its XLA host device count)."""
    env = dict(os.environ)
    for name in ("XLA_FLAGS", "RAY_ADDRESS"):  # Ray on this machine, started by the sweep itself
        env.pop(name, None)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    command = [sys.executable, "-m", "frugalrl.cli", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, code: int = 0) -> str:
    out, err = process.communicate(timeout=900)
    assert process.returncode == code, (out, err)
    return out


def csvs(run_dir: Path) -> dict[str, str]:
    return {name: (run_dir / name).read_text() for name in CSVS}


def assert_packed_like_alone(packed: dict[str, str], alone: dict[str, str]) -> None:
    """A packed run's CSVs against the same config's alone: the results byte-identical, metrics.csv
    within float32 rounding (its batch means are reduced over more lanes; tests/test_packed.py)."""
    import io

    import numpy as np
    import pandas as pd

    assert {n: packed[n] for n in CSVS[:2]} == {n: alone[n] for n in CSVS[:2]}
    a, b = (pd.read_csv(io.StringIO(text["metrics.csv"])) for text in (packed, alone))
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> tuple[Path, dict[int, dict[str, str]]]:
    """The grid's runs each made alone by ``frugal run`` on one XLA device, as a sweep's tasks are."""
    folder = tmp_path_factory.mktemp("alone")
    grid = folder / "grid.json"
    grid.write_text(json.dumps(GRID))
    for idx in (1, 2, 3):
        finish(frugal("run", str(grid), "--idx", str(idx), "--logs", str(folder / "logs"), "--no-progress", devices=1))
    return grid, {idx: csvs(folder / "logs" / "grid" / str(idx)) for idx in (1, 2, 3)}


def starts(run_dir: Path) -> int:
    """How many processes trained in a run directory (each writes one header line)."""
    return (run_dir / "log.txt").read_text().count(" - INFO: frugalrl ")


def test_two_sweeps_at_once_run_each_index_once_like_a_run_alone_and_a_third_runs_only_what_is_left(alone, tmp_path):
    grid, expected = alone
    logs = tmp_path / "logs"
    command = ("sweep", str(grid), "--run", "--idx", "1,3", "--logs", str(logs), "--no-progress")
    outs = [finish(process) for process in [frugal(*command), frugal(*command)]]
    assert all("grid: 2 runs finished, 0 not (none)" in out or "skipped (done)" in out for out in outs), outs
    for idx in (1, 3):
        run_dir = logs / "grid" / str(idx)
        assert starts(run_dir) == 1, (run_dir / "log.txt").read_text()  # trained once, by one of the two
        assert_packed_like_alone(csvs(run_dir), expected[idx])  # 1 and 3 share a program: packed
    assert not (logs / "grid" / "2").exists()
    out = finish(frugal("sweep", str(grid), "--run", "--logs", str(logs), "--no-progress"))
    assert "1: skipped (done)" in out and "3: skipped (done)" in out and "grid: 1 runs finished" in out
    assert csvs(logs / "grid" / "2") == expected[2]
    status = finish(frugal("status", str(grid), "--logs", str(logs)))
    assert "3 of 3 runs finished" in status and "done: 1-3" in status


def test_a_bad_config_is_recorded_failed_shown_by_status_and_skipped_until_retried(tmp_path):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({**GRID, "optimizer/lr": [1e-3, -1.0], "total_steps": [1000]}))
    logs = tmp_path / "logs"
    sweep = ("sweep", str(grid), "--run", "--idx", "2", "--logs", str(logs), "--no-progress")  # idx 1 is good
    out = finish(frugal(*sweep), code=1)
    assert "2: failed: " in out and "optimizer/lr" in out and "grid: 0 runs finished, 1 not (2)" in out
    record = RunDir(logs / "grid" / "2").failure()
    assert record is not None and "optimizer/lr" in record["error"]
    status = finish(frugal("status", str(grid), "--logs", str(logs)))
    assert "failed: 2 " in status and "optimizer/lr" in status and "not started: 1" in status
    out = finish(frugal(*sweep))
    assert "2: skipped (failed: " in out  # not retried unless asked
    out = finish(frugal(*sweep, "--retry"), code=1)
    assert "2: failed: " in out  # asked: tried again, and the config is still bad


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--idx", "4"], "goes past 3"), (["--idx", "2-x"], "neither an index"), (["--cpus-per-run", "0"], ">= 1")],
)
def test_a_bad_sweep_option_is_refused_in_one_line(args, message, tmp_path):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(GRID))
    process = frugal("sweep", str(grid), "--run", *args, "--logs", str(tmp_path / "logs"))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "logs").exists()


LONG = {**GRID, "optimizer/lr": [1e-3, 3e-4], "total_steps": [300000], "checkpoint": [{"every": [20000]}]}


def ray_cli(*args: str, env: dict[str, str]) -> None:
    ray = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray), *args], env=env, check=True, capture_output=True, text=True, timeout=120)


def training_runs() -> dict[int, int]:
    """{pid: parent pid} of every ``frugal run`` process on this machine."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"frugalrl.cli" in command and b"run" in command:
            found[int(proc.name)] = parent
    return found


@pytest.mark.slow
@pytest.mark.parametrize("packed", [False, True], ids=["one run per worker", "packed"])
def test_a_worker_killed_mid_run_on_a_two_node_ray_cluster_is_retried_and_the_csvs_are_unchanged(tmp_path, packed):
    import signal
    import time

    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(LONG))
    # undisturbed: as a sweep's task runs them, on one XLA device: each alone, or both in one program
    for spec in ("1,2",) if packed else ("1", "2"):
        finish(frugal("run", str(grid), "--idx", spec, "--logs", str(tmp_path / "alone"), "--no-progress", devices=1))
    # Ray >= 2.59 turns token auth on for a local head once a token exists; every process then needs it
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    address = "127.0.0.1:6391"
    ray_cli("start", "--head", "--port", "6391", "--num-cpus", "1", "--include-dashboard", "false", env=env)
    try:
        ray_cli("start", "--address", address, "--num-cpus", "1", env=env)  # a second node on this machine
        logs = tmp_path / "logs"
        command = ["sweep", str(grid), "--run", "--address", address, "--logs", str(logs), "--no-progress"]
        if not packed:
            command.append("--no-pack")  # one run per worker: the killed worker holds one run
        sweep = subprocess.Popen(
            [sys.executable, "-m", "frugalrl.cli", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 600
        # packed: both runs' first checkpoints (a kill between the two saves starts them anew, tested
        # in test_packed.py); after that a kill between two saves resumes both from the step they share
        waited = ("1", "2") if packed else ("1",)
        while not all(list((logs / "grid" / idx / "checkpoints").glob("*/COMMITTED")) for idx in waited):
            assert time.monotonic() < deadline and sweep.poll() is None, "a run never reached a checkpoint"
            time.sleep(0.2)
        runs = training_runs()
        index = b"--idx\x001,2\x00" if packed else b"--idx\x001\x00"
        victim = next(pid for pid in runs if index in Path(f"/proc/{pid}/cmdline").read_bytes())
        os.kill(runs[victim], signal.SIGKILL)  # the Ray worker running index 1; its run dies with it
        out = finish(sweep)
    finally:
        ray_cli("stop", "--force", env=env)
    assert "grid: 2 runs finished, 0 not (none)" in out
    log = (logs / "grid" / "1" / "log.txt").read_text()
    assert starts(logs / "grid" / "1") == 2 and "resuming from the checkpoint at step" in log, log  # retried
    for idx in (1, 2):
        assert csvs(logs / "grid" / str(idx)) == csvs(tmp_path / "alone" / "grid" / str(idx))


def test_the_packing_plan_groups_configs_that_differ_only_in_vmappable_values(tmp_path, capsys):
    from frugalrl.cli import main
    from frugalrl.config import load_grid, swept_keys
    from frugalrl.config.packing import pack_groups

    grid = tmp_path / "grid.json"
    grid.write_text(
        json.dumps(
            {
                "optimizer/lr": [1e-3, 3e-5],  # data: packs
                "agent/epsilon_end": [0.1, 0.01],  # data: packs
                "agent/tau": [1.0, 0.5],  # the target sync's constant: not (yet) packed
                "train/train_every": [1, 4],  # control flow: never packs
            }
        )
    )
    groups = pack_groups(grid, list(range(1, 17)), swept_keys(load_grid(grid)))
    assert [group.indices for group in groups] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    # values in order of size, as a reader scans them (3e-05 is not after 0.001)
    assert groups[1].varying == {"optimizer/lr": [3e-05, 0.001], "agent/epsilon_end": [0.01, 0.1]}
    assert groups[1].shared == {"agent/tau": 0.5, "train/train_every": 1}
    merl = Path(__file__).parents[1] / "configs" / "merl" / "MERL_mc_medqn.json"
    assert main(["sweep", str(merl), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "180 runs in 12 programs" in out and out.count(": 15 runs, --idx ") == 12


def test_a_listing_piped_into_a_reader_that_stops_early_ends_without_a_traceback():
    """``frugal sweep FILE --list | head``: the reader closes the pipe; frugal stops quietly."""
    merl = Path(__file__).parents[1] / "configs" / "merl" / "MERL_mc_medqn.json"
    process = frugal("sweep", str(merl), "--list")
    process.stdout.close()  # before it writes a line: every write fails
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.slow
def test_a_sweep_stopped_by_sigterm_has_its_runs_checkpoint_and_a_rerun_resumes_them_to_the_same_csvs(tmp_path):
    import signal
    import time

    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({**LONG, "optimizer/lr": [1e-3]}))
    finish(frugal("run", str(grid), "--logs", str(tmp_path / "alone"), "--no-progress", devices=1))
    logs = tmp_path / "logs"
    sweep = frugal("sweep", str(grid), "--run", "--logs", str(logs), "--no-progress")
    deadline = time.monotonic() + 600
    while not list((logs / "grid" / "1" / "checkpoints").glob("*/COMMITTED")):
        assert time.monotonic() < deadline and sweep.poll() is None, "the run never reached a checkpoint"
        time.sleep(0.2)
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 143 and "stopped by SIGTERM" in err, err
    log = (logs / "grid" / "1" / "log.txt").read_text()
    assert "stopped by SIGTERM after a checkpoint" in log, log  # the run checkpointed on its way out
    finish(frugal("sweep", str(grid), "--run", "--logs", str(logs), "--no-progress"))
    assert starts(logs / "grid" / "1") == 2
    assert csvs(logs / "grid" / "1") == csvs(tmp_path / "alone" / "grid" / "1")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (0, "done"),
        (75, "busy"),
        (-9, "stopped"),
        (143, "stopped"),
        (130, "stopped"),
        (138, "stopped"),
        (-11, "failed"),
        (134, "failed"),
        (1, "failed"),
        (2, "failed"),
        (74, "failed"),
    ],
)
def test_a_runs_exit_status_says_whether_the_sweep_retries_it(code, status):
    from frugalrl.sweep.run_task import outcome_status

    assert outcome_status(code) == status  # stop signals are retried; crashes (SIGSEGV, SIGABRT) are failures


def test_a_refused_run_removes_only_what_it_made_and_never_a_neighbours_folder(tmp_path):
    from frugalrl.train.session import remove_unwritten

    created = tmp_path / "logs"  # the first run of a sweep made logs/grid/1; a second made logs/grid/2
    (created / "grid" / "1").mkdir(parents=True)
    (created / "grid" / "1" / ".lock").write_text("held")
    (created / "grid" / "2").mkdir()
    remove_unwritten(created / "grid" / "2", created)
    assert (created / "grid" / "1" / ".lock").exists() and not (created / "grid" / "2").exists()
    remove_unwritten(created / "grid" / "1", created)
    assert not created.exists()  # the last one out removes the folders the sweep made
