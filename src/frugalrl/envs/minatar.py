"""MinAtar games as the MinAtar package and gym-games' ``*-MinAtar-v0`` define them.

gymnax's MinAtar games default to each game's minimal action set, have no sticky actions and
end episodes after 1000 steps. The original ``minatar.Environment`` (which MeDQN used through
gym-games ``-v0``) exposes all 6 actions, repeats the previous action with probability 0.1
(``sticky_action_prob``; the previous action persists across episode resets, as there), ramps
difficulty where the game does, and has no time limit (gym-games caps Seaquest at 10,000 steps).
``MinAtarV0`` wraps a gymnax game to behave like that. The game dynamics are gymnax's, checked
step by step against ``minatar`` 1.0.15 (same state, same actions): Breakout and SpaceInvaders
match; three rules where gymnax departs from the original are corrected here:

* Freeway ends (terminates, not truncates) on its 2,501st step, as ``minatar``'s 2,500-frame
  timer does; gymnax never terminates it and only truncates at 2,500 by its time limit.
* Asterix spawns into a uniformly chosen free slot and not at all when none is free; gymnax's
  slot search never looks at the first slot of its permutation and overwrites (deletes) a live
  entity when it finds no free slot, which thins the late game.
* Seaquest: an enemy sub whose shot timer is due still fires on the step a bullet kills it (the
  original checks shooting after removing it from the list); gymnax drops that shot.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces
from gymnax.environments.minatar import asterix, breakout, freeway, seaquest, space_invaders
from gymnax.environments.minatar.seaquest_helpers import active_mask, append_many, collide_bullets, move_entities


class Asterix(asterix.MinAsterix):
    """gymnax's Asterix with ``minatar``'s spawn rule: a uniformly chosen free slot, or no spawn."""

    def step_env(
        self, key: jax.Array, state: asterix.EnvState, action: Any, params: asterix.EnvParams
    ) -> tuple[jax.Array, asterix.EnvState, jax.Array, jax.Array, dict[str, Any]]:
        entity_key, slot_key = jax.random.split(key)
        entity, _ = asterix.spawn_entity(entity_key, state)  # direction, gold and x as gymnax draws them
        free = state.entities[:, 4] == 0
        slot = jax.random.choice(slot_key, 8, p=free / jnp.maximum(free.sum(), 1))
        entity = entity.at[1].set(slot + 1).at[4].set(1)
        spawn_now = (state.spawn_timer == 0) & free.any()
        entities = jnp.where(spawn_now, state.entities.at[slot].set(entity), state.entities)
        # the timer restarts when due, whether or not a slot was free (as minatar)
        spawn_timer = jnp.where(state.spawn_timer == 0, state.spawn_speed, state.spawn_timer)
        state = state.replace(entities=entities, spawn_timer=spawn_timer)
        state = asterix.step_agent(state, self.action_set[action])
        state, reward, done = asterix.step_entities(state)
        state = asterix.step_timers(state, params)
        state = state.replace(time=state.time + 1, terminal=done)
        info = {"discount": self.discount(state, params)}
        return self.get_obs(state), state, reward.astype(jnp.float32), self.is_terminal(state, params), info


class Seaquest(seaquest.MinSeaquest):
    """gymnax's Seaquest where a sub shot down on the step its shot is due still fires (as ``minatar``)."""

    def _step_enemy_subs(
        self, state: seaquest.EnvState, params: seaquest.EnvParams
    ) -> tuple[seaquest.EnvState, jax.Array, jax.Array]:
        terminal_before = seaquest._hits_sub(state.e_subs, state.e_subs_count, state)
        subs, sub_count = move_entities(state.e_subs, state.e_subs_count, state.move_speed)
        terminal_after = seaquest._hits_sub(subs, sub_count, state)
        shoots = active_mask(sub_count) & (subs[:, 4] == 0)
        subs = subs.at[:, 4].set(jnp.where(shoots, params.enemy_shot_interval, jnp.maximum(subs[:, 4] - 1, 0)))
        enemy_bullets, enemy_bullet_count = append_many(state.e_bullets, state.e_bullet_count, subs[:, :3], shoots)
        bullets, bullet_count, subs, sub_count, reward = collide_bullets(
            state.f_bullets, state.f_bullet_count, subs, sub_count
        )
        state = state.replace(
            f_bullets=bullets,
            f_bullet_count=bullet_count,
            e_subs=subs,
            e_subs_count=sub_count,
            e_bullets=enemy_bullets,
            e_bullet_count=enemy_bullet_count,
        )
        return state, reward, terminal_before | terminal_after


GAMES = {
    "Asterix": Asterix,
    "Breakout": breakout.MinBreakout,
    "Freeway": freeway.MinFreeway,
    "Seaquest": Seaquest,
    "SpaceInvaders": space_invaders.MinSpaceInvaders,
}
NO_LIMIT = 2**31 - 1
TIME_LIMITS = {"Seaquest": 10_000}  # gym-games' registration; the others run until the game ends
GAME_LENGTHS = {"Freeway": 2_500}  # minatar's own timer: the episode terminates on the step after


@struct.dataclass
class V0State(environment.EnvState):
    game: Any
    last_action: jax.Array


@struct.dataclass
class V0Params(environment.EnvParams):
    game: Any = None
    sticky_action_prob: float = 0.1
    max_steps_in_episode: int = NO_LIMIT


class MinAtarV0(environment.Environment[V0State, V0Params]):
    """A gymnax MinAtar game with the full action set, sticky actions and the original time limit."""

    def __init__(self, game: str) -> None:
        super().__init__()
        self.game_name = game
        self.game = GAMES[game](use_minimal_action_set=False)
        self.obs_shape = self.game.obs_shape

    @property
    def default_params(self) -> V0Params:
        game_params = self.game.default_params.replace(max_steps_in_episode=NO_LIMIT)
        return V0Params(game=game_params, max_steps_in_episode=TIME_LIMITS.get(self.game_name, NO_LIMIT))

    def step_env(
        self, key: jax.Array, state: V0State, action: Any, params: V0Params
    ) -> tuple[jax.Array, V0State, jax.Array, jax.Array, dict[str, Any]]:
        sticky_key, game_key = jax.random.split(key)
        action = jnp.where(jax.random.uniform(sticky_key) < params.sticky_action_prob, state.last_action, action)
        obs, game_state, reward, terminated, info = self.game.step_env(game_key, state.game, action, params.game)
        if self.game_name in GAME_LENGTHS:
            terminated = terminated | (game_state.time > GAME_LENGTHS[self.game_name])
        taken = action.astype(jnp.int32)
        return obs, V0State(time=state.time + 1, game=game_state, last_action=taken), reward, terminated, info

    def reset_env(self, key: jax.Array, params: V0Params) -> tuple[jax.Array, V0State]:
        obs, game_state = self.game.reset_env(key, params.game)
        return obs, V0State(time=0, game=game_state, last_action=jnp.zeros((), jnp.int32))

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: V0State, action: Any, params: V0Params | None = None) -> tuple[Any, ...]:
        """gymnax's v1 auto-resetting step, except that the last action survives the reset (as in MinAtar)."""
        params = self.default_params if params is None else params
        step_key, reset_key = jax.random.split(key)
        obs_step, state_step, reward, terminated, info = self.step_env(step_key, state, action, params)
        truncated = self.is_truncated(state_step, params)
        done = terminated | truncated
        obs_reset, state_reset = self.reset_env(reset_key, params)
        state_reset = state_reset.replace(last_action=state_step.last_action)
        new_state = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), state_reset, state_step)
        obs = jax.lax.select(done, obs_reset, obs_step)
        info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs_step}
        return obs, new_state, reward, terminated, truncated, info

    def get_obs(self, state: V0State, params: V0Params | None = None, key: jax.Array | None = None) -> jax.Array:
        return self.game.get_obs(state.game)

    @property
    def name(self) -> str:
        return f"{self.game_name}-MinAtar-v0"

    @property
    def num_actions(self) -> int:
        return 6

    def action_space(self, params: V0Params | None = None) -> spaces.Discrete:
        return spaces.Discrete(6)

    def observation_space(self, params: V0Params) -> spaces.Box:
        return self.game.observation_space(params.game)
