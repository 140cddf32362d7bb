"""Memory-RL's training budgets (its ``budget.py``): training episodes per task and length.

Total env steps of a run = (random episodes + training episodes) · T. A config leaves
``episodic/train_episodes`` null to use these, so a sweep over lengths is one grid.
"""

from __future__ import annotations

import re

TRAIN_EPISODES: dict[str, dict[int, int]] = {
    "PassiveTMaze": {50: 20000, 100: 20000, 250: 16000, 500: 8000, 750: 8000, 1000: 8000, 1250: 8000, 1500: 6700},
    "ActiveTMaze": {20: 40000, 50: 40000, 100: 40000, 250: 32000, 500: 16000},
    "PassiveVisualMatch": {60: 40000, 120: 30000, 250: 15000, 500: 10000, 750: 10000, 1000: 10000},
    "KeyToDoor": {60: 40000, 120: 40000, 250: 30000, 500: 15000},
}
_NAME = re.compile(r"^(?P<family>[A-Za-z]+)-(?P<length>[0-9]+)$")


def budget_episodes(env_name: str) -> int:
    """Training episodes of the paper's budget for ``env_name``; KeyError naming the known lengths."""
    match = _NAME.match(env_name)
    family = match["family"] if match else env_name
    if match is None or family not in TRAIN_EPISODES:
        raise KeyError(f"Memory-RL's budget table has no task '{env_name}'; set 'episodic/train_episodes'")
    table = TRAIN_EPISODES[family]
    length = int(match["length"])
    if length not in table:
        known = ", ".join(str(n) for n in table)
        raise KeyError(
            f"Memory-RL's budget for {family} covers lengths {known}, not {length}; set 'episodic/train_episodes'"
        )
    return table[length]
