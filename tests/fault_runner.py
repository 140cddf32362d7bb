"""The ``frugal`` CLI, killed with SIGKILL at one of the places where a run writes its directory.

    python tests/fault_runner.py BOUNDARY[:before|:after] N -- run CONFIG --logs DIR --no-progress
    python tests/fault_runner.py count -- run CONFIG --logs DIR --no-progress

Before ``frugalrl.cli.main(args)`` runs, these write boundaries are wrapped (each call counted once):

- ``RunDir.write_config``: config.json;
- ``CsvLog.open``, ``CsvLog.write``, ``CsvLog.flush``: a result CSV started (or cut back on resume),
  rows handed to its buffer, rows forced to disk;
- ``os.replace``: every rename frugalrl makes (config.json, a CSV cut back on resume, a checkpoint's
  meta.json and its COMMITTED marker);
- ``orbax.save``: the orbax write of a checkpoint's arrays (``after``: orbax goes on writing in the
  background, so the kill lands mid-write, before ``wait_until_finished``);
- ``shutil.rmtree``: the removals checkpoint.py makes (checkpoints beyond ``keep``, partial ones).

With ``N`` the process sends itself SIGKILL just before (the default) or just after the N-th call of
the boundary. ``count`` runs to the end and prints, as its last line on stdout, ``COUNTS`` followed
by a JSON object: for each boundary, what each of its calls wrote, in order.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BOUNDARIES = (
    "RunDir.write_config",
    "CsvLog.open",
    "CsvLog.write",
    "CsvLog.flush",
    "os.replace",
    "orbax.save",
    "shutil.rmtree",
)
COUNTS = "fault_runner counts: "


class Trigger:
    """Counts the calls of every boundary; kills this process at the chosen one (None: never)."""

    def __init__(self, boundary: str | None, when: str = "before", n: int = 0) -> None:
        self.boundary, self.when, self.n = boundary, when, n
        self.calls: dict[str, list[str]] = {name: [] for name in BOUNDARIES}

    def hit(self, boundary: str, label: str, call: Callable[[], Any]) -> Any:
        self.calls[boundary].append(label)
        armed = boundary == self.boundary and len(self.calls[boundary]) == self.n
        if armed and self.when == "before":
            die()
        result = call()
        if armed:
            die()
        return result


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def tail(path: Any) -> str:
    """The last two parts of a path: '500/COMMITTED', '1/result_Train.csv'."""
    return "/".join(Path(os.fsdecode(path)).parts[-2:])


def caller_module(depth: int = 2) -> str:
    return sys._getframe(depth).f_globals.get("__name__", "")


def wrap_method(trigger: Trigger, cls: type, name: str, label: Callable[[Any], str]) -> None:
    real = getattr(cls, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return trigger.hit(f"{cls.__name__}.{name}", label(self), lambda: real(self, *args, **kwargs))

    setattr(cls, name, wrapper)


def wrap_replace(trigger: Trigger) -> None:
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if not caller_module().startswith("frugalrl."):  # orbax's own renames are part of orbax.save
            return real(src, dst, *args, **kwargs)
        return trigger.hit("os.replace", tail(dst), lambda: real(src, dst, *args, **kwargs))

    os.replace = replace


def wrap_rmtree(trigger: Trigger) -> None:
    real = shutil.rmtree

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if caller_module() != "frugalrl.runs.checkpoint":
            return real(path, *args, **kwargs)
        return trigger.hit("shutil.rmtree", tail(path), lambda: real(path, *args, **kwargs))

    shutil.rmtree = rmtree


def wrap_orbax(trigger: Trigger) -> None:
    from frugalrl.runs import checkpoint

    real = checkpoint._checkpointer

    class Checkpointer:
        def __init__(self) -> None:
            self.inner = real()

        def save(self, path: Any, *args: Any, **kwargs: Any) -> Any:
            return trigger.hit("orbax.save", tail(path), lambda: self.inner.save(path, *args, **kwargs))

        def __getattr__(self, name: str) -> Any:  # restore, wait_until_finished: orbax's own
            return getattr(self.inner, name)

    checkpoint._checkpointer = Checkpointer


def install(trigger: Trigger) -> None:
    from frugalrl.runs.rundir import CsvLog, RunDir

    wrap_method(trigger, RunDir, "write_config", lambda rundir: tail(rundir.config_path))
    for name in ("open", "write", "flush"):
        wrap_method(trigger, CsvLog, name, lambda log: log.path.name)
    wrap_replace(trigger)
    wrap_rmtree(trigger)
    wrap_orbax(trigger)


def parse(argv: list[str]) -> tuple[Trigger, list[str]]:
    """``BOUNDARY[:when] N -- args`` or ``count -- args``."""
    split = argv.index("--")
    head, args = argv[:split], argv[split + 1 :]
    if head == ["count"]:
        return Trigger(None), args
    boundary, _, when = head[0].partition(":")
    if boundary not in BOUNDARIES or when not in ("", "before", "after") or len(head) != 2:
        raise SystemExit(f"usage: fault_runner.py {{count | BOUNDARY[:before|:after] N}} -- ARGS ({BOUNDARIES})")
    return Trigger(boundary, when or "before", int(head[1])), args


def main(argv: list[str]) -> int:
    trigger, args = parse(argv)
    install(trigger)
    from frugalrl.cli import main as frugal

    status = frugal(args)
    if trigger.boundary is None:
        print(COUNTS + json.dumps(trigger.calls), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
