"""Config grids (Explorer sweep semantics) and the schema of every key."""

from frugalrl.config.grid import count_dict, decode, flatten, load_grid, swept_keys
from frugalrl.config.match import check_same_config
from frugalrl.config.schema import SCHEMA, describe, resolve
from frugalrl.errors import ConfigError, GridError

__all__ = [
    "GridError",
    "ConfigError",
    "SCHEMA",
    "check_same_config",
    "count_dict",
    "decode",
    "describe",
    "flatten",
    "load_grid",
    "resolve",
    "swept_keys",
]
