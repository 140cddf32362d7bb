"""Prioritized replay: proportional stratified sampling, new and updated priorities, weights, the loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from frugalrl import envs
from frugalrl.agents import make_agent
from frugalrl.config import resolve
from frugalrl.replay import fifo, prioritized
from frugalrl.runs import checkpoint
from frugalrl.train.loop import init_carry, seed_keys
from frugalrl.train.run import run


def filled(capacity, count):
    replay = fifo.init(jnp.zeros(2), jnp.zeros((), jnp.int32), capacity, 1000)
    block = fifo.Transition(
        obs=jnp.arange(count, dtype=jnp.float32)[:, None] * jnp.ones((count, 2)),
        action=jnp.zeros(count, jnp.int32),
        reward=jnp.arange(count, dtype=jnp.float32),
        terminated=jnp.zeros(count, bool),
        truncated=jnp.zeros(count, bool),
        final_obs=jnp.zeros((count, 2)),
    )
    replay = fifo.add_block(replay, 0, block, jnp.zeros(2))
    priorities = prioritized.on_add(prioritized.init(capacity), jnp.int32(0), count)
    return replay, priorities


def test_sampling_follows_the_priorities_and_skips_evicted_slots():
    replay, priorities = filled(capacity=8, count=12)  # 4 oldest evicted: ages 0..7 are transitions 4..11
    count = jnp.int32(12)
    held = fifo.size(replay, count)
    losses = jnp.array([0.0, 0.0, 81.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # age 2 (transition 6) gets sqrt(81) = 9
    priorities = prioritized.update(priorities, count, held, jnp.arange(8), losses, 0.5)
    assert float(priorities.max_value) == pytest.approx(9.0)
    draws = jax.vmap(lambda key: prioritized.sample_ages(priorities, replay, key, count, 16)[0])(
        jax.random.split(jax.random.PRNGKey(0), 200)
    )
    share = float(jnp.mean(draws == 2))
    expected = 9.0 / (9.0 + 7 * 1e-5)  # the other ages have (0 + 1e-10) ** 0.5 = 1e-5
    assert share == pytest.approx(expected, abs=0.01)
    batch = fifo.gather(replay, count, jnp.array([2]))
    assert float(batch.reward[0]) == 6.0  # age 2 is transition 6


def test_new_transitions_get_the_largest_priority_and_weights_normalise():
    _, priorities = filled(capacity=8, count=4)
    np.testing.assert_allclose(priorities.value[:4], 1.0)  # the initial largest priority
    priorities = prioritized.update(priorities, jnp.int32(4), jnp.int32(4), jnp.array([0]), jnp.array([16.0]), 0.5)
    priorities = prioritized.on_add(priorities, jnp.int32(4), 2)
    np.testing.assert_allclose(priorities.value[:6], [4.0, 1.0, 1.0, 1.0, 4.0, 4.0])
    uniform = prioritized.importance_weights(jnp.full(5, 0.2), jnp.int32(5), 0.5)
    np.testing.assert_allclose(uniform, 1.0)
    skewed = prioritized.importance_weights(jnp.array([0.5, 0.125]), jnp.int32(4), 0.5)
    np.testing.assert_allclose(skewed, [0.5, 1.0])  # 1/sqrt(4 * P), over the largest


def test_a_c51_agent_with_prioritized_replay_trains_in_the_loop(tmp_path):
    cfg = resolve(
        {
            "env": {"name": "CartPole-v1"},
            "total_steps": 2000,
            "num_seeds": 2,
            "network": {"hidden": [16]},
            "agent": {"atoms": 21, "v_min": 0.0, "v_max": 100.0, "n_step": 3},
            "replay": {"capacity": 1000, "batch_size": 16, "prioritized": True},
            "train": {"learning_starts": 200, "train_every": 4},
            "eval": {"every": 0, "episodes": 2},
            "checkpoint": {"every": 0, "final": True},
        }
    )
    summary = run(cfg, tmp_path / "per", progress=False)
    assert np.all(np.isfinite(summary.final_returns))
    metrics = pd.read_csv(tmp_path / "per" / "metrics.csv")
    assert "td_per_example" not in metrics.columns and np.isfinite(metrics["td_loss"]).all()
    # the checkpointed priorities were updated from losses: no longer all the initial 1.0
    env, env_params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    shapes = jax.eval_shape(lambda k: init_carry(agent, env, env_params, spec, cfg, k), seed_keys(0, 0, 2))
    carry, _ = checkpoint.restore_latest(tmp_path / "per" / "checkpoints", shapes)
    held = np.asarray(carry.priorities.value)[:, :1000]
    assert np.all(held > 0) and np.all(held.std(axis=1) > 0) and np.all(np.asarray(carry.priorities.max_value) > 1)
