"""Config grids with the Explorer/MeDQN sweep semantics.

A grid is a JSON dict whose values are lists of alternatives; an element of a list may be a dict
whose values are again lists (a sub-grid). ``N`` is the number of combinations. Index ``i``
(1-based) decodes with the first key varying fastest; ``i + k*N`` is run ``k`` of the same
combination. For convenience a scalar or a bare dict stands for a one-element list.

The key ``with`` varies several keys together: each of its alternatives is a sub-grid whose keys
(usually paths such as ``model/kind``) land at the level of ``with`` itself, e.g. one alternative
per agent with its own step size, temperature and batch size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from frugalrl.errors import GridError

JOINT_KEY = "with"  # its alternatives' keys apply at its own level


def _alternatives(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def count_dict(grid: dict[str, Any]) -> int:
    """Number of combinations of a grid dict: the product over its keys."""
    total = 1
    for key, value in grid.items():
        if value == []:
            raise GridError(f"config key '{key}' has no alternatives ([]); give it at least one value")
        total *= count_list(_alternatives(value))
    return total


def count_list(alternatives: list[Any]) -> int:
    """Number of slots of a list: 1 per plain element, the combinations of each sub-grid."""
    if not alternatives:
        raise GridError("a grid list must hold at least one alternative, got []")
    return sum(count_dict(a) if isinstance(a, dict) else 1 for a in alternatives)


def _decode_list(alternatives: list[Any], choice: int) -> Any:
    for alternative in alternatives:
        width = count_dict(alternative) if isinstance(alternative, dict) else 1
        if choice < width:
            return decode_dict(alternative, choice) if isinstance(alternative, dict) else alternative
        choice -= width
    raise AssertionError("choice out of range")  # unreachable: choice < count_list


def decode_dict(grid: dict[str, Any], index: int) -> dict[str, Any]:
    """Decode a 0-based combination index; keys are walked in order, the first varying fastest."""
    out: dict[str, Any] = {}
    for key, value in grid.items():
        alternatives = _alternatives(value)
        width = count_list(alternatives)
        decoded = _decode_list(alternatives, index % width)
        index //= width
        if key == JOINT_KEY and isinstance(decoded, dict):
            for inner, inner_value in decoded.items():
                if inner in out or inner in grid:
                    raise GridError(f"config key '{inner}' is given both inside '{JOINT_KEY}' and outside it")
                out[inner] = inner_value
        else:
            out[key] = decoded
    return out


def expand_paths(config: dict[str, Any]) -> dict[str, Any]:
    """Turn path keys ('train/train_every': 4) into nested ones, merged with their section.

    A grid may name a nested key by its path at any position, so that the order of the keys (and
    so the meaning of each index) can follow another tool's grid even when our sections group the
    keys differently.
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        value = expand_paths(value) if isinstance(value, dict) else value
        *sections, leaf = key.split("/")
        node = out
        for depth, section in enumerate(sections):
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise GridError(f"'{'/'.join(sections[: depth + 1])}' is a value, so '{key}' cannot go inside it")
        if leaf in node and (isinstance(node[leaf], dict) and isinstance(value, dict)):
            for inner, inner_value in value.items():
                if inner in node[leaf]:
                    raise GridError(f"config key '{key}/{inner}' is given twice")
                node[leaf][inner] = inner_value
        elif leaf in node:
            raise GridError(f"config key '{key}' is given twice")
        else:
            node[leaf] = value
    return out


def decode(grid: dict[str, Any], config_idx: int) -> tuple[dict[str, Any], int]:
    """Return (combination, run) for a 1-based config index: run k for idx + k*N."""
    if isinstance(config_idx, bool) or not isinstance(config_idx, int) or config_idx < 1:
        raise GridError(f"--idx must be a positive integer (1-based), got {config_idx!r}")
    n = count_dict(grid)
    return expand_paths(decode_dict(grid, (config_idx - 1) % n)), (config_idx - 1) // n


MAX_DEPTH = 32  # nesting of a grid file: sections inside sub-grids inside 'with' stay far below this


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key given twice in one object is an error, not 'the last one wins'."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise GridError(f"config key '{key}' is given twice in the same object")
        out[key] = value
    return out


def _depth(value: Any) -> int:
    """Nesting depth of lists and dicts, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_grid(text: bytes, path: Path) -> Any:
    """Grid file bytes -> JSON value: UTF-8, no duplicate keys, nested at most MAX_DEPTH deep."""
    try:
        decoded = text.decode("utf-8-sig")  # a byte-order mark some editors write is fine
    except UnicodeDecodeError as error:
        raise GridError(
            f"{path} is not UTF-8 text (byte {error.start} is {text[error.start : error.start + 1]!r}); "
            "save it as UTF-8"
        ) from None
    try:
        grid = json.loads(decoded, object_pairs_hook=_refuse_duplicates)
    except json.JSONDecodeError as error:
        raise GridError(f"{path}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    except RecursionError:
        raise GridError(f"{path}: nested more than {MAX_DEPTH} levels deep") from None
    except GridError as error:
        raise GridError(f"{path}: {error}") from None
    if _depth(grid) > MAX_DEPTH:
        raise GridError(f"{path}: nested more than {MAX_DEPTH} levels deep")
    return grid


def load_grid(path: str | Path) -> dict[str, Any]:
    """Read a grid file; a clear GridError for a missing file, bad JSON or a non-dict top level."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise GridError(f"config file {path} does not exist") from None
    except OSError as error:
        raise GridError(f"cannot read config file {path}: {error.strerror}") from None
    grid = parse_grid(text, path)
    if not isinstance(grid, dict):
        raise GridError(f"{path}: the top level must be a JSON object of key -> [alternatives]")
    count_dict(grid)  # surfaces empty lists early
    return grid


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a/b': leaf}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def swept_keys(grid: dict[str, Any]) -> list[str]:
    """Leaf paths ('a/b') whose value differs between combinations, in grid order."""
    seen: dict[str, set[str]] = {}
    for index in range(count_dict(grid)):
        for path, value in flatten(decode_dict(grid, index)).items():  # grid order, path keys as written
            seen.setdefault(path, set()).add(json.dumps(value, sort_keys=True))
    return [path for path, values in seen.items() if len(values) > 1]
