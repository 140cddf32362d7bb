"""Value agents and loss terms; ``make_agent`` picks one from a resolved config."""

from __future__ import annotations

from typing import Any

from frugalrl.agents.consolidation import make_consolidation_term
from frugalrl.agents.ddpg import DDPG, DDPGState
from frugalrl.agents.distillation import make_distillation_term
from frugalrl.agents.dqn import DQN, DQNState
from frugalrl.agents.dyna import DynaDQN, DynaState
from frugalrl.agents.offline import make_regularizer_term
from frugalrl.agents.protocols import EpisodicAgent, ValueAgent
from frugalrl.agents.sac import SAC, SACState
from frugalrl.envs import EnvSpec


def make_agent(cfg: dict[str, Any], spec: EnvSpec, offline: bool = False) -> ValueAgent:
    """SAC or DDPG; a Dyna DQN trained on model rollouts (``model/kind``); or DQN with the loss terms
    the config switches on (MeDQN: consolidation, QDagger: distillation).

    ``offline``: the agent of the pretraining phase on teacher data: no consolidation (it needs the
    online loop's state sources), plus the ``pretraining/regularizer`` (DQfD's margin or CQL).
    """
    name = cfg["agent"]["name"]
    if name == "sac":
        return SAC(spec, cfg)
    if name == "ddpg":
        return DDPG(spec, cfg)
    if name != "dqn":
        raise ValueError(f"unknown agent {name}")  # the schema's choices make this unreachable
    if cfg["model"]["kind"] != "none":
        return DynaDQN(spec, cfg)  # the schema refuses the loss terms below with a model
    terms = []
    if cfg["consolidation"]["source"] != "off" and not offline:
        terms.append(make_consolidation_term(cfg, DQN(spec, cfg).q))  # on Q-values (C51: their means)
    if cfg["distillation"]["coefficient"] > 0:
        terms.append(make_distillation_term(cfg))
    online_regularizer = cfg["rehearsal"]["regularizer_decay_period"] > 0
    if cfg["pretraining"]["regularizer"] != "none" and (offline or online_regularizer):
        terms.append(make_regularizer_term(cfg))
    return DQN(spec, cfg, extra_losses=tuple(terms))


__all__ = [
    "DDPG",
    "DDPGState",
    "DQN",
    "DQNState",
    "DynaDQN",
    "DynaState",
    "EpisodicAgent",
    "SAC",
    "SACState",
    "ValueAgent",
    "make_agent",
]
