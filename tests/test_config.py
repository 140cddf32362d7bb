"""The schema: defaults, 'did you mean', one clear line per bad key, exit status 2, nothing written."""

import json
import subprocess
import sys

import pytest

from frugalrl.cli import main
from frugalrl.config import ConfigError, resolve


def test_defaults_fill_everything():
    cfg = resolve({})
    assert cfg["agent"]["gamma"] == 0.99 and cfg["replay"]["capacity"] == 10_000
    assert cfg["env"]["name"] == "CartPole-v1"


def test_integral_floats_are_integers():
    cfg = resolve({"total_steps": 5e5, "replay": {"capacity": 1e4}})
    assert cfg["total_steps"] == 500_000 and isinstance(cfg["total_steps"], int)


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"optimizer": {"learning_rate": 1e-3}},
            "unknown config key 'optimizer/learning_rate'; did you mean 'optimizer/lr'",
        ),
        ({"lr": 1e-3}, "unknown config key 'lr'; did you mean 'optimizer/lr'"),
        ({"agent": {"gama": 0.9}}, "did you mean 'agent/gamma'"),
        ({"total_steps": "many"}, "config key 'total_steps' must be an integer, got 'many'"),
        ({"total_steps": 1.5}, "config key 'total_steps' must be an integer"),
        ({"num_seeds": 0}, "config key 'num_seeds' must be > 0, got 0"),
        ({"agent": {"gamma": 1.5}}, "config key 'agent/gamma' must be in [0, 1], got 1.5"),
        ({"agent": {"loss": "l2"}}, "config key 'agent/loss' must be one of mse, huber"),
        ({"agent": {"double": "yes"}}, "config key 'agent/double' must be true or false"),
        ({"network": {"hidden": [64, "wide"]}}, "config key 'network/hidden' must be a list of integers"),
        ({"env": {"name": "CartPole-v0"}}, "unknown environment 'CartPole-v0'; did you mean 'CartPole-v1'"),
        ({"env": {"params": {"gravity_x": 1.0}}}, "config key 'env/params': environment CartPole-v1 has no parameter"),
        (
            {"total_steps": 1005, "train": {"train_every": 10}},
            "'total_steps' (1005) must be a multiple of 'train/train_every'",
        ),
        ({"agent": 3}, "config key 'agent' must be an object"),
    ],
)
def test_bad_configs_name_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        resolve(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path, capsys):
    grid = tmp_path / "bad.json"
    grid.write_text(json.dumps({"optimizer": [{"lrr": [1e-3]}]}))
    logs = tmp_path / "logs"
    assert main(["run", str(grid), "--logs", str(logs)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "frugal: error: unknown config key 'optimizer/lrr'; did you mean 'optimizer/lr'?"
    assert not logs.exists()


def test_cli_process_exit_status(tmp_path):
    grid = tmp_path / "bad.json"
    grid.write_text(json.dumps({"agent": [{"gamma": [2.0]}]}))
    result = subprocess.run(
        [sys.executable, "-m", "frugalrl.cli", "run", str(grid), "--logs", str(tmp_path / "l")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "'agent/gamma' must be in [0, 1]" in result.stderr
    assert not (tmp_path / "l").exists()


def test_sweep_prints_n_and_lists(tmp_path, capsys):
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps({"optimizer": [{"lr": [1e-3, 3e-4]}], "seed": [0, 1, 2]}))
    assert main(["sweep", str(grid), "--list", "--check"]) == 0
    out = capsys.readouterr().out
    assert "Number of total combinations" in out and ": 6" in out
    assert "    5  optimizer/lr=0.001  seed=2" in out


def test_sweep_check_reports_the_bad_index(tmp_path, capsys):
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps({"agent": [{"gamma": [0.9, 1.5]}]}))
    assert main(["sweep", str(grid), "--check"]) == 2
    assert "config index 2: config key 'agent/gamma'" in capsys.readouterr().err


def test_typed_sections_view_the_schemas_keys_with_their_types():
    from dataclasses import fields

    from frugalrl.config import SCHEMA
    from frugalrl.config.sections import SECTIONS, ReplaySection, TrainSection

    for section in SECTIONS:
        keys = set(SCHEMA[section.name])
        names = {f.name for f in fields(section)}
        assert names <= keys, f"{section.__name__} has fields the schema's '{section.name}' lacks: {names - keys}"
        if section.name != "agent":  # the agent section is viewed in parts
            assert names == keys, f"{section.__name__} misses keys of '{section.name}': {keys - names}"
    cfg = resolve({"train": {"train_every": 4}, "replay": {"prioritized": True}})
    assert TrainSection.of(cfg).train_every == 4 and ReplaySection.of(cfg).prioritized is True
