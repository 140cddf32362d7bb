"""One writer per run directory: an OS-level lock that the kernel releases when its holder dies.

``RunLock(run_dir).acquire()`` takes ``fcntl.flock`` on ``run_dir/.lock`` (never deleted, so every
process locks the same file) and writes the holder's PID, host and start time into it. A second
process on the same directory is refused at once with the holder named; a lock whose holder was
killed (even with ``kill -9``) is free again, so a requeued job takes it over safely. ``flock``
works between processes of one machine and on local file systems; on a network file system that
does not support it, two nodes are not kept apart (the README says so).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from frugalrl.errors import RunLockedError

LOCK_NAME = ".lock"


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        """Hold the lock, or RunLockedError naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            _lock_soon(handle)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise RunLockedError(
                f"{self.path.parent} is in use by another frugal run ({holder}); wait for it to end or stop it, "
                "or use another --logs directory"
            ) from None
        self._handle = handle  # released by release() even if writing the holder fails (a full disk)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        handle.flush()

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            try:
                handle.close()
            except OSError:  # the holder's line could not be written (a full disk): nothing lost
                pass


def _lock_soon(handle: IO[str], tries: int = 5, pause: float = 0.02) -> None:
    """The exclusive lock, tried a few times over ~0.1 s: ``live_holder`` takes a shared one for an
    instant, and a run starting in that instant should not be refused for it."""
    for _ in range(tries - 1):
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(pause)
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def live_holder(run_dir: Path) -> str | None:
    """Who holds the run directory's lock now ('PID 12 on host, since ...'), or None if nobody does.

    Tries a shared lock without waiting: it fails only while a run holds the exclusive one (a run
    starting in the instant it is held retries its own lock for ~0.1 s)."""
    path = run_dir / LOCK_NAME
    try:
        handle = open(path)
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(handle.read())
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None


def _holder(text: str) -> str:
    try:
        info: dict[str, Any] = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"PID {int(info['pid'])} on {info['host']}, since {since}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


__all__ = ["LOCK_NAME", "RunLock", "live_holder"]
