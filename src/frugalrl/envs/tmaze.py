"""Passive and Active T-Maze (Ni et al. 2023), the memory and credit-assignment probes, in JAX.

The maze is a corridor ``x = 0 .. o+L`` at ``y = 0`` with two goal cells ``(o+L, ±1)`` at its end::

    O--S---------------J        O oracle (x = 0), S start (x = o), J junction (x = o+L)
                       g1 / g2 at (o+L, +1) and (o+L, -1); the goal is one of them

Observations are ambiguous, as in the paper: ``[0, goal_y]`` on the oracle cell the first time it is
seen, ``[0, 0]`` on any later visit and everywhere along the corridor, ``[1, y]`` at the junction
column. Each step behind the ideal schedule ``x = t - o`` costs ``-1/L``; the last step (``t = T``)
pays 1 if the agent stands on the goal cell and no penalty. Episodes always last ``T`` steps and end
as terminated (the finite-horizon terminal of the original: the last step does not bootstrap).

Passive (``o = 0``, ``T = L+1``): the agent starts on the oracle, so memory length ≈ L with credit
assignment length 1. Active (``o = 1``, ``T = L+3``): the agent must first step left onto the oracle,
whose benefit shows only at the last step, so credit assignment is as long as the memory.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

# action -> (dx, dy): 0 right, 1 up, 2 left, 3 down
MOVES = jnp.array([[1, 0], [0, 1], [-1, 0], [0, -1]], jnp.int32)


@struct.dataclass
class TMazeState(environment.EnvState):
    x: jax.Array
    y: jax.Array
    goal_y: jax.Array  # -1 or +1
    oracle_seen: jax.Array  # the cue shows only on the first observation of the oracle cell
    time: jax.Array


@struct.dataclass
class TMazeParams(environment.EnvParams):
    goal_reward: float = 1.0
    max_steps_in_episode: int = 11  # always the maze's T; the lengths are part of the env's name


class TMaze(environment.Environment[TMazeState, TMazeParams]):
    """The T-Maze of Memory-RL with ambiguous positions; ``active`` selects the Active variant."""

    fixed_episode_length = True  # the registry refuses a time limit of a different length

    def __init__(self, corridor_length: int, active: bool) -> None:
        super().__init__()
        if corridor_length < 1:
            raise ValueError(f"a T-Maze corridor has length >= 1, got {corridor_length}")
        self.corridor_length = corridor_length
        self.oracle_length = 1 if active else 0
        self.active = active
        self.episode_length = corridor_length + 2 * self.oracle_length + 1
        self.penalty = -1.0 / corridor_length

    @property
    def default_params(self) -> TMazeParams:
        return TMazeParams(max_steps_in_episode=self.episode_length)

    def _observe(self, state: TMazeState) -> tuple[jax.Array, jax.Array]:
        """(observation, oracle_seen after this observation)."""
        on_oracle = state.x == 0
        cue = jnp.where(on_oracle & ~state.oracle_seen, state.goal_y, 0)
        at_junction = state.x == self.oracle_length + self.corridor_length
        obs = jnp.stack([at_junction.astype(jnp.float32), jnp.where(at_junction, state.y, cue).astype(jnp.float32)])
        return obs, state.oracle_seen | on_oracle

    def reset_env(self, key: jax.Array, params: TMazeParams) -> tuple[jax.Array, TMazeState]:
        goal_y = jnp.where(jax.random.bernoulli(key), 1, -1).astype(jnp.int32)
        state = TMazeState(
            x=jnp.asarray(self.oracle_length, jnp.int32),
            y=jnp.asarray(0, jnp.int32),
            goal_y=goal_y,
            oracle_seen=jnp.asarray(False),
            time=jnp.asarray(0, jnp.int32),
        )
        obs, seen = self._observe(state)
        return obs, state.replace(oracle_seen=seen)

    def step_env(
        self, key: jax.Array, state: TMazeState, action: Any, params: TMazeParams
    ) -> tuple[jax.Array, TMazeState, jax.Array, jax.Array, dict[str, Any]]:
        move = MOVES[action]
        x, y = state.x + move[0], state.y + move[1]
        junction = self.oracle_length + self.corridor_length
        open_cell = ((y == 0) & (x >= 0) & (x <= junction)) | ((x == junction) & (jnp.abs(y) == 1))
        x, y = jnp.where(open_cell, x, state.x), jnp.where(open_cell, y, state.y)  # walls are no-ops
        time = state.time + 1
        done = time >= self.episode_length
        behind = x < time - self.oracle_length
        reward = jnp.where(done, params.goal_reward * (y == state.goal_y), self.penalty * behind).astype(jnp.float32)
        state = state.replace(x=x, y=y, time=time)
        obs, seen = self._observe(state)
        state = state.replace(oracle_seen=seen)
        return obs, state, reward, done, {"success": done & (y == state.goal_y)}

    def is_truncated(self, state: TMazeState, params: TMazeParams) -> jax.Array:
        return jnp.asarray(False)  # the episode's end is its own terminal step

    def is_terminated(self, state: TMazeState, params: TMazeParams) -> jax.Array:
        return state.time >= self.episode_length

    @property
    def name(self) -> str:
        return f"{'Active' if self.active else 'Passive'}TMaze-{self.corridor_length}"

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params: TMazeParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def observation_space(self, params: TMazeParams) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)
