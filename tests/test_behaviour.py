"""The training paths give the result CSVs they gave before the run session was redesigned.

``tests/behaviour/golden/`` holds the CSVs of short runs of a subset of ``tests/behaviour/b_*.json``
(flat DQN, MeDQN(U), QDagger with pretraining, SAC with resets, the recurrent DQN on a T-Maze, a
Dyna model), recorded at the commit before the redesign; ``scripts/behaviour_baseline.py check``
compares every path. XLA's CPU code depends on the processor's vector extensions and the JAX
version, so the bytes are compared only on the kind of machine they were recorded on.
"""

import importlib.util
import json
from pathlib import Path

import pytest

from frugalrl.cli import load_config
from frugalrl.train.run import run

BEHAVIOUR = Path(__file__).parent / "behaviour"
GOLDEN = sorted(path.name for path in (BEHAVIOUR / "golden").iterdir())


def _recorder():
    spec = importlib.util.spec_from_file_location(
        "behaviour_baseline", BEHAVIOUR.parent.parent / "scripts" / "behaviour_baseline.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def same_machine():
    recorded = json.loads((BEHAVIOUR / "baseline.json").read_text())["machine"]
    here = _recorder().machine()
    if recorded != here:
        pytest.skip(f"golden CSVs recorded on {recorded}; this machine is {here} (scripts/behaviour_baseline.py)")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder whose logs/b_teacher/1 holds the teacher the QDagger student loads."""
    path = tmp_path_factory.mktemp("behaviour")
    cfg = load_config(str(BEHAVIOUR / "b_teacher.json"), 1)
    run(cfg, path / "logs" / "b_teacher" / "1", progress=False)
    return path


@pytest.mark.parametrize("name", GOLDEN)
def test_run_writes_the_recorded_csvs(name, same_machine, workdir, monkeypatch):
    monkeypatch.chdir(workdir)  # the student's teacher/run is relative: logs/b_teacher/1
    cfg = load_config(str(BEHAVIOUR / f"{name}.json"), 1)
    run_dir = workdir / "logs" / name / "1"
    run(cfg, run_dir, progress=False)
    for recorded in sorted((BEHAVIOUR / "golden" / name).iterdir()):
        assert (run_dir / recorded.name).read_text() == recorded.read_text(), f"{name}/{recorded.name} changed"
