"""The run session is one for every loop: timing, the NaN stop and the log's tail read the same in all three."""

import re

import pytest

from frugalrl.config import resolve
from frugalrl.errors import TrainingError
from frugalrl.train.run import run

pytest.importorskip("dm_control")

# one small run per loop: flat (a JAX env), host (dm-control), episodic (a memory agent)
LOOPS = {
    "flat": {
        "num_seeds": 2,
        "total_steps": 1000,
        "network": {"hidden": [16]},
        "replay": {"capacity": 1000, "batch_size": 16},
        "train": {"learning_starts": 200, "train_every": 2},
        "eval": {"every": 500, "episodes": 2},
        "checkpoint": {"every": 500},
    },
    "host": {
        "env": {"name": "cartpole-swingup"},
        "agent": {"name": "sac", "tau": 0.005},
        "network": {"hidden": [16]},
        "num_seeds": 2,
        "total_steps": 1000,
        "replay": {"capacity": 1000, "batch_size": 16},
        "train": {"learning_starts": 200, "random_steps": 200, "train_every": 2},
        "eval": {"every": 1000, "episodes": 1},
        "checkpoint": {"every": 1000},
    },
    "episodic": {
        "env": {"name": "PassiveTMaze-3"},
        "agent": {"name": "recurrent_dqn"},
        "sequence": {"model": "lstm", "obs_embed": 8, "action_embed": 4, "hidden": 8, "head_hidden": [8]},
        "num_seeds": 2,
        "replay": {"capacity": 1000, "batch_size": 4},
        "episodic": {"random_episodes": 4, "eval_every": 4, "min_episodes": 20, "train_episodes": 8},
        "eval": {"episodes": 2},
        "checkpoint": {"every": 60},
    },
}
TIMING = re.compile(r"compile (?P<compile>-?[0-9.]+) s, run (?P<run>-?[0-9.]+) s \(")
NAN = re.compile(
    r"the (loss|update metrics|actions) of seed\(s\) \[[0-9, ]+\] became NaN or inf "
    r"(between steps \d+ and \d+|before step \d+); "
    r"lower 'optimizer/lr' or set 'optimizer/max_grad_norm'\. "
    r"Results and checkpoints up to the last checkpoint are kept\."
)


def assert_timed(summary, path) -> None:
    """The run's compile time apart from its run time, in its summary and its log."""
    assert summary.compile_seconds > 0 and summary.run_seconds >= 0
    logged = TIMING.search((path / "log.txt").read_text())
    assert logged and float(logged["compile"]) > 0 and float(logged["run"]) >= 0
    assert "run time by phase: segments" in (path / "log.txt").read_text()


@pytest.mark.parametrize("loop", ["flat", "host"])  # episodic: the last test of this file
def test_every_loop_reports_its_compile_time_and_a_non_negative_run_time(loop, tmp_path):
    assert_timed(run(resolve(LOOPS[loop]), tmp_path / loop, progress=False), tmp_path / loop)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_diverging_loss_stops_every_loop_with_the_same_message(loop, tmp_path):
    cfg = resolve({**LOOPS[loop], "optimizer": {"lr": 1e38}})
    with pytest.raises(TrainingError) as raised:
        run(cfg, tmp_path / loop, progress=False)
    assert NAN.fullmatch(str(raised.value)), str(raised.value)


def test_an_episodic_run_without_random_episodes_trains_evaluates_and_reports_its_timing(tmp_path):
    raw = LOOPS["episodic"]
    cfg = resolve({**raw, "episodic": {**raw["episodic"], "random_episodes": 0}})
    summary = run(cfg, tmp_path / "run", progress=False)
    tests = (tmp_path / "run" / "result_Test.csv").read_text().splitlines()
    assert summary.env_steps == 8 * 4 and len(tests) == 1 + 2 * 2  # 8 episodes of 4 steps, evaluated twice
    assert_timed(summary, tmp_path / "run")
