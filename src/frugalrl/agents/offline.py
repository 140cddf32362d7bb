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

REGULARIZERS = ("none", "large_margin", "cql")


def _taken(q: jax.Array, actions: jax.Array) -> jax.Array:
    return jnp.take_along_axis(q, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


def large_margin_loss(q: jax.Array, actions: jax.Array, margin: float) -> jax.Array:
    """DQfD's supervised loss; 0 once the data's action leads every other by ``margin``."""
    penalty = margin * (jnp.arange(q.shape[-1]) != actions[..., None]).astype(q.dtype)
    return jnp.mean(jnp.max(q + penalty, axis=-1) - _taken(q, actions))


def cql_loss(q: jax.Array, actions: jax.Array) -> jax.Array:
    """Discrete CQL's regulariser: soft maximum of Q minus Q of the data's action."""
    return jnp.mean(jax.nn.logsumexp(q, axis=-1) - _taken(q, actions))


def make_regularizer_term(cfg: dict[str, Any]):
    """The LossTerm of ``pretraining/regularizer`` on the TD batch (``batch_q``, ``batch_action``)."""
    pcfg = cfg["pretraining"]
    kind, weight, margin = pcfg["regularizer"], pcfg["regularizer_weight"], pcfg["margin"]

    def term(params: Any, target_params: Any, aux: dict[str, jax.Array], key: jax.Array):
        if kind == "large_margin":
            loss = large_margin_loss(aux["batch_q"], aux["batch_action"], margin)
        else:
            loss = cql_loss(aux["batch_q"], aux["batch_action"])
        return weight * loss, {f"{kind}_loss": loss}

    return term
