"""One index of a sweep as one ``frugal run`` process, and what its ending means for the sweep.

The run is a child process (its own JAX, its own XLA device count, its own lock on the run
directory), tied to the process that started it (``FRUGAL_PARENT_PID``: on Linux the child is
killed when its parent dies), so a Ray worker killed with -9 never leaves a run behind that still
holds the directory. This module imports nothing heavy: a Ray worker runs it without JAX.
The exit status then says what the sweep does next: done; failed (the run's own error, recorded
in ``FAILED`` and never retried by the sweep); stopped (a signal: retried, and the run resumes from
its last checkpoint); busy (another live process holds the directory: left to it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from frugalrl.devices import CORES_ENV, FLAG
from frugalrl.errors import EXIT_LOCKED
from frugalrl.runs.stops import PARENT_ENV


class RunOutcome(NamedTuple):
    idx: int
    status: str  # "done" | "failed" | "stopped" | "busy"
    message: str  # the run's last line on stderr (its one-line error, or its summary)
    attempt: int


def run_command(file: Path, indices: list[int], logs: Path, flags: list[str]) -> list[str]:
    """``frugal run`` of one index, or of several that share a program (run packed), with ``flags``."""
    idx = ",".join(map(str, indices))
    command = [sys.executable, "-m", "frugalrl.cli", "run", str(file), "--idx", idx, "--logs", str(logs)]
    return [*command, "--no-progress", *flags]


def run_index(
    file: str, indices: list[int], logs: str, cwd: str, cpus: int, gpus: float, flags: list[str], attempt: int
) -> RunOutcome:
    """Run config ``indices`` of grid ``file`` to their end in a child process (in ``cwd``, where
    the config's relative paths start) on ``cpus`` cores (as many XLA host devices, or the layout
    its checkpoint was written with): one index, or several packed into one program; ``flags``:
    more arguments of ``frugal run`` (``--retry``, ``--pack-layout``). The outcome
    (of the first index; a packed program's runs are read from their directories) says how it ended."""
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: the wait below may leave it unread
        child = None
        try:
            child = subprocess.Popen(
                run_command(Path(file), indices, Path(logs), flags),
                cwd=cwd,
                env=child_env(cpus, gpus),
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            while child.poll() is None:  # short waits: Ray's cancel arrives between two of them
                time.sleep(0.2)
        except BaseException as stop:  # cancelled (KeyboardInterrupt) or the worker told to exit
            if child is not None:  # the run checkpoints and exits; it resumes when run again
                child.send_signal(signal.SIGTERM)
                child.wait()
            if not isinstance(stop, KeyboardInterrupt):
                raise
        err.seek(0)
        lines = [line for line in err.read().splitlines() if line.strip()]
    status = outcome_status(child.returncode) if child is not None else "stopped"
    return RunOutcome(indices[0], status, lines[-1] if lines else "", attempt)


def child_env(cpus: int, gpus: float) -> dict[str, str]:
    """The run's environment: its cores, its parent (to die with it), and, on a shared GPU, no
    preallocation (JAX takes 75% of a GPU's memory up front otherwise)."""
    flags = " ".join(flag for flag in os.environ.get("XLA_FLAGS", "").split() if not flag.startswith(FLAG))
    env = {**os.environ, "XLA_FLAGS": flags, CORES_ENV: str(cpus), PARENT_ENV: str(os.getpid())}
    if 0 < gpus < 1:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


STOP_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP}


def outcome_status(returncode: int) -> str:
    """What a ``frugal run`` exit status means for the sweep (see the module's docstring): killed or
    stopped by a stop signal is "stopped" (retried); a crash (SIGSEGV, SIGABRT, ...) is "failed"."""
    if returncode == 0:
        return "done"
    if returncode == EXIT_LOCKED:
        return "busy"
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else None
    if signum in STOP_SIGNALS:
        return "stopped"
    return "failed"


__all__ = ["RunOutcome", "outcome_status", "run_command", "run_index"]
