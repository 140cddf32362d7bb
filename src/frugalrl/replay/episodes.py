"""Episode replay for memory agents: whole episodes stored once, sampled whole or as windows.

Each slot holds one episode of at most ``T`` steps: ``T + 1`` observations (the last is the final
observation, stored once rather than as a separate next observation), ``T`` actions, rewards and
terminal flags, and a ``valid`` mask that is false after the episode's end (padding). A slot is
overwritten oldest first. Sampling draws slots uniformly; with a window length ``W < T`` it also
draws a start uniformly, and the sequence starts from a zero memory there, as in Memory-RL.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class EpisodeReplay(NamedTuple):
    obs: jax.Array  # [E, T+1, *obs]
    action: jax.Array  # [E, T] int32
    reward: jax.Array  # [E, T] float32
    terminated: jax.Array  # [E, T] bool: no bootstrap after this step
    valid: jax.Array  # [E, T] bool: a real step (false after the episode ended)
    count: jax.Array  # episodes added so far


class Episode(NamedTuple):
    """One collected episode (or a batch of sequences, with leading batch axes)."""

    obs: jax.Array  # [T+1, *obs]
    action: jax.Array  # [T]
    reward: jax.Array  # [T]
    terminated: jax.Array  # [T]
    valid: jax.Array  # [T]


def episode_capacity(capacity_transitions: int, length: int, min_episodes: int) -> int:
    """Memory-RL's rule: room for max(capacity transitions, min_episodes whole episodes)."""
    return max(capacity_transitions // (length + 1), min_episodes)


def init(obs_shape: tuple[int, ...], obs_dtype: Any, length: int, episodes: int) -> EpisodeReplay:
    return EpisodeReplay(
        obs=jnp.zeros((episodes, length + 1, *obs_shape), obs_dtype),
        action=jnp.zeros((episodes, length), jnp.int32),
        reward=jnp.zeros((episodes, length), jnp.float32),
        terminated=jnp.zeros((episodes, length), bool),
        valid=jnp.zeros((episodes, length), bool),
        count=jnp.asarray(0, jnp.int32),
    )


def capacity_of(state: EpisodeReplay) -> int:
    return state.action.shape[-2]


def add(state: EpisodeReplay, episode: Episode) -> EpisodeReplay:
    """Write one episode into the oldest slot."""
    slot = state.count % capacity_of(state)

    def put(store: jax.Array, value: jax.Array) -> jax.Array:
        return jax.lax.dynamic_update_index_in_dim(store, value.astype(store.dtype), slot, axis=0)

    return EpisodeReplay(
        obs=put(state.obs, episode.obs),
        action=put(state.action, episode.action),
        reward=put(state.reward, episode.reward),
        terminated=put(state.terminated, episode.terminated),
        valid=put(state.valid, episode.valid),
        count=state.count + 1,
    )


def sample(state: EpisodeReplay, key: jax.Array, batch_size: int, window: int = 0) -> Episode:
    """``batch_size`` sequences: whole episodes (``window`` 0) or windows of ``window`` steps."""
    held = jnp.minimum(state.count, capacity_of(state))
    slot_key, start_key = jax.random.split(key)
    slots = jax.random.randint(slot_key, (batch_size,), 0, jnp.maximum(held, 1))
    length = state.action.shape[-1]
    if window == 0 or window >= length:
        return Episode(
            state.obs[slots], state.action[slots], state.reward[slots], state.terminated[slots], state.valid[slots]
        )
    starts = jax.random.randint(start_key, (batch_size,), 0, length - window + 1)

    def cut(store: jax.Array, size: int) -> jax.Array:
        return jax.vmap(lambda s, t: jax.lax.dynamic_slice_in_dim(store[s], t, size, axis=0))(slots, starts)

    return Episode(
        cut(state.obs, window + 1),
        cut(state.action, window),
        cut(state.reward, window),
        cut(state.terminated, window),
        cut(state.valid, window),
    )


def memory_bytes(state: EpisodeReplay, num_seeds: int = 1) -> dict[str, float]:
    """Bytes per stored transition and in total; ``state`` may be abstract and seed-batched."""
    total = sum(math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(state))
    transitions = state.action.shape[-2] * state.action.shape[-1]
    return {"bytes_per_transition": total / num_seeds / transitions, "total_bytes": float(total)}


__all__ = ["Episode", "EpisodeReplay", "add", "capacity_of", "episode_capacity", "init", "memory_bytes", "sample"]
