"""Value agents and loss terms; ``make_agent`` picks one from a resolved config."""

from __future__ import annotations

from typing import Any

from frugalrl.agents.consolidation import make_consolidation_term
from frugalrl.agents.distillation import make_distillation_term
from frugalrl.agents.dqn import DQN, DQNState
from frugalrl.envs import EnvSpec
from frugalrl.nets import make_q_network


def make_agent(cfg: dict[str, Any], spec: EnvSpec) -> DQN:
    """The value agent with the loss terms the config switches on (MeDQN: + consolidation, QDagger: + distillation)."""
    name = cfg["agent"]["name"]
    if name != "dqn":
        raise ValueError(f"unknown agent {name}")  # the schema's choices make this unreachable
    terms = []
    if cfg["consolidation"]["source"] != "off":
        network = make_q_network(cfg["network"], spec.obs_shape, spec.num_actions)
        terms.append(make_consolidation_term(cfg, network))
    if cfg["distillation"]["coefficient"] > 0:
        terms.append(make_distillation_term(cfg))
    return DQN(spec, cfg, extra_losses=tuple(terms))


__all__ = ["DQN", "DQNState", "make_agent"]
