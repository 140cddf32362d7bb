"""Prioritized replay (Schaul et al. 2016) over the FIFO buffer, as Dopamine's Rainbow uses it.

Each slot of the FIFO ring carries a priority. A new transition gets the largest priority seen so
far; a sampled one gets ``(loss + 1e-10) ** priority_exponent`` from its latest update (Dopamine:
the square root of its loss). Sampling is proportional to priority, stratified over the batch
(one draw per equal slice of the total mass, as a sum tree would be queried); importance weights
``(held · P(i)) ** −importance_exponent`` are normalised by the batch's largest (Dopamine: 1/sqrt(P)).

Instead of a sum tree the priorities of the held transitions are laid out oldest first and summed
cumulatively at each draw: O(capacity) work that vectorises well, and exactly the same
distribution. Single-seed functions; the loop vmaps them with ``count`` shared.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from frugalrl.replay.fifo import ReplayState, capacity_of, size


class Priorities(NamedTuple):
    value: jax.Array  # [capacity + 1] priority of each ring slot's transition
    max_value: jax.Array  # [] largest priority given so far (new transitions get it)


def init(capacity: int) -> Priorities:
    return Priorities(jnp.zeros(capacity + 1, jnp.float32), jnp.ones((), jnp.float32))


def on_add(priorities: Priorities, count: jax.Array, k: int) -> Priorities:
    """Transitions ``count .. count + k - 1`` were just written: they get the largest priority."""
    slots = priorities.value.shape[0]
    slot = (count + jnp.arange(k)) % slots
    return priorities._replace(value=priorities.value.at[slot].set(priorities.max_value))


def _by_age(priorities: Priorities, replay: ReplayState, count: jax.Array) -> tuple[jax.Array, jax.Array]:
    capacity = capacity_of(replay)
    held = size(replay, count)
    slots = priorities.value.shape[0]
    ages = jnp.arange(capacity)
    ordered = jnp.where(ages < held, priorities.value[(count - held + ages) % slots], 0.0)
    return ordered, held


def sample_ages(
    priorities: Priorities, replay: ReplayState, key: jax.Array, count: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array]:
    """(ages, probabilities) of ``batch_size`` transitions drawn in proportion to priority."""
    ordered, held = _by_age(priorities, replay, count)
    cumulative = jnp.cumsum(ordered)
    total = cumulative[-1]
    targets = (jnp.arange(batch_size) + jax.random.uniform(key, (batch_size,))) / batch_size * total
    ages = jnp.minimum(jnp.searchsorted(cumulative, targets, side="right"), held - 1)
    return ages, ordered[ages] / total


def importance_weights(probabilities: jax.Array, held: jax.Array, exponent: float) -> jax.Array:
    """``(held · P) ** −exponent``, divided by the batch's largest."""
    weights = (held * probabilities) ** -exponent
    return weights / jnp.max(weights)


def update(
    priorities: Priorities, count: jax.Array, held: jax.Array, ages: jax.Array, losses: jax.Array, exponent: float
) -> Priorities:
    """Sampled transitions (by age) get priority ``(loss + 1e-10) ** exponent``."""
    slots = priorities.value.shape[0]
    new = (losses + 1e-10) ** exponent
    value = priorities.value.at[(count - held + ages) % slots].set(new)
    return Priorities(value, jnp.maximum(priorities.max_value, jnp.max(new)))
