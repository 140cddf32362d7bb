"""Hyperparameter packing: configs of one program trained as one, each in its own run directory,
with the results it has alone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# lr, epsilon_end with the softmax temperature, and lambda_end vary (data in one program); MeDQN(U)
# on a 32-transition buffer, exploring by softmax
AGENT = {"name": ["dqn"], "target_every": [100], "epsilon_decay_steps": [800], "exploration": ["softmax"]}
GRID = {
    "env": [{"name": ["MountainCar-v0"], "max_episode_steps": [200]}],
    "consolidation": [{"source": ["uniform"], "lambda_start": [0.01], "lambda_end": [4, 1]}],
    "train": [{"epochs_per_batch": [2], "random_steps": [300], "learning_starts": [300]}],
    "total_steps": [2000],
    "num_seeds": [2],
    "network": [{"name": ["mlp"], "hidden": [[32, 32]]}],
    "replay": [{"capacity": [32], "td_batch": ["all"], "batch_size": [32]}],
    "agent": [
        {**AGENT, "epsilon_end": [0.01], "softmax_temperature": [0.05]},
        {**AGENT, "epsilon_end": [0.2], "softmax_temperature": [1.0]},
    ],
    "optimizer": [{"name": ["adam"], "lr": [1e-2, 1e-3], "max_grad_norm": [5.0]}],
    "eval": [{"every": [1000], "episodes": [2]}],
    "checkpoint": [{"every": [1000], "final": [True]}],
}
RESULTS = ("result_Train.csv", "result_Test.csv")


def frugal_env(cores: int) -> dict[str, str]:
    """A ``frugal`` process's environment: ``cores`` XLA devices (not this process's two)."""
    env = {**os.environ, "FRUGAL_CORES": str(cores)}
    env.pop("XLA_FLAGS", None)
    return env


def frugal(*args: str, cwd: Path, cores: int = 1) -> str:
    """``frugal`` in a process of its own on ``cores`` XLA devices; its stdout (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "frugalrl.cli", *args], cwd=cwd, env=frugal_env(cores), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def checksums(run: Path) -> dict[str, str]:
    """{checkpoint step: the checksum of its whole state (every parameter, optimizer moment, replay
    slot, key and env state)}."""
    found = (json.loads(meta.read_text()) for meta in (run / "checkpoints").glob("*/meta.json"))
    return {meta["step"]: meta["checksum"] for meta in found}


def assert_same_results(left: Path, right: Path, same_state: bool = True) -> float:
    """Result CSVs byte-identical; with ``same_state`` every checkpoint's state too (the CSVs alone
    say little: these short MountainCar runs end every episode at -200); metrics.csv the same rows
    and columns, its values within float32 rounding (the loss means are reduced by other code in a
    packed program). Returns the largest relative difference of a metric."""
    for name in RESULTS:
        assert (left / name).read_text() == (right / name).read_text(), (left, name)
    if same_state:
        assert checksums(left) and checksums(left) == checksums(right), (left, right)
    a, b = pd.read_csv(left / "metrics.csv"), pd.read_csv(right / "metrics.csv")
    assert list(a.columns) == list(b.columns) and a[["seed", "step"]].equals(b[["seed", "step"]])
    values_a, values_b = a.drop(columns=["seed", "step"]).to_numpy(), b.drop(columns=["seed", "step"]).to_numpy()
    # wide: the lanes' trajectories part by 2,000 steps (0.3% in a loss mean), yet stay far closer
    # than to another config's (lambda_end 4 against 1: 0.72 against 0.50 in the loss mean)
    np.testing.assert_allclose(values_a, values_b, rtol=1e-5 if same_state else 2e-2, atol=1e-6)
    return float(np.max(np.abs(values_a - values_b) / np.maximum(np.abs(values_b), 1e-12)))


def made_once(tmp_path_factory, name: str, make) -> Path:
    """A folder ``make(folder)`` fills once for the whole test run: xdist's workers share the folder
    above their own (only this run's), and the first worker to need it makes it while the others
    wait for it. ``make`` writes the grid's runs under ``folder/logs/grid``, which is returned."""
    from filelock import FileLock

    mine = tmp_path_factory.getbasetemp()
    shared = mine.parent if os.environ.get("PYTEST_XDIST_WORKER") else mine
    folder = shared / name
    with FileLock(str(shared / f"{name}.lock")):
        if not (folder / "made").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
            folder.mkdir()
            (folder / "grid.json").write_text(json.dumps(GRID))
            make(folder)
            (folder / "made").touch()
    return folder / "logs" / "grid"


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Path:
    """The grid's eight configs each run alone on two devices by the Python API (``frugal run``'s
    ``train.run.run``) in this process, whose layout (conftest) the ``frugal`` processes compared
    with it are given; some tests below stop packed programs from within."""
    from frugalrl.config import load_config
    from frugalrl.train.run import run

    def make(folder: Path) -> None:
        for idx in range(1, 9):
            run(load_config(folder / "grid.json", idx), folder / "logs" / "grid" / str(idx), progress=False)

    return made_once(tmp_path_factory, "packed-alone", make)


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """The grid's eight configs as one program: ``frugal run --idx 1-8`` on two devices (its output
    in ``stdout.txt`` beside the runs)."""

    def make(folder: Path) -> None:
        out = frugal("run", "grid.json", "--idx", "1-8", "--no-progress", cwd=folder, cores=2)
        (folder / "logs" / "grid" / "stdout.txt").write_text(out)

    return made_once(tmp_path_factory, "packed-1-8", make)


def test_configs_of_one_program_run_alone_compile_once_and_keep_their_own_results(alone, tmp_path):
    """Alone, the vmappable values are data too: idx 8 (other lr, epsilon, temperature and lambda
    than idx 1) finds every program it needs in the cache idx 1 filled, and ends as it does alone."""
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    cache = tmp_path / "xla-cache"
    env = {**frugal_env(2), "FRUGAL_XLA_CACHE": str(cache)}
    command = [sys.executable, "-m", "frugalrl.cli", "run", "grid.json", "--no-progress", "--idx"]
    subprocess.run([*command, "1"], cwd=tmp_path, env=env, check=True, capture_output=True)
    programs = sorted(name for name in os.listdir(cache) if name.endswith("-cache"))
    assert any(name.startswith("jit_segment") for name in programs)
    subprocess.run([*command, "8"], cwd=tmp_path, env=env, check=True, capture_output=True)
    assert sorted(name for name in os.listdir(cache) if name.endswith("-cache")) == programs
    assert_same_results(tmp_path / "logs" / "grid" / "8", alone / "8")


def test_the_packing_plan_puts_the_whole_grid_in_one_program(tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    out = frugal("sweep", "grid.json", "--plan", cwd=tmp_path)
    assert "8 runs in 1 programs" in out and "--idx 1-8" in out


def test_a_packed_program_writes_each_config_the_results_it_has_alone(alone, packed):
    out = (packed / "stdout.txt").read_text()
    assert out.count(": done, final greedy return") == 8, out
    for idx in range(1, 9):
        run = packed / str(idx)
        assert_same_results(run, alone / str(idx))  # exact, the CPU's default: the same state
        assert json.loads((run / "checkpoints" / "2000" / "meta.json").read_text())["seed_devices"] == 2
        config = json.loads((run / "config.json").read_text())
        assert config["num_seeds"] == 2 and config["config_idx"] == idx  # its own config, as alone
        log = (run / "log.txt").read_text()
        assert "packed: 8 configs" in log and log.count("greedy return") == 2  # its own log: its evaluations only
    status = frugal("status", "grid.json", cwd=packed.parents[1])
    assert "8 of 8 runs finished" in status and "done: 1-8" in status


def test_a_packed_checkpoint_resumes_alone_or_packed_to_the_same_results(alone, tmp_path):
    from frugalrl.config import load_config
    from frugalrl.errors import RunStopped
    from frugalrl.train.packed import run_packed

    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    cfgs = [load_config(tmp_path / "grid.json", idx) for idx in (1, 2, 3)]
    paths = [tmp_path / "logs" / "grid" / str(idx) for idx in (1, 2, 3)]
    with pytest.raises(RunStopped):  # a stop signal from the start: the first checkpoint (step 1000), then out
        run_packed(cfgs, paths, progress=False, stops=[signal.SIGTERM])
    for path in paths:
        assert (path / "checkpoints" / "1000").is_dir() and not (path / "checkpoints" / "2000").exists()
    frugal("run", "grid.json", "--idx", "1", "--no-progress", cwd=tmp_path)  # one resumed alone
    frugal("run", "grid.json", "--idx", "2,3", "--no-progress", cwd=tmp_path)  # two resumed packed
    for idx, path in zip((1, 2, 3), paths, strict=True):
        assert "resuming from the checkpoint at step 1000" in (path / "log.txt").read_text()
        assert_same_results(path, alone / str(idx))


def test_a_config_that_diverges_fails_alone_and_its_neighbours_finish(alone, tmp_path):
    """The neighbour ends as it does alone."""
    grid = {**GRID, "optimizer": [{"name": ["adam"], "lr": [1e-2, 1e38], "max_grad_norm": [5.0]}]}
    (tmp_path / "grid.json").write_text(json.dumps(grid))  # idx 5 is the grid's idx 1 with lr 1e38
    command = [sys.executable, "-m", "frugalrl.cli", "run", "grid.json", "--idx", "1,5", "--no-progress"]
    done = subprocess.run(command, cwd=tmp_path, env=frugal_env(2), capture_output=True, text=True)
    assert done.returncode == 1 and "5: failed: " in done.stdout and "1: done" in done.stdout, done
    record = json.loads((tmp_path / "logs" / "grid" / "5" / "FAILED").read_text())
    assert "became NaN or inf" in record["error"]
    assert_same_results(tmp_path / "logs" / "grid" / "1", alone / "1")
    status = frugal("status", "grid.json", cwd=tmp_path)
    assert "done: 1" in status and "failed: 5 " in status


def test_indices_of_different_programs_are_refused_in_one_line(tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps({**GRID, "train/train_every": [1, 2]}))
    env = {**os.environ, "FRUGAL_CORES": "1"}
    # idx 9 is idx 1 with train_every 2 (the grid's last key varies slowest): another program
    command = [sys.executable, "-m", "frugalrl.cli", "run", "grid.json", "--idx", "1,9", "--no-progress"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot share a program" in done.stderr and "--plan" in done.stderr
    assert not (tmp_path / "logs").exists()


def test_lane_hyperparameters_take_differences_on_the_host_in_float64():
    from frugalrl.agents.hparams import lane_hparams

    cfgs = [
        {
            "optimizer": {"lr": lr},
            "agent": {"epsilon_start": 1.0, "epsilon_end": 0.01, "softmax_temperature": end / 10},
            "consolidation": {"lambda_start": 0.01, "lambda_end": end},
        }
        for lr, end in ((1e-3, 4.0), (3e-4, 2.0))
    ]
    hp = lane_hparams(cfgs, 3)
    assert hp.lr.dtype == np.float32 and hp.lr.tolist() == np.float32([1e-3] * 3 + [3e-4] * 3).tolist()
    assert hp.lambda_delta[0] == np.float32(4.0 - 0.01) and hp.lambda_delta[5] == np.float32(2.0 - 0.01)
    assert hp.epsilon_delta[0] == np.float32(0.01 - 1.0)
    assert hp.softmax_temperature.tolist() == np.float32([0.4] * 3 + [0.2] * 3).tolist()


def test_every_vmappable_key_is_one_a_packed_program_reads_per_lane():
    """A key marked vmappable but closed over as a constant would give every packed config the
    first config's value: the schema's marks and the lanes' values must be the same keys."""
    from frugalrl.agents.hparams import PACKED_KEYS
    from frugalrl.config.schema import vmappable_keys

    assert set(vmappable_keys()) == set(PACKED_KEYS)


def test_runs_checkpointed_at_their_end_finish_packed_without_training_again(packed, tmp_path):
    """Killed after the final checkpoint, before the log's last line: the rerun only reads back
    (two of the eight runs of one program, packed again as two)."""
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    runs = [tmp_path / "logs" / "grid" / str(idx) for idx in (1, 2)]
    for idx, run in zip((1, 2), runs, strict=True):
        shutil.copytree(packed / str(idx), run)
    before = [{name: (run / name).read_text() for name in RESULTS} for run in runs]
    for run in runs:  # as if killed just before writing the 'Time elapsed' line
        lines = (run / "log.txt").read_text().splitlines(keepends=True)
        (run / "log.txt").write_text("".join(lines[:-1]))
    out = frugal("run", "grid.json", "--idx", "1,2", "--no-progress", cwd=tmp_path)
    assert out.count(": done, final greedy return") == 2, out
    for run, results in zip(runs, before, strict=True):
        assert {name: (run / name).read_text() for name in RESULTS} == results
        log = (run / "log.txt").read_text()
        assert "resuming from the checkpoint at step 2000" in log
        assert "compiled" not in log.split("resuming from the checkpoint at step 2000")[1]  # nothing to run


def test_a_program_stopped_between_its_runs_checkpoints_resumes_all_from_the_step_they_share(tmp_path):
    """Killed after run 1's checkpoint at 2000 and before run 2's: both go on from 1000, the step
    they share (run 1's newer one is removed, like its CSV rows after 1000), to the same results."""
    from frugalrl.config import load_config
    from frugalrl.errors import RunStopped
    from frugalrl.train.packed import run_packed

    grid = {**GRID, "total_steps": [3000]}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    frugal("run", "grid.json", "--idx", "1,2", "--logs", "whole", "--no-progress", cwd=tmp_path, cores=2)
    cfgs = [load_config(tmp_path / "grid.json", idx) for idx in (1, 2)]
    paths = [tmp_path / "logs" / "grid" / str(idx) for idx in (1, 2)]
    for _ in range(2):  # stopped after the checkpoint at 1000, then after the one at 2000
        with pytest.raises(RunStopped):
            run_packed(cfgs, paths, progress=False, stops=[signal.SIGTERM])
    shutil.rmtree(paths[1] / "checkpoints" / "2000")  # run 2's save at 2000 never happened
    frugal("run", "grid.json", "--idx", "1,2", "--no-progress", cwd=tmp_path)
    for idx, path in zip((1, 2), paths, strict=True):
        log = (path / "log.txt").read_text()
        assert log.count("resuming from the checkpoint at step 1000") == 2  # after each stop
        assert_same_results(path, tmp_path / "whole" / "grid" / str(idx))  # as the program undisturbed
    assert "removed the checkpoint at step 2000" in (paths[0] / "log.txt").read_text()


def test_a_program_stopped_while_saving_its_first_checkpoints_starts_anew(alone, tmp_path):
    """Killed after run 1's first checkpoint and before run 2's: they share no step, so both start
    anew (run 1's checkpoint removed) and end as alone."""
    from frugalrl.config import load_config
    from frugalrl.errors import RunStopped
    from frugalrl.train.packed import run_packed

    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    cfgs = [load_config(tmp_path / "grid.json", idx) for idx in (1, 2)]
    paths = [tmp_path / "logs" / "grid" / str(idx) for idx in (1, 2)]
    with pytest.raises(RunStopped):
        run_packed(cfgs, paths, progress=False, stops=[signal.SIGTERM])
    shutil.rmtree(paths[1] / "checkpoints" / "1000")  # run 2's first save never happened
    frugal("run", "grid.json", "--idx", "1,2", "--no-progress", cwd=tmp_path)
    assert "removed the checkpoint at step 1000: the packed program starts anew" in (paths[0] / "log.txt").read_text()
    for idx, path in zip((1, 2), paths, strict=True):
        assert_same_results(path, alone / str(idx))


def test_the_exact_layout_puts_each_config_where_its_run_alone_has_it():
    from frugalrl.train.packed import LaneLayout

    exact = LaneLayout(configs=3, lanes=4, devices=2, kind="exact")  # each device: 2 lanes of every config
    assert exact.of(1).tolist() == [2, 3, 8, 9]
    assert exact.owners()[8].tolist() == [1, 2]  # device 1's first lane of config 1 is its third seed
    per_config = [np.arange(4) + 10 * p for p in range(3)]
    joined = exact.join(per_config)
    assert joined.tolist() == [0, 1, 10, 11, 20, 21, 2, 3, 12, 13, 22, 23]
    assert all((joined[exact.of(p)] == per_config[p]).all() for p in range(3))
    assert LaneLayout(3, 4, 2, "wide").of(1).tolist() == [4, 5, 6, 7]


def test_config_map_runs_each_config_at_the_shapes_of_its_share():
    """The function sees one config's lanes at a time; its outputs come back on their lane axes."""
    import jax.numpy as jnp

    from frugalrl.train.packed import config_map

    seen = []

    def segment(carry, step):
        seen.append(carry.shape)
        steps = jnp.broadcast_to(carry * step, (2, 3, carry.shape[0]))  # [blocks, k, lanes]
        return (carry + 1, step + 1), (steps, carry.sum() + jnp.zeros((2, carry.shape[0])))  # metrics [blocks, lanes]

    carry = jnp.arange(6.0)  # 3 configs of 2 lanes
    (after, step), (steps, metrics) = config_map(segment, 3, ((0, 0), (2, 1)))(carry, jnp.int32(5))
    assert seen == [(2,)] and step.shape == () and int(step) == 6
    assert after.tolist() == (carry + 1).tolist() and steps.shape == (2, 3, 6)
    assert steps[1, 2].tolist() == (carry * 5).tolist()
    assert metrics[0].tolist() == [1.0, 1.0, 5.0, 5.0, 9.0, 9.0]  # each config's own sum


def test_the_wide_layout_gives_each_config_the_results_it_has_alone_and_a_state_close_to_it(alone, tmp_path):
    """One vmap over the 8 lanes of 4 configs, split over two devices: the same result CSVs and
    metrics within rounding; the state's last bits are not promised (docs/notes/sweeps.md)."""
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    args = ("run", "grid.json", "--idx", "1-4", "--pack-layout", "wide", "--no-progress")
    frugal(*args, cwd=tmp_path, cores=2)
    for idx in ("1", "2", "3", "4"):
        packed = tmp_path / "logs" / "grid" / idx
        assert json.loads((packed / "checkpoints" / "2000" / "meta.json").read_text())["seed_devices"] == 2
        assert_same_results(packed, alone / idx, same_state=False)


def test_the_plan_says_which_programs_run_each_config_alone(tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps({**GRID, "reset": [{"every": [500]}]}))
    out = frugal("sweep", "grid.json", "--plan", cwd=tmp_path)
    assert "program 1: 8 runs" in out and "not packed (runs with resets are not packed)" in out
