"""The same ``frugal run`` at two commits, alternating, in one process tree: did a change cost speed?

    python benchmarks/against_commit.py 3952f5d --repeats 5            # CartPole DQN, 8 seeds x 500k
    python benchmarks/against_commit.py 3952f5d --config configs/dqn_classic.json --idx 1

The other commit's ``src/`` is unpacked into a scratch folder and put first on ``PYTHONPATH``;
runs of the two alternate, so a slow spell of this shared machine hits both alike. Each run is
a fresh process (compile included, no compile cache); the figures are the CLI's own ``compile``
and ``run`` seconds and the process's wall time, as medians, with the median of per-pair ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING = re.compile(r"compile (?P<compile>[0-9.]+) s, run (?P<run>[0-9.]+) s")


def unpack(commit: str, into: Path) -> Path:
    """The commit's ``src/`` tree, unpacked under ``into``."""
    archive = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def one_run(src: Path, config: str, idx: int, logs: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src), "FRUGAL_XLA_CACHE": "off"}
    command = [sys.executable, "-m", "frugalrl.cli", "run", config, "--idx", str(idx), "--logs", str(logs)]
    began = time.perf_counter()
    done = subprocess.run([*command, "--no-progress", "--fresh"], env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"{src}: {done.stderr[-2000:]}")
    timing = TIMING.search(done.stderr)
    return {"wall_s": wall, "compile_s": float(timing["compile"]), "run_s": float(timing["run"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commit", help="the commit to compare the working tree with")
    parser.add_argument("--config", default="configs/dqn_classic.json")
    parser.add_argument("--idx", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="write the medians here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frugal-against-") as scratch:
        trees = {args.commit: unpack(args.commit, Path(scratch)), "working tree": ROOT / "src"}
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.repeats):
            for name, src in trees.items():
                rows[name].append(one_run(src, args.config, args.idx, Path(scratch) / "logs"))
                print(name, json.dumps(rows[name][-1]), flush=True)
    old, new = rows[args.commit], rows["working tree"]
    result = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in rows.items()}
    result["ratio working tree / commit"] = {
        key: statistics.median(b[key] / a[key] for a, b in zip(old, new, strict=True)) for key in old[0]
    }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
