"""Typed, frozen views of the config sections that hot code reads (built from a resolved config).

``cfg["train"]["train_every"]`` becomes ``TrainSection.of(cfg).train_every``: a typo is an
AttributeError where it is written, a type checker sees the types, and the field lists are
checked against the schema (tests/test_config.py), so a key added there cannot be forgotten here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Section")


class Section:
    name: ClassVar[str]  # the schema section it views

    @classmethod
    def of(cls: type[T], cfg: dict[str, Any]) -> T:
        section = cfg[cls.name]
        return cls(**{f.name: section[f.name] for f in fields(cls)})  # type: ignore[call-arg]


@dataclass(frozen=True)
class TrainSection(Section):
    name: ClassVar[str] = "train"
    learning_starts: int
    random_steps: int
    train_every: int
    gradient_steps: int
    epochs_per_batch: int
    priming_updates: int
    stale_obs_after_terminal: bool
    on_divergence: str


@dataclass(frozen=True)
class ReplaySection(Section):
    name: ClassVar[str] = "replay"
    capacity: int
    batch_size: int
    prioritized: bool
    priority_exponent: float
    importance_exponent: float
    td_batch: str


@dataclass(frozen=True)
class TargetSection(Section):
    """The value agent's target network and returns (part of the ``agent`` section)."""

    name: ClassVar[str] = "agent"
    gamma: float
    n_step: int
    bootstrap_truncation: bool
    target_every: int
    target_unit: str
    tau: float


SECTIONS: tuple[type[Section], ...] = (TrainSection, ReplaySection, TargetSection)

__all__ = ["ReplaySection", "SECTIONS", "Section", "TargetSection", "TrainSection"]
