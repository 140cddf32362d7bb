"""Peer Atari figures, run with the peers' own interpreter (.venv-bench: stable-baselines3, torch CPU, gymnasium):

    .venv-bench/bin/python benchmarks/peer_atari.py env --envs 8 --steps 2000
    .venv-bench/bin/python benchmarks/peer_atari.py sb3 --steps 3000 --learning-starts 1000
    .venv-bench/bin/python benchmarks/peer_atari.py bytes

``env``: what most users write, ``gymnasium.make("ALE/Pong-v5", frameskip=1)`` with
``AtariPreprocessing`` (frame skip 4, max-pool, 84x84 gray) and ``FrameStackObservation(4)``, ``--envs``
of them in a ``SyncVectorEnv``, random actions: agent steps per second over all envs.
``sb3``: SB3's DQN with its ``AtariWrapper`` on Pong (Nature CNN, batch 32, Adam 1e-4, an update
every 4 steps after ``--learning-starts``): ``learn(--steps)``'s steps per second.
``bytes``: bytes per transition of SB3's replay buffer for 4x84x84 uint8 stacks,
``optimize_memory_usage`` off and on. Each prints one JSON line.
"""

import argparse
import json
import time

import gymnasium as gym
import numpy as np


def env_rate(envs: int, steps: int) -> dict:
    import ale_py

    gym.register_envs(ale_py)

    def make():
        env = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.25)
        env = gym.wrappers.AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84, grayscale_obs=True)
        return gym.wrappers.FrameStackObservation(env, 4)

    vector = gym.vector.SyncVectorEnv([make for _ in range(envs)])
    vector.reset(seed=0)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        vector.step(rng.integers(0, 6, envs))
    seconds = time.perf_counter() - start
    return {"peer": "gymnasium wrappers", "envs": envs, "agent_steps_per_s": envs * steps / seconds}


def sb3_rate(steps: int, learning_starts: int) -> dict:
    import ale_py
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("ALE/Pong-v5", n_envs=1, seed=0), n_stack=4)
    model = DQN(
        "CnnPolicy",
        env,
        learning_rate=1e-4,
        buffer_size=50_000,
        learning_starts=learning_starts,
        batch_size=32,
        train_freq=4,
        gradient_steps=1,
        target_update_interval=8000,
        optimize_memory_usage=False,
        seed=0,
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start
    return {"peer": "sb3 dqn", "torch_threads": torch.get_num_threads(), "steps_per_s": steps / seconds}


def sb3_bytes() -> dict:
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    figures = {}
    observations = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    for optimize in (False, True):
        size = 10_000
        buffer = ReplayBuffer(
            size,
            observations,
            spaces.Discrete(6),
            device="cpu",
            optimize_memory_usage=optimize,
            handle_timeout_termination=not optimize,
        )
        arrays = [buffer.observations, buffer.actions, buffer.rewards, buffer.dones]
        arrays += [buffer.next_observations] if not optimize else []
        arrays += [buffer.timeouts] if hasattr(buffer, "timeouts") else []
        figures[f"optimize_memory_usage={optimize}"] = sum(a.nbytes for a in arrays) / size
    return {"peer": "sb3 replay", "bytes_per_transition": figures}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("env", "sb3", "bytes"))
    parser.add_argument("--envs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--learning-starts", type=int, default=1000)
    args = parser.parse_args()
    if args.what == "env":
        print(json.dumps(env_rate(args.envs, args.steps)))
    elif args.what == "sb3":
        print(json.dumps(sb3_rate(args.steps, args.learning_starts)))
    else:
        print(json.dumps(sb3_bytes()))


if __name__ == "__main__":
    main()
