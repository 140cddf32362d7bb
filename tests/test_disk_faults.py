"""A full disk or a read-only file system, injected at the writes of a run: one line and exit 74,
no temporary file left, and the rerun resumes to results byte-identical to an uninterrupted run.

The faults come from ``tests/faults/diskfault.c``, loaded with LD_PRELOAD: every write under the
logs folder counts against a budget of write calls, and the write past it fails (ENOSPC, or
EROFS with creating, renaming and removing failing as well), as does every one after it. A run
traced once lists its writes, so a budget of write calls can fail exactly the one chosen (counting
calls rather than bytes: log lines differ in length from one run to the next).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CONFIG = {
    "total_steps": [3000],
    "num_seeds": [2],
    "train": [{"learning_starts": [500], "train_every": [10]}],
    "eval": [{"every": [1000], "episodes": [2]}],
    "checkpoint": [{"every": [1000], "keep": [2]}],
    "replay": [{"capacity": [2000]}],
}
RESULTS = ("result_Train.csv", "result_Test.csv", "metrics.csv")
ENOSPC, EROFS = 28, 30
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("cc") is None, reason="needs Linux and a C compiler"
)


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    """The fault library, the config, an uninterrupted run's results and the trace of its writes."""
    root = tmp_path_factory.mktemp("disk").resolve()
    library = root / "libdiskfault.so"
    source = HERE / "faults" / "diskfault.c"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", library, source, "-ldl"], check=True)
    config = root / "small.json"
    config.write_text(json.dumps(CONFIG))
    logs = root / "reference"
    trace = root / "trace.txt"
    result = frugal(library, config, logs, calls=10**12, trace=trace)
    assert result.returncode == 0, result.stderr
    writes = [(int(line.split(" ", 1)[0]), line.split(" ", 1)[1]) for line in trace.read_text().splitlines()]
    return {"library": library, "config": config, "reference": logs / "small" / "1", "writes": writes, "root": root}


def frugal(library: Path, config: Path, logs: Path, calls: int | None = None, errno: int = ENOSPC, trace=None):
    """``frugal run`` whose write calls under ``logs`` fail from the one after ``calls`` on."""
    env = {**os.environ}
    if calls is not None:
        env.update(LD_PRELOAD=str(library), DISKFAULT_PREFIX=str(logs), DISKFAULT_CALLS=str(calls))
        env.update(DISKFAULT_ERRNO=str(errno), **({"DISKFAULT_TRACE": str(trace)} if trace else {}))
    logs.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "frugalrl.cli", "run", str(config), "--logs", str(logs), "--no-progress"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def fails_then_resumes(disk, index: int, errno: int, tmp_path: Path) -> str:
    """Fail write ``index`` of the traced run (and all after it); check the one line and the leftovers,
    then rerun without the fault and compare with the uninterrupted run. Returns the error line."""
    logs = tmp_path / "logs"
    failed = frugal(disk["library"], disk["config"], logs, calls=index, errno=errno)
    errors = [line for line in failed.stderr.splitlines() if line.startswith("frugal: error: ")]
    assert failed.returncode == 74, failed.stderr
    assert len(errors) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert len(failed.stderr.strip().splitlines()) <= 3, failed.stderr  # the error and what the run announced
    leftovers = [p for p in logs.rglob("*") if p.name.endswith(".tmp") or "orbax-checkpoint-tmp" in p.name]
    if errno == ENOSPC:  # a read-only file system cannot have anything removed from it
        assert not leftovers, leftovers
    resumed = frugal(disk["library"], disk["config"], logs)
    assert resumed.returncode == 0, resumed.stderr
    for name in RESULTS:
        assert (logs / "small" / "1" / name).read_bytes() == (disk["reference"] / name).read_bytes(), name
    return errors[0]


def first_write_of(disk, part: str) -> int:
    return next(i for i, (_, path) in enumerate(disk["writes"]) if part in path)


# a checkpoint's save fails in the default suite; the run's first writes (its lock, config.json) and the
# checkpoint's commit marker fail as any other in the slow suite's every-write test
@pytest.mark.parametrize(
    "part",
    [
        *(pytest.param(part, marks=pytest.mark.slow) for part in (".lock", "config.json.tmp", "COMMITTED.tmp")),
        "orbax-checkpoint-tmp",
    ],
)
def test_a_full_disk_at_a_write_stops_in_one_line_and_the_rerun_resumes(disk, part, tmp_path):
    index = first_write_of(disk, part)
    line = fails_then_resumes(disk, index, ENOSPC, tmp_path)
    assert "No space left on device" in line and "rerun the same command" in line


def test_a_file_system_turning_read_only_mid_run_stops_in_one_line(disk, tmp_path):
    line = fails_then_resumes(disk, first_write_of(disk, "meta.json.tmp"), EROFS, tmp_path)
    assert "Read-only file system" in line


def test_a_read_only_logs_folder_is_refused_in_one_line_and_nothing_is_made(disk, tmp_path):
    logs = tmp_path / "logs"
    failed = frugal(disk["library"], disk["config"], logs, calls=0, errno=EROFS)
    assert failed.returncode == 74
    assert len(failed.stderr.strip().splitlines()) == 1 and "Read-only file system" in failed.stderr
    assert list(logs.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("errno", [ENOSPC, EROFS])
def test_every_write_of_a_run_can_fail_and_be_resumed(disk, errno, tmp_path):
    """Each write of the traced run in turn."""
    indices = range(len(disk["writes"]))
    for index in indices:
        fails_then_resumes(disk, index, errno, tmp_path / str(index))
    print(f"{len(indices)} of {len(disk['writes'])} writes failed with errno {errno}; each resumed byte-identical")
