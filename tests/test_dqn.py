"""DQN pieces: TD targets (plain and double), losses, target sync, epsilon schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl import envs
from frugalrl.agents import make_agent
from frugalrl.config import resolve
from frugalrl.replay.fifo import Batch


def make(**agent):
    cfg = resolve({"agent": agent, "network": {"hidden": [8]}})
    _, _, spec = envs.make(cfg["env"])
    dqn = make_agent(cfg, spec)
    return dqn, dqn.init(jax.random.PRNGKey(0))


def batch(n=5):
    rng = np.random.default_rng(0)
    return Batch(
        obs=jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
        action=jnp.asarray(rng.integers(0, 2, n)),
        reward=jnp.asarray(rng.normal(size=n), jnp.float32),
        discount=jnp.asarray([0.99, 0, 0.99, 0.9801, 0.99]),
        next_obs=jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
    )


def test_td_target_plain_and_double():
    dqn, state = make()
    other = dqn.init(jax.random.PRNGKey(1))
    state = state._replace(target_params=other.params)  # online != target so the two targets differ
    b = batch()
    q_target = dqn.network.apply(state.target_params, b.next_obs)
    q_online = dqn.network.apply(state.params, b.next_obs)
    plain = b.reward + b.discount * q_target.max(-1)
    np.testing.assert_allclose(dqn.td_target(state, b), plain, rtol=1e-6)
    double_dqn, _ = make(double=True)
    chosen = jnp.take_along_axis(q_target, q_online.argmax(-1)[:, None], -1)[:, 0]
    np.testing.assert_allclose(double_dqn.td_target(state, b), b.reward + b.discount * chosen, rtol=1e-6)


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_loss_values(loss):
    dqn, state = make(loss=loss)
    b = batch()
    target = b.reward + 3.0  # large errors so Huber's linear part matters
    value, _ = dqn.td_loss(state.params, b, target)
    q = jnp.take_along_axis(dqn.network.apply(state.params, b.obs), b.action[:, None], -1)[:, 0]
    err = np.asarray(q - target)
    expected = np.mean(err**2) if loss == "mse" else np.mean(np.where(abs(err) <= 1, 0.5 * err**2, abs(err) - 0.5))
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_update_lowers_the_loss_and_keeps_the_target():
    dqn, state = make()
    b = batch()
    target = dqn.td_target(state, b)
    before = float(dqn.td_loss(state.params, b, target)[0])
    new, metrics = dqn.update(state, b, jax.random.PRNGKey(0))
    assert float(dqn.td_loss(new.params, b, target)[0]) < before
    assert float(metrics["loss"]) == pytest.approx(before, rel=1e-6)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), new.target_params, state.target_params))


def test_hard_and_polyak_sync():
    dqn, state = make()
    moved = state._replace(params=jax.tree.map(lambda p: p + 1.0, state.params))
    hard = dqn.sync_target(moved)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), hard.target_params, moved.params))
    polyak_dqn, _ = make(tau=0.25)
    soft = polyak_dqn.sync_target(moved)
    jax.tree.map(
        lambda t, old: np.testing.assert_allclose(t, old + 0.25, rtol=1e-6), soft.target_params, state.target_params
    )


def test_epsilon_schedule_is_linear_from_step_zero():
    dqn, _ = make(epsilon_start=1.0, epsilon_end=0.05, epsilon_decay_steps=1000)
    assert float(dqn.epsilon(0)) == 1.0
    assert float(dqn.epsilon(500)) == pytest.approx(0.525)
    assert float(dqn.epsilon(1000)) == pytest.approx(0.05)
    assert float(dqn.epsilon(10**6)) == pytest.approx(0.05)


def test_act_greedy_at_epsilon_zero_and_random_at_one():
    dqn, state = make()
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(256, 4)), jnp.float32)
    greedy = dqn.network.apply(state.params, obs).argmax(-1)
    keys = jax.random.split(jax.random.PRNGKey(0), 256)
    act = jax.vmap(dqn.act, in_axes=(None, 0, 0, None))
    assert np.array_equal(act(state, obs, keys, 0.0), greedy)
    random_actions = act(state, obs, keys, 1.0)
    assert 0.3 < float(jnp.mean(random_actions == greedy)) < 0.7


def test_categorical_projection_keeps_mass_and_splits_between_neighbours():
    from frugalrl.agents.dqn import project_onto_support

    support = jnp.linspace(-2.0, 2.0, 5)  # spacing 1
    probs = jnp.array([0.1, 0.2, 0.3, 0.25, 0.15])
    # shifting by a whole spacing moves every atom one point up; the top one is clipped onto v_max
    shifted = project_onto_support(support, support + 1.0, probs)
    np.testing.assert_allclose(shifted, [0.0, 0.1, 0.2, 0.3, 0.4], atol=1e-6)
    # half a spacing splits each atom's mass equally between its two neighbours
    half = project_onto_support(support, jnp.full(5, 0.5), probs)
    np.testing.assert_allclose(half, [0, 0, 0.5, 0.5, 0], atol=1e-6)
    rng = np.random.default_rng(0)
    returns = jnp.asarray(rng.uniform(-5, 5, (7, 5)), jnp.float32)
    mass = project_onto_support(support, returns, jnp.tile(probs, (7, 1))).sum(-1)
    np.testing.assert_allclose(mass, 1.0, atol=1e-6)


def test_c51_targets_losses_and_q_values():
    dqn, state = make(atoms=11, v_min=-5.0, v_max=5.0, loss="mse")
    b = batch()
    target = dqn.td_target(state, b)
    assert target.shape == (5, 11)
    np.testing.assert_allclose(target.sum(-1), 1.0, atol=1e-6)
    # a terminal transition's target is its reward, placed on the support
    terminal = int(np.nonzero(np.asarray(b.discount) == 0)[0][0])
    mean = float(jnp.sum(target[terminal] * dqn.support))
    assert mean == pytest.approx(float(np.clip(b.reward[terminal], -5, 5)), abs=1e-5)
    q = dqn.q.apply(state.params, b.obs)
    assert q.shape == (5, 2)
    before = float(dqn.td_loss(state.params, b, target)[0])
    for _ in range(30):
        state, _ = dqn.update(state, b, jax.random.PRNGKey(0), target)
    assert float(dqn.td_loss(state.params, b, target)[0]) < before
    # acting is greedy on the distributions' means
    greedy = dqn.act(state, b.obs[0], jax.random.PRNGKey(0), 0.0)
    assert int(greedy) == int(jnp.argmax(dqn.q.apply(state.params, b.obs[0])))
