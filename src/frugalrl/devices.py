"""One XLA host device per CPU core, so vmapped seeds can be split over cores.

XLA runs one program on one CPU thread for small matrices; splitting the seed axis over several
host devices with ``shard_map`` runs the shards in parallel (1.7x for 8 seeds on 2 cores, see
BENCHMARKS.md). The flag must be set before JAX starts, so the CLI calls this first.
"""

from __future__ import annotations

import os
from pathlib import Path

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


def unroll_threefry_on_cpu() -> bool:
    """Lower JAX's threefry PRNG on CPU with its rounds unrolled, as on GPU; returns whether it applied.

    JAX emits threefry on CPU as a ``while`` loop over its five rounds to save compile time; inside
    our scanned env step every random draw then runs as a small loop of XLA thunks. Unrolled, the
    same bits come out (the function is the same) and the loop is faster: CartPole DQN env steps
    6.2 -> 4.1 us for 1 seed, 10.6 -> 8.0 us for 4 seeds per device; the 1-seed run 20.2 -> 15.2 s
    (BENCHMARKS.md). It uses a JAX internal, so if that moves, we keep the default and say nothing.
    """
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32
    except ImportError:
        return False
    rule = getattr(threefry2x32, "_threefry2x32_lowering_rule", None)
    primitive = getattr(threefry2x32, "threefry2x32_p", None)
    if rule is None or primitive is None:
        return False
    mlir.register_lowering(primitive, rule, platform="cpu")
    return True


CACHE_ENV = "FRUGAL_XLA_CACHE"


def use_compilation_cache() -> str | None:
    """Keep compiled programs on disk so the next run of the same shapes skips XLA compilation.

    Every run of a sweep compiles the same segment, evaluation and init programs; with the cache a
    CartPole DQN run compiles in ~2 s instead of ~6 s after the first. ``FRUGAL_XLA_CACHE`` names the
    folder (default ``~/.cache/frugalrl/xla``, or under ``$XDG_CACHE_HOME``); ``off`` disables it.
    Returns the folder, or None when off.
    """
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in ("off", "0", "no", "false"):
        return None
    if setting:
        folder = Path(setting).expanduser()
    else:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "frugalrl" / "xla"
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", 2 * 2**30)  # least recently used entries go first
    return str(folder)
