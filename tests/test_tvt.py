"""Passive Visual Match and Key-to-Door against the rules of the original pycolab tasks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl import envs
from frugalrl.envs import tvt

N, S, W, E = 0, 1, 2, 3


def rollout(name, policy, key, params_override=None):
    """Play one episode in Python; ``policy(state, t) -> action``. Returns per-step lists."""
    env, params, spec = envs.make({"name": name})
    if params_override:
        params = params.replace(**params_override)
    step = jax.jit(env.step)
    reset_key, key = jax.random.split(key)
    obs, state = env.reset(reset_key, params)
    first_state = state
    observations, rewards, dones, successes, phases = [obs], [], [], [], []
    for t in range(spec.max_episode_steps):
        key, step_key = jax.random.split(key)
        obs, next_state, reward, terminated, truncated, info = step(step_key, state, policy(state, t), params)
        shown = info["final_observation"] if terminated else obs
        observations.append(shown)
        rewards.append(float(reward))
        dones.append(bool(terminated or truncated))
        successes.append(bool(info["success"]))
        phases.append(int(state.phase))
        state = next_state
    return (
        env,
        spec,
        first_state,
        np.stack(observations),
        np.array(rewards),
        np.array(dones),
        np.array(successes),
        phases,
    )


def to_key_policy(state, t):
    """Walk to the key (through the gap at column 5), then stand still; in the reward room go north."""
    phase = int(state.phase)
    if phase == 2:
        return N
    if phase == 1 or not bool(state.key_present):
        return S if phase == 1 else N
    row, col = (int(x) for x in state.player)
    key_row, key_col = (int(x) for x in state.key_cell)
    if row >= 3 and col != 5:
        return E if col < 5 else W
    if row > 2:
        return N
    if col != key_col:
        return E if col < key_col else W
    return N if row > key_row else S


def to_square_policy(state, t):
    """Visual Match: in the reward room walk to the square of the colour seen while exploring."""
    if int(state.phase) != 2:
        return N
    slot = int(np.argmax(np.asarray(state.order) == int(state.target)))
    row, col = (int(x) for x in state.player)
    goal_col = [2, 5, 8][slot]
    if col == goal_col or row > 2:  # up the middle to row 2, across, then up onto the square
        return N
    return E if col < goal_col else W


@pytest.mark.parametrize("distractor", [1, 60])
def test_key_to_door_lasts_D_plus_25_and_pays_the_door_only_with_the_key(distractor):
    name = f"KeyToDoor-{distractor}"
    env, spec, first, obs, rewards, dones, successes, phases = rollout(name, to_key_policy, jax.random.PRNGKey(0))
    assert spec.max_episode_steps == distractor + 25 and spec.obs_shape == (5, 5, 3) and obs.dtype == np.uint8
    assert dones[-1] and not dones[:-1].any()
    assert phases == [0] * 15 + [1] * distractor + [2] * 10
    assert rewards[-10:].sum() == 5.0 and successes[-1] and not successes[:-1].any()
    # never picking up the key: the door stays shut, no success
    _, _, _, _, rewards, _, successes, _ = rollout(name, lambda s, t: S, jax.random.PRNGKey(0))
    assert rewards[-10:].sum() == 0.0 and not successes.any()


def test_the_key_vanishes_and_the_indicator_flashes_for_one_frame():
    env, spec, first, obs, rewards, dones, successes, phases = rollout(
        "KeyToDoor-5", to_key_policy, jax.random.PRNGKey(3)
    )
    white = (obs == 255).all(-1)  # the indicator is the only white cell
    flashes = np.nonzero(white.any((1, 2)))[0]
    assert len(flashes) == 1 and flashes[0] <= 15
    key_colour = (obs == tvt.KEY).all(-1).any((1, 2))
    assert key_colour[: flashes[0]].any() and not key_colour[flashes[0] :].any()


@pytest.mark.parametrize("seed", range(4))
def test_visual_match_lasts_D_plus_30_and_pays_only_the_colour_seen(seed):
    env, spec, first, obs, rewards, dones, successes, phases = rollout(
        "PassiveVisualMatch-10", to_square_policy, jax.random.PRNGKey(seed)
    )
    assert spec.max_episode_steps == 40 and phases == [0] * 15 + [1] * 10 + [2] * 15
    assert rewards[-15:].sum() == 5.0 and successes[-1]
    # while exploring the player cannot move and sees the target colour next to it
    colour = tvt.SQUARE_COLOURS[int(first.target)]
    assert all((o == colour).all(-1).sum() == 1 for o in obs[:15])
    np.testing.assert_array_equal(obs[0], obs[14])
    # always the first square of the wrong colour: nothing, and all squares vanish after the touch
    wrong = int(np.argmax(np.asarray(first.order) != int(first.target)))
    order = {"order": None}

    def wrong_policy(state, t):
        order["order"] = np.asarray(state.order)
        return to_square_policy(state.replace(target=jnp.asarray(int(state.order[wrong]))), t)

    *_, rewards, _, successes, _ = rollout("PassiveVisualMatch-10", wrong_policy, jax.random.PRNGKey(seed))
    assert rewards[-15:].sum() == 0.0 and not successes.any()


def test_apples_pay_one_and_come_back_21_frames_after_a_pickup():
    env = tvt.TVTTask("key_to_door", 60)
    params = env.default_params
    _, state = env.reset(jax.random.PRNGKey(0), params)
    state = env._enter_distractor(state, jax.random.PRNGKey(1))
    cell = 18  # (5, 1): bottom-left apple cell, a wall to the south and west
    assert tuple(tvt.APPLE_CELLS[cell]) == (5, 1)
    state = state.replace(
        player=jnp.array([5, 2]),
        apples=state.apples.at[cell].set(True),
        apple_start=state.apple_start.at[cell].set(True),
    )
    step = jax.jit(env.step_env)
    _, state, reward, _, _ = step(jax.random.PRNGKey(2), state, W, params)  # onto the apple at frame 1
    assert float(reward) == 1.0 and not bool(state.apples[cell])
    rewards = []
    for _ in range(22):  # press into the wall: stay on the cell
        _, state, reward, _, _ = step(jax.random.PRNGKey(2), state, S, params)
        rewards.append(float(reward))
    # back at frame 22 (= 1 + 21) under the player, eaten on frame 23
    assert rewards[:21] == [0.0] * 21 and rewards[21] == 1.0


def test_crop_is_centred_on_the_player_with_floor_beyond_the_board():
    env = tvt.TVTTask("key_to_door", 5)
    _, state = env.reset(jax.random.PRNGKey(0), env.default_params)
    state = env._enter_reward(state).replace(player=jnp.array([0, 0]), door_open=jnp.asarray(True))
    obs = np.asarray(env.render(state))
    np.testing.assert_array_equal(obs[2, 2], tvt.PLAYER)
    np.testing.assert_array_equal(obs[:2], np.broadcast_to(tvt.FLOOR, (2, 5, 3)))
    assert (
        tuple(tvt.FLOOR) == (204, 204, 204) and tuple(tvt.WALL) == (25, 25, 25) and tuple(tvt.PLAYER) == (228, 148, 109)
    )


def test_random_play_rarely_succeeds():
    env, params, spec = envs.make({"name": "PassiveVisualMatch-5"})

    def episode(key):
        obs, state = env.reset(key, params)

        def step(carry, k):
            state, success = carry
            a_key, s_key = jax.random.split(k)
            _, state, _, _, _, info = env.step(s_key, state, jax.random.randint(a_key, (), 0, 4), params)
            return (state, success | info["success"]), None

        (_, success), _ = jax.lax.scan(step, (state, jnp.asarray(False)), jax.random.split(key, spec.max_episode_steps))
        return success

    rate = float(jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(0), 300)).mean())
    assert rate < 0.2  # a random walk seldom even reaches a square in 15 steps
