"""Peak memory of ``frugal import-dopamine`` on a large replay: the replay is streamed, not loaded.

Writes a Dopamine run into a temporary directory: ``checkpoints/ckpt.N`` (a Nature DQN's parameters,
as numpy arrays) and gzipped ``.npy`` replay files whose observation frames (values 0-15, gzip level
1: ~58% of their size) make about ``--gzipped-mb`` MiB of gzip. Then, each in its own interpreter,
``import_dopamine_teacher`` imports it and a bare ``import frugalrl.train.dopamine`` does nothing
more; each reports its peak resident memory (VmHWM of its own address space, Linux).

    python benchmarks/dopamine_import_memory.py --gzipped-mb 100
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUMBER, FRAME, ACTIONS = 399, 84 * 84, 6
CHILD = """
import sys
from pathlib import Path
import frugalrl.train.dopamine as dopamine
if len(sys.argv) > 1:
    dopamine.import_dopamine_teacher(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), "Pong")
status = Path("/proc/self/status").read_text()
print(next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")))
"""


def npy_gz(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    with gzip.open(path, "wb") as handle:
        handle.write(buffer.getvalue())


def write_checkpoint(folder: Path) -> None:
    """``ckpt.N`` as Dopamine's JAX DQN agent bundles it, with the parameters as plain numpy arrays."""
    rng = np.random.default_rng(1)
    shapes = {
        "Conv_0": (8, 8, 4, 32),
        "Conv_1": (4, 4, 32, 64),
        "Conv_2": (3, 3, 64, 64),
        "Dense_0": (11 * 11 * 64, 512),
        "Dense_1": (512, ACTIONS),
    }
    params = {
        name: {"kernel": rng.normal(0, 0.05, shape).astype(np.float32), "bias": np.zeros(shape[-1], np.float32)}
        for name, shape in shapes.items()
    }
    with open(folder / f"ckpt.{NUMBER}", "wb") as handle:
        pickle.dump({"online_params": {"params": params}, "training_steps": 50_000_000}, handle)


def write_replay(folder: Path, gzipped_bytes: int) -> int:
    """Replay files of about ``gzipped_bytes`` of gzip, frames written 1000 at a time; returns the capacity."""
    capacity = int(gzipped_bytes / (0.58 * FRAME))
    rng = np.random.default_rng(0)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (capacity, 84, 84)})
    with gzip.open(folder / f"$store$_observation_ckpt.{NUMBER}.gz", "wb", compresslevel=1) as handle:
        handle.write(header.getvalue())
        for start in range(0, capacity, 1000):
            handle.write(rng.integers(0, 16, (min(1000, capacity - start), FRAME), dtype=np.uint8).tobytes())
    npy_gz(folder / f"$store$_action_ckpt.{NUMBER}.gz", rng.integers(0, ACTIONS, capacity).astype(np.int32))
    npy_gz(folder / f"$store$_reward_ckpt.{NUMBER}.gz", rng.normal(size=capacity).astype(np.float32))
    npy_gz(folder / f"$store$_terminal_ckpt.{NUMBER}.gz", (rng.random(capacity) < 0.001).astype(np.uint8))
    npy_gz(folder / f"add_count_ckpt.{NUMBER}.gz", np.array(capacity + 1000, np.int64))
    npy_gz(folder / f"invalid_range_ckpt.{NUMBER}.gz", np.arange(4, dtype=np.int64))
    return capacity


def peak_rss(*args: str) -> int:
    """Peak resident bytes of a fresh interpreter running ``CHILD`` with ``args``."""
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def mib(count: float) -> str:
    return f"{count / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gzipped-mb", type=float, default=100, help="size of the gzipped replay files, MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "run" / "checkpoints"
        folder.mkdir(parents=True)
        write_checkpoint(folder)
        capacity = write_replay(folder, int(args.gzipped_mb * 2**20))
        replay = [path for path in folder.iterdir() if path.name.endswith(f"_ckpt.{NUMBER}.gz")]
        gzipped = sum(path.stat().st_size for path in replay)
        start = time.perf_counter()
        peak = peak_rss(str(folder.parent), str(NUMBER), str(Path(temp) / "teacher"))
        seconds = time.perf_counter() - start
        written = sum(path.stat().st_size for path in (Path(temp) / "teacher" / "replay").iterdir())
        baseline = peak_rss()
    print(f"replay gzipped: {mib(gzipped)} ({len(replay)} files, {capacity} frames of 84x84)")
    print(f"replay uncompressed: {mib(written)} (as .npy files in the teacher directory)")
    print(f"peak RSS of the import (checkpoint and replay, {seconds:.1f} s): {mib(peak)}")
    print(f"peak RSS of a bare `import frugalrl.train.dopamine`: {mib(baseline)}")


if __name__ == "__main__":
    main()
