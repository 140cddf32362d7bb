"""The corpus of bad config files (tests/bad_configs): each refused with one line naming the key,
exit status 2 and nothing written, before any run directory exists.

``expected.json`` says, per file, what the line must name (the key, or for a file that is not a
grid at all, what is wrong with it) and which kind of mistake the file is."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from frugalrl.cli import main

CORPUS = Path(__file__).parent / "bad_configs"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


def test_the_corpus_is_complete_and_large():
    files = {path.name for path in CORPUS.glob("*.json")} - {"expected.json"}
    assert files == set(EXPECTED)
    assert len(files) >= 70
    kinds = {entry["kind"] for entry in EXPECTED.values()}
    assert {"non-finite number", "size against memory", "integer range", "duplicate key"} <= kinds
    assert {"encoding and depth", "env parameter type"} <= kinds


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_bad_config_is_refused_in_one_line_naming_the_key(name, tmp_path, capsys):
    logs = tmp_path / "logs"
    status = main(["run", str(CORPUS / name), "--logs", str(logs), "--no-progress"])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("frugal: error: "), captured.err
    assert EXPECTED[name]["names"] in lines[0]
    assert captured.out == ""
    assert not logs.exists(), "a refused config must leave nothing behind"


@pytest.mark.parametrize("name", ["batch_1e9.json", "seed_2_70.json", "nested_100k.json", "latin1.json"])
def test_the_process_exits_2_with_one_line(name, tmp_path):
    logs = tmp_path / "logs"
    result = subprocess.run(
        [sys.executable, "-m", "frugalrl.cli", "run", str(CORPUS / name), "--logs", str(logs)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and EXPECTED[name]["names"] in result.stderr
    assert not logs.exists()


def test_a_refused_size_leaves_an_earlier_run_alone(tmp_path, capsys):
    """--fresh with a config too big to run must not empty the directory before refusing."""
    grid = tmp_path / "g.json"
    small = {"total_steps": [200], "train": {"learning_starts": [100]}, "eval": {"every": [0], "episodes": [1]}}
    small["checkpoint"] = {"every": [100]}
    grid.write_text(json.dumps(small))
    logs = tmp_path / "logs"
    assert main(["run", str(grid), "--logs", str(logs), "--no-progress"]) == 0
    before = sorted(p.relative_to(logs) for p in logs.rglob("*"))
    grid.write_text(json.dumps({**small, "replay": {"batch_size": [1e9]}}))
    capsys.readouterr()
    assert main(["run", str(grid), "--logs", str(logs), "--fresh", "--no-progress"]) == 2
    assert "replay/batch_size" in capsys.readouterr().err
    assert sorted(p.relative_to(logs) for p in logs.rglob("*")) == before
