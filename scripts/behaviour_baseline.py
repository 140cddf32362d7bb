"""Record or check the result CSVs of a short run of every training path (tests/behaviour/b_*.json).

    python scripts/behaviour_baseline.py record   # writes tests/behaviour/baseline.json
    python scripts/behaviour_baseline.py check    # reruns every path, compares byte for byte

Each config runs as ``frugal run FILE --idx 1`` with two host devices, in a scratch folder (the
QDagger students find ``logs/b_teacher/1`` there). ``record --golden NAME ...`` also copies those
runs' CSVs to ``tests/behaviour/golden/NAME/`` for tests/test_behaviour.py. XLA's CPU code differs
between instruction sets, so the baseline notes the machine it was recorded on and ``check`` says
when it runs elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "tests" / "behaviour"
BASELINE = HERE / "baseline.json"
CSVS = ("result_Train.csv", "result_Test.csv", "metrics.csv", "result_Offline.csv")
FIRST = ("b_teacher",)  # runs other configs read


def machine() -> dict[str, str]:
    """What decides XLA's CPU code: the processor's vector extensions and the JAX version."""
    import jax

    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = " ".join(sorted(f for f in line.split(":")[1].split() if f.startswith(("avx", "fma", "sse4"))))
                break
    except OSError:
        pass
    return {"cpu_flags": flags, "jax": jax.__version__, "python": platform.python_version()}


def configs() -> list[Path]:
    files = sorted(HERE.glob("b_*.json"))
    return sorted(files, key=lambda f: f.stem not in FIRST)


def run_all(names: list[str] | None, workdir: Path) -> dict[str, dict[str, str]]:
    """{config: {csv: sha256}} of a run of each config (``names``: a subset, with what it needs)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "FRUGAL_XLA_CACHE": "off"}
    frugal = Path(sys.executable).parent / "frugal"
    hashes = {}
    for file in configs():
        if names and file.stem not in names and file.stem not in FIRST:
            continue
        began = time.perf_counter()
        command = [str(frugal), "run", str(file), "--idx", "1", "--logs", "logs", "--no-progress"]
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{file.stem} failed:\n{done.stderr[-3000:]}")
        run_dir = workdir / "logs" / file.stem / "1"
        hashes[file.stem] = {
            name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
            for name in CSVS
            if (run_dir / name).exists()
        }
        print(f"{file.stem:<24} {time.perf_counter() - began:6.1f} s  {', '.join(hashes[file.stem])}", flush=True)
    return hashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("record", "check"))
    parser.add_argument("--only", nargs="*", help="config names (default: all)")
    parser.add_argument("--golden", nargs="*", default=[], help="record: copy these runs' CSVs for the test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="frugal-behaviour-") as scratch:
        workdir = Path(scratch)
        hashes = run_all(args.only, workdir)
        if args.mode == "record":
            BASELINE.write_text(json.dumps({"machine": machine(), "csvs": hashes}, indent=1) + "\n")
            for name in args.golden:
                target = HERE / "golden" / name
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                for csv in hashes[name]:
                    shutil.copy(workdir / "logs" / name / "1" / csv, target / csv)
            print(f"wrote {BASELINE}")
            return 0
    saved = json.loads(BASELINE.read_text())
    if saved["machine"] != machine():
        print(f"note: the baseline was recorded on {saved['machine']}, this is {machine()}")
    differ = [
        f"{name}/{csv}"
        for name, files in hashes.items()
        for csv, digest in files.items()
        if saved["csvs"].get(name, {}).get(csv) != digest
    ]
    missing = [
        f"{name}/{csv}" for name, files in hashes.items() for csv in saved["csvs"].get(name, {}) if csv not in files
    ]
    total = sum(len(files) for files in hashes.values())
    print(f"{total - len(differ)} of {total} CSVs byte-identical to the baseline")
    for item in differ + missing:
        print(f"  differs: {item}")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    sys.exit(main())
