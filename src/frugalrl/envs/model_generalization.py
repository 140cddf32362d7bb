"""ProcMaze, ButtonGrid, PanFlute and OpenGrid (Young et al. 2023), the model-generalization suite, in JAX.

Combinatorially many states with a factored structure: a learned model can generalise across them
where experience replay can only repeat what it saw. All four are fully observed: the observation
is a flat 0/1 vector that determines the state, so ``state_from_observation`` inverts it and the
perfect-model agent can step the true dynamics from any stored observation (agents/dyna.py).

Moves (ProcMaze, ButtonGrid, OpenGrid): 0 no-op, 1 up (row - 1), 2 left (col - 1), 3 down
(row + 1), 4 right (col + 1), clipped to the grid. Every env carries a ``time`` counter for gymnax's
time limit; none of them has one by default (the original has none), so episodes end only by
their own terminal (ProcMaze, OpenGrid) or never (ButtonGrid, PanFlute are continuing).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

MOVES = jnp.array([[0, 0], [-1, 0], [0, -1], [1, 0], [0, 1]], jnp.int32)
NO_TIME_LIMIT = 2**30


@struct.dataclass
class SuiteParams(environment.EnvParams):
    max_steps_in_episode: int = NO_TIME_LIMIT


def uniform_cell(key: jax.Array, allowed: jax.Array) -> jax.Array:
    """A cell (row, col) drawn uniformly among the ``allowed`` cells of a [G, G] mask."""
    size = allowed.shape[0]
    flat = jax.random.categorical(key, jnp.where(allowed.ravel(), 0.0, -jnp.inf))
    return jnp.stack([flat // size, flat % size]).astype(jnp.int32)


def one_hot_cell(cell: jax.Array, size: int) -> jax.Array:
    return jnp.zeros((size, size), bool).at[cell[0], cell[1]].set(True)


def cell_of(plane: jax.Array) -> jax.Array:
    """(row, col) of the single True cell of a [G, G] plane."""
    flat = jnp.argmax(plane.ravel())
    return jnp.stack([flat // plane.shape[0], flat % plane.shape[0]]).astype(jnp.int32)


class SuiteEnv(environment.Environment[Any, SuiteParams]):
    """Shared plumbing: default params without a time limit, 5 moves unless told otherwise."""

    @property
    def default_params(self) -> SuiteParams:
        return SuiteParams()

    def is_terminated(self, state: Any, params: SuiteParams) -> jax.Array:
        return jnp.asarray(False)  # terminals come from step_env

    @property
    def num_actions(self) -> int:
        return 5

    def action_space(self, params: SuiteParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params: SuiteParams) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.observation_size,), jnp.float32)


# -- ProcMaze -----------------------------------------------------------------------------------


@struct.dataclass
class ProcMazeState(environment.EnvState):
    wall: jax.Array  # [G, G] bool
    pos: jax.Array  # [2] int32 (row, col)
    goal: jax.Array  # [2] int32
    time: jax.Array


def spontaneous_goal_probability(grid_size: int) -> float:
    """A tenth of the inverse of the worst-case maze's shortest solution time."""
    return 0.1 / ((grid_size + 1) * math.ceil(grid_size / 2) - grid_size % 2)


def spontaneous_goal(
    key: jax.Array, probability: float, teleport: bool, pos: jax.Array, goal: jax.Array, terminated: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """With ``probability``: the agent lands on the goal (``teleport``), or the episode ends."""
    event = jax.random.bernoulli(key, probability)
    if teleport:
        return jnp.where(event, goal, pos), terminated
    return pos, terminated | event


def carve_maze(key: jax.Array, size: int) -> jax.Array:
    """A random depth-first maze: [G, G] bool, True for walls.

    From a uniformly random start, the search pops a cell, and if it has neighbours that are on the
    grid, still walls, and touch exactly one open cell, pushes it back, opens one of them chosen
    uniformly and pushes that; it ends when the stack is empty. Corridors are one cell wide.
    """
    start_key, loop_key = jax.random.split(key)
    start = jax.random.randint(start_key, (2,), 0, size)
    is_open = jnp.zeros((size, size), bool).at[start[0], start[1]].set(True)
    stack = jnp.zeros((size * size + 1, 2), jnp.int32).at[0].set(start)
    steps = MOVES[1:]

    def open_neighbours(cells: jax.Array, is_open: jax.Array) -> jax.Array:
        """Open cells among the 4 neighbours of each of ``cells`` [n, 2]."""
        around = cells[:, None, :] + steps[None]
        on_grid = jnp.all((around >= 0) & (around < size), axis=-1)
        clipped = jnp.clip(around, 0, size - 1)
        return jnp.sum(on_grid & is_open[clipped[..., 0], clipped[..., 1]], axis=-1)

    def body(carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        is_open, stack, top, key = carry
        key, pick_key = jax.random.split(key)
        cell = stack[top - 1]
        candidates = cell[None] + steps
        on_grid = jnp.all((candidates >= 0) & (candidates < size), axis=-1)
        clipped = jnp.clip(candidates, 0, size - 1)
        closed = ~is_open[clipped[:, 0], clipped[:, 1]]
        expandable = on_grid & closed & (open_neighbours(clipped, is_open) == 1)
        choice = jax.random.categorical(pick_key, jnp.where(expandable, 0.0, -jnp.inf))
        chosen = clipped[choice]
        grow = jnp.any(expandable)
        # grow: the popped cell stays, the chosen cell goes on top; otherwise the cell is popped
        stack = jnp.where(grow, stack.at[top].set(chosen), stack)
        is_open = jnp.where(grow, is_open.at[chosen[0], chosen[1]].set(True), is_open)
        return is_open, stack, jnp.where(grow, top + 1, top - 1), key

    is_open = jax.lax.while_loop(lambda c: c[2] > 0, body, (is_open, stack, jnp.int32(1), loop_key))[0]
    return ~is_open


class ProcMaze(SuiteEnv):
    """A new procedural maze every episode; reach the goal. Reward -1 per step, gamma 0.9 in the paper.

    The terminal check comes before the move, so the agent sees itself on the goal and the episode
    ends on its next step. With probability ``spontaneous_goal_probability`` per step the agent is
    teleported onto the goal (``teleport``), or the episode ends (``teleport=False``).
    """

    def __init__(self, grid_size: int, spontaneous: bool = True, teleport: bool = True) -> None:
        super().__init__()
        if grid_size < 2:
            raise ValueError(f"ProcMaze needs a grid of at least 2x2, got {grid_size}")
        self.grid_size, self.teleport = grid_size, teleport
        self.spontaneous_probability = spontaneous_goal_probability(grid_size) if spontaneous else 0.0
        self.observation_size = grid_size * grid_size * 4

    def observation(self, state: ProcMazeState) -> jax.Array:
        """[G, G, (player, goal, wall, empty)] flattened."""
        size = self.grid_size
        planes = [one_hot_cell(state.pos, size), one_hot_cell(state.goal, size), state.wall, ~state.wall]
        return jnp.stack(planes, axis=-1).ravel().astype(jnp.float32)

    def state_from_observation(self, obs: jax.Array) -> ProcMazeState:
        planes = obs.reshape(self.grid_size, self.grid_size, 4) > 0.5
        return ProcMazeState(
            wall=planes[..., 2], pos=cell_of(planes[..., 0]), goal=cell_of(planes[..., 1]), time=jnp.int32(0)
        )

    def reset_env(self, key: jax.Array, params: SuiteParams) -> tuple[jax.Array, ProcMazeState]:
        maze_key, pos_key, goal_key = jax.random.split(key, 3)
        wall = carve_maze(maze_key, self.grid_size)
        pos, goal = uniform_cell(pos_key, ~wall), uniform_cell(goal_key, ~wall)  # independent: may coincide
        state = ProcMazeState(wall=wall, pos=pos, goal=goal, time=jnp.int32(0))
        return self.observation(state), state

    def step_env(
        self, key: jax.Array, state: ProcMazeState, action: Any, params: SuiteParams
    ) -> tuple[jax.Array, ProcMazeState, jax.Array, jax.Array, dict[str, Any]]:
        terminated = jnp.all(state.pos == state.goal)  # before moving: the goal state is observed
        target = jnp.clip(state.pos + MOVES[action], 0, self.grid_size - 1)
        pos = jnp.where(state.wall[target[0], target[1]], state.pos, target)
        pos, terminated = spontaneous_goal(
            key, self.spontaneous_probability, self.teleport, pos, state.goal, terminated
        )
        state = state.replace(pos=pos, time=state.time + 1)
        return self.observation(state), state, jnp.float32(-1.0), terminated, {}

    @property
    def name(self) -> str:
        return f"ProcMaze-{self.grid_size}"


# -- OpenGrid -----------------------------------------------------------------------------------


@struct.dataclass
class OpenGridState(environment.EnvState):
    pos: jax.Array
    time: jax.Array


class OpenGrid(SuiteEnv):
    """An empty grid with the goal in the bottom-right corner; -1 per step; observation = the player plane."""

    def __init__(self, grid_size: int, spontaneous: bool = True, teleport: bool = True) -> None:
        super().__init__()
        self.grid_size, self.teleport = grid_size, teleport
        self.spontaneous_probability = 0.1 / grid_size if spontaneous else 0.0
        self.goal = jnp.array([grid_size - 1, grid_size - 1], jnp.int32)
        self.observation_size = grid_size * grid_size

    def observation(self, state: OpenGridState) -> jax.Array:
        return one_hot_cell(state.pos, self.grid_size).ravel().astype(jnp.float32)

    def state_from_observation(self, obs: jax.Array) -> OpenGridState:
        return OpenGridState(pos=cell_of(obs.reshape(self.grid_size, self.grid_size) > 0.5), time=jnp.int32(0))

    def reset_env(self, key: jax.Array, params: SuiteParams) -> tuple[jax.Array, OpenGridState]:
        state = OpenGridState(pos=jax.random.randint(key, (2,), 0, self.grid_size), time=jnp.int32(0))
        return self.observation(state), state

    def step_env(
        self, key: jax.Array, state: OpenGridState, action: Any, params: SuiteParams
    ) -> tuple[jax.Array, OpenGridState, jax.Array, jax.Array, dict[str, Any]]:
        terminated = jnp.all(state.pos == self.goal)
        pos = jnp.clip(state.pos + MOVES[action], 0, self.grid_size - 1)
        pos, terminated = spontaneous_goal(key, self.spontaneous_probability, self.teleport, pos, self.goal, terminated)
        state = state.replace(pos=pos, time=state.time + 1)
        return self.observation(state), state, jnp.float32(-1.0), terminated, {}

    @property
    def name(self) -> str:
        return f"OpenGrid-{self.grid_size}"


# -- ButtonGrid ---------------------------------------------------------------------------------


@struct.dataclass
class ButtonGridState(environment.EnvState):
    pos: jax.Array  # [2]
    buttons: jax.Array  # [B, 2] distinct cells, in row-major order
    pressed: jax.Array  # [B] bool: the button is on
    time: jax.Array


class ButtonGrid(SuiteEnv):
    """Continuing: switch every button on, then collect reward 1 and a new random layout.

    Moving onto a button toggles it (standing still or bumping into the edge does not). The reward
    is paid on the step after all buttons are on, and that step re-randomises the whole state. With
    probability 1 / (10 G^2) per step every button switches on by itself (``spontaneous``), or, with
    ``activate_on_reset=False``, the layout is re-randomised instead.
    """

    continuing = True

    def __init__(
        self, grid_size: int, num_buttons: int = 3, spontaneous: bool = True, activate_on_reset: bool = True
    ) -> None:
        super().__init__()
        if not 1 <= num_buttons <= grid_size * grid_size:
            raise ValueError(f"ButtonGrid-{grid_size} holds 1 to {grid_size * grid_size} buttons, got {num_buttons}")
        self.grid_size, self.num_buttons, self.activate_on_reset = grid_size, num_buttons, activate_on_reset
        self.spontaneous_probability = 1.0 / (10 * grid_size * grid_size) if spontaneous else 0.0
        self.observation_size = grid_size * grid_size * 3

    def observation(self, state: ButtonGridState) -> jax.Array:
        """[G, G, (player, button on, button off)] flattened."""
        size = self.grid_size
        on = jnp.zeros((size, size), bool).at[state.buttons[:, 0], state.buttons[:, 1]].set(state.pressed)
        off = jnp.zeros((size, size), bool).at[state.buttons[:, 0], state.buttons[:, 1]].set(~state.pressed)
        return jnp.stack([one_hot_cell(state.pos, size), on, off], axis=-1).ravel().astype(jnp.float32)

    def state_from_observation(self, obs: jax.Array) -> ButtonGridState:
        planes = obs.reshape(self.grid_size, self.grid_size, 3) > 0.5
        flat = jnp.nonzero((planes[..., 1] | planes[..., 2]).ravel(), size=self.num_buttons)[0]
        buttons = jnp.stack([flat // self.grid_size, flat % self.grid_size], axis=-1).astype(jnp.int32)
        pressed = planes[..., 1][buttons[:, 0], buttons[:, 1]]
        return ButtonGridState(pos=cell_of(planes[..., 0]), buttons=buttons, pressed=pressed, time=jnp.int32(0))

    def layout(self, key: jax.Array, time: jax.Array) -> ButtonGridState:
        pos_key, button_key = jax.random.split(key)
        size = self.grid_size
        flat = jnp.sort(jax.random.choice(button_key, size * size, (self.num_buttons,), replace=False))
        buttons = jnp.stack([flat // size, flat % size], axis=-1).astype(jnp.int32)
        pos = jax.random.randint(pos_key, (2,), 0, size)
        return ButtonGridState(pos=pos, buttons=buttons, pressed=jnp.zeros(self.num_buttons, bool), time=time)

    def reset_env(self, key: jax.Array, params: SuiteParams) -> tuple[jax.Array, ButtonGridState]:
        state = self.layout(key, jnp.int32(0))
        return self.observation(state), state

    def step_env(
        self, key: jax.Array, state: ButtonGridState, action: Any, params: SuiteParams
    ) -> tuple[jax.Array, ButtonGridState, jax.Array, jax.Array, dict[str, Any]]:
        success = jnp.all(state.pressed)  # before anything changes: paid the step after the last button
        pos = jnp.clip(state.pos + MOVES[action], 0, self.grid_size - 1)
        moved = jnp.any(pos != state.pos)
        stepped_on = moved & jnp.all(state.buttons == pos[None], axis=-1)
        pressed = state.pressed ^ stepped_on
        spontaneous_key, layout_key = jax.random.split(key)
        spontaneous = jax.random.bernoulli(spontaneous_key, self.spontaneous_probability)
        relayout = success
        if self.activate_on_reset:
            pressed = pressed | spontaneous
        else:
            relayout = relayout | spontaneous
        time = state.time + 1
        stepped = state.replace(pos=pos, pressed=pressed, time=time)
        fresh = self.layout(layout_key, time)
        state = jax.tree.map(lambda a, b: jnp.where(relayout, a, b), fresh, stepped)
        reward = success.astype(jnp.float32)
        return self.observation(state), state, reward, jnp.asarray(False), {"success": success}

    @property
    def name(self) -> str:
        return f"ButtonGrid-{self.grid_size}"


# -- PanFlute -----------------------------------------------------------------------------------


@struct.dataclass
class PanFluteState(environment.EnvState):
    cells: jax.Array  # [P (P + 1) / 2] bool: pipe 0 (length 1), pipe 1 (length 2), ... concatenated
    time: jax.Array


class PanFlute(SuiteEnv):
    """Continuing: pipe i is a shift register of length i + 1; blowing it feeds a True into its first cell.

    Reward 1 when the last cell of every pipe is True, which the tune P-1, ..., 1, 0 on consecutive
    steps achieves every P steps; with probability 1 / P^2 per step every last cell turns True by
    itself (``spontaneous``).
    """

    continuing = True

    def __init__(self, num_pipes: int, spontaneous: bool = True) -> None:
        super().__init__()
        if num_pipes < 1:
            raise ValueError(f"PanFlute needs at least one pipe, got {num_pipes}")
        self.num_pipes = num_pipes
        self.spontaneous_probability = 1.0 / num_pipes**2 if spontaneous else 0.0
        lengths = jnp.arange(1, num_pipes + 1)
        ends = jnp.cumsum(lengths)
        self.first_cells, self.last_cells = ends - lengths, ends - 1
        self.observation_size = int(ends[-1])
        # each cell's pipe, and whether it is its pipe's first cell
        self.cell_pipe = jnp.repeat(jnp.arange(num_pipes), lengths, total_repeat_length=self.observation_size)
        self.is_first = jnp.zeros(self.observation_size, bool).at[self.first_cells].set(True)
        self.is_last = jnp.zeros(self.observation_size, bool).at[self.last_cells].set(True)

    @property
    def num_actions(self) -> int:
        return self.num_pipes

    def observation(self, state: PanFluteState) -> jax.Array:
        return state.cells.astype(jnp.float32)

    def state_from_observation(self, obs: jax.Array) -> PanFluteState:
        return PanFluteState(cells=obs > 0.5, time=jnp.int32(0))

    def reset_env(self, key: jax.Array, params: SuiteParams) -> tuple[jax.Array, PanFluteState]:
        state = PanFluteState(cells=jnp.zeros(self.observation_size, bool), time=jnp.int32(0))
        return self.observation(state), state

    def step_env(
        self, key: jax.Array, state: PanFluteState, action: Any, params: SuiteParams
    ) -> tuple[jax.Array, PanFluteState, jax.Array, jax.Array, dict[str, Any]]:
        reward = jnp.all(state.cells[self.last_cells]).astype(jnp.float32)
        shifted = jnp.roll(state.cells, 1)  # within a pipe, cell j takes cell j - 1; first cells are set below
        cells = jnp.where(self.is_first, self.cell_pipe == action, shifted)
        spontaneous = jax.random.bernoulli(key, self.spontaneous_probability)
        cells = cells | (spontaneous & self.is_last)
        state = state.replace(cells=cells, time=state.time + 1)
        return self.observation(state), state, reward, jnp.asarray(False), {}

    @property
    def name(self) -> str:
        return f"PanFlute-{self.num_pipes}"
