"""A grid's wall time: one ``frugal run`` process per index against ``frugal sweep --run`` on Ray.

Runs a sample of a grid's indices (``--sample``, spread over its packing programs) twice into
fresh log folders: one ``frugal run --idx I`` process after another, each on every core (what a user
does today), and ``frugal sweep FILE --run --idx SAMPLE`` on Ray with one-core tasks, one per core.
Each figure is the median of ``--repeats``, and the whole grid's time is scaled from the sample.

    python benchmarks/sweep.py configs/merl/MERL_mc_medqn.json --sample 4 --repeats 3
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


def sample_indices(file: str, count: int) -> list[int]:
    """The first index of each of the first ``count`` packing programs: different shapes of run."""
    groups = pack_groups(file, list(range(1, count_dict(load_grid(file)) + 1)), swept_keys(load_grid(file)))
    step = max(len(groups) // count, 1)
    return [group.indices[0] for group in groups[::step][:count]]


def one_process_per_index(file: str, indices: list[int]) -> float:
    with tempfile.TemporaryDirectory() as logs:
        return sum(frugal("run", file, "--idx", str(idx), "--logs", logs, "--no-progress") for idx in indices)


def ray_sweep(file: str, indices: list[int]) -> float:
    """Ray on this machine: one-core tasks, as many at once as there are cores."""
    with tempfile.TemporaryDirectory() as logs:
        spec = format_indices(indices)
        return frugal("sweep", file, "--run", "--idx", spec, "--logs", logs, "--no-progress", "--cpus-per-run", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--sample", type=int, default=4, help="indices timed (the grid's time is scaled)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size, indices = count_dict(load_grid(args.file)), sample_indices(args.file, args.sample)
    alone = [one_process_per_index(args.file, indices) for _ in range(args.repeats)]
    swept = [ray_sweep(args.file, indices) for _ in range(args.repeats)]
    scale = size / len(indices)
    result = {
        "machine": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "grid": args.file,
        "indices": indices,
        "one_process_per_index_s": statistics.median(alone),
        "ray_one_core_tasks_s": statistics.median(swept),
        "ratio": statistics.median(alone) / statistics.median(swept),
        "grid_hours_one_process_per_index": statistics.median(alone) * scale / 3600,
        "grid_hours_ray": statistics.median(swept) * scale / 3600,
        "all_seconds": {"alone": alone, "ray": swept},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
