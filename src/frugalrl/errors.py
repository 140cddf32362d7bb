"""Every error frugalrl raises on purpose; each message names the cause and the fix.

The lowest layer: every other module may import it, and it imports nothing of frugalrl's.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot describe a run; the message names the key and the fix."""


class GridError(ValueError):
    """A config grid that cannot be read or decoded."""


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, a buffer that does not fit); the message says why."""


class CheckpointError(RuntimeError):
    """No complete checkpoint could be restored."""


class DopamineFormatError(ValueError):
    """A file is not a Dopamine DQN checkpoint or replay file of the expected form."""


__all__ = ["CheckpointError", "ConfigError", "DopamineFormatError", "GridError", "TrainingError"]
