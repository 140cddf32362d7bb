"""Knowledge consolidation (MeDQN, Lan et al. 2023) as a loss term any value agent can add.

The online Q-network is pulled toward the target network on *consolidation states*, over all
actions: ``L_C = mean_s mean_a (Q_θ(s, a) − sg Q_θ⁻(s, a))²``, always MSE (even when the TD loss is
Huber). The total loss is ``L_TD + λ_t · L_C`` with λ rising linearly from ``lambda_start`` to
``lambda_end`` over the run (env steps). Right after a hard target sync ``L_C`` and its gradient
are zero; it grows as the online network drifts from the copy that holds the old knowledge.

Consolidation states come from a *source*, chosen by ``consolidation/source``:

* ``uniform`` — MeDQN(U): uniform in the running per-dimension [min, max] box of the raw
  observations seen so far (integer draws for binary planes such as MinAtar's, so a cell that was
  ever 1 is a fair coin and one never seen as 1 stays 0);
* ``replay`` — MeDQN(R): observations drawn uniformly, with replacement, from the replay buffer.

Each of the E epochs an update makes on one TD batch draws a fresh consolidation batch (the loop
asks ``Consolidation.inputs`` once per optimizer step). Its state (the bounds) lives in the loop's
carry, one per seed, and is updated from the observations acted in — the pre-step states, as in
Explorer, so the bounds include the very first reset observation and never a final observation.
With ``replay/td_batch`` 'all' (MeDQN's tiny buffers) the TD batch is the whole buffer
(``replay.sampler``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from frugalrl.agents.losses import ConsolidationInputs, LossInputs, LossTerm
from frugalrl.envs import EnvSpec
from frugalrl.replay import fifo
from frugalrl.replay.fifo import Batch


def consolidation_lambda(step: jax.Array, total_steps: int, lambda_start: Any, lambda_delta: Any) -> jax.Array:
    """λ_t = λ_start + (λ_end − λ_start) · t / T, clipped to [0, T]: λ(0) = λ_start, λ(T) = λ_end.
    ``lambda_delta`` = λ_end − λ_start, taken on the host (in float64, as for a packed program's lanes)."""
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
    return lambda_start + frac * lambda_delta


def consolidation_loss(network: Any, params: Any, target_params: Any, states: jax.Array) -> jax.Array:
    """MSE over states and all actions between online Q and the stop-gradient target Q."""
    q = network.apply(params, states)
    q_target = jax.lax.stop_gradient(network.apply(target_params, states))
    return jnp.mean((q - q_target) ** 2)


class ObsBounds(NamedTuple):
    """Running elementwise min and max of the observations seen (float32, ±inf before any)."""

    low: jax.Array
    high: jax.Array


def init_bounds(obs_shape: tuple[int, ...]) -> ObsBounds:
    return ObsBounds(jnp.full(obs_shape, jnp.inf, jnp.float32), jnp.full(obs_shape, -jnp.inf, jnp.float32))


def update_bounds(bounds: ObsBounds, observations: jax.Array) -> ObsBounds:
    """Widen the box to hold every observation of ``observations`` [k, *obs_shape]."""
    observations = observations.astype(jnp.float32)
    return ObsBounds(
        jnp.minimum(bounds.low, observations.min(axis=0)), jnp.maximum(bounds.high, observations.max(axis=0))
    )


def uniform_states(bounds: ObsBounds, key: jax.Array, n: int, integer: bool) -> jax.Array:
    """``n`` states uniform in the box: continuous, or integers in [rint(low), rint(high)] inclusive."""
    shape = (n,) + bounds.low.shape
    if integer:
        low, high = jnp.rint(bounds.low), jnp.rint(bounds.high)
        # floor(low + u * (high - low + 1)) is uniform on the integers low .. high
        draw = jnp.floor(low + jax.random.uniform(key, shape) * (high - low + 1.0))
        return jnp.minimum(draw, high)
    # the clip only guards against rounding past high when high - low rounds up
    return jnp.minimum(bounds.low + jax.random.uniform(key, shape) * (bounds.high - bounds.low), bounds.high)


@dataclass(frozen=True)
class Consolidation:
    """MeDQN in the loop: its per-seed state (the observation box), what it takes from each block
    of env steps, and the inputs of its loss term for each optimizer step. Single-seed functions."""

    kind: str  # "uniform" | "replay"
    batch_size: int
    spec: EnvSpec
    total_steps: int
    lambda_start: float
    lambda_end: float

    @property
    def integer(self) -> bool:
        return self.spec.obs_dtype.kind in "ub"  # binary planes stored as uint8

    def init(self) -> ObsBounds | tuple[()]:
        return init_bounds(self.spec.obs_shape) if self.kind == "uniform" else ()

    def observe(self, state: Any, observations: jax.Array) -> Any:
        """After a block of env steps: widen the box to the observations acted in (``[k, *obs_shape]``)."""
        return update_bounds(state, observations) if self.kind == "uniform" else state

    def draw(self, state: Any, replay: fifo.ReplayState, count: jax.Array, key: jax.Array) -> jax.Array:
        """A fresh batch of consolidation states."""
        if self.kind == "uniform":
            return uniform_states(state, key, self.batch_size, self.integer)
        return fifo.sample_obs(replay, key, count, self.batch_size)

    def inputs(
        self, state: Any, replay: fifo.ReplayState, count: jax.Array, key: jax.Array, schedule: Any = None
    ) -> ConsolidationInputs:
        """The loss term's inputs for one optimizer step at env step ``count``: fresh states and λ_t;
        ``schedule``: (λ_start, λ_end − λ_start) of a packed program's lane instead of the config's."""
        start, delta = schedule if schedule is not None else (self.lambda_start, self.lambda_end - self.lambda_start)
        weight = consolidation_lambda(count, self.total_steps, start, delta)
        return ConsolidationInputs(self.draw(state, replay, count, key), weight)


def make_consolidation(cfg: dict[str, Any], spec: EnvSpec) -> Consolidation | None:
    """The configured consolidation, or None when it is off."""
    section = cfg["consolidation"]
    if section["source"] == "off":
        return None
    batch = section["batch_size"] or cfg["replay"]["batch_size"]
    return Consolidation(
        section["source"], batch, spec, cfg["total_steps"], section["lambda_start"], section["lambda_end"]
    )


def make_consolidation_term(cfg: dict[str, Any], network: Any) -> LossTerm:
    """The loss term for the agent: λ·L_C on ``inputs.consolidation``'s states."""

    def term(params: Any, target_params: Any, batch_q: jax.Array, batch: Batch, inputs: LossInputs, key: jax.Array):
        loss = consolidation_loss(network, params, target_params, inputs.consolidation.states)
        weight = inputs.consolidation.weight
        return weight * loss, {"consolidation_loss": loss, "consolidation_lambda": weight}

    return term


__all__ = [
    "Consolidation",
    "ObsBounds",
    "consolidation_lambda",
    "consolidation_loss",
    "init_bounds",
    "make_consolidation_term",
    "make_consolidation",
    "uniform_states",
    "update_bounds",
]
