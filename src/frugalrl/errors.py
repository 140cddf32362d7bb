"""Every error frugalrl raises on purpose; each message names the cause and the fix.

The lowest layer: every other module may import it, and it imports nothing of frugalrl's.
"""

from __future__ import annotations

EXIT_CONFIG = 2  # the frugal command's exit statuses: a config or grid that cannot describe a run
EXIT_LOCKED = 75  # sysexits' EX_TEMPFAIL: another live process is writing the run directory
EXIT_IO = 74  # sysexits' EX_IOERR: the run directory could not be written (a full disk, a read-only mount)


class ConfigError(ValueError):
    """A config that cannot describe a run; the message names the key and the fix."""


class GridError(ValueError):
    """A config grid that cannot be read or decoded."""


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, a buffer that does not fit); the message says why."""


class DivergedError(TrainingError):
    """A loss (or what follows from it) became NaN or inf; the run is recorded as failed."""

    def __init__(self, message: str, step: int, seeds: list[int]) -> None:
        super().__init__(message)
        self.step, self.seeds = step, seeds


class RunFailedError(TrainingError):
    """The run directory holds a run that failed; rerun with --retry (or --fresh)."""


class RunLockedError(TrainingError):
    """Another process is writing the run directory."""


class RunAlreadyFinished(Exception):
    """The run finished while this process waited to start it (a sweep started twice); nothing was written."""


class RunStopped(Exception):
    """A signal asked the run to stop; it did, after a checkpoint, and resumes from it when rerun."""

    def __init__(self, signal_name: str, step: int, exit_status: int) -> None:
        super().__init__(signal_name, step, exit_status)
        self.signal_name, self.step, self.exit_status = signal_name, step, exit_status


class CheckpointError(RuntimeError):
    """No complete checkpoint could be restored."""


class DopamineFormatError(ValueError):
    """A file is not a Dopamine DQN checkpoint or replay file of the expected form."""


__all__ = [
    "RunAlreadyFinished",
    "EXIT_CONFIG",
    "EXIT_IO",
    "EXIT_LOCKED",
    "DivergedError",
    "RunFailedError",
    "CheckpointError",
    "ConfigError",
    "DopamineFormatError",
    "GridError",
    "RunLockedError",
    "RunStopped",
    "TrainingError",
]
