"""Teacher distillation (QDagger, Agarwal et al. 2022) as a loss term any value agent can add.

The student is pulled toward a frozen teacher Q-network on the states of its TD batch:

* ``policy`` (the paper's default): ``KL(π_T ‖ π)`` with ``π_T = softmax(Q_T/τ)``,
  ``π = softmax(Q_θ/τ)``, summed over actions, averaged over the batch. Its gradient in θ equals
  the cross-entropy's, since ``π_T`` does not depend on θ;
* ``value``: MSE between ``Q_θ`` and ``Q_T`` averaged over actions;
* ``policy_and_value``: their sum;
* ``best_action``: cross-entropy to the teacher's greedy action.

The total loss is ``L_TD + λ_t · α · L_distill``. ``α`` is fixed (3 for DQN); ``λ_t`` follows
the student's evaluation scores (``qdagger_lambda``) and is a traced scalar, so changing it never
recompiles. The learning rate is tied to it: ``lr = λ · lr_high + (1 − λ) · lr_low``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from frugalrl.agents.losses import DistillationInputs, LossInputs, LossTerm
from frugalrl.devices import seed_vmap
from frugalrl.replay.fifo import Batch

KINDS = ("policy", "value", "policy_and_value", "best_action")


def distillation_loss(
    student_q: jax.Array, teacher_q: jax.Array, temperature: float, kind: str, weights: jax.Array | None = None
) -> jax.Array:
    """Batch-mean distillation loss of ``student_q`` [B, A] toward ``teacher_q`` [B, A]
    (weighted by ``weights`` [B], prioritized replay's importance weights, when given)."""
    teacher_q = jax.lax.stop_gradient(teacher_q)
    log_student = jax.nn.log_softmax(student_q / temperature, axis=-1)
    if kind == "best_action":
        best = jnp.argmax(teacher_q, axis=-1)
        per_example = -jnp.take_along_axis(log_student, best[..., None], axis=-1)[..., 0]
    else:
        log_teacher = jax.nn.log_softmax(teacher_q / temperature, axis=-1)
        policy = jnp.sum(jnp.exp(log_teacher) * (log_teacher - log_student), axis=-1)
        value = jnp.mean((student_q - teacher_q) ** 2, axis=-1)
        per_example = {"policy": policy, "value": value, "policy_and_value": policy + value}[kind]
    return jnp.mean(per_example) if weights is None else jnp.mean(weights * per_example)


def normalized_score(score: float, random_score: float, teacher_score: float) -> float:
    """(G − G_random) / (G_teacher − G_random + 1e-8): 0 at random play, 1 at the teacher's level."""
    return (score - random_score) / (teacher_score - random_score + 1e-8)


def qdagger_lambda(lam: float, normalized: float, online_steps: int, decay_period: int) -> float:
    """The distillation weight after an evaluation of the student (Agarwal et al. 2022, §B2).

    While λ > 0 it becomes ``max(1 − normalized, 0)`` (it can rise again if a score drops); once
    it reaches 0 it stays 0, and it is 0 from ``decay_period`` online steps on.
    """
    if lam <= 0.0 or online_steps > decay_period:
        return 0.0
    return max(1.0 - normalized, 0.0)


def tied_learning_rate(lam: float | jax.Array, lr_high: float, lr_low: float) -> float | jax.Array:
    """lr = λ · lr_high + (1 − λ) · lr_low: high while distilling, low once the student is weaned."""
    return lam * lr_high + (1.0 - lam) * lr_low


def batch_inputs(
    teacher_q: Any, teacher: Any, obs: jax.Array, lam: jax.Array, coefficient: float, unrolled: bool = False
) -> DistillationInputs:
    """Seed-batched: the teacher's Q on the TD batch's states and the weight λ·α of every seed
    (``unrolled``: one seed after another, as ``devices.seed_vmap``).

    The teacher's forward pass is skipped once every seed's λ is 0 (a branch on a predicate all
    seeds share, so it stays a real branch).
    """
    q_values = seed_vmap(teacher_q.apply, unrolled=unrolled)
    values = jax.lax.cond(
        jnp.any(lam > 0),
        lambda: q_values(teacher, obs),
        lambda: jnp.zeros(jax.eval_shape(q_values, teacher, obs).shape, jnp.float32),
    )
    return DistillationInputs(values, lam * coefficient)


def make_distillation_term(cfg: dict[str, Any]) -> LossTerm:
    """The loss term of ``distillation``: λ·α times the loss of the student's Q on its TD batch
    (``batch_q``) toward ``inputs.distillation.teacher_q``, weighted by prioritized replay's weights."""
    dcfg = cfg["distillation"]
    temperature, kind = dcfg["temperature"], dcfg["kind"]

    def term(params: Any, target_params: Any, batch_q: jax.Array, batch: Batch, inputs: LossInputs, key: jax.Array):
        teacher_q, weight = inputs.distillation
        loss = distillation_loss(batch_q, teacher_q, temperature, kind, inputs.sample_weights)
        return weight * loss, {"distillation_loss": loss}

    return term
