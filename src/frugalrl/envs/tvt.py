"""Passive Visual Match and Key-to-Door (Hung et al. 2019, as Memory-RL uses them), grid for grid in JAX.

Both are three phases on 7×11 grids seen through a 5×5 egocentric RGB crop (uint8, channels last;
cells off the board look like floor):

1. explore, 15 steps. Visual Match: the player sits in a 3×3 box whose 8 neighbours are walls but
   one, a coloured square (red, green or blue), and cannot move. Key-to-Door: a room with a key at
   one of 10 cells (upper part) and the player at one of 10 cells (lower part); stepping on the key
   picks it up (no reward) and a white indicator flashes for that frame on the top wall.
2. distractor, D steps: an 11×7 room, 10 apples at random among 22 cells, 1 point each; an eaten
   apple comes back at its cell 21 frames later (collected on the frame after if the player stands
   there). The player starts bottom centre.
3. reward. Visual Match, 15 steps: three squares (red, green, blue in an order drawn per episode)
   in the top row; touching one ends the choice (all vanish), 5 points if its colour is the one seen.
   Key-to-Door, 10 steps: a door two cells above the player opens (once) with the key, 5 points.

Each phase lasts exactly its number of actions; the action that ends a phase returns the next
phase's first frame. Episodes last T = 15 + D + 15 (Visual Match) or 15 + D + 10 (Key-to-Door)
steps and end as terminated; ``info["success"]`` says whether the last phase paid out.

Actions: 0 north, 1 south, 2 west, 3 east. Within a frame the player moves first (blocked by what
was drawn at the end of the last frame), then the key, apples, door and squares react to where it
stands. Colours are the original's 0–1000 values × 255/1000, truncated.

One deliberate difference: the original shuffles the three colours once per environment instance
(the training and evaluation instances differ, unseeded); here they are shuffled per episode, so
training and evaluation see the same distribution of orders (``colour_order`` fixes one).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

ROWS, COLS, CROP = 7, 11, 5
MOVES = jnp.array([[-1, 0], [1, 0], [0, -1], [0, 1]], jnp.int32)  # N, S, W, E

# the original's grids ('#' wall, ' ' floor, '+' player start(s), 'k' key cells, 'a' apple cells,
# 'p' the colour square's cells, 'd' door, 'b' 'c' 'e' the three squares)
DISTRACTOR_GRID = (
    "###########",
    "#a a a a a#",
    "# a a a a #",
    "#a a a a a#",
    "# a a a a #",
    "#a a + a a#",
    "###########",
)
KEY_EXPLORE_GRID = (
    "  #######  ",
    "  #kkkkk#  ",
    "  #kkkkk#  ",
    "  ##   ##  ",
    "  #+++++#  ",
    "  #+++++#  ",
    "  #######  ",
)
DOOR_REWARD_GRID = (
    "           ",
    "   ##d##   ",
    "   #   #   ",
    "   # + #   ",
    "   #   #   ",
    "   #####   ",
    "           ",
)
PASSIVE_EXPLORE_GRID = (
    "           ",
    "    ppp    ",
    "    p+p    ",
    "    ppp    ",
    "           ",
    "           ",
    "           ",
)
MATCH_REWARD_GRID = (
    "###########",
    "# b  c  e #",
    "#         #",
    "#         #",
    "####   ####",
    "   # + #   ",
    "   #####   ",
)


def _colour(value: tuple[int, int, int]) -> np.ndarray:
    return np.array([int(c * 255 / 1000) for c in value], np.uint8)


FLOOR = _colour((800, 800, 800))
WALL = _colour((100, 100, 100))
PLAYER = _colour((898, 584, 430))
KEY = _colour((627, 321, 176))
DOOR = _colour((529, 808, 922))
APPLE = _colour((550, 700, 0))
INDICATOR = _colour((1000, 1000, 1000))
SQUARE_COLOURS = np.stack([_colour((1000, 0, 0)), _colour((0, 1000, 0)), _colour((0, 0, 1000))])
PERMUTATIONS = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], np.int32)

EXPLORE_STEPS = 15
REWARD_STEPS = {"visual_match": 15, "key_to_door": 10}
APPLE_REWARD, FINAL_REWARD, APPLES, RESPAWN_EVERY = 1.0, 5.0, 10, 20


def _cells(grid: tuple[str, ...], chars: str) -> np.ndarray:
    return np.array([(r, c) for r, row in enumerate(grid) for c, ch in enumerate(row) if ch in chars], np.int32)


def _walls(grid: tuple[str, ...], chars: str = "#") -> np.ndarray:
    return np.array([[ch in chars for ch in row] for row in grid], bool)


APPLE_CELLS = _cells(DISTRACTOR_GRID, "a")  # 22
KEY_CELLS = _cells(KEY_EXPLORE_GRID, "k")  # 10
KEY_STARTS = _cells(KEY_EXPLORE_GRID, "+")  # 10
SQUARE_CELLS = _cells(PASSIVE_EXPLORE_GRID, "p")  # 8
MATCH_SQUARES = _cells(MATCH_REWARD_GRID, "bce")  # b, c, e in reading order
DOOR_CELL = _cells(DOOR_REWARD_GRID, "d")[0]
INDICATOR_CELL = np.array([0, 5], np.int32)
STARTS = {
    "distractor": _cells(DISTRACTOR_GRID, "+")[0],
    "match_explore": _cells(PASSIVE_EXPLORE_GRID, "+")[0],
    "match_reward": _cells(MATCH_REWARD_GRID, "+")[0],
    "door_reward": _cells(DOOR_REWARD_GRID, "+")[0],
}


@struct.dataclass
class TVTState(environment.EnvState):
    phase: jax.Array  # 0 explore, 1 distractor, 2 reward
    frame: jax.Array  # actions taken in this phase
    player: jax.Array  # (row, col)
    key_cell: jax.Array  # Key-to-Door: where the key lies
    key_present: jax.Array
    has_key: jax.Array
    door_open: jax.Array
    indicator_on: jax.Array
    target_cell: jax.Array  # Visual Match: where the colour square is while exploring
    target: jax.Array  # which colour (0 red, 1 green, 2 blue) is the target
    order: jax.Array  # colour of the squares b, c, e in the reward room
    squares_visible: jax.Array
    apples: jax.Array  # [22] present
    apple_start: jax.Array  # [22] placed at the phase start (only these ever respawn)
    last_pickup: jax.Array  # [22] frame of the last pickup
    reward_phase_total: jax.Array
    time: jax.Array


@struct.dataclass
class TVTParams(environment.EnvParams):
    colour_order: int = -1  # -1: the squares' colours are shuffled per episode; 0..5 fixes an order
    max_steps_in_episode: int = 90


class TVTTask(environment.Environment[TVTState, TVTParams]):
    """Passive Visual Match (``task='visual_match'``) or Key-to-Door (``'key_to_door'``) with D distractor steps."""

    fixed_episode_length = True

    def __init__(self, task: str, distractor_steps: int) -> None:
        super().__init__()
        if task not in REWARD_STEPS:
            raise ValueError(f"task is one of {sorted(REWARD_STEPS)}, got {task!r}")
        if distractor_steps < 1:
            raise ValueError(f"the distractor phase lasts >= 1 step, got {distractor_steps}")
        self.task = task
        self.distractor_steps = distractor_steps
        self.phase_steps = jnp.array([EXPLORE_STEPS, distractor_steps, REWARD_STEPS[task]], jnp.int32)
        self.episode_length = EXPLORE_STEPS + distractor_steps + REWARD_STEPS[task]
        match = task == "visual_match"
        explore_walls = _walls(PASSIVE_EXPLORE_GRID, "#p") if match else _walls(KEY_EXPLORE_GRID)
        reward_walls = _walls(MATCH_REWARD_GRID) if match else _walls(DOOR_REWARD_GRID)
        walls = np.stack([explore_walls, _walls(DISTRACTOR_GRID), reward_walls])
        self.walls = jnp.asarray(walls)
        self.backdrops = jnp.asarray(np.where(walls[..., None], WALL, FLOOR))

    @property
    def default_params(self) -> TVTParams:
        return TVTParams(max_steps_in_episode=self.episode_length)

    # -- phases ------------------------------------------------------------------------------
    def reset_env(self, key: jax.Array, params: TVTParams) -> tuple[jax.Array, TVTState]:
        cell_key, start_key, target_key, order_key, square_key = jax.random.split(key, 5)
        if self.task == "visual_match":
            player = jnp.asarray(STARTS["match_explore"])
        else:
            player = jnp.asarray(KEY_STARTS)[jax.random.randint(start_key, (), 0, len(KEY_STARTS))]
        drawn_order = jnp.asarray(PERMUTATIONS)[jax.random.randint(order_key, (), 0, len(PERMUTATIONS))]
        fixed_order = jnp.asarray(PERMUTATIONS)[jnp.clip(params.colour_order, 0, len(PERMUTATIONS) - 1)]
        state = TVTState(
            phase=jnp.asarray(0, jnp.int32),
            frame=jnp.asarray(0, jnp.int32),
            player=player,
            key_cell=jnp.asarray(KEY_CELLS)[jax.random.randint(cell_key, (), 0, len(KEY_CELLS))],
            key_present=jnp.asarray(self.task == "key_to_door"),
            has_key=jnp.asarray(False),
            door_open=jnp.asarray(False),
            indicator_on=jnp.asarray(False),
            target_cell=jnp.asarray(SQUARE_CELLS)[jax.random.randint(square_key, (), 0, len(SQUARE_CELLS))],
            target=jax.random.randint(target_key, (), 0, 3),
            order=jnp.where(params.colour_order < 0, drawn_order, fixed_order),
            squares_visible=jnp.asarray(True),
            apples=jnp.zeros(len(APPLE_CELLS), bool),
            apple_start=jnp.zeros(len(APPLE_CELLS), bool),
            last_pickup=jnp.zeros(len(APPLE_CELLS), jnp.int32),
            reward_phase_total=jnp.asarray(0.0),
            time=jnp.asarray(0, jnp.int32),
        )
        return self.render(state), state

    def _enter_distractor(self, state: TVTState, key: jax.Array) -> TVTState:
        chosen = jax.random.permutation(key, len(APPLE_CELLS))[:APPLES]
        apples = jnp.zeros(len(APPLE_CELLS), bool).at[chosen].set(True)
        return state.replace(
            phase=jnp.asarray(1, jnp.int32),
            frame=jnp.asarray(0, jnp.int32),
            player=jnp.asarray(STARTS["distractor"]),
            indicator_on=jnp.asarray(False),
            apples=apples,
            apple_start=apples,
            last_pickup=jnp.zeros(len(APPLE_CELLS), jnp.int32),
        )

    def _enter_reward(self, state: TVTState) -> TVTState:
        start = STARTS["match_reward"] if self.task == "visual_match" else STARTS["door_reward"]
        return state.replace(
            phase=jnp.asarray(2, jnp.int32), frame=jnp.asarray(0, jnp.int32), player=jnp.asarray(start)
        )

    # -- one frame ---------------------------------------------------------------------------
    def _blocked(self, state: TVTState, cell: jax.Array) -> jax.Array:
        inside = (cell[0] >= 0) & (cell[0] < ROWS) & (cell[1] >= 0) & (cell[1] < COLS)
        wall = self.walls[state.phase, jnp.clip(cell[0], 0, ROWS - 1), jnp.clip(cell[1], 0, COLS - 1)]
        if self.task == "key_to_door":
            closed_door = (state.phase == 2) & ~state.door_open & jnp.all(cell == jnp.asarray(DOOR_CELL))
            wall = wall | closed_door
        return ~inside | wall

    def step_env(
        self, key: jax.Array, state: TVTState, action: Any, params: TVTParams
    ) -> tuple[jax.Array, TVTState, jax.Array, jax.Array, dict[str, Any]]:
        if self.task == "key_to_door":  # the key opens the door from the reward phase's first update
            state = state.replace(door_open=state.door_open | ((state.phase == 2) & state.has_key))
        target = state.player + MOVES[action]
        player = jnp.where(self._blocked(state, target), state.player, target)
        state = state.replace(player=player, frame=state.frame + 1, time=state.time + 1, indicator_on=False)
        state, reward = self._react(state)
        phase = state.phase
        ends_phase = state.frame >= self.phase_steps[phase]
        done = ends_phase & (phase == 2)
        state = jax.lax.cond(ends_phase & (phase == 0), lambda s: self._enter_distractor(s, key), lambda s: s, state)
        state = jax.lax.cond(ends_phase & (phase == 1), self._enter_reward, lambda s: s, state)
        success = done & (state.reward_phase_total > 0)
        return self.render(state), state, reward, done, {"success": success}

    def _react(self, state: TVTState) -> tuple[TVTState, jax.Array]:
        """The key, apples, door and squares react to the player's new cell; returns the reward."""
        on = lambda cell: jnp.all(state.player == cell)  # noqa: E731
        reward = jnp.asarray(0.0)
        explore, distractor, final = state.phase == 0, state.phase == 1, state.phase == 2
        if self.task == "key_to_door":
            picked = explore & state.key_present & on(state.key_cell)
            state = state.replace(
                key_present=state.key_present & ~picked,
                has_key=state.has_key | picked,
                indicator_on=picked,
            )
            through = final & state.has_key & on(jnp.asarray(DOOR_CELL))
            reward = reward + FINAL_REWARD * through
            state = state.replace(
                has_key=state.has_key & ~through, reward_phase_total=state.reward_phase_total + FINAL_REWARD * through
            )
        else:
            touched = jax.vmap(on)(jnp.asarray(MATCH_SQUARES)) & final & state.squares_visible
            hit = touched.any()
            right = touched[jnp.argmax(state.order == state.target)]
            paid = FINAL_REWARD * (hit & right)
            reward = reward + paid
            state = state.replace(
                squares_visible=state.squares_visible & ~hit, reward_phase_total=state.reward_phase_total + paid
            )
        # apples: pickups first, then respawns (21 frames after a pickup, only where one started)
        eaten = distractor & state.apples & jax.vmap(on)(jnp.asarray(APPLE_CELLS))
        reward = reward + APPLE_REWARD * eaten.sum()
        last_pickup = jnp.where(eaten, state.frame, state.last_pickup)
        apples = state.apples & ~eaten
        back = distractor & ~apples & state.apple_start & (state.frame > last_pickup + RESPAWN_EVERY)
        return state.replace(apples=apples | back, last_pickup=last_pickup), reward

    # -- observation -------------------------------------------------------------------------
    def render(self, state: TVTState) -> jax.Array:
        """The 5×5×3 uint8 crop centred on the player."""
        board = self.backdrops[state.phase]

        def paint(board: jax.Array, cell: jax.Array, colour: Any, visible: jax.Array) -> jax.Array:
            current = board[cell[0], cell[1]]
            return board.at[cell[0], cell[1]].set(jnp.where(visible, jnp.asarray(colour), current))

        phase = state.phase
        if self.task == "key_to_door":
            board = paint(board, state.key_cell, KEY, (phase == 0) & state.key_present)
            board = paint(board, jnp.asarray(INDICATOR_CELL), INDICATOR, (phase == 0) & state.indicator_on)
        else:
            board = paint(board, state.target_cell, jnp.asarray(SQUARE_COLOURS)[state.target], phase == 0)
        apple_colours = jnp.where(
            (phase == 1) & state.apples[:, None], jnp.asarray(APPLE), board[APPLE_CELLS[:, 0], APPLE_CELLS[:, 1]]
        )
        board = board.at[APPLE_CELLS[:, 0], APPLE_CELLS[:, 1]].set(apple_colours)
        board = paint(board, state.player, PLAYER, jnp.asarray(True))
        if self.task == "key_to_door":  # the door is drawn over the player
            board = paint(board, jnp.asarray(DOOR_CELL), DOOR, phase == 2)
        else:
            for slot in range(3):
                colour = jnp.asarray(SQUARE_COLOURS)[state.order[slot]]
                board = paint(board, jnp.asarray(MATCH_SQUARES[slot]), colour, (phase == 2) & state.squares_visible)
        padded = jnp.pad(board, ((2, 2), (2, 2), (0, 0)), constant_values=0)
        padded = jnp.where(jnp.pad(jnp.ones((ROWS, COLS), bool), 2)[..., None], padded, jnp.asarray(FLOOR))
        return jax.lax.dynamic_slice(padded, (state.player[0], state.player[1], 0), (CROP, CROP, 3))

    def is_truncated(self, state: TVTState, params: TVTParams) -> jax.Array:
        return jnp.asarray(False)

    def is_terminated(self, state: TVTState, params: TVTParams) -> jax.Array:
        return state.time >= self.episode_length

    @property
    def name(self) -> str:
        family = "PassiveVisualMatch" if self.task == "visual_match" else "KeyToDoor"
        return f"{family}-{self.distractor_steps}"

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params: TVTParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def observation_space(self, params: TVTParams) -> spaces.Box:
        return spaces.Box(0, 255, (CROP, CROP, 3), jnp.uint8)
