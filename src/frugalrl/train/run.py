"""Run one resolved config: pick the loop its environment and agent need, and let a run session drive it.

- ``flat``: JAX environments, jitted end to end (classic control, MinAtar, the model-based suites);
- ``host``: environments that live on the host, one per seed (the DeepMind Control Suite);
- ``atari``: Atari games in ale-py's vector env, one per seed, frames stacked on the device;
- ``episodic``: memory agents, which collect and learn from whole episodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frugalrl import envs
from frugalrl.config.schema import EPISODIC_AGENTS
from frugalrl.train.session import Loop, RunSession, Summary


def make_loop(cfg: dict[str, Any]) -> Loop:
    """The loop for a config (its env and agent built; nothing written yet)."""
    if cfg["agent"]["name"] in EPISODIC_AGENTS:  # memory agents learn from whole episodes
        from frugalrl.train.episodic import EpisodicLoop

        return EpisodicLoop(cfg)
    family = envs.host_family(cfg["env"]["name"])
    if family == "atari":
        from frugalrl.train.atari import AtariLoop

        return AtariLoop(cfg)
    if family == "dmc":  # the DeepMind Control Suite: one host env per seed
        from frugalrl.train.host import HostLoop

        return HostLoop(cfg)
    from frugalrl.train.flat import FlatLoop

    return FlatLoop(cfg)


def run(
    cfg: dict[str, Any],
    run_path: Path,
    *,
    fresh: bool = False,
    retry: bool = False,
    progress: bool = True,
    echo: Any = None,
    stops: list[int] | None = None,
    unless_finished: bool = False,
) -> Summary:
    """Train (or resume) a run of a resolved config in ``run_path``; ``retry``: resume one that failed;
    ``stops``: the list stop signals are noted in (``runs.stops``), if they already are;
    ``unless_finished``: RunAlreadyFinished instead if the run is finished once its lock is held."""
    session = RunSession(
        cfg,
        run_path,
        fresh=fresh,
        retry=retry,
        progress=progress,
        echo=echo,
        stops=stops,
        unless_finished=unless_finished,
    )
    try:
        return session.train(make_loop(session.cfg))
    finally:
        session.close()


__all__ = ["make_loop", "run"]
