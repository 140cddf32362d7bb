"""What the loops ask of an agent: two protocols, one per kind of loop.

Every agent is a frozen dataclass of static pieces (networks, optimizers, config) whose methods
are pure, single-seed functions of explicit state; the loops ``vmap`` them over seeds and own
every schedule (when to update, when to sync the target), so an agent never branches on step
counters.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

from frugalrl.agents.losses import LossInputs
from frugalrl.replay.episodes import Episode
from frugalrl.replay.fifo import Batch


class ValueAgent(Protocol):
    """An agent that learns from transitions (DQN and C51 with their loss terms, Dyna DQN, SAC, DDPG)."""

    def init(self, key: jax.Array) -> Any:
        """A new agent state (networks, targets, optimizer states)."""

    def epsilon(self, step: jax.Array) -> jax.Array:
        """The exploration parameter at env step ``step`` (ε, or 0 where exploration is the policy's own)."""

    def act(self, state: Any, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        """The exploring action for one observation."""

    def evaluation_act(self, state: Any, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        """The evaluation's action (greedy, or uniform with the evaluation's ε)."""

    def td_target(self, state: Any, batch: Batch) -> jax.Array | None:
        """TD targets fixed for several optimizer steps on one batch, or None where ``update`` makes its own."""

    def update(
        self, state: Any, batch: Batch, key: jax.Array, target: Any = None, inputs: LossInputs | None = None
    ) -> tuple[Any, dict[str, jax.Array]]:
        """One gradient step; metrics hold at least ``loss`` (the loops stop on a non-finite one)."""

    def sync_target(self, state: Any) -> Any:
        """The state after a target sync (hard copy or Polyak step); elementwise, so seed-batched state works."""


class EpisodicAgent(Protocol):
    """A memory agent that acts step by step with a memory and learns from whole episodes (recurrent DQN, SAC-D)."""

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The names of ``update``'s metrics (metrics.csv's columns, in order)."""

    def init(self, key: jax.Array) -> Any: ...

    def initial_memory(self) -> Any:
        """The memory an episode starts with."""

    def acting_params(self, state: Any) -> Any:
        """The parameters ``act`` reads."""

    def act(
        self,
        params: Any,
        memory: Any,
        obs: jax.Array,
        prev_action: jax.Array,
        prev_reward: jax.Array,
        key: jax.Array,
        epsilon: jax.Array,
        explore: bool = True,
    ) -> tuple[Any, jax.Array]:
        """(the next memory, the action); greedy and without dropout when ``explore`` is False."""

    def update(self, state: Any, batch: Episode, key: jax.Array) -> tuple[Any, dict[str, jax.Array]]: ...


__all__ = ["EpisodicAgent", "ValueAgent"]
