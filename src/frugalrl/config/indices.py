"""Config index lists as people and schedulers write them: ``1-180,361`` (Slurm's ``--array`` form).

``parse_indices`` reads ranges and single indices separated by commas (spaces are allowed too) and
checks them against the sweep's size; ``format_indices`` writes a sorted list back in the same
form, so ``frugal status`` output can be pasted into ``--idx`` or ``sbatch --array``.
"""

from __future__ import annotations

import re

from frugalrl.errors import GridError

_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_indices(text: str, limit: int) -> list[int]:
    """Sorted, distinct 1-based indices of ``text`` ('3', '1-180,361', '2 5-7'), each <= ``limit``."""
    parts = [part for part in re.split(r"[,\s]+", text.strip()) if part]
    if not parts:
        raise GridError("--idx is empty: give indices like 1-180,361")
    chosen: set[int] = set()
    for part in parts:
        match = _PART.match(part)
        if match is None:
            raise GridError(f"--idx part '{part}' is neither an index nor a range like 1-180")
        first, last = int(match[1]), int(match[2] or match[1])
        if first < 1 or last < first:
            raise GridError(f"--idx part '{part}': indices start at 1 and a range runs upwards")
        if last > limit:
            raise GridError(f"--idx part '{part}' goes past {limit}, the last index of this sweep")
        chosen.update(range(first, last + 1))
    return sorted(chosen)


def format_indices(indices: list[int]) -> str:
    """[1, 2, 3, 7, 9, 10] -> '1-3,7,9-10' (what parse_indices reads back)."""
    parts, ordered = [], sorted(set(indices))
    start = None
    for i, idx in enumerate(ordered):
        if start is None:
            start = idx
        if i + 1 == len(ordered) or ordered[i + 1] != idx + 1:
            parts.append(str(start) if start == idx else f"{start}-{idx}")
            start = None
    return ",".join(parts)


__all__ = ["format_indices", "parse_indices"]
