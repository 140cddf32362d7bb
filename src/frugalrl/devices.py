"""One XLA host device per CPU core, so vmapped seeds can be split over cores.

XLA runs one program on one CPU thread for small matrices; splitting the seed axis over several
host devices with ``shard_map`` runs the shards in parallel (1.7x for 8 seeds on 2 cores, see
BENCHMARKS.md). The flag must be set before JAX starts, so the CLI calls this first.
"""

from __future__ import annotations

import os

FLAG = "--xla_force_host_platform_device_count"


def use_all_cores() -> int:
    """Ask XLA for one host device per usable core unless the user set a count; returns it."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}={cores}".strip()
    return cores
