"""FIFO replay that stores each observation once.

Slot ``i`` of a ring of ``capacity + 1`` slots holds the observation an action was taken in, the
action, the reward and the two end flags. The next observation of slot ``i`` is the observation of
slot ``i + 1``; when an episode ends there, the auto-reset put the next episode's first
observation in that slot, so a truncated step keeps its true final observation in a small side
table (a time limit of L steps leaves at most ceil((capacity + 1) / L) truncations alive). n-step
returns and next observations are rebuilt when sampling.

The write position is not part of the buffer: it is the shared count of transitions added so far,
the same for every vmapped seed (DESIGN principle 4), so these functions are single-seed and the
loop vmaps them with ``count`` unbatched.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class ReplayState(NamedTuple):
    obs: jax.Array          # [capacity + 1, *obs_shape]
    action: jax.Array       # [capacity + 1, *action_shape]
    reward: jax.Array       # [capacity + 1] float32
    terminated: jax.Array   # [capacity + 1] bool
    truncated: jax.Array    # [capacity + 1] bool
    final_slot: jax.Array   # [capacity + 1] int32: row of final_obs for truncated steps
    final_obs: jax.Array    # [final_rows, *obs_shape]
    final_ptr: jax.Array    # [] int32: next row of final_obs to write


class Batch(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array      # n-step discounted reward sum
    discount: jax.Array    # gamma^k, 0 when the k-th step terminated
    next_obs: jax.Array    # observation to bootstrap from


def final_rows(capacity: int, max_episode_steps: int) -> int:
    return math.ceil((capacity + 1) / max(max_episode_steps, 1)) + 1


def init(obs_example: Any, action_example: Any, capacity: int, max_episode_steps: int) -> ReplayState:
    """Zeroed storage for one seed. ``obs_example`` gives shape and storage dtype."""
    slots = capacity + 1
    obs_example, action_example = jnp.asarray(obs_example), jnp.asarray(action_example)
    return ReplayState(
        obs=jnp.zeros((slots,) + obs_example.shape, obs_example.dtype),
        action=jnp.zeros((slots,) + action_example.shape, action_example.dtype),
        reward=jnp.zeros((slots,), jnp.float32),
        terminated=jnp.zeros((slots,), bool),
        truncated=jnp.zeros((slots,), bool),
        final_slot=jnp.zeros((slots,), jnp.int32),
        final_obs=jnp.zeros((final_rows(capacity, max_episode_steps),) + obs_example.shape, obs_example.dtype),
        final_ptr=jnp.zeros((), jnp.int32),
    )


def capacity_of(state: ReplayState) -> int:
    return state.reward.shape[-1] - 1


def add(state: ReplayState, count: jax.Array, obs: jax.Array, action: jax.Array, reward: jax.Array,
        terminated: jax.Array, truncated: jax.Array, next_obs: jax.Array, final_obs: jax.Array) -> ReplayState:
    """Add transition number ``count`` (0-based). ``next_obs`` is the post-reset observation."""
    slots = state.reward.shape[0]
    slot = count % slots
    # next_obs goes to the following slot now, so the newest transition is complete at once; the
    # next add writes the same observation there again as its own first observation.
    obs_store = state.obs.at[slot].set(obs.astype(state.obs.dtype))
    obs_store = obs_store.at[(slot + 1) % slots].set(next_obs.astype(state.obs.dtype))
    # the row at final_ptr is never live (see final_rows), so it is written every step and kept
    # only by advancing the pointer on truncation; no branch needed.
    rows = state.final_obs.shape[0]
    return ReplayState(
        obs=obs_store,
        action=state.action.at[slot].set(action.astype(state.action.dtype)),
        reward=state.reward.at[slot].set(reward.astype(jnp.float32)),
        terminated=state.terminated.at[slot].set(terminated),
        truncated=state.truncated.at[slot].set(truncated),
        final_slot=state.final_slot.at[slot].set(state.final_ptr),
        final_obs=state.final_obs.at[state.final_ptr].set(final_obs.astype(state.final_obs.dtype)),
        final_ptr=jnp.where(truncated, (state.final_ptr + 1) % rows, state.final_ptr),
    )


def size(state: ReplayState, count: jax.Array) -> jax.Array:
    return jnp.minimum(count, capacity_of(state))


def gather(state: ReplayState, count: jax.Array, age_index: jax.Array, *, n_step: int = 1,
           gamma: float = 0.99, bootstrap_truncation: bool = True) -> Batch:
    """Transitions by age (0 = oldest kept) with n-step returns cut at episode ends and at the newest."""
    slots = state.reward.shape[0]
    held = size(state, count)
    first = (count - held + age_index) % slots
    reward = jnp.zeros(age_index.shape, jnp.float32)
    alive = jnp.ones(age_index.shape, bool)  # still accumulating
    last = first  # slot of the last step included
    steps = jnp.zeros(age_index.shape, jnp.int32)
    for j in range(n_step):
        slot = (first + j) % slots
        included = alive & (age_index + j < held)
        reward = reward + jnp.where(included, (gamma ** j) * state.reward[slot], 0.0)
        last = jnp.where(included, slot, last)
        steps = steps + included
        alive = included & ~state.terminated[slot] & ~state.truncated[slot]
    terminated, truncated = state.terminated[last], state.truncated[last]
    ends = terminated | (truncated & (not bootstrap_truncation))
    discount = jnp.where(ends, 0.0, jnp.power(jnp.float32(gamma), steps.astype(jnp.float32)))
    following = state.obs[(last + 1) % slots]
    final = state.final_obs[state.final_slot[last]]
    pick_final = truncated.reshape(truncated.shape + (1,) * (following.ndim - truncated.ndim))
    next_obs = jnp.where(pick_final, final, following)
    return Batch(obs=state.obs[first], action=state.action[first], reward=reward,
                 discount=discount, next_obs=next_obs)


def sample(state: ReplayState, key: jax.Array, count: jax.Array, batch_size: int, **kwargs: Any) -> Batch:
    """Uniform sample with replacement from the transitions held."""
    age_index = jax.random.randint(key, (batch_size,), 0, size(state, count))
    return gather(state, count, age_index, **kwargs)


def get(state: ReplayState, count: jax.Array, **kwargs: Any) -> Batch:
    """The whole buffer, oldest first (MeDQN(U) trains on all of a 32-transition buffer)."""
    return gather(state, count, jnp.arange(capacity_of(state)), **kwargs)


def memory_bytes(state: ReplayState) -> dict[str, float]:
    """Bytes per stored transition and in total, for one seed."""
    total = sum(np.prod(leaf.shape[-leaf.ndim:] if leaf.ndim else ()) * leaf.dtype.itemsize
                for leaf in jax.tree.leaves(state))
    capacity = capacity_of(state)
    return {"bytes_per_transition": float(total) / capacity, "total_bytes": float(total)}
