"""Stop signals, noted rather than obeyed at once: a run ends after its next checkpoint.

SIGTERM (the usual preemption), SIGUSR1 (Slurm's warning before the time limit) and SIGINT (Ctrl-C)
only append their number to a list the training loop reads; a second SIGINT interrupts at once.
``frugal run`` notes them from its first line, so that one arriving while JAX starts is not lost
or turned into a traceback (an exception raised inside JAX's import can even crash the process).
"""

from __future__ import annotations

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


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


__all__ = ["STOP_SIGNALS", "note_stops", "signal_name", "stop_requests"]
