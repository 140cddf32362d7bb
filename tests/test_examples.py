"""The examples run, and the one-file DQN computes exactly what ``frugal run`` does."""

import importlib.util
import json
from pathlib import Path

from frugalrl.config import resolve
from frugalrl.train.run import run

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dqn_in_one_file_writes_the_result_test_csv_of_frugal_run(tmp_path):
    cfg = resolve(
        {
            "num_seeds": 2,
            "total_steps": 2000,
            "network": {"hidden": [32, 32]},
            "replay": {"capacity": 1000, "batch_size": 32},
            "train": {"learning_starts": 300, "train_every": 2, "random_steps": 100},
            "agent": {"target_every": 100, "epsilon_decay_steps": 1000, "n_step": 2},
            "optimizer": {"lr": 1e-3},
            "eval": {"every": 500, "episodes": 3},
            "checkpoint": {"every": 0, "final": False},
        }
    )
    run(cfg, tmp_path / "frugal", progress=False)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    written = load("dqn_in_one_file").main(["--config", str(tmp_path / "config.json"), "--out", str(tmp_path / "one")])
    expected = (tmp_path / "frugal" / "result_Test.csv").read_text()
    assert len(expected.splitlines()) == 1 + 4 * 2  # a header, then 4 evaluations of 2 seeds
    assert written.read_text() == expected
