"""ProcMaze, ButtonGrid, PanFlute, OpenGrid: the rules of sr_sac_model_based.md §B3 and the checks of §E1.7."""

from __future__ import annotations

from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from frugalrl.envs import make
from frugalrl.envs.model_generalization import (
    ButtonGrid,
    ButtonGridState,
    OpenGrid,
    OpenGridState,
    PanFlute,
    PanFluteState,
    ProcMaze,
    ProcMazeState,
    spontaneous_goal_probability,
)

NOOP, UP, LEFT, DOWN, RIGHT = range(5)


def env_of(name: str):
    return make({"name": name, "params": {}, "max_episode_steps": -1})


def open_component(wall: np.ndarray, start: tuple[int, int]) -> set[tuple[int, int]]:
    """Open cells reachable from ``start`` by the four moves (breadth-first search)."""
    size = wall.shape[0]
    seen, frontier = {start}, deque([start])
    while frontier:
        r, c = frontier.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < size and 0 <= nc < size and not wall[nr, nc] and (nr, nc) not in seen:
                seen.add((nr, nc))
                frontier.append((nr, nc))
    return seen


@pytest.mark.parametrize("grid_size", [4, 7])
def test_procmaze_mazes_are_connected_one_cell_wide_trees(grid_size: int) -> None:
    env, params, spec = env_of(f"ProcMaze-{grid_size}")
    assert spec.obs_shape == (grid_size * grid_size * 4,) and spec.num_actions == 5 and spec.obs_dtype == np.uint8
    keys = jax.random.split(jax.random.PRNGKey(0), 200)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    walls, pos, goal = np.asarray(state.wall), np.asarray(state.pos), np.asarray(state.goal)
    opened = (~walls).sum(axis=(1, 2))
    for wall, p, g, count in zip(walls, pos, goal, opened, strict=True):
        assert not wall[tuple(p)] and not wall[tuple(g)]
        reachable = open_component(wall, tuple(p))
        assert tuple(g) in reachable and len(reachable) == count  # every open cell connects to every other
        adjacent_pairs = np.sum(~wall[1:] & ~wall[:-1]) + np.sum(~wall[:, 1:] & ~wall[:, :-1])
        assert adjacent_pairs == count - 1  # a tree: depth-first carving never closes a loop
    if grid_size == 4:  # the reference's measurement: 11.4 open cells on average, 7 to 12
        assert 10.9 < opened.mean() < 11.9 and opened.min() >= 5 and opened.max() <= 12
    # channels: exactly one player and one goal; wall and empty partition the grid
    planes = np.asarray(obs).reshape(200, grid_size, grid_size, 4)
    assert (planes[..., 0].sum((1, 2)) == 1).all() and (planes[..., 1].sum((1, 2)) == 1).all()
    assert (planes[..., 2] + planes[..., 3] == 1).all()
    assert (planes[..., 2] == walls).all()
    assert len({w.tobytes() for w in walls}) > (50 if grid_size == 4 else 150)  # a new maze every episode


def test_procmaze_terminal_is_checked_before_the_move_and_walls_block() -> None:
    env = ProcMaze(3, spontaneous=False)
    params = env.default_params
    # open an L: (0,0) (0,1) (0,2) (1,2) (2,2); everything else is wall
    wall = np.ones((3, 3), bool)
    for cell in [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2)]:
        wall[cell] = False
    state = ProcMazeState(wall=jnp.asarray(wall), pos=jnp.array([0, 1]), goal=jnp.array([0, 2]), time=jnp.int32(0))
    key = jax.random.PRNGKey(0)
    obs, s1, reward, terminated, _ = env.step_env(key, state, DOWN, params)  # (1,1) is a wall
    assert s1.pos.tolist() == [0, 1] and float(reward) == -1.0 and not bool(terminated)
    obs, s2, reward, terminated, _ = env.step_env(key, s1, RIGHT, params)  # onto the goal: not yet terminal
    assert s2.pos.tolist() == [0, 2] and not bool(terminated)
    assert np.asarray(obs).reshape(3, 3, 4)[0, 2, :2].tolist() == [1.0, 1.0]  # the goal state is observed
    _, _, reward, terminated, _ = env.step_env(key, s2, LEFT, params)
    assert bool(terminated) and float(reward) == -1.0
    # auto-reset through gymnax's step: a fresh maze follows the terminal step
    _, _, _, terminated, truncated, info = env.step(key, s2, NOOP, params)
    assert bool(terminated) and not bool(truncated)


def test_procmaze_teleport_probability() -> None:
    assert spontaneous_goal_probability(4) == pytest.approx(0.01)
    assert spontaneous_goal_probability(10) == pytest.approx(0.1 / 55)
    assert spontaneous_goal_probability(5) == pytest.approx(0.1 / 17)
    env = ProcMaze(4)
    wall = jnp.zeros((4, 4), bool)
    state = ProcMazeState(wall=wall, pos=jnp.array([0, 0]), goal=jnp.array([3, 3]), time=jnp.int32(0))
    n = 200_000
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    step = jax.jit(jax.vmap(env.step_env, in_axes=(0, None, None, None)))
    _, after, _, terminated, _ = step(keys, state, NOOP, env.default_params)
    teleported = np.asarray(jnp.all(after.pos == state.goal, axis=-1))
    assert not np.asarray(terminated).any()  # teleport, not termination
    assert abs(teleported.mean() - 0.01) < 5 * np.sqrt(0.01 * 0.99 / n)
    no_teleport = ProcMaze(4, teleport=False)
    _, after, _, terminated, _ = jax.jit(jax.vmap(no_teleport.step_env, in_axes=(0, None, None, None)))(
        keys, state, NOOP, no_teleport.default_params
    )
    assert abs(np.asarray(terminated).mean() - 0.01) < 5 * np.sqrt(0.01 * 0.99 / n)
    assert not np.asarray(jnp.all(after.pos == state.goal, axis=-1)).any()


def test_button_grid_toggles_pays_and_rerandomises() -> None:
    env = ButtonGrid(5, spontaneous=False)
    params, key = env.default_params, jax.random.PRNGKey(0)
    buttons = jnp.array([[0, 1], [2, 2], [4, 4]])
    state = ButtonGridState(pos=jnp.array([0, 0]), buttons=buttons, pressed=jnp.zeros(3, bool), time=jnp.int32(0))
    step = jax.jit(env.step_env, static_argnums=())
    _, state, reward, terminated, _ = step(key, state, RIGHT, params)  # onto button 0: on
    assert state.pressed.tolist() == [True, False, False] and float(reward) == 0.0 and not bool(terminated)
    _, state, *_ = step(key, state, NOOP, params)  # standing still never toggles
    assert state.pressed.tolist() == [True, False, False]
    _, state, *_ = step(key, state, UP, params)  # bumping into the edge is not a move
    assert state.pos.tolist() == [0, 1] and state.pressed.tolist() == [True, False, False]
    _, state, *_ = step(key, state, LEFT, params)
    _, state, *_ = step(key, state, RIGHT, params)  # stepping on again: off
    assert state.pressed.tolist() == [False, False, False]
    all_on = state.replace(pressed=jnp.ones(3, bool))
    obs, after, reward, terminated, info = step(key, all_on, DOWN, params)  # paid on the step after all are on
    assert float(reward) == 1.0 and not bool(terminated) and bool(info["success"])
    assert not bool(after.pressed.any()) and not bool(jnp.all(after.buttons == buttons))  # a new layout
    decoded = env.state_from_observation(obs)
    assert decoded.pos.tolist() == after.pos.tolist() and decoded.buttons.tolist() == after.buttons.tolist()
    # the spontaneous switch-on: 1 / (10 G^2) per step
    assert ButtonGrid(10).spontaneous_probability == pytest.approx(0.001)
    spont = ButtonGrid(2, num_buttons=1)
    s0 = ButtonGridState(pos=jnp.array([0, 0]), buttons=jnp.array([[1, 1]]), pressed=jnp.zeros(1, bool), time=0)
    n = 100_000
    _, s1, *_ = jax.jit(jax.vmap(spont.step_env, in_axes=(0, None, None, None)))(
        jax.random.split(key, n), s0, NOOP, spont.default_params
    )
    assert abs(np.asarray(s1.pressed).mean() - 1 / 40) < 5 * np.sqrt(1 / 40 / n)


def play(env: PanFlute, actions: jax.Array, key: jax.Array) -> jax.Array:
    """Rewards of playing ``actions`` [T] from a reset, through gymnax's step."""
    obs, state = env.reset(key, env.default_params)

    def one(state, inputs):
        key, action = inputs
        _, state, reward, *_ = env.step(key, state, action, env.default_params)
        return state, reward

    return jax.lax.scan(one, state, (jax.random.split(key, actions.shape[0]), actions))[1]


def test_pan_flute_tune_random_play_and_reward_timing() -> None:
    quiet = PanFlute(5, spontaneous=False)
    tune = jnp.array([4, 3, 2, 1, 0, 0, 0])
    rewards = np.asarray(play(quiet, tune, jax.random.PRNGKey(0)))
    assert rewards.tolist() == [0, 0, 0, 0, 0, 1, 0]  # one step after the fifth note
    env, params, spec = env_of("PanFlute-5")
    assert spec.obs_shape == (15,) and spec.num_actions == 5
    steps = 4000
    cyclic = jnp.tile(jnp.array([4, 3, 2, 1, 0]), steps // 5)
    keys = jax.random.split(jax.random.PRNGKey(1), 32)
    rate = float(jax.jit(jax.vmap(lambda k: play(env, cyclic, k)))(keys).mean())
    assert abs(rate - 0.237) < 0.01, rate
    random_actions = jax.random.randint(jax.random.PRNGKey(2), (32, steps), 0, 5)
    rate = float(jax.jit(jax.vmap(lambda k, a: play(env, a, k)))(keys, random_actions).mean())
    assert abs(rate - 0.046) < 0.006, rate


@pytest.mark.parametrize("name", ["ProcMaze-4", "ButtonGrid-5", "PanFlute-5", "OpenGrid-4"])
def test_observations_decode_to_the_state(name: str) -> None:
    """The perfect model steps the true dynamics from stored observations: decoding must be exact."""
    env, params, _ = env_of(name)

    def walk(key):
        obs, state = env.reset(key, params)

        def one(carry, key):
            obs, state = carry
            action = jax.random.randint(key, (), 0, env.num_actions)
            obs, state, *_ = env.step(key, state, action, params)
            decoded = env.state_from_observation(obs)
            same = jax.tree.map(lambda a, b: jnp.all(a == b), decoded.replace(time=0), state.replace(time=0))
            return (obs, state), jnp.all(jnp.stack(jax.tree.leaves(same)))

        return jax.lax.scan(one, (obs, state), jax.random.split(key, 300))[1]

    assert bool(jax.jit(jax.vmap(walk))(jax.random.split(jax.random.PRNGKey(3), 8)).all())


def test_suite_names_are_checked() -> None:
    with pytest.raises(KeyError, match="size after"):
        env_of("ProcMaze-1")
    env, params, spec = env_of("OpenGrid-3")
    assert spec.obs_shape == (9,) and spec.max_episode_steps >= 2**30


def test_open_grid_pan_flute_spontaneous_events_and_button_relayout_variant() -> None:
    grid = OpenGrid(3, spontaneous=False)
    params, key = grid.default_params, jax.random.PRNGKey(0)
    state = OpenGridState(pos=jnp.array([2, 1]), time=jnp.int32(0))
    _, state, reward, terminated, _ = grid.step_env(key, state, RIGHT, params)  # onto the corner goal
    assert state.pos.tolist() == [2, 2] and float(reward) == -1.0 and not bool(terminated)
    _, state, _, terminated, _ = grid.step_env(key, state, DOWN, params)  # clipped; the goal was seen: ends
    assert state.pos.tolist() == [2, 2] and bool(terminated)
    assert OpenGrid(10).spontaneous_probability == pytest.approx(0.01)
    # PanFlute: the spontaneous event sets every last cell, so the reward comes on the next step
    flute = PanFlute(3)
    cells = jnp.zeros(6, bool)
    keys = jax.random.split(key, 4000)
    _, after, reward, *_ = jax.vmap(flute.step_env, in_axes=(0, None, None, None))(
        keys, PanFluteState(cells=cells, time=jnp.int32(0)), 1, flute.default_params
    )
    fired = np.asarray(after.cells[:, flute.last_cells].all(-1))
    assert not np.asarray(reward).any() and abs(fired.mean() - 1 / 9) < 0.03
    _, _, next_reward, *_ = flute.step_env(
        key, jax.tree.map(lambda x: x[np.argmax(fired)], after), 0, flute.default_params
    )
    assert float(next_reward) == 1.0
    # ButtonGrid with activate_on_reset=False: the spontaneous event re-draws the layout instead
    relayout = ButtonGrid(2, num_buttons=1, activate_on_reset=False)
    s0 = ButtonGridState(pos=jnp.array([0, 0]), buttons=jnp.array([[1, 1]]), pressed=jnp.zeros(1, bool), time=0)
    _, s1, *_ = jax.vmap(relayout.step_env, in_axes=(0, None, None, None))(keys, s0, NOOP, relayout.default_params)
    assert not np.asarray(s1.pressed).any()
    moved = np.asarray((s1.pos != s0.pos).any(-1) | (s1.buttons[:, 0] != s0.buttons[0]).any(-1))
    assert 0 < moved.mean() < 0.1  # p = 1/40, and a re-drawn layout can repeat the old one
