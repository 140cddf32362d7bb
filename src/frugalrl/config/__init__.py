"""Config grids (Explorer sweep semantics) and the schema of every key."""

from frugalrl.config.grid import count_dict, decode, flatten, load_grid, swept_keys
from frugalrl.config.indices import format_indices, parse_indices
from frugalrl.config.load import load_config
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
    "format_indices",
    "load_config",
    "load_grid",
    "parse_indices",
    "resolve",
    "swept_keys",
]
