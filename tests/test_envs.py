"""The registry and the v1 API: termination and truncation apart, binary observations as uint8."""

import jax
import jax.numpy as jnp
import numpy as np

from frugalrl import envs


def test_registry_has_classic_control_and_minatar():
    names = set(envs.available_envs())
    assert {"CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0"} <= names
    assert {
        "Asterix-MinAtar",
        "Breakout-MinAtar",
        "Freeway-MinAtar",
        "Seaquest-MinAtar",
        "SpaceInvaders-MinAtar",
    } <= names


def test_minatar_observations_are_stored_as_uint8():
    _, _, spec = envs.make({"name": "Breakout-MinAtar", "max_episode_steps": -1, "params": {}})
    assert spec.obs_dtype == np.uint8 and spec.obs_shape == (10, 10, 4) and spec.num_actions == 3


def test_time_limit_truncates_without_terminating():
    env, params, spec = envs.make({"name": "CartPole-v1", "max_episode_steps": 7, "params": {}})
    assert spec.max_episode_steps == 7
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    flags = []
    for t in range(7):
        # alternate pushes keep the pole up for 7 steps
        obs, state, reward, terminated, truncated, info = env.step(jax.random.PRNGKey(t), state, t % 2, params)
        flags.append((bool(terminated), bool(truncated)))
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])
    assert not jnp.array_equal(info["final_observation"], obs)  # obs is already the next episode's first


def test_continuous_spec():
    # agents act in [-1, 1]; the env maps that onto Pendulum's torque range [-2, 2] (tests/test_sac.py)
    _, _, spec = envs.make({"name": "Pendulum-v1", "max_episode_steps": -1, "params": {}})
    assert not spec.discrete and spec.action_shape == (1,) and (spec.action_low, spec.action_high) == (-1.0, 1.0)


def test_minatar_v0_has_six_actions_sticky_actions_and_no_time_limit():
    env, params, spec = envs.make({"name": "Breakout-MinAtar-v0", "max_episode_steps": -1, "params": {}})
    assert spec.num_actions == 6 and spec.obs_dtype == np.uint8 and spec.obs_shape == (10, 10, 4)
    assert params.sticky_action_prob == 0.1 and spec.max_episode_steps > 10**9
    # 'r' (3) moves the paddle right; 'u' (2) is a no-op in Breakout, as in MinAtar's full action set
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    no_sticky = params.replace(sticky_action_prob=0.0)
    _, moved, *_ = env.step(jax.random.PRNGKey(1), state, 3, no_sticky)
    _, stayed, *_ = env.step(jax.random.PRNGKey(1), state, 2, no_sticky)
    assert int(moved.game.pos) == int(state.game.pos) + 1 and int(stayed.game.pos) == int(state.game.pos)
    # with sticky probability 1 the first action (0, from the start) repeats forever, across resets
    always = params.replace(sticky_action_prob=1.0)

    def play(carry, key):
        state = carry
        _, state, _, terminated, truncated, _ = env.step(key, state, 3, always)
        return state, (state.last_action, state.game.pos, terminated | truncated)

    _, (last, pos, done) = jax.lax.scan(play, state, jax.random.split(jax.random.PRNGKey(2), 300))
    assert bool(done.any()) and int(last.max()) == 0 and int(pos.max()) == 4  # paddle never moved
    # and sticky 0.1 repeats the previous action about 10% of the time
    sticky_hits = jax.vmap(lambda k: env.step(k, state.replace(last_action=jnp.int32(1)), 3, params)[1].last_action)(
        jax.random.split(jax.random.PRNGKey(3), 4000)
    )
    assert 0.08 < float(jnp.mean(sticky_hits == 1)) < 0.12


def test_seaquest_v0_is_capped_at_ten_thousand_steps():
    _, params, spec = envs.make({"name": "Seaquest-MinAtar-v0", "max_episode_steps": -1, "params": {}})
    assert spec.max_episode_steps == 10_000 and spec.num_actions == 6
