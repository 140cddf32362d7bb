"""Passive and Active T-Maze against the rules of Memory-RL (reference memory_rl.md §2.1-2.3, §13)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl import envs
from frugalrl.config import ConfigError, resolve
from frugalrl.envs.tmaze import TMaze

RIGHT, UP, LEFT, DOWN = 0, 1, 2, 3


def play(env, policy, key, episodes=1):
    """Roll ``episodes`` whole episodes; ``policy(t, first_obs, obs) -> action`` per step.

    Returns observations [E, T+1, 2] (the last one is the pre-reset final observation), rewards [E, T],
    terminated [E, T] and the goals [E].
    """
    params = env.default_params
    length = params.max_steps_in_episode

    def episode(key):
        reset_key, key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)
        goal = state.goal_y

        def step(carry, t):
            obs, state, key, first = carry
            key, step_key = jax.random.split(key)
            action = policy(t, first, obs, step_key)
            next_obs, state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
            shown = jnp.where(terminated, info["final_observation"], next_obs)
            return (next_obs, state, key, first), (shown, reward, terminated, truncated)

        _, (shown, rewards, terminated, truncated) = jax.lax.scan(step, (obs, state, key, obs), jnp.arange(length))
        return jnp.concatenate([obs[None], shown]), rewards, terminated, truncated, goal

    out = jax.jit(jax.vmap(episode))(jax.random.split(key, episodes))
    return jax.tree.map(np.asarray, out)


@pytest.mark.parametrize("active", [False, True])
@pytest.mark.parametrize("length", [1, 5, 10, 50])
def test_the_optimal_policy_returns_exactly_one(active, length):
    env = TMaze(length, active)
    params = env.default_params
    key = jax.random.PRNGKey(length)
    # the optimal policy with the cue read from the observation at the oracle (step 0 passive, step 1 active)
    cue_step = 1 if active else 0

    def episode(key):
        obs, state = env.reset(key, params)

        def step(carry, t):
            obs, state, cue = carry
            cue = jnp.where(t == cue_step, obs[1], cue)
            if active:
                walk, last = jnp.where(t == 0, LEFT, RIGHT), t == length + 2
            else:
                walk, last = RIGHT, t == length
            action = jnp.where(last, jnp.where(cue > 0, UP, DOWN), walk)
            obs, state, reward, terminated, _, _ = env.step(key, state, action, params)
            return (obs, state, cue), (reward, terminated)

        _, (rewards, terminated) = jax.lax.scan(step, (obs, state, 0.0), jnp.arange(env.episode_length))
        return rewards, terminated

    rewards, terminated = jax.vmap(episode)(jax.random.split(key, 16))
    np.testing.assert_array_equal(np.asarray(rewards).sum(1), 1.0)
    np.testing.assert_array_equal(np.asarray(rewards)[:, :-1], 0.0)  # optimal play is never penalised
    assert np.asarray(terminated)[:, -1].all() and not np.asarray(terminated)[:, :-1].any()


@pytest.mark.parametrize("active", [False, True])
def test_the_best_memoryless_policy_gets_the_goal_half_the_time(active):
    env = TMaze(10, active)
    _, rewards, _, _, goals = play(
        env, lambda t, first, obs, key: jnp.where(obs[0] > 0, UP, RIGHT), jax.random.PRNGKey(0), 400
    )
    returns = rewards.sum(1)
    np.testing.assert_allclose(returns, (goals > 0).astype(float), atol=1e-6)  # right then up: 1 iff the goal is up
    assert 0.4 < returns.mean() < 0.6


def test_passive_observations_show_the_cue_once_then_the_corridor_then_the_junction():
    env = TMaze(5, active=False)
    obs, _, _, _, goals = play(env, lambda t, first, obs, key: jnp.where(t < 5, RIGHT, UP), jax.random.PRNGKey(1), 8)
    for episode, goal in zip(obs, goals, strict=True):
        expected = [[0, goal]] + [[0, 0]] * 4 + [[1, 0], [1, 1]]
        np.testing.assert_array_equal(episode, expected)
    # back on the oracle after one step right: the cue is gone
    obs, *_ = play(env, lambda t, first, obs, key: jnp.where(t == 0, RIGHT, LEFT), jax.random.PRNGKey(2), 4)
    np.testing.assert_array_equal(obs[:, 2], 0.0)


def test_active_observations_hide_the_cue_until_the_agent_steps_onto_the_oracle():
    env = TMaze(5, active=True)
    obs, rewards, _, _, goals = play(
        env, lambda t, first, obs, key: jnp.where(t == 0, LEFT, RIGHT), jax.random.PRNGKey(3), 8
    )
    assert env.episode_length == 8 and obs.shape == (8, 9, 2)
    np.testing.assert_array_equal(obs[:, 0], 0.0)
    np.testing.assert_array_equal(obs[:, 1, 1], goals)
    np.testing.assert_array_equal(obs[:, 2:7], 0.0)  # corridor x = 1..5
    np.testing.assert_array_equal(obs[:, 7:], np.broadcast_to([1.0, 0.0], (8, 2, 2)))  # junction x = 6
    np.testing.assert_array_equal(rewards, 0.0)  # the detour is free; bumping the end wall early is too


@pytest.mark.parametrize("active", [False, True])
@pytest.mark.parametrize("length", [1, 7, 20])
def test_episodes_last_T_steps_and_standing_still_costs_exactly_one(active, length):
    env = TMaze(length, active)
    assert env.episode_length == length + (3 if active else 1)
    _, rewards, terminated, truncated, _ = play(env, lambda t, first, obs, key: UP, jax.random.PRNGKey(4), 4)
    assert rewards.shape == (4, env.episode_length)
    assert terminated[:, -1].all() and not terminated[:, :-1].any() and not truncated.any()
    np.testing.assert_allclose(rewards.sum(1), -1.0, rtol=1e-5)  # L penalties of -1/L
    np.testing.assert_array_equal(rewards[:, -1], 0.0)  # none on the final step
    penalised = (rewards < 0).sum(1)
    np.testing.assert_array_equal(penalised, length)


def test_uniform_random_play_scores_about_minus_one():
    env = TMaze(10, active=False)
    _, rewards, *_ = play(env, lambda t, first, obs, key: jax.random.randint(key, (), 0, 4), jax.random.PRNGKey(5), 500)
    assert -1.0 < rewards.sum(1).mean() < -0.9  # the reference measured -0.97


def test_registry_names_a_length_and_refuses_a_different_time_limit():
    env, params, spec = envs.make({"name": "ActiveTMaze-20"})
    assert spec.max_episode_steps == 23 and spec.obs_shape == (2,) and spec.num_actions == 4
    assert env.active and env.corridor_length == 20
    assert "PassiveTMaze-{L}" in envs.available_envs()
    with pytest.raises(ConfigError, match="always last 51 steps"):
        envs.check_env_config(resolve({"env": {"name": "PassiveTMaze-50", "max_episode_steps": 100}}))
    with pytest.raises(ConfigError, match="unknown environment"):
        envs.check_env_config(resolve({"env": {"name": "PassiveTMaze-x"}}))
