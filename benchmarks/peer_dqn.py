"""Peer DQN on CartPole-v1 at CleanRL's hyperparameters: stable-baselines3 or SBX.

Run with the peers' own interpreter (``make bench`` installs them in .venv-bench):
    .venv-bench/bin/python benchmarks/peer_dqn.py sb3 --steps 500000
Prints one JSON line: wall time of ``learn``, steps per second, final greedy return (10 episodes).
"""

import argparse
import json
import time

import gymnasium as gym


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("library", choices=["sb3", "sbx"])
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.library == "sb3":
        from stable_baselines3 import DQN
    else:
        from sbx import DQN
    from stable_baselines3.common.evaluation import evaluate_policy

    env = gym.make("CartPole-v1")
    model = DQN(
        "MlpPolicy",
        env,
        learning_rate=2.5e-4,
        buffer_size=10_000,
        learning_starts=10_000,
        batch_size=128,
        tau=1.0,
        gamma=0.99,
        train_freq=10,
        gradient_steps=1,
        target_update_interval=500,
        exploration_fraction=0.5,
        exploration_initial_eps=1.0,
        exploration_final_eps=0.05,
        policy_kwargs={"net_arch": [120, 84]},
        seed=args.seed,
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=args.steps)
    wall = time.perf_counter() - start
    mean_return, _ = evaluate_policy(model, gym.make("CartPole-v1"), n_eval_episodes=10, deterministic=True)
    print(
        json.dumps(
            {
                "library": args.library,
                "wall_s": wall,
                "steps_per_s": args.steps / wall,
                "final_return": float(mean_return),
            }
        )
    )


if __name__ == "__main__":
    main()
