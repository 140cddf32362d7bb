"""One run's config from a grid file: the combination of an index, its bookkeeping, validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frugalrl.config.grid import count_dict, decode, load_grid
from frugalrl.config.schema import resolve


def load_config(file: str | Path, idx: int) -> dict[str, Any]:
    """Decode and validate config ``idx`` of a grid file; raises GridError / ConfigError."""
    grid = load_grid(file)
    combination, run_index = decode(grid, idx)
    combination.update(config_idx=idx, num_combinations=count_dict(grid), run=run_index, experiment=Path(file).stem)
    return resolve(combination)


__all__ = ["load_config"]
