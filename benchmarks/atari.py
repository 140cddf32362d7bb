"""Atari speed and memory: the env path, DQN training steps per second, replay bytes, against peers.

1. Env agent steps per second on Pong (dopamine protocol, random actions) at 1, 2 and 8 envs:
   ale-py's vector env alone (one frame per step, the ceiling), frugalrl's path (the Atari loop's
   acting blocks: ale-py stepped from inside the jitted program, game bookkeeping and resets, the
   frame pushed onto each seed's stack, the actions drawn on the device), and gymnasium's ``AtariPreprocessing`` +
   ``FrameStackObservation`` in a ``SyncVectorEnv`` (``peer_atari.py env``).
2. DQN on Pong, Nature CNN, batch 32, Adam 1e-4, an update every 4 steps after 1,000 steps: a
   frugalrl run's env steps per second (compile excluded) at 1 and 8 seeds, against the bare
   update floor (the same update, jitted alone, timed on a fixed batch, times the run's updates)
   and against SB3's DQN with its AtariWrapper (``peer_atari.py sb3``, one seed per model).
3. Replay bytes per transition at 84x84: frugalrl's frame-once replay against SB3's buffer with
   ``optimize_memory_usage`` off and on.

Every figure is the median of ``--repeats``; peers run in their own interpreter:

    python benchmarks/atari.py --peer-python .venv-bench/bin/python --repeats 3
"""

from __future__ import annotations

from frugalrl.devices import use_all_cores

CORES = use_all_cores()

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from frugalrl.agents.losses import LossInputs  # noqa: E402
from frugalrl.config import resolve  # noqa: E402
from frugalrl.devices import seed_vmap  # noqa: E402
from frugalrl.envs.atari import PROTOCOLS, AtariEnvs  # noqa: E402
from frugalrl.replay import fifo  # noqa: E402
from frugalrl.train.atari import SEGMENT_STEPS, AtariLoop, make_acting_block, make_game_step  # noqa: E402
from frugalrl.train.host import HostCarry  # noqa: E402
from frugalrl.train.loop import unrolled_updates  # noqa: E402
from frugalrl.train.run import run  # noqa: E402

PEER = Path(__file__).resolve().parent / "peer_atari.py"
LEARNING_STARTS = 1000


def dqn_config(num_seeds: int, total: int) -> dict:
    return resolve(
        {
            "env": {"name": "ALE/Pong-v5"},
            "agent": {"name": "dqn", "loss": "huber", "target_every": 8000, "epsilon_decay_steps": 10_000},
            "network": {"name": "nature_cnn", "hidden": [512], "input_scale": 1 / 255},
            "optimizer": {"name": "adam", "lr": 1e-4},
            "replay": {"capacity": 50_000, "batch_size": 32},
            "train": {"train_every": 4, "learning_starts": LEARNING_STARTS},
            "eval": {"every": 0, "episodes": 1, "max_episode_steps": 1},
            "checkpoint": {"every": 0},
            "total_steps": total,
            "num_seeds": num_seeds,
        }
    )


def ale_rate(envs: int, steps: int) -> float:
    """ale-py's vector env alone, configured as frugalrl asks for it."""
    vector = AtariEnvs("pong", PROTOCOLS["dopamine"], envs, min(envs, CORES))
    vector.reset(np.arange(envs))
    rng = np.random.default_rng(0)
    actions = rng.integers(0, vector.num_actions, (steps, envs))
    start = time.perf_counter()
    for step_actions in actions:
        vector.step(step_actions)
    return envs * steps / (time.perf_counter() - start)


class EnvOnly:
    """Stands in for a session: the loop writes game rows here."""

    seeds = list(range(64))

    def write_episodes(self, rows) -> None:
        pass


def frugal_env_rate(envs: int, steps: int) -> float:
    """The Atari loop's acting blocks (ale-py stepped from inside the program, game bookkeeping and
    resets) with a device step that only stacks the frame and draws actions."""
    cfg = dqn_config(envs, steps)
    loop = AtariLoop(cfg)
    loop.session = EnvOnly()
    loop.learning_from = 10**12
    carry = loop.fresh()
    padding = loop.params.padding

    def device_step(c: HostCarry, frame, final_frame, reward, terminated, truncated, first):
        key, pick = jax.random.split(c.key[0])
        action = jax.random.randint(pick, c.action.shape, 0, loop.spec.num_actions)
        obs = fifo.push_frame(c.obs, frame, first, padding)
        return c._replace(obs=obs, action=action, key=c.key.at[0].set(key)), {}

    block = make_acting_block(make_game_step(loop.train_envs, device_step))
    loop.acting_block = jax.jit(block, donate_argnums=(0, 1))
    carry, first = loop.play(carry, 0, SEGMENT_STEPS)  # compiles
    start, at = time.perf_counter(), first
    while at < first + steps:
        carry, at = loop.play(carry, at, min(first + steps, (at // SEGMENT_STEPS + 1) * SEGMENT_STEPS))
    jax.block_until_ready(carry)
    return envs * (at - first) / (time.perf_counter() - start)


def run_rate(num_seeds: int, total: int) -> tuple[float, int]:
    """(env steps per second per seed of a DQN run, compile excluded; its updates per seed)."""
    cfg = dqn_config(num_seeds, total)
    with tempfile.TemporaryDirectory() as folder:
        summary = run(cfg, Path(folder) / "run", progress=False)
    updates = (total - LEARNING_STARTS) // cfg["train"]["train_every"]
    return total / summary.run_seconds, updates


def update_floor(num_seeds: int, calls: int) -> float:
    """Seconds of one bare update of every seed: the run's own update (same network, batch,
    optimizer, seed layout), jitted alone on a fixed batch."""
    cfg = dqn_config(num_seeds, LEARNING_STARTS + 100)
    loop = AtariLoop(cfg)
    agent, unrolled = loop.agent, unrolled_updates(cfg)
    carry = loop.fresh()
    rng = np.random.default_rng(0)
    frames = jnp.asarray(rng.integers(0, 256, (num_seeds, 32, 84, 84, 4), dtype=np.uint8))
    batch = fifo.Batch(
        frames,
        jnp.asarray(rng.integers(0, loop.spec.num_actions, (num_seeds, 32)), jnp.int32),
        jnp.ones((num_seeds, 32), jnp.float32),
        jnp.full((num_seeds, 32), 0.99, jnp.float32),
        frames,
    )

    def one(state, batch, key):
        return agent.update(state, batch, key, agent.td_target(state, batch), LossInputs())

    update = jax.jit(seed_vmap(one, unrolled=unrolled), donate_argnums=0)
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    state, _ = update(carry.agent, batch, keys)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(calls):
        state, metrics = update(state, batch, keys)
    jax.block_until_ready(state)
    return (time.perf_counter() - start) / calls


def peer(python: str, *args: str) -> dict:
    out = subprocess.run([python, str(PEER), *args], capture_output=True, text=True, timeout=3600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-python", default=".venv-bench/bin/python")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--env-steps", type=int, default=3000)
    parser.add_argument("--run-steps", type=int, default=3000)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {CORES} XLA host devices, jax {jax.__version__}")
    print("## env agent steps per second on Pong (x4 = frames per second)")
    for envs in (1, 2, 8):
        ale = median([ale_rate(envs, args.env_steps) for _ in range(args.repeats)])
        ours = median([frugal_env_rate(envs, args.env_steps) for _ in range(args.repeats)])
        gym = median(
            [
                peer(args.peer_python, "env", "--envs", str(envs), "--steps", str(args.env_steps))["agent_steps_per_s"]
                for _ in range(args.repeats)
            ]
        )
        print(
            f"{envs} envs: ale-py alone {ale:.0f}, frugalrl {ours:.0f} ({ours / ale:.0%} of ale-py), "
            f"gymnasium wrappers {gym:.0f} (frugalrl {ours / gym:.2f}x)"
        )
    print("## DQN on Pong: env steps per second per seed, compile excluded")
    sb3 = median(
        [
            peer(args.peer_python, "sb3", "--steps", str(args.run_steps), "--learning-starts", str(LEARNING_STARTS))[
                "steps_per_s"
            ]
            for _ in range(args.repeats)
        ]
    )
    for seeds in (1, 8):
        rates = [run_rate(seeds, args.run_steps) for _ in range(args.repeats)]
        rate, updates = median([r for r, _ in rates]), rates[0][1]
        floor = median([update_floor(seeds, 50) for _ in range(args.repeats)])
        run_seconds, floor_seconds = args.run_steps / rate, updates * floor
        sb3_per_seed = sb3 / seeds  # SB3 trains one seed per model: n seeds are n models, one after another
        print(
            f"{seeds} seed(s): frugalrl {rate:.1f} steps/s per seed ({rate * seeds:.1f} over all); run "
            f"{run_seconds:.1f} s vs bare update floor {floor_seconds:.1f} s ({updates} updates x {floor * 1e3:.1f} "
            f"ms): {run_seconds / floor_seconds:.2f}x; SB3 DQN {sb3:.1f} steps/s for one model, "
            f"{sb3_per_seed:.1f} per seed for {seeds}: frugalrl {rate / sb3_per_seed:.2f}x per seed"
        )
    print("## replay bytes per transition at 84x84")
    state = jax.eval_shape(
        lambda: fifo.init(jnp.zeros((84, 84), jnp.uint8), jnp.zeros((), jnp.int32), 100_000, 27_000, stack=4)
    )
    ours = fifo.memory_bytes(state)["bytes_per_transition"]
    theirs = peer(args.peer_python, "bytes")["bytes_per_transition"]
    print(f"frugalrl {ours:.1f}; SB3 " + ", ".join(f"{k} {v:.0f} ({v / ours:.1f}x)" for k, v in theirs.items()))


if __name__ == "__main__":
    main()
