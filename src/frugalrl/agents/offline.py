"""Regularisers for offline pretraining on teacher data: the baselines QDagger is compared with.

* ``large_margin`` (DQfD, Hester et al. 2018): ``max_a [Q(s, a) + m·1(a ≠ a_T)] − Q(s, a_T)`` with
  ``a_T`` the teacher data's action: the data's action must beat every other by the margin ``m``.
* ``cql`` (discrete CQL, Kumar et al. 2020): ``logsumexp_a Q(s, a) − Q(s, a_T)``: pushes down the
  values of actions the data does not take.

Both are batch means over the TD batch's states and actions, added with ``pretraining/regularizer_weight``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from frugalrl.agents.losses import LossInputs, LossTerm, RegularizerInputs
from frugalrl.replay.fifo import Batch

REGULARIZERS = ("none", "large_margin", "cql")


def _taken(q: jax.Array, actions: jax.Array) -> jax.Array:
    return jnp.take_along_axis(q, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


def _mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.mean(values)
    return jnp.sum(mask * values) / jnp.maximum(jnp.sum(mask), 1.0)


def large_margin_loss(q: jax.Array, actions: jax.Array, margin: float, mask: jax.Array | None = None) -> jax.Array:
    """DQfD's supervised loss; 0 once the data's action leads every other by ``margin``
    (averaged over the examples ``mask`` selects, when given)."""
    penalty = margin * (jnp.arange(q.shape[-1]) != actions[..., None]).astype(q.dtype)
    return _mean(jnp.max(q + penalty, axis=-1) - _taken(q, actions), mask)


def cql_loss(q: jax.Array, actions: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Discrete CQL's regulariser: soft maximum of Q minus Q of the data's action."""
    return _mean(jax.nn.logsumexp(q, axis=-1) - _taken(q, actions), mask)


def make_regularizer_term(cfg: dict[str, Any]) -> LossTerm:
    """The LossTerm of ``pretraining/regularizer`` on the TD batch's Q and actions."""
    pcfg = cfg["pretraining"]
    kind, weight, margin = pcfg["regularizer"], pcfg["regularizer_weight"], pcfg["margin"]

    def term(params: Any, target_params: Any, batch_q: jax.Array, batch: Batch, inputs: LossInputs, key: jax.Array):
        # online (DQfD), only the teacher's samples count, with a decaying weight
        regularizer = inputs.regularizer or RegularizerInputs(None)
        if kind == "large_margin":
            loss = large_margin_loss(batch_q, batch.action, margin, regularizer.mask)
        else:
            loss = cql_loss(batch_q, batch.action, regularizer.mask)
        scale = 1.0 if regularizer.scale is None else regularizer.scale
        return scale * weight * loss, {f"{kind}_loss": loss}

    return term
