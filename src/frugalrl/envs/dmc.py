"""The DeepMind Control Suite on the host (dm-control), as SR-SAC uses it.

Tasks are named ``domain-task`` (``cheetah-run``, ``finger-turn_hard``); observations are the
task's observation dict flattened in its own key order to float32; actions arrive in [-1, 1] and
are mapped linearly onto the task's bounds; an episode ends *truncated* at the time limit (1000
steps) unless the task reports a terminal state (discount 0). Each env is seeded with its own
seed (the original's list of lambdas gave every env the last seed; quirk Q1).

dm-control is an optional dependency: ``pip install -e ".[dmc]"``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from frugalrl.envs.registry import unit_to_bounds

# the 15 tasks of DMC15-500k (the README's running-time table; also the REDQ baseline list)
DMC15 = (
    "acrobot-swingup",
    "cheetah-run",
    "finger-turn_hard",
    "fish-swim",
    "hopper-hop",
    "hopper-stand",
    "humanoid-run",
    "humanoid-stand",
    "humanoid-walk",
    "pendulum-swingup",
    "quadruped-run",
    "quadruped-walk",
    "reacher-hard",
    "swimmer-swimmer6",
    "walker-run",
)
DMC_PATTERN = re.compile(r"^(?P<domain>[a-z_]+)-(?P<task>[a-z0-9_]+)$")
INSTALL_HINT = 'the DeepMind Control Suite needs dm-control: pip install -e ".[dmc]"'


def _suite() -> Any:
    os.environ.setdefault("MUJOCO_GL", "disable")  # state observations only: no renderer
    try:
        from dm_control import suite
    except ImportError as error:
        raise KeyError(f"{INSTALL_HINT} ({error})") from None
    return suite


def split_name(name: str) -> tuple[str, str]:
    """'finger-turn_hard' -> ('finger', 'turn_hard'); KeyError for a task the suite does not have."""
    match = DMC_PATTERN.match(name)
    if match is None:
        raise KeyError(f"'{name}' is not a DeepMind Control task name (domain-task)")
    domain, task = match["domain"], match["task"]
    known = set(_suite().ALL_TASKS)
    if (domain, task) not in known:
        raise KeyError(f"the DeepMind Control Suite has no task '{name}'")
    return domain, task


@dataclass(frozen=True)
class HostSpec:
    obs_dim: int
    action_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    max_episode_steps: int


class DMCEnv:
    """One dm-control task instance: ``reset() -> obs``, ``step(action) -> (obs, reward, terminated, truncated)``."""

    def __init__(self, name: str, seed: int) -> None:
        domain, task = split_name(name)
        self.name = name
        self._env = _suite().load(domain, task, task_kwargs={"random": int(seed)})
        action = self._env.action_spec()
        obs_dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        limit = self._env._step_limit  # the time limit the suite set (1000 steps for the benchmark tasks)
        self.spec = HostSpec(
            obs_dim,
            int(np.prod(action.shape)),
            action.minimum.astype(np.float64),
            action.maximum.astype(np.float64),
            int(limit) if np.isfinite(limit) else 1000,
        )

    @staticmethod
    def _flatten(observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(v, np.float32).reshape(-1) for v in observation.values()])

    def reset(self) -> np.ndarray:
        return self._flatten(self._env.reset().observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        step = self._env.step(
            unit_to_bounds(np.asarray(action, np.float64), self.spec.action_low, self.spec.action_high)
        )
        terminated = step.last() and step.discount == 0.0
        return self._flatten(step.observation), float(step.reward or 0.0), terminated, step.last() and not terminated

    def rng_state(self) -> tuple[Any, ...]:
        """The task's random state, which the next ``reset`` draws its initial state from."""
        return self._env.task.random.get_state()

    def set_rng_state(self, state: tuple[Any, ...]) -> None:
        self._env.task.random.set_state(state)
