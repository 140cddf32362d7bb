"""Whole runs: seeds differ, reruns are bit-identical, killed runs resume exactly, bad checkpoints fall back."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from frugalrl import envs
from frugalrl.agents import make_agent
from frugalrl.config import ConfigError, resolve
from frugalrl.config.schema import first_learning_block
from frugalrl.errors import TrainingError
from frugalrl.runs import checkpoint
from frugalrl.train.flat import learning_mode, segment_steps
from frugalrl.train.loop import init_carry, make_segment, seed_keys
from frugalrl.train.run import run

SMALL = {
    "num_seeds": 2,
    "total_steps": 6000,
    "agent": {"epsilon_decay_steps": 3000, "target_every": 200},
    "network": {"hidden": [32, 32]},
    "replay": {"capacity": 2000, "batch_size": 32},
    "train": {"learning_starts": 500, "train_every": 2},
    "eval": {"every": 2000, "episodes": 3},
    "checkpoint": {"every": 2000, "keep": 3},
}


def csvs(path: Path) -> dict[str, str]:
    return {name: (path / name).read_text() for name in ("result_Train.csv", "result_Test.csv", "metrics.csv")}


def test_seeds_differ_and_rerun_is_bit_identical(tmp_path):
    cfg = resolve(SMALL)
    run(cfg, tmp_path / "a", progress=False)
    run(cfg, tmp_path / "b", progress=False)
    assert csvs(tmp_path / "a") == csvs(tmp_path / "b")
    train = pd.read_csv(tmp_path / "a" / "result_Train.csv")
    by_seed = [train[train.seed == s]["return"].to_numpy() for s in (0, 1)]
    assert len(by_seed[0]) != len(by_seed[1]) or not np.array_equal(*by_seed)
    metrics = pd.read_csv(tmp_path / "a" / "metrics.csv")
    assert not np.allclose(metrics[metrics.seed == 0]["loss"], metrics[metrics.seed == 1]["loss"])


def test_run_k_of_a_config_uses_other_keys():
    assert not np.array_equal(seed_keys(0, 0, 2), seed_keys(0, 1, 2))
    assert len({tuple(k) for k in np.asarray(seed_keys(0, 0, 8)).tolist()}) == 8


def test_corrupt_latest_checkpoint_falls_back_and_resume_is_exact(tmp_path):
    cfg = resolve(SMALL)
    run(cfg, tmp_path / "ref", progress=False)
    run(cfg, tmp_path / "b", progress=False)
    steps = checkpoint.complete_steps(tmp_path / "b" / "checkpoints")
    assert steps == [2000, 4000]
    # corrupt every array file of the latest checkpoint
    for file in (tmp_path / "b" / "checkpoints" / "4000" / "state").rglob("*"):
        if file.is_file() and file.stat().st_size > 0 and file.suffix != ".json":
            file.write_bytes(b"\x00garbage" * 16)
    # and leave a half-written one (no marker) that must be ignored
    (tmp_path / "b" / "checkpoints" / "5000").mkdir()
    summary = run(cfg, tmp_path / "b", progress=False)
    assert summary.resumed_from == 2000
    assert csvs(tmp_path / "b") == csvs(tmp_path / "ref")
    assert "is unusable" in (tmp_path / "b" / "log.txt").read_text()


@pytest.mark.slow  # the default suite kills a run at each kind of write boundary (test_kill_points.py)
def test_kill_9_midway_then_rerun_gives_the_uninterrupted_result(tmp_path):
    grid = tmp_path / "exp.json"
    config = {
        **SMALL,
        "total_steps": 16000,  # killed once the first checkpoint (4000) is seen: three quarters still to run
        "train": {"learning_starts": 500, "train_every": 1},
        "checkpoint": {"every": 4000, "keep": 2},
        "eval": {"every": 8000, "episodes": 3},
    }
    grid.write_text(json.dumps({**config, "network": {"hidden": [[32, 32]]}}))  # a grid: lists are alternatives
    command = [sys.executable, "-m", "frugalrl.cli", "run", str(grid), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    # the reference run fills a compile cache the other two load from: cached programs must agree too
    env["FRUGAL_XLA_CACHE"] = str(tmp_path / "xla-cache")
    subprocess.run(command + ["--logs", str(tmp_path / "ref")], check=True, env=env, capture_output=True)
    cached = [name for name in os.listdir(tmp_path / "xla-cache") if name.endswith("-cache")]
    assert any(name.startswith("jit_segment") for name in cached)
    # only programs worth a file (the segments, evaluation, init: not the ~50 copies and slices of
    # milliseconds, which made every write's LRU scan of the folder slower)
    assert len(cached) <= 8, sorted(cached)

    killed = subprocess.Popen(
        command + ["--logs", str(tmp_path / "k")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = tmp_path / "k" / "exp" / "1" / "checkpoints"
    deadline = time.time() + 300
    while not checkpoint.complete_steps(checkpoints) and time.time() < deadline and killed.poll() is None:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    interrupted = tmp_path / "k" / "exp" / "1"
    assert "Time elapsed" not in (interrupted / "log.txt").read_text()

    resumed = subprocess.run(command + ["--logs", str(tmp_path / "k")], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert csvs(interrupted) == csvs(tmp_path / "ref" / "exp" / "1")


def test_schedule_counts_are_exact():
    cfg = resolve(
        {
            "num_seeds": 2,
            "total_steps": 2000,
            "network": {"hidden": [8]},
            "replay": {"capacity": 300, "batch_size": 8},
            "agent": {"target_every": 500},
            "train": {"learning_starts": 500, "train_every": 10, "gradient_steps": 2},
        }
    )
    env, params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    carry = init_carry(agent, env, params, spec, cfg, seed_keys(0, 0, 2))
    segment = jax.jit(make_segment(agent, env, params, spec, cfg, 100))  # 1000 env steps, learning "mixed"
    carry, (steps, metrics) = segment(carry)
    # blocks start at 0, 10, ..., 990; those starting at >= 500 update twice
    assert int(carry.env_step) == 1000 and int(carry.grad_step) == 2 * 50
    assert np.isnan(np.asarray(metrics["loss"])[:50]).all() and np.isfinite(np.asarray(metrics["loss"])[50:]).all()
    # the target was synced at env step 1000, right after the last update
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), carry.agent.target_params, carry.agent.params)
    assert jax.tree.all(same)
    always = jax.jit(make_segment(agent, env, params, spec, cfg, 100, learning="always"))
    carry, _ = always(carry)
    assert int(carry.grad_step) == 2 * 150
    assert np.asarray(steps.finished_length).shape == (100, 10, 2)


def test_cleanrl_update_count_and_segment_plan():
    cfg = resolve(
        {
            "total_steps": 500_000,
            "train": {"learning_starts": 10_000, "train_every": 10},
            "eval": {"every": 50_000},
            "checkpoint": {"every": 100_000},
        }
    )
    assert first_learning_block(cfg) == 10_000
    seg = segment_steps(cfg)
    assert seg == 10_000  # divides the periods and the start of learning: no segment needs a branch
    modes = [learning_mode(cfg, start, seg) for start in range(0, 500_000, seg)]
    assert modes[0] == "never" and set(modes[1:]) == {"always"}
    assert (500_000 - first_learning_block(cfg)) // 10 == 49_000  # CleanRL's number of updates
    odd = resolve(
        {
            "total_steps": 30_000,
            "train": {"learning_starts": 1234, "train_every": 2},
            "eval": {"every": 10_000},
            "checkpoint": {"every": 0},
        }
    )
    seg = segment_steps(odd)
    assert [learning_mode(odd, s, seg) for s in range(0, 30_000, seg)][0] == "mixed"


def test_generated_seed_is_recorded_and_reused_on_resume(tmp_path):
    cfg = resolve(
        {
            **SMALL,
            "generate_random_seed": True,
            "total_steps": 1000,
            "eval": {"every": 0, "episodes": 1},
            "checkpoint": {"every": 500, "keep": 1},
        }
    )
    run(cfg, tmp_path / "r", progress=False)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["generate_random_seed"] is True and 0 <= saved["seed"] < 1_000_000
    first = csvs(tmp_path / "r")
    summary = run(cfg, tmp_path / "r", progress=False)  # resumes from step 500 with the saved seed
    assert summary.resumed_from == 500
    assert json.loads((tmp_path / "r" / "config.json").read_text())["seed"] == saved["seed"]
    assert csvs(tmp_path / "r") == first


def test_a_changed_config_is_refused_on_resume(tmp_path):
    cfg = resolve(
        {**SMALL, "total_steps": 1000, "eval": {"every": 0, "episodes": 1}, "checkpoint": {"every": 0, "keep": 1}}
    )
    run(cfg, tmp_path / "r", progress=False)
    changed = resolve(
        {
            **SMALL,
            "total_steps": 1000,
            "optimizer": {"lr": 1e-3},
            "eval": {"every": 0, "episodes": 1},
            "checkpoint": {"every": 0, "keep": 1},
        }
    )
    with pytest.raises(ConfigError, match="different config .'optimizer/lr': 0.00025 -> 0.001"):
        run(changed, tmp_path / "r", progress=False)


def test_a_diverging_loss_stops_the_run_with_a_clear_error(tmp_path):
    cfg = resolve(
        {
            **SMALL,
            "total_steps": 2000,
            "optimizer": {"lr": 1e12},
            "eval": {"every": 0, "episodes": 1},
            "checkpoint": {"every": 0, "keep": 1},
        }
    )
    with pytest.raises(TrainingError, match=r"the loss of seed\(s\) \[0, 1\] became NaN or inf"):
        run(cfg, tmp_path / "r", progress=False)


def test_replay_memory_is_printed_in_readable_units():
    from frugalrl.train.session import human_bytes

    assert human_bytes(713) == "713 B"
    assert human_bytes(210_121) == "205.20 KiB"
    assert human_bytes(2.22 * 2**20) == "2.22 MiB"
    assert human_bytes(3 * 2**30) == "3.00 GiB"


def test_an_atari_config_checks_and_a_typo_in_another_name_is_an_unknown_environment(tmp_path):
    from frugalrl.cli import main

    config = tmp_path / "atari.json"
    config.write_text(json.dumps({"env": [{"name": ["PongNoFrameskip-v4"]}], "network": [{"name": ["nature_cnn"]}]}))
    assert main(["sweep", str(config), "--check"]) == 0
    config.write_text(json.dumps({"env": [{"name": ["Cartpole-v1"]}]}))
    assert main(["sweep", str(config), "--check"]) == 2


def test_a_run_saved_before_a_schema_key_existed_still_matches_at_that_keys_default(tmp_path):
    from frugalrl.config import check_same_config

    cfg = resolve({**SMALL, "total_steps": 1000})
    older = json.loads(json.dumps(cfg))
    del older["network"]["conv_init"]  # as written by a frugalrl without that key
    check_same_config(older, cfg, tmp_path)
    other = resolve({**SMALL, "total_steps": 1000, "network": {"conv_init": "torch_default"}})
    with pytest.raises(ConfigError, match="'network/conv_init': '<absent>' -> 'torch_default'"):
        check_same_config(older, other, tmp_path)


def test_a_checkpoint_of_an_older_state_layout_restores_by_name_when_fields_were_only_added(tmp_path):
    from typing import Any, NamedTuple

    from frugalrl.runs import checkpoint

    class Old(NamedTuple):
        params: Any
        step: Any

    class New(NamedTuple):  # gained empty fields, as Carry did for teachers and JSRL
        params: Any
        step: Any
        teacher: Any = ()
        jsrl: Any = ()

    old = Old({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, np.int32(7))
    checkpoint.save(tmp_path, 10, old, {"rows": {}}, keep=1)
    restored, meta = checkpoint.restore_latest(tmp_path, New(old.params, old.step))
    assert isinstance(restored, New) and restored.teacher == () and meta["step"] == 10
    np.testing.assert_array_equal(restored.params["w"], old.params["w"])
    # a real change of layout is still refused
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint could be restored"):
        checkpoint.restore_latest(tmp_path, New({"w": np.zeros((3, 2), np.float32)}, np.int32(0)))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.restore_latest(tmp_path, New({"v": old.params["w"]}, old.step))
