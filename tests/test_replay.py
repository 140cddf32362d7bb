"""FIFO replay: each observation stored once, next observations and n-step returns rebuilt exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl.replay import fifo


def stream(num_steps, episode_limit, seed):
    """A scripted stream with terminations and time-limit truncations; obs[t] = [t, episode]."""
    rng = np.random.default_rng(seed)
    transitions, t_in_episode, episode = [], 0, 0
    obs = np.array([0.0, episode], np.float32)
    for t in range(num_steps):
        t_in_episode += 1
        terminated = bool(rng.random() < 0.08)
        truncated = (not terminated) and t_in_episode == episode_limit
        final = np.array([1000.0 + t, episode], np.float32)  # the true s'
        if terminated or truncated:
            episode += 1
            t_in_episode = 0
            next_obs = np.array([-(t + 1.0), episode], np.float32)  # first obs of the next episode
        else:
            next_obs = final
        transitions.append(
            dict(
                obs=obs,
                action=t % 3,
                reward=float(rng.normal()),
                terminated=terminated,
                truncated=truncated,
                next_obs=next_obs,
                final_obs=final,
            )
        )
        obs = next_obs
    return transitions


def fill(transitions, capacity, limit):
    state = fifo.init(jnp.zeros(2), jnp.int32(0), capacity, limit)
    add = jax.jit(fifo.add)
    for count, tr in enumerate(transitions):
        transition = fifo.Transition(
            tr["obs"],
            jnp.int32(tr["action"]),
            jnp.float32(tr["reward"]),
            tr["terminated"],
            tr["truncated"],
            tr["final_obs"],
        )
        state = add(state, jnp.int32(count), transition, tr["next_obs"])
    return state


def reference(transitions, capacity, n, gamma, bootstrap_truncation):
    held = transitions[-capacity:]
    out = []
    for i, tr in enumerate(held):
        reward, k, last = 0.0, 0, tr
        for j in range(n):
            if i + j >= len(held):
                break
            step = held[i + j]
            reward += gamma**j * step["reward"]
            k, last = j + 1, step
            if step["terminated"] or step["truncated"]:
                break
        ends = last["terminated"] or (last["truncated"] and not bootstrap_truncation)
        # bootstrap from the true s' of the last step included (the final obs when it was truncated)
        next_obs = last["final_obs"] if last["truncated"] else last["next_obs"]
        out.append((tr["obs"], tr["action"], reward, 0.0 if ends else gamma**k, next_obs, ends))
    return out


@pytest.mark.parametrize(
    "capacity, steps, n, bootstrap",
    [
        (50, 30, 1, True),  # not full yet
        (50, 237, 1, True),  # wrapped several times
        (64, 300, 3, True),  # n-step across episode ends and the newest transition
        (40, 173, 5, False),  # truncation treated as terminal (Explorer's behaviour)
    ],
)
def test_get_matches_brute_force(capacity, steps, n, bootstrap):
    limit = 7
    transitions = stream(steps, limit, seed=capacity + steps)
    state = fill(transitions, capacity, limit)
    count = jnp.int32(steps)
    batch = fifo.get(state, count, n_step=n, gamma=0.9, bootstrap_truncation=bootstrap)
    expected = reference(transitions, capacity, n, 0.9, bootstrap)
    held = min(steps, capacity)
    assert int(fifo.size(state, count)) == held
    for i, (obs, action, reward, discount, next_obs, ends) in enumerate(expected):
        assert np.array_equal(batch.obs[i], obs)
        assert int(batch.action[i]) == action
        assert float(batch.reward[i]) == pytest.approx(reward, rel=1e-5, abs=1e-5)
        assert float(batch.discount[i]) == pytest.approx(discount, rel=1e-6)
        if not ends:
            assert np.array_equal(batch.next_obs[i], next_obs), (i, batch.next_obs[i], next_obs)


def test_truncated_steps_bootstrap_from_the_true_final_observation():
    transitions = stream(120, 5, seed=3)
    state = fill(transitions, 100, 5)
    batch = fifo.get(state, jnp.int32(120))
    truncated = [i for i, tr in enumerate(transitions[-100:]) if tr["truncated"]]
    assert truncated, "the scripted stream must contain truncations"
    for i in truncated:
        assert float(batch.next_obs[i][0]) >= 1000  # the final obs, not the next episode's reset obs
        assert float(batch.discount[i]) > 0


def test_sample_draws_only_held_transitions():
    transitions = stream(80, 9, seed=1)
    state = fill(transitions, 32, 9)
    batch = fifo.sample(state, jax.random.PRNGKey(0), jnp.int32(80), 4096)
    held_obs = {float(tr["obs"][0]) for tr in transitions[-32:]}
    assert {float(x) for x in np.asarray(batch.obs[:, 0])} == held_obs  # all 32 seen, nothing older


def test_each_observation_stored_once():
    obs = jnp.zeros((10, 10, 6), jnp.uint8)
    state = fifo.init(obs, jnp.int32(0), capacity=100_000, max_episode_steps=1000)
    report = fifo.memory_bytes(state)
    # 600 bytes of observation + 14 bytes of action/reward/flags/index; a copy of next_obs would be >1200
    assert report["bytes_per_transition"] < 620
    assert state.obs.dtype == jnp.uint8
