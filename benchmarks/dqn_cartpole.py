"""DQN on CartPole-v1 (CleanRL hyperparameters, 500k steps): frugalrl vs stable-baselines3 vs SBX.

Also measures the compute floor: a bare jitted loop doing the same number of gradient updates
(same network, batch, optimizer, seeds split over the same devices) with no environment, no
replay bookkeeping, no evaluation and no logging. Every figure is the median of ``--repeats`` runs
in this one process (peers in subprocesses with their own interpreter).

    python benchmarks/dqn_cartpole.py --peer-python .venv-bench/bin/python --repeats 3
"""

from __future__ import annotations

from frugalrl.devices import unroll_threefry_on_cpu, use_all_cores

CORES = use_all_cores()  # before JAX starts
unroll_threefry_on_cpu()  # as run() does: the floor gets the same random-number code

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax.sharding import PartitionSpec  # noqa: E402

from frugalrl.agents.optim import make_optimizer  # noqa: E402
from frugalrl.cli import load_config  # noqa: E402
from frugalrl.devices import CACHE_ENV, seed_mesh, use_compilation_cache  # noqa: E402
from frugalrl.nets import make_q_network  # noqa: E402
from frugalrl.train.run import run  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dqn_classic.json"


def frugal_run(num_seeds: int, steps: int) -> dict[str, float]:
    cfg = load_config(str(CONFIG), 1)
    cfg = {**cfg, "num_seeds": num_seeds, "total_steps": steps}
    with tempfile.TemporaryDirectory() as logs:
        start = time.perf_counter()
        summary = run(cfg, Path(logs) / "bench", progress=False, echo=lambda text: None)
        wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "compile_s": summary.compile_seconds,
        "run_s": summary.run_seconds,
        "final_return": float(summary.final_returns.mean()),
        "min_seed_return": float(summary.final_returns.min()),
    }


def frugal_run_warm(num_seeds: int, steps: int, cache: str) -> dict[str, float]:
    """frugal_run in a fresh process whose compile cache was filled by an earlier run (as in a sweep)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child-warm-run", str(num_seeds), "--steps", str(steps)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, CACHE_ENV: cache},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def compute_floor(num_seeds: int, updates: int) -> dict[str, float]:
    """Bare DQN updates: uniform batches from a filled 10k buffer, MSE TD loss, Adam; no env."""
    cfg = load_config(str(CONFIG), 1)
    network = make_q_network(cfg["network"], (4,), 2)
    optimizer = make_optimizer(cfg["optimizer"])
    batch, capacity, gamma = cfg["replay"]["batch_size"], cfg["replay"]["capacity"], cfg["agent"]["gamma"]

    def init(key: jax.Array):
        k1, k2 = jax.random.split(key)
        params = network.init(k1, jnp.zeros(4))
        data = (
            jax.random.normal(k2, (capacity, 4)),
            jnp.zeros(capacity, jnp.int32),
            jnp.ones(capacity),
            jnp.zeros(capacity),
            jax.random.normal(k2, (capacity, 4)),
        )
        return params, params, optimizer.init(params), data, key

    def update(params, target, opt_state, data, key):
        key, sample_key = jax.random.split(key)
        idx = jax.random.randint(sample_key, (batch,), 0, capacity)
        obs, action, reward, done, next_obs = (x[idx] for x in data)
        y = reward + gamma * (1 - done) * network.apply(target, next_obs).max(-1)

        def loss(p):
            q = jnp.take_along_axis(network.apply(p, obs), action[:, None], -1)[:, 0]
            return jnp.mean((q - y) ** 2)

        grads = jax.grad(loss)(params)
        step, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, step), opt_state, key

    def loop(state):
        def body(carry, _):
            params, target, opt_state, data, key = carry
            params, opt_state, key = jax.vmap(update)(params, target, opt_state, data, key)
            return (params, target, opt_state, data, key), None

        return jax.lax.scan(body, state, None, length=updates)[0]

    mesh = seed_mesh(num_seeds)
    state = jax.jit(jax.vmap(init))(jax.random.split(jax.random.PRNGKey(0), num_seeds))
    sharded = jax.jit(
        jax.shard_map(
            loop, mesh=mesh, in_specs=(PartitionSpec("seed"),), out_specs=PartitionSpec("seed"), check_vma=False
        )
    )
    start = time.perf_counter()
    compiled = sharded.lower(state).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(compiled(state))
    return {"run_s": time.perf_counter() - start, "compile_s": compile_s}


def peer(python: str, library: str, steps: int) -> dict[str, float]:
    script = Path(__file__).with_name("peer_dqn.py")
    out = subprocess.run(
        [python, str(script), library, "--steps", str(steps)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0] if key != "library"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=5, help="runs of frugalrl and of the floor")
    parser.add_argument("--peer-repeats", type=int, default=3, help="runs of each peer (minutes each)")
    parser.add_argument("--peer-python", help="interpreter with stable-baselines3 and sbx-rl (skip peers if unset)")
    parser.add_argument("--out", default="benchmarks/results/dqn_cartpole.json")
    parser.add_argument("--child-warm-run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_warm_run:
        use_compilation_cache()
        print(json.dumps(frugal_run(args.child_warm_run, args.steps)))
        return
    updates = (args.steps - 10_000) // 10 + 1  # blocks ending at >= learning_starts, one update each
    results: dict[str, dict[str, float]] = {}
    # frugalrl and its floor alternate, so a slow spell of this shared machine hits both alike
    cache = tempfile.mkdtemp(prefix="frugal-xla-cache-")
    frugal_run_warm(1, args.steps, cache)  # fills the cache; not timed
    ours = {
        "frugalrl 1 seed": lambda: frugal_run(1, args.steps),
        "frugalrl 1 seed, warm compile cache": lambda: frugal_run_warm(1, args.steps, cache),
        "floor 1 seed": lambda: compute_floor(1, updates),
        "frugalrl 8 seeds": lambda: frugal_run(8, args.steps),
        "floor 8 seeds": lambda: compute_floor(8, updates),
    }
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in ours}
    for _ in range(args.repeats):
        for name, fn in ours.items():
            rows[name].append(fn())
            print(name, json.dumps(rows[name][-1]), flush=True)
    peers = {"stable-baselines3": "sb3", "SBX": "sbx"} if args.peer_python else {}
    for name, library in peers.items():
        rows[name] = []
        for _ in range(args.peer_repeats):
            rows[name].append(peer(args.peer_python, library, args.steps))
            print(name, json.dumps(rows[name][-1]), flush=True)
    results = {name: median(values) for name, values in rows.items()}
    for n in (1, 8):
        seeds = f"{n} seed{'s' if n > 1 else ''}"
        results[f"ratio run/floor {seeds}"] = {
            "median of per-pair ratios": statistics.median(
                a["run_s"] / b["run_s"] for a, b in zip(rows[f"frugalrl {seeds}"], rows[f"floor {seeds}"], strict=True)
            )
        }
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": CORES,
        "devices": len(jax.local_devices()),
        "jax": jax.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
