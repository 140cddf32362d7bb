"""Long end-to-end checks, run with `make test-slow` (marked slow, not in the default suite)."""

from pathlib import Path

import pytest

from frugalrl.cli import load_config
from frugalrl.train.run import run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dqn_classic.json"


@pytest.mark.slow
def test_dqn_solves_cartpole_with_cleanrl_hyperparameters(tmp_path):
    """The issue's bar: mean final greedy return >= 475 over 8 seeds at 500k steps."""
    summary = run(load_config(str(CONFIG), 1), tmp_path / "cartpole", progress=False)
    assert summary.final_returns.shape == (8,)
    assert summary.final_returns.mean() >= 475, summary.table()
