"""SAC gradient updates per second at SR-SAC's sizes (256-256 MLPs, batch 256): frugalrl vs SBX.

frugalrl runs the training loop's own jitted segment on Pendulum-v1: each block is one env step
for every seed, then ``--replay-ratio`` SAC updates per seed, each on a fresh minibatch sampled
on the device, inside one ``lax.scan``; seeds are vmapped and split over the CPU cores. The
replay is first filled by a non-learning segment. SBX (``peer_sac.py``, its own interpreter)
runs one model per seed: 1 seed in one process; 10 seeds as two processes side by side (one per
core), five models each, one after the other. Every figure is the median of ``--repeats``.

    python benchmarks/sac_updates.py --peer-python .venv-bench/bin/python --repeats 3
"""

from __future__ import annotations

from frugalrl.devices import unroll_threefry_on_cpu, use_all_cores

CORES = use_all_cores()
unroll_threefry_on_cpu()

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
from jax.sharding import PartitionSpec  # noqa: E402

from frugalrl import envs  # noqa: E402
from frugalrl.agents import make_agent  # noqa: E402
from frugalrl.config import resolve  # noqa: E402
from frugalrl.devices import seed_axis_spec, seed_mesh  # noqa: E402
from frugalrl.train.loop import init_carry, make_segment, seed_keys  # noqa: E402

PEER = Path(__file__).resolve().parent / "peer_sac.py"
FILL = 2000


def config(num_seeds: int, replay_ratio: int) -> dict:
    return resolve(
        {
            "env": {"name": "Pendulum-v1"},
            "agent": {"name": "sac", "tau": 0.005},
            "network": {"hidden": [256, 256]},
            "optimizer": {"lr": 3e-4},
            "replay": {"capacity": 100_000, "batch_size": 256},
            "train": {"train_every": 1, "gradient_steps": replay_ratio, "learning_starts": 0},
            "num_seeds": num_seeds,
        }
    )


def sharded(body, mesh, carry):
    specs = jax.tree.map(seed_axis_spec, carry)
    out = (specs, (PartitionSpec(None, None, "seed"), PartitionSpec(None, "seed")))
    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(specs,), out_specs=out, check_vma=False))


def segment_rates(cfg: dict, fill: int, blocks: int, repeats: int) -> list[float]:
    """Env steps per second over all seeds of the loop's learning segment of ``blocks`` blocks (compile
    excluded), after a non-learning segment of ``fill`` blocks; one figure per timed call."""
    num_seeds = cfg["num_seeds"]
    env, env_params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    mesh = seed_mesh(num_seeds)
    carry = init_carry(agent, env, env_params, spec, cfg, seed_keys(0, 0, num_seeds))
    carry, _ = sharded(make_segment(agent, env, env_params, spec, cfg, fill, "never"), mesh, carry)(carry)
    learn = sharded(make_segment(agent, env, env_params, spec, cfg, blocks, "always"), mesh, carry)
    carry, out = learn(carry)  # compile and warm up
    jax.block_until_ready(out)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        carry, out = learn(carry)
        jax.block_until_ready(out)
        rates.append(num_seeds * blocks / (time.perf_counter() - start))
    return rates


def frugal(num_seeds: int, replay_ratio: int, blocks: int, repeats: int) -> dict[str, float]:
    """Seed-updates per second of the loop's learning segment (compile excluded)."""
    rates = [r * replay_ratio for r in segment_rates(config(num_seeds, replay_ratio), FILL, blocks, repeats)]
    return {"updates_per_s": statistics.median(rates), "runs": rates}


def sbx(python: str, num_seeds: int, replay_ratio: int, calls: int, repeats: int) -> dict[str, float]:
    """SBX's updates per second over ``num_seeds`` models, split over one process per core."""
    processes = min(CORES, num_seeds)
    per_process = num_seeds // processes
    rates = []
    for _ in range(repeats):
        args = [str(PEER), "--models", str(per_process), "--gradient-steps", str(replay_ratio), "--calls", str(calls)]
        running = [subprocess.Popen([python, *args], stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in running]
        # side by side: the slower process bounds the wall time
        rates.append(sum(r["updates"] for r in results) / max(r["seconds"] for r in results))
    return {"updates_per_s": statistics.median(rates), "runs": rates}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-python", default=".venv-bench/bin/python")
    parser.add_argument("--replay-ratio", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=40, help="env steps per timed frugalrl call")
    parser.add_argument("--calls", type=int, default=40, help="timed SBX train calls per model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {CORES} cores; jax {jax.__version__}")
    print(f"SAC 256-256, batch 256, {args.replay_ratio} updates per call; seed-updates per second (median)")
    for seeds in args.seeds:
        ours = frugal(seeds, args.replay_ratio, args.blocks, args.repeats)
        peer = sbx(args.peer_python, seeds, args.replay_ratio, args.calls, args.repeats)
        ratio = ours["updates_per_s"] / peer["updates_per_s"]
        print(
            f"{seeds:>3} seed(s): frugalrl {ours['updates_per_s']:8.0f}/s   SBX {peer['updates_per_s']:8.0f}/s   "
            f"ratio {ratio:.2f}x   (runs: {[round(r) for r in ours['runs']]} vs {[round(r) for r in peer['runs']]})"
        )


if __name__ == "__main__":
    main()
