"""Whole Atari games through a run's own evaluation path: random play, or a checkpoint's agent.

Random play (a fresh agent at epsilon 1) gives the floor a learning curve is read against:

    python scripts/atari_play.py configs/merl/budget/atari_dqn.json --idx 1 --games 30

A run directory plays its latest checkpoint's agent (or the one of ``--step``) at each epsilon
given, e.g. the paper's greedy evaluation beside Dopamine's epsilon 0.001:

    python scripts/atari_play.py logs/atari_dqn/1 --epsilon 0 0.001 --games 15

Each line printed is one JSON summary: the mean, the standard deviation and the standard error over
games, the scores per seed, and how many games were still running at the step cap (a greedy
Breakout agent that never presses FIRE after a lost life waits there; the cap scores the game as
it stood).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from frugalrl.cli import load_config
from frugalrl.envs.atari import AtariEnvs
from frugalrl.runs import checkpoint
from frugalrl.runs.rundir import RunDir
from frugalrl.train.atari import AtariLoop, evaluate_games, make_atari_policy


def checkpoint_agent(loop: AtariLoop, run_dir: Path, step: int | None) -> tuple[Any, int]:
    """The agent state of the run's newest complete checkpoint (of ``step`` if given)."""
    frames = jnp.zeros((loop.cfg["num_seeds"], 84, 84), jnp.uint8)
    shapes = jax.eval_shape(loop.first_carry, loop.keys, frames)
    found = checkpoint.restore_latest(RunDir(run_dir).checkpoints, shapes, at=step)
    if found is None:
        raise SystemExit(f"error: no complete checkpoint in {run_dir / 'checkpoints'}")
    carry, meta = found
    return carry.agent, int(meta["step"])


def summary(cfg: dict[str, Any], epsilon: float, at: int, scores: np.ndarray, unfinished: np.ndarray) -> str:
    flat = scores.reshape(-1)
    return json.dumps(
        {
            "env": cfg["env"]["name"],
            "step": at,
            "epsilon": epsilon,
            "games": len(flat),
            "mean": float(flat.mean()),
            "std": float(flat.std()),
            "sem": float(flat.std(ddof=1) / np.sqrt(len(flat))),
            "per_seed": scores.mean(1).round(3).tolist(),
            "unfinished": int(unfinished.sum()),
            "max_episode_steps": cfg["eval"]["max_episode_steps"],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a grid file of an Atari experiment, or a run directory")
    parser.add_argument("--idx", type=int, default=1, help="the config index of a grid file")
    parser.add_argument("--step", type=int, help="a run directory's checkpoint to play (default: the newest)")
    parser.add_argument("--epsilon", type=float, nargs="+", help="default: 1 for a grid file, 0 for a run")
    parser.add_argument("--games", type=int, default=30, help="games in all (split over the config's seeds)")
    args = parser.parse_args()
    from_run = args.source.is_dir()
    cfg = json.loads((args.source / "config.json").read_text()) if from_run else load_config(args.source, args.idx)
    seeds = cfg["num_seeds"]
    cfg = {**cfg, "eval": {**cfg["eval"], "episodes": -(-args.games // seeds)}}
    loop = AtariLoop(cfg)
    agent, at = checkpoint_agent(loop, args.source, args.step) if from_run else (loop.fresh().agent, 0)
    envs = AtariEnvs(loop.rom, loop.params, seeds * cfg["eval"]["episodes"], 2)
    policy = make_atari_policy(loop.agent)
    for epsilon in args.epsilon or [0.0 if from_run else 1.0]:
        played = {**cfg, "eval": {**cfg["eval"], "epsilon": epsilon}}
        scores, unfinished = evaluate_games(policy, agent, envs, played, at=at)
        print(summary(played, epsilon, at, scores, unfinished), flush=True)


if __name__ == "__main__":
    main()
