"""Stop signals, noted rather than obeyed at once: a run ends after its next checkpoint.

SIGTERM (the usual preemption), SIGUSR1 (Slurm's warning before the time limit) and SIGINT (Ctrl-C)
only append their number to a list the training loop reads; a second SIGINT interrupts at once.
``frugal run`` notes them from its first line, so that one arriving while JAX starts is not lost
or turned into a traceback (an exception raised inside JAX's import can even crash the process).
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def note_stops(stops: list[int]) -> dict[int, Any]:
    """From now on the stop signals are appended to ``stops`` (a second SIGINT raises
    KeyboardInterrupt); returns the handlers they replace. Main thread only."""

    def note(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and stops:
            raise KeyboardInterrupt
        stops.append(signum)

    return {signum: signal.signal(signum, note) for signum in STOP_SIGNALS}


@contextmanager
def stop_requests(stops: list[int] | None = None) -> Iterator[list[int]]:
    """While inside, the stop signals are noted in the list yielded (``stops``, or a new one); the
    handlers before are restored on leaving. Outside the main thread (signals cannot be caught
    there) the list only holds what was noted before."""
    stops = [] if stops is None else stops
    if threading.current_thread() is not threading.main_thread():
        yield stops
        return
    previous = note_stops(stops)
    try:
        yield stops
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


PARENT_ENV = "FRUGAL_PARENT_PID"  # set by a sweep's task: the run dies with the process that started it
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """If ``FRUGAL_PARENT_PID`` names this process's parent, have the kernel SIGKILL this process
    when the parent dies (Linux); if the parent is already gone, exit now. A sweep's worker killed
    with -9 then never leaves a run behind that still holds its directory."""
    expected = os.environ.get(PARENT_ENV)
    if not expected:
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: a killed worker's run then ends on its own
        return
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if str(os.getppid()) != expected:  # the parent died before prctl: nobody waits for this run
        os.write(2, b"frugal: error: the sweep task that started this run is gone; not starting\n")
        os._exit(128 + signal.SIGKILL)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


__all__ = ["PARENT_ENV", "STOP_SIGNALS", "die_with_parent", "note_stops", "signal_name", "stop_requests"]
