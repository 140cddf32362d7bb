"""Uniform random play's score on the game of an Atari config, through the run's own evaluation.

Plays ``--games`` whole games per seed lane with uniformly random actions (the evaluation path of
the Atari loop at epsilon 1: the config's protocol, seeds and step cap), and prints the mean, the
standard deviation and the standard error over games: the floor a learning curve is read against.

    python scripts/atari_random_play.py configs/merl/budget/atari_dqn.json --idx 1 --games 30
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from frugalrl.cli import load_config
from frugalrl.envs.atari import AtariEnvs
from frugalrl.train.atari import AtariLoop, evaluate_games, make_atari_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a grid file of an Atari experiment")
    parser.add_argument("--idx", type=int, default=1)
    parser.add_argument("--games", type=int, default=30, help="games in all (split over the config's seeds)")
    args = parser.parse_args()
    cfg = load_config(args.config, args.idx)
    seeds = cfg["num_seeds"]
    episodes = -(-args.games // seeds)
    cfg = {**cfg, "eval": {**cfg["eval"], "episodes": episodes, "epsilon": 1.0}}
    loop = AtariLoop(cfg)
    envs = AtariEnvs(loop.rom, loop.params, seeds * episodes, 2)
    scores = evaluate_games(make_atari_policy(loop.agent), loop.fresh().agent, envs, cfg, at=0).reshape(-1)
    summary = {
        "env": cfg["env"]["name"],
        "games": len(scores),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "sem": float(scores.std(ddof=1) / np.sqrt(len(scores))),
        "max_episode_steps": min(loop.params.max_steps_in_episode, cfg["eval"]["max_episode_steps"]),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
