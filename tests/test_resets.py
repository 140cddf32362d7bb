"""Resets: the schedules of the reference (A5), re-initialisation to the initial state with the
replay untouched, and a run with resets that resumes exactly from a checkpoint between resets."""

import shutil

import jax
import numpy as np
import pandas as pd
import pytest

from frugalrl import envs
from frugalrl.agents import make_agent
from frugalrl.config import resolve
from frugalrl.runs import checkpoint
from frugalrl.train.loop import agent_init_keys, init_carry, make_segment, seed_keys
from frugalrl.train.resets import make_reinit, reset_agent, reset_schedule
from frugalrl.train.run import run

K = 1000


def sr_sac(replay_ratio: int, schedule: str) -> dict:
    """The SR-SAC schedule of the original: 10k random steps (its step counter starts at 1, so
    learning_starts 9,999 here), 2.56M updates per reset, evaluations every 5,000 steps."""
    return resolve(
        {
            "env": {"name": "Pendulum-v1"},
            "agent": {"name": "sac", "tau": 0.005},
            "total_steps": 500 * K,
            "train": {"train_every": 1, "gradient_steps": replay_ratio, "learning_starts": 9999, "random_steps": 9999},
            "eval": {"every": 5000},
            "reset": {"every": 2_560_000, "schedule": schedule},
        }
    )


@pytest.mark.parametrize(
    ("replay_ratio", "expected"),
    [
        (4, []),
        (8, [330 * K]),
        (16, [170 * K, 335 * K, 500 * K]),
        (32, [90 * K, 175 * K, 260 * K, 345 * K, 430 * K]),
        (64, list(range(50 * K, 500 * K + 1, 45 * K))),
        (128, list(range(30 * K, 500 * K + 1, 25 * K))),
    ],
)
def test_parallel_repo_schedule_fires_at_the_reference_steps(replay_ratio, expected):
    assert reset_schedule(sr_sac(replay_ratio, "eval_steps"), 500 * K) == expected


@pytest.mark.parametrize(("replay_ratio", "period"), [(8, 320 * K), (16, 160 * K), (32, 80 * K), (128, 20 * K)])
def test_paper_schedule_resets_every_interval_over_replay_ratio_env_steps(replay_ratio, period):
    assert reset_schedule(sr_sac(replay_ratio, "env_steps"), 500 * K) == list(range(period, 500 * K + 1, period))


SMALL_SAC = {
    "env": {"name": "Pendulum-v1"},
    "agent": {"name": "sac", "tau": 0.005},
    "num_seeds": 2,
    "total_steps": 3000,
    "network": {"hidden": [16, 16]},
    "replay": {"capacity": 3000, "batch_size": 32},
    "train": {"train_every": 1, "gradient_steps": 2, "learning_starts": 500, "random_steps": 500},
    "eval": {"every": 500, "episodes": 2},
    "checkpoint": {"every": 250, "keep": 20},
    "reset": {"every": 1000, "schedule": "eval_steps"},
    "seed": 3,
}


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.mark.parametrize("agent_name", ["sac", "dqn"])
def test_reset_restores_the_initial_agent_and_keeps_the_replay(agent_name):
    if agent_name == "sac":
        cfg = resolve({**SMALL_SAC, "train": {**SMALL_SAC["train"], "learning_starts": 0, "random_steps": 0}})
    else:  # resets compose with any off-policy agent
        cfg = resolve(
            {
                "num_seeds": 2,
                "network": {"hidden": [8]},
                "reset": {"every": 100},
                "replay": {"capacity": 500},
                "train": {"learning_starts": 0},
            }
        )
    env, params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    keys = seed_keys(cfg["seed"], 0, 2)
    start = init_carry(agent, env, params, spec, cfg, keys)
    initial_agent = jax.tree.map(np.asarray, start.agent)
    segment = jax.jit(make_segment(agent, env, params, spec, cfg, 100, "always"))
    trained, _ = segment(start)
    assert not leaves_equal(trained.agent, initial_agent)
    assert int(trained.grad_step) > 0

    reinit = jax.jit(make_reinit(agent, cfg))
    after = reset_agent(trained, reinit(agent_init_keys(keys), 1), int(trained.grad_step))
    assert leaves_equal(after.agent, initial_agent)  # every network, target, temperature, optimizer state
    optimizer_counts = [x for path, x in jax.tree_util.tree_leaves_with_path(after.agent) if "count" in str(path)]
    assert optimizer_counts and all(int(np.max(c)) == 0 for c in optimizer_counts)
    for name in ("replay", "env_state", "obs", "key", "env_step", "grad_step", "episodes"):
        assert leaves_equal(getattr(after, name), getattr(trained, name)), name
    assert (int(after.resets.count), int(after.resets.grad_step_at_reset)) == (1, int(trained.grad_step))

    fresh_cfg = {**cfg, "reset": {**cfg["reset"], "key": "fresh"}}
    fresh = jax.jit(make_reinit(agent, fresh_cfg))
    first, second = fresh(agent_init_keys(keys), 1), fresh(agent_init_keys(keys), 2)
    assert not leaves_equal(first, initial_agent) and not leaves_equal(first, second)


def test_a_run_with_resets_resets_on_schedule_and_resumes_exactly_between_resets(tmp_path):
    cfg = resolve(SMALL_SAC)
    assert reset_schedule(cfg, 2999) == [1500, 2500]
    run(cfg, tmp_path / "ref", progress=False)
    log = (tmp_path / "ref" / "log.txt").read_text()
    assert "step 1500: reset 1, after 2000 updates" in log and "step 2500: reset 2, after 2000 updates" in log
    # the checkpoint at 1500 is written after that step's reset: the initial agent, the replay kept
    env, params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    start = init_carry(agent, env, params, spec, cfg, seed_keys(cfg["seed"], 0, 2))
    saved, _ = checkpoint.restore_latest(tmp_path / "ref" / "checkpoints", start, at=1500)
    before, _ = checkpoint.restore_latest(tmp_path / "ref" / "checkpoints", start, at=1250)
    assert leaves_equal(saved.agent, start.agent) and not leaves_equal(before.agent, start.agent)
    assert int(saved.env_step) == 1500 and int(saved.grad_step) == 2000
    assert np.array_equal(saved.replay.obs[:, :1250], before.replay.obs[:, :1250])
    # resume between the resets: at step 2000 the 1000 updates since the first reset are not "more
    # than 1000", so only a restored counter keeps the resumed run from resetting there
    shutil.copytree(tmp_path / "ref", tmp_path / "b")
    for step in checkpoint.complete_steps(tmp_path / "b" / "checkpoints"):
        if step != 1750:
            shutil.rmtree(tmp_path / "b" / "checkpoints" / str(step))
    summary = run(cfg, tmp_path / "b", progress=False)
    assert summary.resumed_from == 1750
    for name in ("result_Test.csv", "result_Train.csv", "metrics.csv"):
        ref = pd.read_csv(tmp_path / "ref" / name)
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b" / name), ref)


def test_priming_runs_its_extra_updates_once_at_the_first_learning_block():
    """The primacy-bias test: ``train/priming_updates`` extra updates on the replay as it is when
    learning starts, before that block's own, and never again."""
    cfg = resolve(
        {
            "env": {"name": "CartPole-v1"},
            "num_seeds": 2,
            "network": {"hidden": [8]},
            "replay": {"capacity": 500, "batch_size": 16},
            "train": {"learning_starts": 40, "train_every": 4, "gradient_steps": 2, "priming_updates": 30},
            "agent": {"target_every": 8},
        }
    )
    env, params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    carry = init_carry(agent, env, params, spec, cfg, seed_keys(0, 0, 2))
    mixed = jax.jit(make_segment(agent, env, params, spec, cfg, 12, "mixed"))  # blocks at steps 0..44
    carry, (_, metrics) = mixed(carry)
    assert int(carry.grad_step) == 30 + 2 * 2  # blocks starting at 40 and 44 learn; the first also primes
    primed = carry.agent.params
    carry, _ = jax.jit(make_segment(agent, env, params, spec, cfg, 3, "always"))(carry)
    assert int(carry.grad_step) == 34 + 3 * 2
    plain = {**cfg, "train": {**cfg["train"], "priming_updates": 0}}
    start = init_carry(agent, env, params, spec, plain, seed_keys(0, 0, 2))
    unprimed, _ = jax.jit(make_segment(agent, env, params, spec, plain, 12, "mixed"))(start)
    assert int(unprimed.grad_step) == 4
    assert not leaves_equal(unprimed.agent.params, primed)
