"""Value agents and loss terms; ``make_agent`` picks one from a resolved config."""

from __future__ import annotations

from typing import Any

from frugalrl.agents.dqn import DQN, DQNState
from frugalrl.envs import EnvSpec


def make_agent(cfg: dict[str, Any], spec: EnvSpec) -> DQN:
    name = cfg["agent"]["name"]
    if name == "dqn":
        return DQN(spec, cfg)
    raise ValueError(f"unknown agent {name}")  # the schema's choices make this unreachable


__all__ = ["DQN", "DQNState", "make_agent"]
