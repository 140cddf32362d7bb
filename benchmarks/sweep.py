"""A grid's wall time three ways: one ``frugal run`` process per index, ``frugal sweep --run`` on Ray
with packing off (one-core tasks, one per core), and the whole grid packed (``frugal sweep --run``).

The two unpacked ways time a sample (one index of each of the grid's programs by default, so every
shape of run is in it) and scale each program's time by its size; each is the median of
``--repeats``. The packed way runs the whole grid (``--packed-grid``), or takes the wall time of such
a run measured before (``--packed-seconds``, with the command that measured it in the notes).

    python benchmarks/sweep.py configs/merl/MERL_mc_medqn.json --repeats 2 --packed-grid --cpus-per-run 2

Where the whole grid is out of reach (an accelerator lent for minutes, no Ray there), ``--packed-sample``
runs each sampled program packed as one ``frugal run --idx FIRST-LAST`` instead, and the ratio is
taken over the sampled programs alone: their runs one process per index against the same runs
packed. ``--no-ray`` skips the Ray measurement (benchmarks/device_sweep.sh runs it so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from frugalrl.config import count_dict, format_indices, load_grid, swept_keys
from frugalrl.config.packing import pack_groups


def frugal(*args: str) -> float:
    """Seconds of one ``frugal`` command, which must succeed."""
    env = {**os.environ, "FRUGAL_XLA_CACHE": "off"}  # every run compiles, as on a fresh machine
    for name in ("XLA_FLAGS", "RAY_ADDRESS"):
        env.pop(name, None)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "frugalrl.cli", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def sample(file: str, count: int) -> list[list[int]]:
    """The indices of ``count`` programs spread over the grid (each program's first is timed alone)."""
    groups = pack_groups(file, list(range(1, count_dict(load_grid(file)) + 1)), swept_keys(load_grid(file)))
    step = max(len(groups) // count, 1)
    return [list(group.indices) for group in groups[::step][:count]]


def one_process_per_index(file: str, indices: list[int]) -> list[float]:
    """Seconds of each index's ``frugal run``, one after another, each on every core."""
    with tempfile.TemporaryDirectory() as logs:
        return [frugal("run", file, "--idx", str(idx), "--logs", logs, "--no-progress") for idx in indices]


def ray_unpacked(file: str, indices: list[int]) -> float:
    """Ray on this machine, packing off: one-core tasks, as many at once as there are cores."""
    with tempfile.TemporaryDirectory() as logs:
        spec = format_indices(indices)
        return frugal("sweep", file, "--run", "--idx", spec, "--logs", logs, "--no-progress", "--no-pack")


def packed_programs(file: str, programs: list[list[int]], layout: str) -> list[float]:
    """Seconds of each program run packed: one ``frugal run --idx ...`` each, no Ray."""
    with tempfile.TemporaryDirectory() as logs:
        options = ("--logs", logs, "--no-progress", "--pack-layout", layout)
        return [frugal("run", file, "--idx", format_indices(indices), *options) for indices in programs]


def packed_grid(file: str, cpus_per_run: int) -> float:
    with tempfile.TemporaryDirectory() as logs:
        return frugal("sweep", file, "--run", "--logs", logs, "--no-progress", "--cpus-per-run", str(cpus_per_run))


def accelerator() -> str:
    """The device kind JAX computes on (asked in a process of its own: JAX here would hold the GPU)."""
    code = "import jax; print(jax.devices()[0].device_kind)"
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--sample", type=int, default=1000, help="programs sampled, one index each (default all)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--packed-grid", action="store_true", help="also run the whole grid packed (once)")
    parser.add_argument("--packed-seconds", type=float, help="the whole grid's packed wall time, measured before")
    parser.add_argument("--packed-sample", action="store_true", help="run the sampled programs packed, no Ray")
    parser.add_argument("--pack-layout", choices=("exact", "wide"), default="exact", help="with --packed-sample")
    parser.add_argument("--no-ray", action="store_true", help="skip Ray with packing off")
    parser.add_argument("--cpus-per-run", type=int, default=1, help="cores of each packed task (--packed-grid)")
    args = parser.parse_args()
    programs = sample(args.file, args.sample)
    indices, sizes = [p[0] for p in programs], [len(p) for p in programs]
    alone = [one_process_per_index(args.file, indices) for _ in range(args.repeats)]
    # each program's time: its sampled index's median, times its size
    alone_grid = sum(statistics.median(times[i] for times in alone) * size for i, size in enumerate(sizes))
    ray = [] if args.no_ray else [ray_unpacked(args.file, indices) for _ in range(args.repeats)]
    ray_grid = statistics.median(ray) * sum(sizes) / len(sizes) if ray else None  # scaled by runs
    packed_each = packed_programs(args.file, programs, args.pack_layout) if args.packed_sample else []
    if packed_each:
        packed = sum(packed_each)  # the sampled programs: the same runs as alone_grid
    else:
        packed = packed_grid(args.file, args.cpus_per_run) if args.packed_grid else args.packed_seconds
    result = {
        "machine": platform.processor() or platform.machine(),
        "device": accelerator(),
        "cores": os.cpu_count(),
        "grid": args.file,
        "runs": sum(sizes),
        "sampled_indices": indices,
        "one_process_per_index_s": alone_grid,
        "ray_unpacked_s": ray_grid,
        "packed_s": packed,
        "packed": f"the {len(programs)} sampled programs, {args.pack_layout}" if packed_each else "the whole grid",
        "ratio_one_process_per_index_to_packed": alone_grid / packed if packed else None,
        "ratio_ray_unpacked_to_packed": ray_grid / packed if packed and ray_grid else None,
        "ratio_one_process_per_index_to_ray_unpacked": alone_grid / ray_grid if ray_grid else None,
        "all_seconds": {"alone": alone, "ray_unpacked_sample": ray, "packed_programs": packed_each},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
