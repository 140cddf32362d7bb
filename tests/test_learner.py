"""One learner for every loop: the host loop's n-step and prioritized replay are the flat loop's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl import envs
from frugalrl.agents import make_agent
from frugalrl.config import resolve
from frugalrl.replay import fifo, prioritized
from frugalrl.replay.sampler import BatchSampler
from frugalrl.train.host import HostCarry, make_host_step
from frugalrl.train.loop import BlockData, Learning, init_carry, make_learner, make_segment, seed_keys

CFG = {
    "num_seeds": 2,
    "total_steps": 1000,
    "network": {"hidden": [16]},
    "agent": {"n_step": 3, "gamma": 0.9, "target_every": 50},
    "replay": {"capacity": 256, "batch_size": 16, "prioritized": True},
    "train": {"learning_starts": 100, "train_every": 1, "gradient_steps": 2},
}


def collected(cfg):
    """The flat loop's state after 300 env steps of a CartPole run that has not learned yet."""
    env, env_params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    carry = init_carry(agent, env, env_params, spec, cfg, seed_keys(0, 0, 2))
    carry, _ = jax.jit(make_segment(agent, env, env_params, spec, cfg, 300, learning="never"))(carry)
    return agent, spec, carry


def one_more_step(cfg):
    """The same transition taken, then learned from, by the host loop's step and by the flat loop."""
    agent, spec, c = collected(cfg)
    reward, terminated, truncated = jnp.array([1.0, 0.5]), jnp.array([False, True]), jnp.zeros(2, bool)
    final_obs, next_obs = c.obs + 0.25, c.obs - 0.25
    action = jnp.array([0, 1], jnp.int32)
    host = HostCarry(c.agent, c.replay, c.obs, action, c.key, c.env_step, c.grad_step, (), c.priorities)
    host, _ = jax.jit(make_host_step(agent, spec, cfg, learn=True))(
        host, reward, terminated, truncated, final_obs, next_obs
    )
    block = fifo.Transition(c.obs[None], action[None], reward[None], terminated[None], truncated[None], final_obs[None])
    replay = jax.vmap(fifo.add_block, in_axes=(0, None, 1, 0))(c.replay, c.env_step, block, next_obs)
    priorities = c.priorities
    if cfg["replay"]["prioritized"]:
        priorities = jax.vmap(prioritized.on_add, in_axes=(0, None, None))(c.priorities, c.env_step, 1)
    learn = jax.jit(make_learner(agent, spec, cfg))
    flat, _ = learn(Learning(c.agent, c.key, c.grad_step, priorities), BlockData(replay, c.env_step + 1))
    return host, flat, c


def test_host_step_learns_with_the_flat_loops_n_step_prioritized_updates():
    cfg = resolve(CFG)
    assert BatchSampler.from_config(cfg).kind == "prioritized"
    host, flat, before = one_more_step(cfg)
    for mine, theirs in zip(
        jax.tree.leaves((host.agent, host.priorities)), jax.tree.leaves((flat.agent, flat.priorities)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    assert int(host.grad_step) == int(flat.grad_step) == int(before.grad_step) + 2
    # prioritized replay is at work: sampled transitions got priorities of their own, below the max
    assert (np.asarray(host.priorities.value) < np.asarray(host.priorities.max_value)[:, None]).any()


@pytest.mark.parametrize(
    "changed", [{"agent": {**CFG["agent"], "n_step": 1}}, {"replay": {**CFG["replay"], "prioritized": False}}]
)
def test_host_step_uses_n_step_returns_and_priorities(changed):
    """Without n-step or without prioritized replay the host's update differs: both are in effect."""
    host, _, _ = one_more_step(resolve(CFG))
    other, _, _ = one_more_step(resolve({**CFG, **changed}))
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(host.agent.params), jax.tree.leaves(other.agent.params), strict=True)
    )
