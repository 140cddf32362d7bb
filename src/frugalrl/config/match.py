"""Is a run directory's saved config the config a grid names? The same test for resuming and for analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frugalrl.config.grid import flatten
from frugalrl.config.schema import describe
from frugalrl.errors import ConfigError


def check_same_config(saved: dict[str, Any], cfg: dict[str, Any], run_path: Path) -> None:
    """Refuse to resume or report a run directory that holds another config (bookkeeping keys aside)."""
    ignore = {"config_idx", "num_combinations", "run", "experiment", "frugalrl_version"}
    if cfg.get("generate_random_seed"):
        ignore.add("seed")
    old, new = flatten(saved), flatten(cfg)
    # a key added to the schema after the run was saved keeps the old behaviour at its default
    defaults = {path: default for path, default, _ in describe()}
    for key in sorted(set(old) | set(new)):
        if key not in old and key in defaults and new.get(key) == defaults[key]:
            continue
        if key not in ignore and old.get(key, "<absent>") != new.get(key, "<absent>"):
            raise ConfigError(
                f"{run_path} holds a run of a different config ('{key}': {old.get(key, '<absent>')!r} -> "
                f"{new.get(key, '<absent>')!r}); rerun with --fresh to replace it, or use another --logs directory"
            )


__all__ = ["check_same_config"]
