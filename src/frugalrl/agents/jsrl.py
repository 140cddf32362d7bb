"""Jump-start RL (JSRL, Uchendu et al. 2022), a reincarnation baseline: the teacher acts first.

Each training episode draws a roll-in length uniform in 1..max_roll_in; in the roll-in the teacher
acts (``jsrl/roll_in_guide``), after it the student, except that with probability ``guide`` the
teacher's greedy action replaces the student's (``jsrl/guide_prob``, decaying linearly to 0 over
``jsrl/decay_period`` env steps). After each evaluation the host shrinks max_roll_in by
``jsrl/roll_in_decay`` (``train.reincarnation``). Single-seed functions; the loop vmaps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

JSRL_STREAM = 0x75E1  # folded into keys for JSRL's own draws, apart from every other stream


class JSRLState(NamedTuple):
    roll_in: jax.Array  # [] roll-in length of the current episode
    max_roll_in: jax.Array  # [] upper end of the roll-in draw, shrunk by the host after each evaluation


def draw_roll_in(key: jax.Array, max_roll_in: jax.Array) -> jax.Array:
    """A roll-in length uniform in 1..max_roll_in (0 when max_roll_in < 1), as JSRL's begin_episode."""
    return jnp.where(max_roll_in >= 1, jax.random.randint(key, (), 1, jnp.maximum(max_roll_in, 1) + 1), 0)


@dataclass(frozen=True)
class JumpStart:
    teacher_q: Any  # the teacher's Q-function: apply(params, obs)
    guide_prob: float
    decay_period: int
    roll_in_guide: bool
    max_roll_in_steps: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any], teacher_q: Any) -> JumpStart:
        j = cfg["jsrl"]
        return cls(teacher_q, j["guide_prob"], j["decay_period"], j["roll_in_guide"], j["max_roll_in_steps"])

    def init(self, key: jax.Array) -> JSRLState:
        max_roll_in = jnp.asarray(self.max_roll_in_steps, jnp.int32)
        return JSRLState(draw_roll_in(jax.random.fold_in(key, JSRL_STREAM), max_roll_in), max_roll_in)

    def guide_probability(self, steps: jax.Array) -> jax.Array:
        """The roll-out probability of a teacher action at env steps ``steps``: guide_prob, decaying to 0."""
        return self.guide_prob * jnp.clip(1.0 - steps / self.decay_period, 0.0, 1.0)

    def act(
        self,
        teacher: Any,
        state: JSRLState,
        obs: jax.Array,
        action: jax.Array,
        episode_length: jax.Array,
        act_key: jax.Array,
        guide: jax.Array,
    ) -> tuple[jax.Array, jax.Array]:
        """The action taken (the teacher's in the roll-in when it guides it, and with probability
        ``guide`` after it) and the key the next episode's roll-in is drawn with."""
        coin_key, draw_key = jax.random.split(jax.random.fold_in(act_key, JSRL_STREAM))
        teacher_action = jnp.argmax(self.teacher_q.apply(teacher, obs), axis=-1).astype(action.dtype)
        coin = jax.random.uniform(coin_key) < guide
        use_teacher = jnp.where(episode_length < state.roll_in, self.roll_in_guide, coin)
        return jnp.where(use_teacher, teacher_action, action), draw_key

    def after_step(self, state: JSRLState, done: jax.Array, draw_key: jax.Array) -> JSRLState:
        """A new episode draws its roll-in length."""
        return state._replace(roll_in=jnp.where(done, draw_roll_in(draw_key, state.max_roll_in), state.roll_in))


__all__ = ["JSRLState", "JSRL_STREAM", "JumpStart", "draw_roll_in"]
