"""The typed contract between the loops and a value agent's loss: what an update receives.

A value agent's loss is its TD loss plus the loss terms its config switches on (MeDQN's
consolidation, QDagger's distillation, DQfD's or CQL's regulariser). The loop prepares each
term's inputs (``LossInputs``); every field is optional, None when its method is off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from frugalrl.replay.fifo import Batch


class ConsolidationInputs(NamedTuple):
    """MeDQN: the states the online Q is pulled toward the target Q on, and the weight λ_t."""

    states: jax.Array  # [C, *obs_shape]
    weight: jax.Array  # []


class DistillationInputs(NamedTuple):
    """QDagger: the teacher's Q on the TD batch's states and the weight λ·α."""

    teacher_q: jax.Array  # [B, actions]
    weight: jax.Array  # []


class RegularizerInputs(NamedTuple):
    """DQfD / CQL online (rehearsal): which examples are the teacher's, and the decaying weight."""

    mask: jax.Array | None  # [B] 1.0 for the teacher's examples; None: every example counts
    scale: jax.Array | None = None  # [] the decaying weight; None: 1


class LossInputs(NamedTuple):
    sample_weights: jax.Array | None = None  # [B] prioritized replay's importance weights
    td_weight: jax.Array | None = None  # [] 0 switches the TD loss off (pure distillation pretraining)
    consolidation: ConsolidationInputs | None = None
    distillation: DistillationInputs | None = None
    regularizer: RegularizerInputs | None = None


# (params, target_params, batch_q, batch, inputs, key) -> (loss, metrics), added to the TD loss;
# ``batch_q`` is the online Q on the TD batch's states, computed once for every term
LossTerm = Callable[[Any, Any, jax.Array, Batch, LossInputs, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]

__all__ = ["ConsolidationInputs", "DistillationInputs", "LossInputs", "LossTerm", "RegularizerInputs"]
