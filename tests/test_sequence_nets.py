"""Sequence torsos: acting token by token gives what training on the whole sequence gives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl.config import resolve
from frugalrl.nets.sequence import initial_memory, make_sequence_network, sine_positions

LENGTH = 9


def network(model, **overrides):
    cfg = resolve({"sequence": {"model": model, **overrides}})["sequence"]
    return cfg, make_sequence_network(cfg, (2,), num_actions=4, out=4, max_length=LENGTH)


def inputs(key, length=LENGTH):
    k1, k2, k3 = jax.random.split(key, 3)
    obs = jax.random.normal(k1, (length, 2))
    prev_action = jnp.concatenate([jnp.array([-1]), jax.random.randint(k2, (length - 1,), 0, 4)])
    prev_reward = jnp.concatenate([jnp.zeros(1), jax.random.normal(k3, (length - 1,))])
    return obs, prev_action, prev_reward


@pytest.mark.parametrize(
    "model,overrides",
    [
        ("lstm", {}),
        ("lstm", {"layers": 2, "reward_embed": 8}),
        ("gpt", {}),
        ("gpt", {"layers": 2, "heads": 2, "position_encoding": "learned"}),
        ("markov", {"action_embed": 0}),
    ],
)
def test_stepping_matches_the_whole_sequence(model, overrides):
    cfg, net = network(model, **overrides)
    obs, prev_action, prev_reward = inputs(jax.random.PRNGKey(0))
    params = net.init(jax.random.PRNGKey(1), obs, prev_action, prev_reward)
    whole = net.apply(params, obs, prev_action, prev_reward)
    assert whole.shape == (LENGTH, 4)

    def step(memory, x):
        return net.apply(params, memory, *x, method=net.step)

    _, stepped = jax.lax.scan(step, initial_memory(cfg, LENGTH), (obs, prev_action, prev_reward))
    np.testing.assert_allclose(stepped, whole, rtol=2e-5, atol=2e-6)
    # causality (and, for memory models, memory): changing the first observation changes later outputs
    # of a memory model, and never the outputs before the change
    changed = net.apply(params, obs.at[4].set(obs[4] + 1.0), prev_action, prev_reward)
    np.testing.assert_array_equal(changed[:4], whole[:4])
    later_changed = not np.allclose(changed[5:], whole[5:])
    assert later_changed == (model != "markov")


def test_dropout_is_random_in_training_and_off_in_evaluation():
    cfg, net = network("gpt")
    obs, prev_action, prev_reward = inputs(jax.random.PRNGKey(2))
    params = net.init(jax.random.PRNGKey(3), obs, prev_action, prev_reward)
    a = net.apply(params, obs, prev_action, prev_reward, False, rngs={"dropout": jax.random.PRNGKey(4)})
    b = net.apply(params, obs, prev_action, prev_reward, False, rngs={"dropout": jax.random.PRNGKey(5)})
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(
        net.apply(params, obs, prev_action, prev_reward), net.apply(params, obs, prev_action, prev_reward)
    )


def test_gpt_width_is_the_token_width_and_sine_positions_are_the_standard_table():
    cfg, net = network("gpt")
    obs, prev_action, prev_reward = inputs(jax.random.PRNGKey(6))
    params = net.init(jax.random.PRNGKey(7), obs, prev_action, prev_reward)
    qkv = params["params"]["core"]["blocks_0"]["qkv"]["kernel"]
    assert qkv.shape == (cfg["obs_embed"] + cfg["action_embed"], 3 * (cfg["obs_embed"] + cfg["action_embed"]))
    table = np.asarray(sine_positions(5, 4))
    np.testing.assert_allclose(table[3], [np.sin(3), np.cos(3), np.sin(3 / 100), np.cos(3 / 100)], rtol=1e-6)
