"""Which configs of a sweep can share one program: hyperparameter packing's plan.

Two configs can run as one program, a hyperparameter axis beside the seed axis, when they differ
only in keys the schema marks ``vmappable`` (numbers that enter the program as data: learning rates,
the consolidation weight's schedule, discounts, epsilons, ...) and agree on what such a value still
decides about the program (a distillation coefficient of 0 switches a loss off). ``pack_groups``
buckets a sweep's indices by everything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from frugalrl.config.grid import flatten
from frugalrl.config.load import load_config
from frugalrl.config.schema import vmappable_keys

BOOKKEEPING = ("config_idx", "run", "num_combinations", "experiment")  # where a run's results go, not its program


class PackGroup(NamedTuple):
    indices: list[int]
    varying: dict[str, list[Any]]  # the vmappable keys whose values differ inside the group
    shared: dict[str, Any]  # the swept keys that are the same for the whole group


def program_key(cfg: dict[str, Any]) -> str:
    """What decides a config's program: every key but the bookkeeping, vmappable keys reduced to the
    part of their value that still shapes the program."""
    flat, packable = flatten(cfg), vmappable_keys()
    shape = {key: (packable[key](value) if key in packable else value) for key, value in flat.items()}
    return json.dumps({key: value for key, value in shape.items() if key not in BOOKKEEPING}, sort_keys=True)


def in_order(value: Any) -> tuple[int, float, str]:
    """Numbers by value (1.25e-05 before 0.0001), then anything else by its text."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return (0, float(value), "") if number else (1, 0.0, str(value))


def pack_groups(file: str | Path, indices: list[int], swept: list[str]) -> list[PackGroup]:
    """The indices bucketed into programs, in order of their first index; ``swept``: the grid's
    swept keys, to say which differ inside a group and which the group shares."""
    configs: dict[int, dict[str, Any]] = {}
    buckets: dict[str, list[int]] = {}
    for idx in indices:
        cfg = load_config(file, idx)
        configs[idx] = flatten(cfg)
        buckets.setdefault(program_key(cfg), []).append(idx)
    groups = []
    for members in buckets.values():
        values = {key: [configs[idx].get(key) for idx in members] for key in swept}
        varying = {key: sorted(set(v), key=in_order) for key, v in values.items() if len(set(map(str, v))) > 1}
        shared = {key: v[0] for key, v in values.items() if key not in varying}
        groups.append(PackGroup(members, varying, shared))
    return groups


__all__ = ["BOOKKEEPING", "PackGroup", "pack_groups", "program_key"]
