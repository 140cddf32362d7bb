"""The DeepMind Control Suite on the host: names, flattened observations, time limits, per-seed env
seeds, and a host-env run with a reset that resumes exactly from a checkpoint (replay included)."""

import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dm_control")

from frugalrl.config import ConfigError, resolve  # noqa: E402
from frugalrl.envs.dmc import DMC15, DMCEnv  # noqa: E402
from frugalrl.train.host import env_seed  # noqa: E402
from frugalrl.train.run import run  # noqa: E402


def test_dmc_tasks_flatten_observations_and_end_truncated_at_the_time_limit():
    env = DMCEnv("cartpole-swingup", seed=0)
    assert (env.spec.obs_dim, env.spec.action_dim, env.spec.max_episode_steps) == (5, 1, 1000)
    obs = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (5,)
    ends = [env.step(np.array([0.5]))[2:] for _ in range(1000)]
    assert ends[-1] == (False, True) and not any(any(e) for e in ends[:-1])
    # actions in [-1, 1] reach the task's own bounds: the same for cartpole, so same trajectory
    a, b = DMCEnv("cartpole-swingup", seed=3), DMCEnv("cartpole-swingup", seed=3)
    a.reset(), b.reset()
    np.testing.assert_array_equal(a.step(np.array([2.0]))[0], b.step(np.array([1.0]))[0])


def test_every_seed_gets_its_own_env_seed_and_bad_names_are_refused():
    cfg = resolve({"env": {"name": "cartpole-swingup"}, "agent": {"name": "sac", "tau": 0.005}})
    seeds = {env_seed(cfg, lane) for lane in range(10)}
    assert len(seeds) == 10  # the original seeded every env with the same seed (quirk Q1)
    first = [DMCEnv("cartpole-swingup", s).reset() for s in sorted(seeds)[:2]]
    assert not np.array_equal(*first)
    assert len(DMC15) == 15
    for name in DMC15:
        resolve({"env": {"name": name}, "agent": {"name": "sac", "tau": 0.005}})
    with pytest.raises(ConfigError, match="no task 'cheetah-fly'"):
        resolve({"env": {"name": "cheetah-fly"}, "agent": {"name": "sac", "tau": 0.005}})


HOST = {
    "env": {"name": "cartpole-swingup"},
    "agent": {"name": "sac", "tau": 0.005},
    "network": {"hidden": [16, 16]},
    "replay": {"capacity": 5000, "batch_size": 32},
    "train": {"train_every": 1, "gradient_steps": 1, "learning_starts": 499, "random_steps": 499},
    "reset": {"every": 1000, "schedule": "env_steps", "key": "fresh"},
    "num_seeds": 2,
    "total_steps": 3000,
    "eval": {"every": 1500, "episodes": 1},
    "checkpoint": {"every": 1000, "keep": 5},
    "seed": 5,
}


def test_a_host_env_run_resets_and_resumes_exactly(tmp_path):
    cfg = resolve(HOST)
    run(cfg, tmp_path / "ref", progress=False)
    log = (tmp_path / "ref" / "log.txt").read_text()
    assert "step 1000: reset 1, after 501 updates" in log and "step 2000: reset 2, after 1000 updates" in log
    assert "step 1000: checkpoint" in log and "step 2000: checkpoint" in log
    # metrics rows at the evaluations and at the checkpoints (the updates since the last row)
    assert sorted(set(pd.read_csv(tmp_path / "ref" / "metrics.csv")["step"])) == [1000, 1500, 2000, 3000]
    train = pd.read_csv(tmp_path / "ref" / "result_Train.csv")
    assert sorted(train["step"]) == [1000, 1000, 2000, 2000, 3000, 3000] and set(train["length"]) == {1000}
    # resume from the checkpoint after the first reset, between evaluations: the replay, the agent,
    # the reset count (fresh keys) and the envs' random state come back, so the rest repeats exactly
    shutil.copytree(tmp_path / "ref", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "2000")
    summary = run(cfg, tmp_path / "b", progress=False)
    assert summary.resumed_from == 1000
    for name in ("result_Test.csv", "result_Train.csv", "metrics.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b" / name), pd.read_csv(tmp_path / "ref" / name))
