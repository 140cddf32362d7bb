"""Q-values at the T-Maze junction in a memory agent's checkpoint: does each seed still use the cue?

For each seed, reads the last ``--episodes`` episodes of its replay and prints the Q-value of the
correct and of the wrong turn at the junction (the last decision), the share of those episodes where
the greedy turn would be right, and how many of them reached the junction on time and turned wrong.

    python scripts/tmaze_junction_q.py logs/passive_tmaze_50_lstm_2000/1 [--step 61200]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from frugalrl import envs
from frugalrl.agents.recurrent_dqn import map_sequences
from frugalrl.envs.tmaze import MOVES
from frugalrl.replay.episodes import Episode
from frugalrl.runs import checkpoint
from frugalrl.runs.rundir import RunDir
from frugalrl.train.episodic import carry_shapes, make_agent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory of a T-Maze recurrent_dqn run")
    parser.add_argument("--step", type=int, default=None, help="a checkpoint step (default: the latest)")
    parser.add_argument("--episodes", type=int, default=200)
    args = parser.parse_args()

    cfg = json.loads((args.run / "config.json").read_text())
    if "TMaze" not in cfg["env"]["name"] or cfg["agent"]["name"] != "recurrent_dqn":
        raise SystemExit(f"{args.run} is not a T-Maze recurrent_dqn run")
    env, env_params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    keys = jax.random.split(jax.random.PRNGKey(0), cfg["num_seeds"])
    shapes = carry_shapes(agent, spec, cfg, keys)
    restored = checkpoint.restore_latest(RunDir(args.run).checkpoints, shapes, at=args.step)
    if restored is None:
        raise SystemExit(f"no checkpoint in {RunDir(args.run).checkpoints}")
    carry, meta = restored
    moves = [tuple(m) for m in np.asarray(MOVES).tolist()]
    up, down = moves.index((0, 1)), moves.index((0, -1))
    print(f"checkpoint at step {meta['step']}")
    for seed in range(cfg["num_seeds"]):
        replay = jax.tree.map(lambda x, s=seed: x[s], carry.replay)
        count = int(replay.count)
        if count > replay.action.shape[0]:
            raise SystemExit("the replay has wrapped around; the last episodes are not contiguous")
        last = slice(max(count - args.episodes, 0), count)
        batch = Episode(*(field[last] for field in tuple(replay)[:5]))
        params = jax.tree.map(lambda x, s=seed: x[s], carry.agent.params)
        q = np.asarray(map_sequences(agent.network, params, batch, jax.random.PRNGKey(0), False))
        decision = batch.action.shape[1] - 1
        obs = np.asarray(batch.obs)
        goal_up = np.sum(np.where(obs[..., 0] == 0, obs[..., 1], 0), axis=1) > 0  # the cue, wherever seen
        q_junction = q[:, decision]
        correct = np.where(goal_up, q_junction[:, up], q_junction[:, down])
        wrong = np.where(goal_up, q_junction[:, down], q_junction[:, up])
        on_time = obs[:, decision, 0] == 1
        wrong_turns = int((on_time & (np.asarray(batch.reward[:, -1]) == 0)).sum())
        print(
            f"seed {seed}: {on_time.sum()} of the last {len(on_time)} episodes on time at the junction, "
            f"{wrong_turns} turned wrong; Q correct turn {correct[on_time].mean():.3f}, wrong turn "
            f"{wrong[on_time].mean():.3f}; greedy turn right in {np.mean(correct[on_time] > wrong[on_time]):.2f}"
        )


if __name__ == "__main__":
    main()
