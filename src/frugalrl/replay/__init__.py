"""Replay buffers: pure functions over explicit state, single-seed (the loop vmaps them)."""

from frugalrl.replay import fifo
from frugalrl.replay.fifo import Batch, ReplayState, Transition

__all__ = ["fifo", "Batch", "ReplayState", "Transition"]
