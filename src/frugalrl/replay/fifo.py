"""FIFO replay that stores each observation once.

Slot ``i`` of a ring of ``capacity + 1`` slots holds the observation an action was taken in, the
action, the reward and the two end flags. The next observation of slot ``i`` is the observation of
slot ``i + 1``; when an episode ends there, the auto-reset put the next episode's first
observation in that slot, so a truncated step keeps its true final observation in a few extra
rows after the ring (a time limit of L steps leaves at most ceil((capacity + 1) / L) truncations
alive). ``next_row`` records, at add time, the row of each slot's next observation (the
following slot, or the final-observation row of a truncated step), so sampling needs one gather
for the next observation and no arithmetic. n-step returns are rebuilt when sampling.

Pixel observations are stored one frame per slot and stacked when sampled (DESIGN principle 5):
``init(..., stack=k)`` keeps k - 1 slots more, so the oldest transition's earlier frames are still
there, and ``gather`` rebuilds each k-frame stack from the frames of its own episode, the slots
before an episode's first frame padded with zeros or with that first frame (``padding``), exactly
as ``push_frame`` builds the stacks the agent acts on. The stack size and padding travel in the
state (``ReplayState.stack``), so a teacher's replay and a student's may differ.

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
    obs: jax.Array  # [capacity + 1 + final_rows, *obs_shape]: the ring, then final observations
    action: jax.Array  # [capacity + 1, *action_shape]
    reward: jax.Array  # [capacity + 1] float32
    ends: jax.Array  # [capacity + 1] uint8: TERMINATED | TRUNCATED bits
    next_row: jax.Array  # [capacity + 1] int32: row of obs holding the slot's next observation
    final_ptr: jax.Array  # [] int32: next final-observation row to write, 0 .. final_rows - 1
    # frame stacking: () when observations are stored whole; else [k] uint8 for stacks of k frames,
    # all 1 to pad an episode's first stacks with its first frame, all 0 to pad them with zeros
    stack: Any = ()


TERMINATED, TRUNCATED = 1, 2
PADDINGS = ("zeros", "repeat")


def stack_size(state: ReplayState) -> int:
    """Frames per observation (1 when observations are stored whole); ``state`` may be seed-batched."""
    return 1 if isinstance(state.stack, tuple) else int(state.stack.shape[-1])


class Batch(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array  # n-step discounted reward sum
    discount: jax.Array  # gamma^k, 0 when the k-th step terminated
    next_obs: jax.Array  # observation to bootstrap from


def final_rows(capacity: int, max_episode_steps: int) -> int:
    return math.ceil((capacity + 1) / max(max_episode_steps, 1)) + 1


def init(
    obs_example: Any,
    action_example: Any,
    capacity: int,
    max_episode_steps: int,
    *,
    stack: int = 1,
    padding: str = "zeros",
) -> ReplayState:
    """Zeroed storage for one seed. ``obs_example`` gives shape and storage dtype (one frame when
    ``stack`` > 1: observations are then stacks of ``stack`` frames, rebuilt when sampled)."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    slots = capacity + stack  # the oldest transition's stack - 1 earlier frames stay
    obs_example, action_example = jnp.asarray(obs_example), jnp.asarray(action_example)
    rows = slots + final_rows(capacity, max_episode_steps)
    stack_marker = () if stack == 1 else jnp.full((stack,), padding == "repeat", jnp.uint8)
    return ReplayState(
        obs=jnp.zeros((rows,) + obs_example.shape, obs_example.dtype),
        action=jnp.zeros((slots,) + action_example.shape, action_example.dtype),
        reward=jnp.zeros((slots,), jnp.float32),
        ends=jnp.zeros((slots,), jnp.uint8),
        next_row=jnp.zeros((slots,), jnp.int32),
        final_ptr=jnp.zeros((), jnp.int32),
        stack=stack_marker,
    )


def capacity_of(state: ReplayState) -> int:
    return state.reward.shape[-1] - stack_size(state)


class Transition(NamedTuple):
    """What one env step adds."""

    obs: jax.Array  # the observation the action was taken in
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array  # the true last observation of an episode that ended here (read if truncated)


def add(state: ReplayState, count: jax.Array, transition: Transition, next_obs: jax.Array) -> ReplayState:
    """Add transition number ``count`` (0-based); ``next_obs`` is the observation after it (post-reset)."""
    return add_block(state, count, jax.tree.map(lambda x: jnp.asarray(x)[None], transition), next_obs)


def add_block(state: ReplayState, count: jax.Array, block: Transition, next_obs: jax.Array) -> ReplayState:
    """Add transitions ``count .. count + k - 1``, each field with a leading time axis of length k.

    One scatter per field. ``next_obs`` is the observation after the last step (the others' next
    observation is the following step's ``obs``); ``final_obs`` is read only for truncated steps.
    The next observation goes to the slot after the newest now, so every added transition is
    complete at once; the next add writes the same observation there again as its own ``obs``.
    """
    obs, action, reward, terminated, truncated, final_obs = block
    slots = state.reward.shape[0]
    rows = state.obs.shape[0] - slots
    k = reward.shape[0]
    slot = (count + jnp.arange(k)) % slots
    # truncated steps take consecutive final rows from final_ptr, in order
    advance = jnp.cumsum(truncated.astype(jnp.int32))
    final_row = slots + (state.final_ptr + advance - truncated.astype(jnp.int32)) % rows
    # rows of steps that were not truncated are dropped (index past the end)
    write_row = jnp.where(truncated, final_row, state.obs.shape[0])
    obs_store = state.obs.at[slot].set(obs.astype(state.obs.dtype))
    obs_store = obs_store.at[(count + k) % slots].set(next_obs.astype(state.obs.dtype))
    obs_store = obs_store.at[write_row].set(final_obs.astype(state.obs.dtype), mode="drop")
    return ReplayState(
        obs=obs_store,
        action=state.action.at[slot].set(action.astype(state.action.dtype)),
        reward=state.reward.at[slot].set(reward.astype(jnp.float32)),
        ends=state.ends.at[slot].set(terminated * jnp.uint8(TERMINATED) + truncated * jnp.uint8(TRUNCATED)),
        next_row=state.next_row.at[slot].set(jnp.where(truncated, final_row, (slot + 1) % slots)),
        final_ptr=(state.final_ptr + advance[-1]) % rows,
        stack=state.stack,
    )


def size(state: ReplayState, count: jax.Array) -> jax.Array:
    return jnp.minimum(count, capacity_of(state))


def gather(
    state: ReplayState,
    count: jax.Array,
    age_index: jax.Array,
    *,
    n_step: int = 1,
    gamma: float = 0.99,
    bootstrap_truncation: bool = True,
) -> Batch:
    """Transitions by age (0 = oldest kept) with n-step returns cut at episode ends and at the newest."""
    slots = state.reward.shape[0]
    held = size(state, count)
    first = (count - held + age_index) % slots
    ends = state.ends[first]
    reward, last, steps = state.reward[first], first, jnp.ones(age_index.shape, jnp.int32)
    alive = ends == 0  # still accumulating
    for j in range(1, n_step):
        slot = (first + j) % slots
        included = alive & (age_index + j < held)
        slot_ends = state.ends[slot]
        reward = reward + jnp.where(included, (gamma**j) * state.reward[slot], 0.0)
        last = jnp.where(included, slot, last)
        ends = jnp.where(included, slot_ends, ends)
        steps = steps + included
        alive = included & (slot_ends == 0)
    stop = TERMINATED if bootstrap_truncation else TERMINATED | TRUNCATED
    discount = jnp.where(ends & stop, 0.0, jnp.power(jnp.float32(gamma), steps.astype(jnp.float32)))
    if stack_size(state) > 1:
        absolute = count - held + age_index  # transitions added before it
        obs = stacked(state, first, absolute, since=first - 1)
        next_obs = stacked(state, state.next_row[last], absolute + steps, since=last, newest_in_episode=True)
    else:
        obs, next_obs = state.obs[first], state.obs[state.next_row[last]]
    return Batch(obs=obs, action=state.action[first], reward=reward, discount=discount, next_obs=next_obs)


def stacked(
    state: ReplayState, row: jax.Array, absolute: jax.Array, *, since: jax.Array, newest_in_episode: bool = False
) -> jax.Array:
    """[..., *frame, k] stacks, oldest frame first: frame ``row`` of ``obs`` after the ring slots
    ``since``, ``since - 1``, ... (transition ``absolute`` is the one at ``since + 1``).

    An earlier frame belongs to the stack while no episode ended between it and the newest:
    ``ends`` of its own slot is checked, except for slot ``since`` itself when ``newest_in_episode``
    (the next observation of a transition at ``since``: a truncated transition's final frame, or
    the frame after it). Frames before the episode's first, or before the first transition ever
    added, are zeros or the earliest frame of the stack (``padding``)."""
    k, slots = stack_size(state), state.reward.shape[0]
    repeat = state.stack[0] == 1
    frames, newest = [state.obs[row]], state.obs[row]
    earliest, valid = newest, jnp.ones(jnp.shape(row), bool)
    for j in range(1, k):
        slot = (since - (j - 1)) % slots
        ended = state.ends[slot] != 0
        if newest_in_episode and j == 1:
            ended = jnp.zeros_like(ended)
        valid = valid & ~ended & (absolute - j >= 0)
        frame = state.obs[slot]
        mask = valid.reshape(valid.shape + (1,) * (frame.ndim - valid.ndim))
        earliest = jnp.where(mask, frame, earliest)
        frames.append(jnp.where(mask, frame, jnp.where(repeat, earliest, jnp.zeros_like(frame))))
    return jnp.stack(frames[::-1], axis=-1)


def push_frame(stack: jax.Array, frame: jax.Array, first: jax.Array, padding: str) -> jax.Array:
    """The stack [..., *frame, k] after ``frame``: shifted by one, or, where ``first`` (an episode's
    first frame), the frame after k - 1 zeros or k - 1 copies of it (``padding``): the rule
    ``stacked`` rebuilds stacks by."""
    shifted = jnp.concatenate([stack[..., 1:], frame[..., None]], axis=-1)
    if padding == "repeat":
        fresh = jnp.repeat(frame[..., None], stack.shape[-1], axis=-1)
    else:
        fresh = jnp.concatenate([jnp.zeros_like(stack[..., 1:]), frame[..., None]], axis=-1)
    mask = first.reshape(first.shape + (1,) * (stack.ndim - first.ndim))
    return jnp.where(mask, fresh, shifted)


def uniform_ages(key: jax.Array, held: jax.Array, n: int) -> jax.Array:
    """``n`` ages uniform in 0 .. held - 1, with replacement.

    floor(u * held) rather than randint: randint's rejection-free scheme draws twice the bits.
    """
    return jnp.minimum((jax.random.uniform(key, (n,)) * held).astype(jnp.int32), held - 1)


def sample(state: ReplayState, key: jax.Array, count: jax.Array, batch_size: int, **kwargs: Any) -> Batch:
    """Uniform sample with replacement from the transitions held."""
    return gather(state, count, uniform_ages(key, size(state, count), batch_size), **kwargs)


def sample_obs(state: ReplayState, key: jax.Array, count: jax.Array, n: int) -> jax.Array:
    """``n`` observations acted in, uniform with replacement over the transitions held (MeDQN(R))."""
    held = size(state, count)
    ages = uniform_ages(key, held, n)
    slot = (count - held + ages) % state.reward.shape[0]
    if stack_size(state) > 1:
        return stacked(state, slot, count - held + ages, since=slot - 1)
    return state.obs[slot]


def get(state: ReplayState, count: jax.Array, **kwargs: Any) -> Batch:
    """The whole buffer, oldest first (MeDQN(U) trains on all of a 32-transition buffer)."""
    return gather(state, count, jnp.arange(capacity_of(state)), **kwargs)


def memory_bytes(state: ReplayState, num_seeds: int = 1) -> dict[str, float]:
    """Bytes per stored transition and in total; ``state`` may be abstract and seed-batched."""
    total = sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(state))
    capacity = capacity_of(state)
    return {"bytes_per_transition": total / num_seeds / capacity, "total_bytes": float(total)}
