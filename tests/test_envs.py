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
    _, _, spec = envs.make({"name": "Pendulum-v1", "max_episode_steps": -1, "params": {}})
    assert not spec.discrete and spec.action_shape == (1,) and spec.action_high == 2.0
