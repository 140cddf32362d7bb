"""Sequence torsos: acting token by token gives what training on the whole sequence gives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl.config import resolve
from frugalrl.nets.sequence import LSTMLayer, initial_memory, make_sequence_network, sine_positions

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


def _numpy_torch_lstm(x, w_ih, w_hh, b_ih, b_hh):
    """torch.nn.LSTM's equations (gates i, f, g, o stacked along the last axis), one step at a time."""
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    hidden = w_hh.shape[0]
    c = np.zeros(hidden)
    h = np.zeros(hidden)
    outputs = []
    for x_t in x:
        z = x_t @ w_ih + b_ih + h @ w_hh + b_hh
        i, f, g, o = np.split(z, 4)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs)


def test_lstm_is_pytorchs_with_one_orthogonal_matrix_per_stacked_gate_weight():
    layer = LSTMLayer(6)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(8), (7, 3)))
    zeros = jnp.zeros(6)
    params = layer.init(jax.random.PRNGKey(9), (zeros, zeros), x)["params"]
    w_ih, w_hh = np.asarray(params["w_ih"]), np.asarray(params["w_hh"])
    assert w_ih.shape == (3, 24) and w_hh.shape == (6, 24)
    # Memory-RL's orthogonal_ on the whole [4h, in] and [4h, h] matrices: orthonormal as one matrix,
    # so each gate's block has a quarter of the squared norm rather than a full orthogonal block each
    np.testing.assert_allclose(w_ih @ w_ih.T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(w_hh @ w_hh.T, np.eye(6), atol=1e-5)
    assert np.abs(w_hh[:, :6] @ w_hh[:, :6].T - np.eye(6)).max() > 0.1
    assert not np.any(params["b_ih"]) and not np.any(params["b_hh"])
    # with non-zero biases too, the outputs are PyTorch's LSTM recomputed in NumPy
    rng = np.random.default_rng(0)
    params = {**params, "b_ih": rng.normal(size=24), "b_hh": rng.normal(size=24)}
    _, out = layer.apply({"params": params}, (zeros, zeros), x)
    expected = _numpy_torch_lstm(x, w_ih, w_hh, params["b_ih"], params["b_hh"])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
