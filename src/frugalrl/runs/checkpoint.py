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
import re
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from frugalrl.errors import CheckpointError
from frugalrl.runs.rundir import write_atomic

MARKER = "COMMITTED"
log = logging.getLogger("frugalrl")


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


def recorded_devices(directory: Path) -> int | None:
    """The XLA host device count the newest complete checkpoint was written with (None: none recorded)."""
    for step in reversed(complete_steps(directory)):
        try:
            return int(json.loads((directory / str(step) / "meta.json").read_text())["xla_devices"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def save(directory: Path, step: int, state: Any, meta: dict[str, Any], keep: int) -> Path:
    """Write checkpoint ``step``; the marker goes last, then old checkpoints beyond ``keep`` go."""
    target = directory / str(step)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    host_state = jax.tree.map(np.asarray, state)
    try:
        checkpointer = _checkpointer()
        checkpointer.save((target / "state").absolute(), host_state)
        checkpointer.wait_until_finished()
        meta = {**meta, "step": step, "checksum": checksum(host_state)}
        text = json.dumps(meta, indent=1)
        write_atomic(target / "meta.json", text, sync=True)
        write_atomic(target / MARKER, _text_digest(text), sync=True)  # the marker vouches for meta.json too
    except BaseException as error:  # a half-written checkpoint is removed; the one before stays
        shutil.rmtree(target, ignore_errors=True)
        if isinstance(error, Exception):
            raise _os_error(error, target) from None
        raise
    prune(directory, keep)
    return target


def prune(directory: Path, keep: int) -> None:
    """Remove complete checkpoints beyond the newest ``keep`` and what a killed save left (a folder
    without its marker). Run after each save, and on resume: a run killed between its last save
    and this clean-up would otherwise keep one checkpoint too many for good."""
    for old in complete_steps(directory)[:-keep]:
        shutil.rmtree(directory / str(old), ignore_errors=True)
    for partial in directory.iterdir():
        if partial.name.isdigit() and not (partial / MARKER).exists():
            shutil.rmtree(partial, ignore_errors=True)


def _text_digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def restore_latest(
    directory: Path, like: Any, at: int | None = None, warn: Any = None
) -> tuple[Any, dict[str, Any]] | None:
    """The newest complete checkpoint (or the one of step ``at``) that restores and matches its
    checksums and ``like``'s shapes, or None if none exist; each one passed over is logged and
    given to ``warn``."""
    steps = complete_steps(directory)
    if at is not None:
        steps = [step for step in steps if step == at]
    problems = []
    for step in reversed(steps):
        path = directory / str(step)
        try:
            text = (path / "meta.json").read_text()
            marker = (path / MARKER).read_text().strip()
            if marker and marker != _text_digest(text):  # an empty marker: written before meta.json had one
                raise ValueError("meta.json does not match the digest in its COMMITTED marker (edited?)")
            meta = json.loads(text)
            abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
            state = _restore(path / "state", abstract)
            if checksum(state) != meta["checksum"]:
                raise ValueError("array checksum does not match the one saved")
            return state, meta
        except Exception as error:  # any unreadable checkpoint: fall back to the one before
            problems.append(f"{path}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            message = f"checkpoint {path} is unusable ({problems[-1]}); trying the one before it"
            (warn or log.warning)(message)  # a run's warn: into its own log.txt and onto the screen
    if steps:
        raise CheckpointError(
            "no checkpoint could be restored:\n  "
            + "\n  ".join(problems)
            + "\nrerun with --fresh to start over (results so far will be replaced)"
        )
    return None


def _path_names(path: tuple[Any, ...]) -> tuple[str, ...]:
    """A tree path as plain names: NamedTuple fields, dict keys and sequence indices alike."""
    names = []
    for entry in path:
        for attr in ("name", "key", "idx"):
            if hasattr(entry, attr):
                names.append(str(getattr(entry, attr)))
                break
    return tuple(names)


def _restore(path: Path, abstract: Any) -> Any:
    """Restore into ``abstract``'s structure. A checkpoint written before the state gained new,
    empty fields (e.g. a teacher run saved by an older frugalrl) is matched leaf by leaf by name;
    any other difference in structure, shape or dtype is an error."""
    checkpointer = _checkpointer()
    try:
        return _same_shapes(checkpointer.restore(path.absolute(), abstract), abstract)
    except ValueError as error:
        if "structure" not in str(error):
            raise
    raw = checkpointer.restore(path.absolute())
    found = {_path_names(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(raw)[0]}
    wanted, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    if len(found) != len(wanted):
        raise ValueError(f"the checkpoint holds {len(found)} arrays where this state has {len(wanted)}")
    leaves = []
    for p, spec in wanted:
        name = _path_names(p)
        if name not in found:
            raise ValueError(f"the checkpoint has no array {'/'.join(name)}")
        leaf = np.asarray(found[name])
        if leaf.shape != spec.shape or leaf.dtype != spec.dtype:
            raise ValueError(f"array {'/'.join(name)} is {leaf.shape} {leaf.dtype}, expected {spec.shape} {spec.dtype}")
        leaves.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _same_shapes(state: Any, abstract: Any) -> Any:
    """``state``, or ValueError naming the first array whose shape or dtype is not what the config builds
    (orbax restores the saved shape whatever it is asked for)."""
    wanted = jax.tree_util.tree_flatten_with_path(abstract)[0]
    for (path, spec), leaf in zip(wanted, jax.tree.leaves(state), strict=True):
        if tuple(leaf.shape) != tuple(spec.shape) or leaf.dtype != spec.dtype:
            name = "/".join(_path_names(path))
            raise ValueError(
                f"array {name} is {tuple(leaf.shape)} {leaf.dtype}, the config builds "
                f"{tuple(spec.shape)} {spec.dtype} (a changed config?)"
            )
    return state


def _os_error(error: Exception, target: Path) -> Exception:
    """The OSError behind a failed save (orbax reports tensorstore's as a ValueError quoting the
    code), so that a full disk reads as one; any other error as it was."""
    seen: Exception | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    code = re.search(r"os_error_code='(\d+)'", str(error))
    if code:
        return OSError(int(code[1]), os.strerror(int(code[1])), str(target))
    return error
