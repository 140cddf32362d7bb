"""Atari end to end: the two protocols' rules, whole-game rows, and exact resume after kill -9.

ale-py ships its ROMs, so these tests play real games: Qbert (4 lives, 25 points a cube) and
Breakout. The frame-stacking replay has its own tests in test_frame_replay.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
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

from frugalrl.config import resolve
from frugalrl.envs.atari import PROTOCOLS, AtariEnvs, atari_params, parse_name
from frugalrl.replay import fifo
from frugalrl.runs import checkpoint
from frugalrl.runs.rundir import RunDir
from frugalrl.train.atari import AtariLoop, evaluate_games, make_atari_policy
from frugalrl.train.run import run

CSVS = ("result_Train.csv", "result_Test.csv", "metrics.csv")
# a short MeDQN(R) variant of configs/merl/MeDQN_atari_medqn.json --idx 36 (Qbert, lambda_end 2, E 1, every 20)
SHORT_MEDQN = {
    # a new seed at the first game end 1000 steps after the last: games start seeded and unseeded
    "env": {"name": "QbertNoFrameskip-v4", "params": {"reseed_after": 1000}},
    "agent": {
        "name": "dqn",
        "n_step": 3,
        "loss": "mse",
        "target_every": 500,
        "target_unit": "grad_steps",
        "epsilon_decay_steps": 1000,
        "epsilon_end": 0.05,
        "bootstrap_truncation": False,
    },
    "consolidation": {"source": "replay", "lambda_start": 0.01, "lambda_end": 2.0},
    "network": {"name": "nature_cnn", "hidden": [512], "conv_init": "torch_default"},
    "optimizer": {"name": "adam", "lr": 1e-4, "max_grad_norm": -1.0},
    "train": {"train_every": 20, "learning_starts": 200, "epochs_per_batch": 1},
    "replay": {"capacity": 1500, "batch_size": 8},  # small batches: the test is about resuming, not learning
    "total_steps": 2400,
    "num_seeds": 2,
    "eval": {"every": 1200, "episodes": 1, "epsilon": 0.05, "max_episode_steps": 200},
    "checkpoint": {"every": 400, "keep": 2},
    "seed": 3,
}


def test_names_give_the_rom_and_the_protocol_and_overrides_are_checked():
    assert parse_name("QbertNoFrameskip-v4") == ("qbert", "deepmind")
    assert parse_name("ALE/BattleZone-v5") == ("battle_zone", "dopamine")
    assert parse_name("CartPole-v1") is None
    deepmind = atari_params("NameThisGameNoFrameskip-v4", {"params": {}, "max_episode_steps": -1})
    assert deepmind == PROTOCOLS["deepmind"] and deepmind.life_loss and deepmind.sticky_actions == 0.0
    dopamine = atari_params("ALE/Pong-v5", {"params": {"noop_max": 5}, "max_episode_steps": 100})
    assert (dopamine.sticky_actions, dopamine.noop_max, dopamine.max_steps_in_episode) == (0.25, 5, 100)
    assert atari_params("ALE/Pong-v5", {"params": {"protocol": "deepmind"}}).padding == "repeat"
    with pytest.raises(ValueError, match="'env/params/sticky_actions' must be a probability"):
        atari_params("ALE/Pong-v5", {"params": {"sticky_actions": 2}})
    with pytest.raises(KeyError, match="has no parameter"):
        atari_params("ALE/Pong-v5", {"params": {"gravity": 1}})
    assert atari_params("ALE/Pong-v5", {"params": {"reseed_after": 0}}).reseed_after == 0  # a seed every game
    with pytest.raises(ValueError, match="'env/params/reseed_after' must be an integer in 0 .. 1000000"):
        atari_params("ALE/Pong-v5", {"params": {"reseed_after": -5}})


@pytest.mark.parametrize(
    "params, message",
    [
        ({"sticky_actions": 1.5}, "config key 'env/params/sticky_actions' must be a probability in [0, 1], got 1.5"),
        (
            {"protocol": "tianshou"},
            "config key 'env/params/protocol' must be one of dopamine, deepmind, got 'tianshou'",
        ),
        ({"lives": 3}, "config key 'env/params': environment ALE/Pong-v5 has no parameter(s) lives"),
    ],
)
def test_a_bad_atari_parameter_is_refused_in_one_line_before_anything_is_written(params, message, tmp_path):
    config = tmp_path / "atari.json"
    config.write_text(
        json.dumps({"env": [{"name": ["ALE/Pong-v5"], "params": [params]}], "network": [{"name": ["nature_cnn"]}]})
    )
    command = [sys.executable, "-m", "frugalrl.cli", "run", str(config), "--logs", str(tmp_path / "logs")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"frugal: error: {message}"), lines
    assert not (tmp_path / "logs").exists()


def play(envs: AtariEnvs, seeds: list[int], actions: np.ndarray) -> np.ndarray:
    frames, _ = envs.reset(np.array(seeds))
    out = [frames]
    for step_actions in actions:
        out.append(envs.step(step_actions)[0])
    return np.stack(out, axis=1)


def test_sticky_actions_follow_each_envs_seed_and_only_the_dopamine_protocol_has_them():
    actions = np.random.default_rng(0).integers(0, 4, size=(150, 4))
    actions[:, 1:] = actions[:, :1]  # every env gets the same actions
    sticky = AtariEnvs("breakout", PROTOCOLS["dopamine"], 4)
    assert sticky.vector.ale is not None
    first, again = play(sticky, [1, 2, 3, 4], actions), play(sticky, [1, 2, 3, 4], actions)
    np.testing.assert_array_equal(first, again)  # a game is a function of its seed and actions
    differ = [not np.array_equal(first[0], first[lane]) for lane in (1, 2, 3)]
    assert all(differ), "sticky actions 0.25 should make envs of other seeds diverge under the same actions"
    plain = AtariEnvs("breakout", dataclasses.replace(PROTOCOLS["deepmind"], noop_max=0, fire_reset=False), 4)
    frames = play(plain, [1, 2, 3, 4], actions)
    assert all(np.array_equal(frames[0], frames[lane]) for lane in (1, 2, 3))  # no randomness left


def paddle_pushes(params, rounds: int = 60, n: int = 8) -> np.ndarray:
    """Breakout's paddle, parked at the left wall and at rest, gets one RIGHT step (4 frames): the
    column of its right edge after it, per trial. A sticky frame repeats the previous action (NOOP)
    and starts the push a frame later, so the edge ends further left."""
    noop, right, left = 0, 2, 3
    envs = AtariEnvs("breakout", params, n, 2)  # no FIRE: the ball is never served, the game never ends
    envs.reset(np.arange(n) + 7)
    edges = []
    for _ in range(rounds):
        for action in [left] * 6 + [noop] * 3:
            envs.step(np.full(n, action))
        frames = envs.step(np.full(n, right))[0]
        paddle_row = frames[:, 76, 4:80] > 60  # inside the walls
        edges.append([4 + np.flatnonzero(row).max() for row in paddle_row])
    return np.array(edges).ravel()


def test_sticky_actions_are_measured_at_their_rate_a_delay_of_whole_frames_with_geometric_odds():
    dopamine = PROTOCOLS["dopamine"]
    plain = paddle_pushes(dataclasses.replace(dopamine, sticky_actions=PROTOCOLS["deepmind"].sticky_actions))
    assert len(set(plain.tolist())) == 1  # no sticky frames (the deepmind rate, 0): every push alike
    full_push = plain[0]
    sticky = paddle_pushes(dopamine)
    trials = len(sticky)
    delayed, delayed_twice = (sticky < full_push).mean(), (sticky < full_push - 2).mean()
    # P(first frame sticky) = p, P(the first two) = p^2 (per frame, repeating the previous action)
    p = dopamine.sticky_actions
    assert abs(delayed - p) < 4 * np.sqrt(p * (1 - p) / trials), delayed
    assert abs(delayed_twice - p**2) < 4 * np.sqrt(p**2 * (1 - p**2) / trials), delayed_twice


def test_deepmind_resets_take_up_to_30_no_op_frames_drawn_by_seed():
    envs = AtariEnvs("qbert", PROTOCOLS["deepmind"], 64)
    envs.reset(np.arange(64))
    noops = np.asarray(envs.reset_frames)
    assert noops.min() >= 1 and noops.max() <= 30 and len(set(noops.tolist())) > 10, noops
    dopamine = AtariEnvs("qbert", PROTOCOLS["dopamine"], 8)
    dopamine.reset(np.arange(8))
    assert np.all(np.asarray(dopamine.reset_frames) == 0)


def test_the_device_calls_play_the_same_games_as_the_host_api_resets_of_any_count_included():
    """ale-py's XLA step and masked reset (seeded and unseeded), from inside one scanned program,
    against its Python API on an env of its own seeded alike."""
    n, steps, params = 4, 1500, PROTOCOLS["deepmind"]
    actions = np.random.default_rng(1).integers(0, 4, (steps, n))
    actions[:, 1] = actions[:, 0]  # lanes 0 and 1 play one game twice, so resets of two envs at once happen
    # lanes 0, 1 and 3 start their later games from unseeded resets (-1), lane 2 from seeds
    first_seeds, later_seeds = np.array([100, 100, 101, 102]), np.array([-1, -1, 1001, -1])
    host, device = AtariEnvs("breakout", params, n, 2), AtariEnvs("breakout", params, n, 2)
    host.reset(first_seeds)
    next_seeds, expected = later_seeds, []
    for step_actions in actions:
        frames, reward, over, truncated, lives = host.step(step_actions)
        ended = over | truncated
        if ended.any():
            reset_frames, reset_lives = host.reset(next_seeds[ended], ended)
            frames[ended], lives[ended] = reset_frames[ended], reset_lives[ended]
            next_seeds = np.where(next_seeds >= 0, next_seeds + ended, -1)
        expected.append((frames, reward, over, truncated, lives))

    def step(state, step_actions):
        handle, next_seeds = state
        handle, frames, reward, over, truncated, lives = device.device_step(handle, step_actions)
        ended = over | truncated
        handle, reset_frames, reset_lives = device.device_reset(handle, next_seeds, ended)
        frames = jnp.where(ended[:, None, None], reset_frames, frames)
        next_seeds = jnp.where(next_seeds >= 0, next_seeds + ended, -1)
        return (handle, next_seeds), (frames, reward, over, truncated, jnp.where(ended, reset_lives, lives))

    device.reset(first_seeds)
    play = jax.jit(lambda handle, seeds, actions: jax.lax.scan(step, (handle, seeds), actions)[1])
    got = play(device.handle(), jnp.asarray(later_seeds, jnp.int32), jnp.asarray(actions, jnp.int32))
    ends_per_step = np.stack([e[2] | e[3] for e in expected]).sum(1)
    assert ends_per_step.sum() >= 20 and {1, 2} <= set(ends_per_step.tolist())  # one game ended, or two at once
    for got_part, expected_part in zip(got, zip(*expected, strict=True), strict=True):
        np.testing.assert_array_equal(np.asarray(got_part), np.stack(expected_part))


def random_run(tmp_path: Path, name: str, steps: int, evaluation: dict | None = None) -> tuple[dict, Path]:
    """A run acting at random (no learning) whose final checkpoint keeps its replay."""
    cfg = resolve(
        {
            **SHORT_MEDQN,
            "env": {"name": name},
            "consolidation": {"source": "off"},
            "agent": {**SHORT_MEDQN["agent"], "epsilon_start": 1.0, "epsilon_end": 1.0},
            "train": {"train_every": 4, "learning_starts": steps},
            "replay": {"capacity": steps, "batch_size": 32},
            "total_steps": steps,
            "num_seeds": 1,
            "eval": {"every": 0, "episodes": 1, "max_episode_steps": 10, **(evaluation or {})},
            "checkpoint": {"every": 0, "final": True},
        }
    )
    path = tmp_path / name.replace("/", "_")
    run(cfg, path, progress=False)
    return cfg, path


def final_replay(cfg: dict, path: Path) -> fifo.ReplayState:
    loop = AtariLoop(cfg)
    shapes = jax.eval_shape(loop.first_carry, loop.keys, jnp.zeros((1, 84, 84), jnp.uint8))
    carry, _ = checkpoint.restore_latest(RunDir(path).checkpoints, shapes)
    return jax.tree.map(lambda x: np.asarray(x[0]), carry.replay)


def test_deepmind_life_losses_end_learning_episodes_rows_are_whole_games_with_real_scores(tmp_path):
    cfg, path = random_run(tmp_path, "QbertNoFrameskip-v4", 2500)
    games = pd.read_csv(path / "result_Train.csv")
    assert len(games) >= 2
    assert (games["return"] % 25 == 0).all() and games["return"].max() >= 50  # Qbert's points, not clipped
    replay = final_replay(cfg, path)
    held = replay.reward[: cfg["total_steps"]]
    terminated = int(((replay.ends[: cfg["total_steps"]] & fifo.TERMINATED) != 0).sum())
    assert set(np.unique(held).tolist()) <= {0.0, 1.0}  # reward signs for learning
    # Qbert has 4 lives: 4 learning episodes per game, and up to 3 more in the game still going
    assert 4 * len(games) <= terminated <= 4 * len(games) + 3, (terminated, len(games))
    assert games["length"].sum() <= cfg["total_steps"]


def test_dopamine_games_end_only_at_game_over_with_rewards_clipped_for_learning(tmp_path):
    cfg, path = random_run(tmp_path, "ALE/Qbert-v5", 2500)
    games = pd.read_csv(path / "result_Train.csv")
    replay = final_replay(cfg, path)
    ends = replay.ends[: cfg["total_steps"]]
    assert int(((ends & fifo.TERMINATED) != 0).sum()) == len(games) >= 1
    assert set(np.unique(replay.reward[: cfg["total_steps"]]).tolist()) <= {0.0, 1.0}
    assert (games["return"] % 25 == 0).all() and games["return"].max() >= 50


class Recording:
    """An AtariEnvs that records each step's rewards, lives and game ends."""

    def __init__(self, envs: AtariEnvs) -> None:
        self.envs, self.params, self.steps = envs, envs.params, []

    def reset(self, seeds, mask=None):
        return self.envs.reset(seeds, mask)

    def step(self, actions):
        out = self.envs.step(actions)
        self.steps.append(out[1:])
        return out


def test_evaluation_plays_whole_games_through_life_losses_and_reports_their_real_scores():
    cfg = resolve({**SHORT_MEDQN, "num_seeds": 2, "eval": {"episodes": 2, "epsilon": 1.0, "max_episode_steps": 5000}})
    loop = AtariLoop(cfg)
    carry = loop.fresh()
    envs = Recording(AtariEnvs("qbert", loop.params, 4))
    returns, unfinished = evaluate_games(make_atari_policy(loop.agent), carry.agent, envs, cfg, at=0)
    assert not unfinished.any()  # random play ends Qbert's games well within the cap
    rewards, over, truncated, lives = (np.stack(x) for x in zip(*envs.steps, strict=True))
    for env in range(4):
        end = int(np.flatnonzero(over[:, env] | truncated[:, env])[0])
        lost = np.flatnonzero(np.diff(lives[: end + 1, env]) < 0)
        assert over[end, env] and len(lost) >= 3  # a whole game: every life lost before it ended
        assert returns.reshape(-1)[env] == rewards[: end + 1, env].sum()  # the real score of the game


def test_evaluation_games_still_running_at_the_step_cap_are_flagged_and_the_run_log_says_so(tmp_path):
    cfg = resolve({**SHORT_MEDQN, "num_seeds": 2, "eval": {"episodes": 2, "epsilon": 1.0, "max_episode_steps": 12}})
    loop = AtariLoop(cfg)
    envs = Recording(AtariEnvs("qbert", loop.params, 4))
    returns, unfinished = evaluate_games(make_atari_policy(loop.agent), loop.fresh().agent, envs, cfg, at=0)
    assert len(envs.steps) == 12 and unfinished.all()  # no Qbert game ends in 12 steps
    np.testing.assert_array_equal(returns.reshape(-1), np.stack([s[0] for s in envs.steps]).sum(0))
    _, path = random_run(tmp_path, "QbertNoFrameskip-v4", 200, evaluation={"every": 100, "episodes": 3})
    log = (path / "log.txt").read_text()
    assert "step 200: 3 of 3 evaluation games (per seed: [3]) were still running at the 10-step cap" in log
    assert len(pd.read_csv(path / "result_Test.csv")) == 2  # the games are still scored


def test_the_play_script_replays_a_checkpoints_own_evaluation_and_counts_cut_games(tmp_path):
    evaluation = {"every": 300, "episodes": 2, "epsilon": 1.0, "max_episode_steps": 60}
    _, path = random_run(tmp_path, "QbertNoFrameskip-v4", 300, evaluation=evaluation)
    script = Path(__file__).parents[1] / "scripts" / "atari_play.py"
    command = [sys.executable, str(script), str(path), "--epsilon", "1", "--games", "2"]
    played = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    logged = pd.read_csv(path / "result_Test.csv")
    assert played["step"] == 300 and played["games"] == 2 and played["unfinished"] == 2  # 60 steps end no game
    assert logged["return"].iloc[-1] > 0  # random play scores in 60 steps, so the match below is not 0 == 0
    assert played["per_seed"] == [round(float(logged["return"].iloc[-1]), 3)]  # the run's own evaluation


def start(config: Path, logs: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    command = [sys.executable, "-m", "frugalrl.cli", "run", str(config), "--logs", str(logs), "--no-progress"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_short_medqn_atari_run_killed_mid_run_resumes_to_the_uninterrupted_runs_csvs(tmp_path):
    config = tmp_path / "qbert.json"
    short = {**SHORT_MEDQN, "total_steps": 1200, "eval": {**SHORT_MEDQN["eval"], "every": 600}}
    grid = {k: [{kk: [vv] for kk, vv in v.items()} if isinstance(v, dict) else v] for k, v in short.items()}
    config.write_text(json.dumps(grid))
    alone = start(config, tmp_path / "alone")
    assert alone.wait(timeout=900) == 0, alone.stderr.read()
    expected = {name: (tmp_path / "alone" / "qbert" / "1" / name).read_text() for name in CSVS}
    assert len(pd.read_csv(io_string(expected["result_Train.csv"]))) >= 2
    run_dir = tmp_path / "killed" / "qbert" / "1"
    process = start(config, tmp_path / "killed")
    deadline = time.time() + 600
    while not (run_dir / "checkpoints" / "400" / "COMMITTED").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # mid-game, past the checkpoint
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "result_Test.csv").exists() or "1200" not in (run_dir / "result_Test.csv").read_text()
    newest = max(int(p.parent.name) for p in (run_dir / "checkpoints").glob("*/COMMITTED"))
    meta = json.loads((run_dir / "checkpoints" / str(newest) / "meta.json").read_text())
    assert any(meta["actions_since_seeding"]), "the checkpoint should hold envs in play, to be replayed on resume"
    resumed = start(config, tmp_path / "killed")
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read()
    log = (run_dir / "log.txt").read_text()
    assert "resuming from the checkpoint at step" in log
    replayed_ends = re.search(r"replayed \(the most in one lane\), (\d+) game ends? on the way", log)
    assert replayed_ends and int(replayed_ends[1]) >= 1, "the replay should go through a game's unseeded restart"
    assert {name: (run_dir / name).read_text() for name in CSVS} == expected


def io_string(text: str):
    import io

    return io.StringIO(text)


def qdagger_short(teacher: Path) -> dict:
    """configs/reincarnation/atari_qdagger_dqn_pong.json at a test's size, with a Dopamine-written teacher."""
    grid = json.loads((Path(__file__).parents[1] / "configs/reincarnation/atari_qdagger_dqn_pong.json").read_text())
    cfg = {key: value[0] for key, value in grid.items()}
    cfg = {key: {k: v[0] for k, v in value.items()} if isinstance(value, dict) else value for key, value in cfg.items()}
    cfg.update(total_steps=320, num_seeds=2, teacher={"run": str(teacher)})
    cfg["replay"] = {"capacity": 1000, "batch_size": 8}  # small batches: a third of the learning time
    cfg["train"] = {"train_every": 4, "learning_starts": 100}
    cfg["pretraining"] = {**cfg["pretraining"], "steps": 40, "eval_every": 20}
    cfg["eval"] = {**cfg["eval"], "every": 160, "episodes": 1, "max_episode_steps": 150}
    cfg["checkpoint"] = {"every": 160, "keep": 2}
    cfg.pop("replay/capacity", None), cfg.pop("replay/batch_size", None)
    cfg.pop("train/train_every", None), cfg.pop("train/learning_starts", None)
    cfg["distillation"] = {**cfg["distillation"], "decay_period": 200}
    return cfg


def test_qdagger_on_pong_pretrains_on_dopamines_replay_then_distills_online(tmp_path):
    from conftest import dopamine_written_run
    from frugalrl.train.dopamine import import_dopamine_teacher

    import_dopamine_teacher(dopamine_written_run(tmp_path), 3, tmp_path / "teachers" / "Pong", "Pong")
    cfg = resolve(qdagger_short(tmp_path / "teachers" / "Pong"))
    path = tmp_path / "run"
    summary = run(cfg, path, progress=False)
    assert summary.final_returns.shape == (2,)
    offline = pd.read_csv(path / "result_Offline.csv")
    assert sorted(offline["step"].unique().tolist()) == [20, 40] and len(offline) == 4
    scores = json.loads((path / "reincarnation.json").read_text())
    assert scores["random"] < 0 and scores["teacher"] <= 21  # Pong: a game is lost 0-21 at random
    metrics = pd.read_csv(path / "metrics.csv")
    assert metrics["distillation_loss"].notna().all() and (metrics["distillation_loss"] > 0).all()
    tests = pd.read_csv(path / "result_Test.csv")
    assert sorted(tests["step"].unique().tolist()) == [0, 160, 320]  # eval/at_start, then every 160
    log = (path / "log.txt").read_text()
    assert "teacher data: " in log and "normalised scores" in log and "lambda" in log


CONFIGS = Path(__file__).parents[1] / "configs"
ATARI_CONFIGS = sorted(CONFIGS.glob("merl/MeDQN_atari_*.json")) + sorted(CONFIGS.glob("reincarnation/atari_*.json"))


def test_every_atari_config_passes_the_sweep_check():
    from frugalrl.cli import main

    assert len(ATARI_CONFIGS) == 8
    for config in ATARI_CONFIGS:
        assert main(["sweep", str(config), "--check"]) == 0, config


def fake_teacher(folder: Path, game: str, actions: int, source: Path) -> None:
    """A teacher for ``game``: the Dopamine-written one, its output layer and replay actions cut to ``actions``."""
    from frugalrl.train.dopamine import import_dopamine_teacher

    target = folder / "teachers" / game
    import_dopamine_teacher(source, 3, target, game)
    with np.load(target / "params.npz") as saved:
        params = dict(saved)
    last = sorted(name for name in params if name.endswith("kernel"))[-1]
    bias = last.replace("kernel", "bias")
    params[last] = np.resize(params[last], params[last].shape[:-1] + (actions,))
    params[bias] = np.resize(params[bias], (actions,))
    np.savez(target / "params.npz", **params)
    meta = json.loads((target / "teacher.json").read_text())
    (target / "teacher.json").write_text(json.dumps({**meta, "num_actions": actions}))
    action_file = target / "replay" / "action.npy"
    np.save(action_file, np.load(action_file) % actions)


def started(run_dir: Path) -> bool:
    """Training has begun: a whole game played, or QDagger's offline pretraining compiled."""
    log = run_dir / "log.txt"
    if log.exists() and "compiled offline pretraining" in log.read_text():
        return True
    train = run_dir / "result_Train.csv"
    return train.exists() and len(train.read_text().splitlines()) > 1


@pytest.mark.slow
def test_every_atari_config_starts_training_with_one_index_per_game(tmp_path):
    from conftest import dopamine_written_run

    source = dopamine_written_run(tmp_path)
    for game, actions in (("Pong", 6), ("Breakout", 4), ("BeamRider", 9)):
        fake_teacher(tmp_path, game, actions, source)
    for config in [c for c in ATARI_CONFIGS if "MeDQN" not in c.name] + [c for c in ATARI_CONFIGS if "MeDQN" in c.name]:
        indices = [1, 2, 3, 4, 5, 36] if config.name == "MeDQN_atari_medqn.json" else [1, 2, 3, 4, 5]
        indices = indices if "MeDQN" in config.name else [1, 2] if "rainbow" in config.name else [1]  # 2: impala_cnn
        for idx in indices:
            logs = tmp_path / "logs"
            command = [sys.executable, "-m", "frugalrl.cli", "run", str(config), "--idx", str(idx), "--logs", str(logs)]
            process = subprocess.Popen(command + ["--no-progress"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
            run_dir = logs / config.stem / str(idx)
            deadline = time.time() + 300
            while not started(run_dir) and process.poll() is None and time.time() < deadline:
                time.sleep(0.2)
            ok = started(run_dir)
            process.kill()
            err = process.communicate()[1]
            assert ok, f"{config.name} --idx {idx} did not start: {err[-2000:]}"
            print(f"{config.name} --idx {idx}: started")
            shutil.rmtree(logs)
