"""Checkpoints of the full training state: orbax for the arrays, a marker written last.

``checkpoints/{step}/`` holds ``state/`` (orbax), ``meta.json`` (host-side positions and a
checksum of every array) and, last of all, ``COMMITTED``. Only directories with the marker are
loaded; one whose arrays fail to restore or do not match their checksum is skipped with a
warning and the one before it is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

MARKER = "COMMITTED"
log = logging.getLogger("frugalrl")


class CheckpointError(RuntimeError):
    """No complete checkpoint could be restored."""


def checksum(tree: Any) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for leaf in jax.tree.leaves(tree):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _checkpointer() -> Any:
    import orbax.checkpoint as ocp  # imported lazily: ~1 s, and only runs that checkpoint need it

    return ocp.StandardCheckpointer()


def complete_steps(directory: Path) -> list[int]:
    """Steps of checkpoints whose marker exists, oldest first."""
    if not directory.is_dir():
        return []
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit() and (p / MARKER).exists()]
    return sorted(steps)


def save(directory: Path, step: int, state: Any, meta: dict[str, Any], keep: int) -> Path:
    """Write checkpoint ``step``; the marker goes last, then old checkpoints beyond ``keep`` go."""
    target = directory / str(step)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    host_state = jax.tree.map(np.asarray, state)
    checkpointer = _checkpointer()
    checkpointer.save((target / "state").absolute(), host_state)
    checkpointer.wait_until_finished()
    meta = {**meta, "step": step, "checksum": checksum(host_state)}
    _write_atomic(target / "meta.json", json.dumps(meta, indent=1))
    _write_atomic(target / MARKER, "")
    for old in complete_steps(directory)[:-keep]:
        shutil.rmtree(directory / str(old), ignore_errors=True)
    for partial in directory.iterdir():  # leftovers of a save that was killed
        if partial.name.isdigit() and not (partial / MARKER).exists() and partial != target:
            shutil.rmtree(partial, ignore_errors=True)
    return target


def restore_latest(directory: Path, like: Any) -> tuple[Any, dict[str, Any]] | None:
    """The newest complete checkpoint that restores and matches its checksum, or None if none exist."""
    steps = complete_steps(directory)
    problems = []
    for step in reversed(steps):
        path = directory / str(step)
        try:
            meta = json.loads((path / "meta.json").read_text())
            abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
            state = _checkpointer().restore((path / "state").absolute(), abstract)
            if checksum(state) != meta["checksum"]:
                raise ValueError("array checksum does not match the one saved")
            return state, meta
        except Exception as error:  # any unreadable checkpoint: fall back to the one before
            problems.append(f"{path}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            log.warning("checkpoint %s is unusable (%s); trying the one before it", path, problems[-1])
    if steps:
        raise CheckpointError(
            "no checkpoint could be restored:\n  "
            + "\n  ".join(problems)
            + "\nrerun with --fresh to start over (results so far will be replaced)"
        )
    return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
