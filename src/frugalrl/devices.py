"""One XLA host device per CPU core, so vmapped seeds can be split over cores.

XLA runs one program on one CPU thread for small matrices; splitting the seed axis over several
host devices with ``shard_map`` runs the shards in parallel (1.7x for 8 seeds on 2 cores, see
BENCHMARKS.md). The flag must be set before JAX starts, so the CLI calls this first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jax.sharding import Mesh, PartitionSpec

FLAG = "--xla_force_host_platform_device_count"
CORES_ENV = "FRUGAL_CORES"  # the cores a run may use, when fewer than the machine's (a sweep's task)


def use_all_cores(count: int | None = None) -> int:
    """Ask XLA for ``count`` host devices (default: one per core the run may use: ``FRUGAL_CORES``,
    else every usable core) unless the user set a count; returns the count asked for."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    cores = count or int(os.environ.get(CORES_ENV) or 0) or cores
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FLAG}={cores}".strip()
    return cores


def _threefry_internals() -> tuple[Any, Any, Any, Any] | None:
    """(mlir, primitive, unrolled rule, JAX's CPU rule or None), or None where the JAX internals moved."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32
    except ImportError:
        return None
    primitive = getattr(threefry2x32, "threefry2x32_p", None)
    unrolled = getattr(threefry2x32, "_threefry2x32_lowering_rule", None)
    if primitive is None or unrolled is None:
        return None
    return mlir, primitive, unrolled, getattr(threefry2x32, "_threefry2x32_cpu_lowering_rule", None)


def unroll_threefry_on_cpu() -> bool:
    """Lower JAX's threefry PRNG on CPU with its rounds unrolled, as on GPU; returns whether it applied.

    JAX emits threefry on CPU as a ``while`` loop over its five rounds to save compile time; inside
    our scanned env step every random draw then runs as a small loop of XLA thunks. Unrolled, the
    same bits come out (the function is the same) and the loop is faster: CartPole DQN env steps
    6.2 -> 4.1 us for 1 seed, 10.6 -> 8.0 us for 4 seeds per device; the 1-seed run 20.2 -> 15.2 s
    (BENCHMARKS.md). It uses a JAX internal, so if that moves, we keep the default and say nothing.
    """
    internals = _threefry_internals()
    if internals is None:
        return False
    mlir, primitive, unrolled, _ = internals
    mlir.register_lowering(primitive, unrolled, platform="cpu")
    return True


@contextmanager
def rolled_threefry() -> Iterator[None]:
    """Programs lowered inside use JAX's own CPU lowering of threefry (a loop), whatever was registered.

    For programs that run once or rarely (init, evaluation), where the unrolled rounds only cost
    compile time: CartPole DQN's init compiles in 0.5 s instead of 1.0 s, its evaluation in 0.6 s
    instead of 0.9 s. The bits are the same either way. Not thread-safe: lower programs from one thread.
    """
    internals = _threefry_internals()
    registered = getattr(internals[0], "_platform_specific_lowerings", None) if internals else None
    if internals is None or internals[3] is None or registered is None:  # internals moved: change nothing
        yield
        return
    mlir, primitive, unrolled, rolled = internals
    entry = registered.get("cpu", {}).get(primitive)
    was_unrolled = getattr(entry, "rule", None) is unrolled
    mlir.register_lowering(primitive, rolled, platform="cpu")
    try:
        yield
    finally:
        if was_unrolled:
            mlir.register_lowering(primitive, unrolled, platform="cpu")


PLOTTING_MODULES = ("matplotlib.pyplot", "seaborn")


class _ImportedOnUse(ModuleType):
    """Stands in ``sys.modules`` for a module not imported yet; the first use of an attribute imports
    the real one (the stand-in then leaves ``sys.modules``) and every use after goes to it."""

    def __getattr__(self, attribute: str) -> Any:
        import importlib
        import sys

        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def defer_plotting_imports() -> None:
    """Import matplotlib.pyplot and seaborn only when something uses them.

    gymnax imports both at module level for two environments' render functions (its pong and rooms),
    so every run paid ~1.9 s of its start (seaborn brings scipy.stats and pandas) for plots it never
    draws. importlib's ``LazyLoader`` does not do here: the import statement reads the module's
    ``__spec__``, which loads it.
    """
    import sys

    for name in PLOTTING_MODULES:
        if name not in sys.modules:
            sys.modules[name] = _ImportedOnUse(name)


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
    # programs that compile in under half a second are not worth a file: a run has ~50 such (copies,
    # slices) beside its ~4 large ones, and every write scans the whole folder for its size (LRU)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_compilation_cache_max_size", 2 * 2**30)  # least recently used entries go first
    return str(folder)


def seed_mesh(num_seeds: int) -> Mesh:
    """The local devices the seeds are split over: as many as divide num_seeds evenly."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    devices = jax.local_devices()
    count = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    return Mesh(np.array(devices[:count]), ("seed",))


def idle_devices_note(num_seeds: int, mesh: Mesh) -> str | None:
    """A hint when the seeds cannot be split over every local device (each shard must be equal)."""
    import jax

    available, used = len(jax.local_devices()), mesh.devices.size
    if used == available:
        return None
    if num_seeds < available:
        return (
            f"{num_seeds} seed(s) on {available} devices: {available - used} sit idle; with large networks, "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={num_seeds} lets each seed's matrix products use "
            "more cores (BENCHMARKS.md, SAC)"
        )
    better = sorted({num_seeds + (-num_seeds) % available, max(available, num_seeds - num_seeds % available)})
    return (
        f"{num_seeds} seeds split evenly over {used} of {available} devices, so {available - used} sit idle; "
        f"num_seeds {' or '.join(map(str, better))} would use them all"
    )


def seed_axis_spec(leaf: Any) -> PartitionSpec:
    """How a leaf of seed-batched state is split: along its leading (seed) axis; scalars are shared."""
    import numpy as np
    from jax.sharding import PartitionSpec

    return PartitionSpec("seed") if np.ndim(leaf) > 0 else PartitionSpec()


def placed(tree: Any, shardings: Any = None) -> Any:
    """``tree``'s values laid out by ``shardings`` (None: the default device), no two leaves in one buffer.

    By way of host memory, where nothing compiles: an eager ``jnp.copy`` or a ``device_put`` of a
    device array onto other devices compiles a small program for every leaf shape (a DQN carry: 31,
    about 1 s of every run's start, which the compile cache does not keep). On a CPU the host
    arrays are views of the device buffers and go back without a copy, so a leaf whose memory an
    earlier leaf holds too (params and target params at the start) is copied first: the segment
    programs donate the carry, and two leaves must not be one buffer."""
    import jax
    import numpy as np

    leaves, structure = jax.tree.flatten(jax.device_get(tree))
    own: list[Any] = []
    for leaf in leaves:
        shared = any(np.may_share_memory(leaf, earlier) for earlier in own)
        own.append(np.array(leaf) if shared else leaf)
    host = jax.tree.unflatten(structure, own)
    return jax.device_put(host) if shardings is None else jax.device_put(host, shardings)


def seed_vmap(fn: Any, in_axes: Any = 0, *, unrolled: bool = False) -> Any:
    """``jax.vmap(fn, in_axes)`` over the leading seed axis or, ``unrolled``, one call of ``fn`` per
    seed in the same program, outputs stacked. ``in_axes`` holds 0 (per seed) or None (shared).

    Unrolled is for convolution networks on a CPU: batched over parameters, a convolution becomes a
    grouped convolution, whose gradient XLA's CPU backend runs about 4x slower than the seeds' own
    convolutions one after another (BENCHMARKS.md, Atari)."""
    import jax

    if not unrolled:
        return jax.vmap(fn, in_axes=in_axes)

    def per_seed(*args: Any) -> Any:
        axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
        seeds = next(jax.tree.leaves(arg)[0].shape[0] for arg, axis in zip(args, axes, strict=True) if axis == 0)
        outputs = [
            fn(
                *[
                    arg if axis is None else jax.tree.map(lambda x, i=i: x[i], arg)
                    for arg, axis in zip(args, axes, strict=True)
                ]
            )
            for i in range(seeds)
        ]
        return jax.tree.map(lambda *lanes: jax.numpy.stack(lanes), *outputs)

    return per_seed
