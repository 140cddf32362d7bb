"""One batch sampler for every loop: uniform, the whole buffer, prioritized, or rehearsal.

``replay/td_batch`` 'all' takes the whole (small) buffer, oldest first (MeDQN); ``replay/prioritized``
draws in proportion to priority with importance weights (Rainbow); ``rehearsal/fraction`` > 0
takes that share of each batch from the teacher's data (QDagger's rehearsal baseline, DQfD);
otherwise a batch is uniform with replacement. Every kind returns n-step transitions cut at
episode ends (``agent/n_step``, ``gamma``, ``bootstrap_truncation``).

Single-seed functions: the loops ``vmap`` them over seeds with ``count`` shared (the teacher's
data, when rehearsal uses it, has no seed axis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from frugalrl.config.sections import ReplaySection, TargetSection
from frugalrl.replay import fifo, prioritized
from frugalrl.replay.fifo import Batch, ReplayState


class Sample(NamedTuple):
    """A TD batch and what its sampling tells the loss and the priorities."""

    batch: Batch
    weights: jax.Array | None = None  # [B] prioritized replay's importance weights
    ages: jax.Array | None = None  # [B] prioritized replay: the sampled transitions, oldest = 0
    from_teacher: jax.Array | None = None  # [B] rehearsal: 1.0 where the example is the teacher's


@dataclass(frozen=True)
class BatchSampler:
    kind: str  # "uniform" | "all" | "prioritized" | "rehearsal"
    batch_size: int
    n_step: int = 1
    gamma: float = 0.99
    bootstrap_truncation: bool = True
    teacher_share: int = 0  # rehearsal: examples of each batch from the teacher's data
    teacher_count: int = 0  # rehearsal: transitions written into the teacher's data
    priority_exponent: float = 0.5
    importance_exponent: float = 0.5

    @classmethod
    def from_config(cls, cfg: dict[str, Any], teacher_count: int = 0) -> BatchSampler:
        target, replay, fraction = TargetSection.of(cfg), ReplaySection.of(cfg), cfg["rehearsal"]["fraction"]
        teacher_share = round(fraction * replay.batch_size) if fraction > 0 else 0
        if replay.prioritized:
            kind = "prioritized"
        elif teacher_share:
            kind = "rehearsal"
        else:
            kind = "all" if replay.td_batch == "all" else "uniform"
        return cls(
            kind,
            replay.batch_size,
            target.n_step,
            target.gamma,
            target.bootstrap_truncation,
            teacher_share,
            teacher_count,
            replay.priority_exponent,
            replay.importance_exponent,
        )

    @property
    def returns(self) -> dict[str, Any]:
        return dict(n_step=self.n_step, gamma=self.gamma, bootstrap_truncation=self.bootstrap_truncation)

    def sample(
        self, replay: ReplayState, key: jax.Array, count: jax.Array, priorities: Any = (), teacher_data: Any = None
    ) -> Sample:
        """A batch from ``replay`` (``count`` transitions written so far)."""
        if self.kind == "all":
            return Sample(fifo.get(replay, count, **self.returns))
        if self.kind == "prioritized":
            ages, probabilities = prioritized.sample_ages(priorities, replay, key, count, self.batch_size)
            held = fifo.size(replay, count)
            weights = prioritized.importance_weights(probabilities, held, self.importance_exponent)
            return Sample(fifo.gather(replay, count, ages, **self.returns), weights, ages)
        if self.kind == "rehearsal":
            own_key, teacher_key = jax.random.split(key)
            own = fifo.sample(replay, own_key, count, self.batch_size - self.teacher_share, **self.returns)
            theirs = fifo.sample(teacher_data, teacher_key, self.teacher_count, self.teacher_share, **self.returns)
            batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), own, theirs)
            from_teacher = (jnp.arange(self.batch_size) >= self.batch_size - self.teacher_share).astype(jnp.float32)
            return Sample(batch, from_teacher=from_teacher)
        return Sample(fifo.sample(replay, key, count, self.batch_size, **self.returns))

    def reprioritize(
        self, priorities: Any, replay: ReplayState, count: jax.Array, sample: Sample, losses: jax.Array
    ) -> Any:
        """Prioritized replay: the sampled transitions' new priorities from their losses; others: as they are."""
        if self.kind != "prioritized":
            return priorities
        held = fifo.size(replay, count)
        return prioritized.update(priorities, count, held, sample.ages, losses, self.priority_exponent)


__all__ = ["BatchSampler", "Sample"]
