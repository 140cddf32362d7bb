"""Run directories, CSV logs, checkpoints and resume."""
