"""Peer SAC gradient-update speed: SBX (SAC in JAX, from PyPI) at SR-SAC's network and batch sizes.

Run with the peers' own interpreter (``make bench`` installs them in .venv-bench):
    .venv-bench/bin/python benchmarks/peer_sac.py --models 5 --gradient-steps 32 --calls 20
Builds ``--models`` independent SBX SAC models on Pendulum-v1 (256-256 MLPs, batch 256), fills
each replay with ``--fill`` random steps, compiles ``model.train`` once, then times ``--calls``
calls of ``model.train(gradient_steps, 256)`` per model, one model after the other (SBX runs one
seed per model). Prints one JSON line: updates, seconds, updates per second over all models.
"""

import argparse
import json
import time

import gymnasium as gym


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1)
    parser.add_argument("--gradient-steps", type=int, default=32)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--fill", type=int, default=2000)
    args = parser.parse_args()
    from sbx import SAC

    models = []
    for seed in range(args.models):
        model = SAC(
            "MlpPolicy",
            gym.make("Pendulum-v1"),
            learning_rate=3e-4,
            buffer_size=100_000,
            learning_starts=args.fill,
            batch_size=256,
            tau=0.005,
            gamma=0.99,
            train_freq=1,
            gradient_steps=args.gradient_steps,
            policy_kwargs={"net_arch": [256, 256]},
            seed=seed,
            verbose=0,
        )
        model.learn(total_timesteps=args.fill)  # random warm-up steps only: fills the replay, no update
        model.train(gradient_steps=args.gradient_steps, batch_size=256)  # compile
        models.append(model)
    start = time.perf_counter()
    for model in models:
        for _ in range(args.calls):
            model.train(gradient_steps=args.gradient_steps, batch_size=256)
    # SBX's train ends by reading its losses back to the host, so the work is done when it returns
    seconds = time.perf_counter() - start
    updates = args.models * args.calls * args.gradient_steps
    print(json.dumps({"updates": updates, "seconds": seconds, "updates_per_s": updates / seconds}))


if __name__ == "__main__":
    main()
