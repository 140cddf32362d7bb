"""Memory agents on Passive T-Maze L=50: update time, collection speed, and loop overhead.

Three figures, each the median of ``--repeats`` measurements in this process:

1. one recurrent double-DQN update on a batch of 64 whole episodes (52 tokens) for the LSTM and the
   GPT torso of Memory-RL's defaults, next to the same update written in PyTorch (the original is a
   PyTorch code base; ``peer_memory_update.py`` in ``--peer-python``'s interpreter, same threads);
2. env steps per second of whole-episode collection (ε-greedy acting with the carried memory,
   inside jit) for 1 and 8 vmapped seeds;
3. a short training run (``--episodes`` training episodes, 1 seed) against its updates alone:
   the loop's cost over the compute floor (the issue asks for ≤ 1.5).

    python benchmarks/memory_tmaze.py --peer-python .venv-bench/bin/python --repeats 5
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
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import PartitionSpec  # noqa: E402

from frugalrl import envs  # noqa: E402
from frugalrl.cli import load_config  # noqa: E402
from frugalrl.devices import seed_mesh  # noqa: E402
from frugalrl.replay import episodes as episode_replay  # noqa: E402
from frugalrl.train import episodic  # noqa: E402
from frugalrl.train.run import run  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "memory" / "passive_tmaze.json"
PEER = Path(__file__).resolve().parent / "peer_memory_update.py"
LENGTH = 50
UPDATES_PER_CALL = 20


def config(model: str, **episodic_overrides: int) -> dict:
    cfg = load_config(str(CONFIG), 1 if model == "lstm" else 9)  # index 1: LSTM L=50, 9: GPT L=50
    assert cfg["env"]["name"] == f"PassiveTMaze-{LENGTH}" and cfg["sequence"]["model"] == model
    return {**cfg, "num_seeds": 1, "episodic": {**cfg["episodic"], **episodic_overrides}}


def filled_replay(agent: episodic.RecurrentDQN, spec: envs.EnvSpec, cfg: dict, episodes: int = 256) -> object:
    env, env_params, _ = envs.make(cfg["env"])
    collect = jax.jit(
        jax.vmap(
            lambda k: episodic.make_collect(agent, env, env_params, spec, cfg)(None, k, jnp.asarray(0.0), "random")[0]
        )
    )
    batch = collect(jax.random.split(jax.random.PRNGKey(0), episodes))
    replay = episode_replay.init(spec.obs_shape, spec.obs_dtype, spec.max_episode_steps, episodes)
    return replay._replace(**batch._asdict(), count=jnp.asarray(episodes, jnp.int32))


def time_updates(model: str, repeats: int) -> float:
    """Seconds per update (batch 64 whole episodes), median over repeats of UPDATES_PER_CALL updates."""
    cfg = config(model)
    _, _, spec = envs.make(cfg["env"])
    agent = episodic.make_agent(cfg, spec)
    replay = filled_replay(agent, spec, cfg)
    # as the loop runs it: vmapped over the seed axis (here 1 seed) inside a shard_map over its device
    mesh = seed_mesh(1)
    learn = jax.jit(
        jax.shard_map(
            jax.vmap(episodic.make_learn(agent, cfg, UPDATES_PER_CALL), in_axes=(0, None, 0)),
            mesh=mesh,
            in_specs=(PartitionSpec("seed"), PartitionSpec(), PartitionSpec("seed")),
            out_specs=PartitionSpec("seed"),
            check_vma=False,
        )
    )
    state = jax.vmap(agent.init)(jax.random.PRNGKey(1)[None])
    keys = lambda i: jax.random.PRNGKey(i)[None]  # noqa: E731
    state, _ = learn(state, replay, keys(2))  # compile
    jax.block_until_ready(state)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        state, metrics = learn(state, replay, keys(3 + i))
        jax.block_until_ready(metrics)
        times.append((time.perf_counter() - start) / UPDATES_PER_CALL)
    return statistics.median(times)


def time_collection(model: str, seeds: int, repeats: int) -> float:
    """Env steps per second (over all seeds) of exploring whole episodes with the memory carried."""
    cfg = config(model)
    env, env_params, spec = envs.make(cfg["env"])
    agent = episodic.make_agent(cfg, spec)
    params = jax.vmap(agent.init)(jax.random.split(jax.random.PRNGKey(0), seeds)).params
    collect = episodic.make_collect(agent, env, env_params, spec, cfg)
    episodes = 20
    many = jax.jit(
        jax.vmap(
            lambda p, k: jax.lax.map(
                lambda kk: collect(p, kk, jnp.asarray(0.0), "explore")[1], jax.random.split(k, episodes)
            )
        )
    )
    keys = jax.random.split(jax.random.PRNGKey(1), seeds)
    jax.block_until_ready(many(params, keys))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(many(params, keys))
        times.append(time.perf_counter() - start)
    return seeds * episodes * spec.max_episode_steps / statistics.median(times)


def loop_over_floor(model: str, episodes: int, seconds_per_update: float) -> dict[str, float]:
    cfg = config(model, train_episodes=episodes, eval_every=10)
    cfg = {**cfg, "checkpoint": {**cfg["checkpoint"], "every": 0, "final": False}}
    with tempfile.TemporaryDirectory() as logs:
        summary = run(cfg, Path(logs) / "bench", progress=False, echo=lambda text: None)
    length = LENGTH + 1
    updates = episodic.updates_after(10 * length, 0.25, True) + episodes * episodic.updates_after(length, 0.25, False)
    floor = updates * seconds_per_update
    return {"run_s": summary.run_seconds, "updates": updates, "floor_s": floor, "ratio": summary.run_seconds / floor}


def peer_update(peer_python: str, model: str, repeats: int) -> float | None:
    if not peer_python:
        return None
    out = subprocess.run(
        [peer_python, str(PEER), "--model", model, "--repeats", str(repeats), "--threads", str(CORES)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds_per_update"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=100, help="training episodes of the loop-overhead run")
    parser.add_argument("--peer-python", default="", help="interpreter with torch for the PyTorch peer")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {CORES} cores, jax {jax.__version__}")
    results = {}
    for model in ("lstm", "gpt"):
        ours = time_updates(model, args.repeats)
        peer = peer_update(args.peer_python, model, args.repeats)
        results[model] = {"update_ms": 1e3 * ours}
        line = f"{model}: update (batch 64 x 52 tokens) {1e3 * ours:.1f} ms"
        if peer is not None:
            results[model]["peer_update_ms"] = 1e3 * peer
            line += f"; PyTorch {1e3 * peer:.1f} ms; ratio PyTorch/frugalrl {peer / ours:.2f}"
        print(line, flush=True)
        for seeds in (1, 8):
            rate = time_collection(model, seeds, args.repeats)
            results[model][f"collect_steps_per_s_{seeds}_seeds"] = rate
            print(f"{model}: collection, {seeds} seed(s): {rate:,.0f} env steps/s", flush=True)
        loop = loop_over_floor(model, args.episodes, ours)
        results[model]["loop"] = loop
        print(
            f"{model}: {args.episodes} training episodes: run {loop['run_s']:.1f} s, {loop['updates']} updates alone "
            f"{loop['floor_s']:.1f} s, ratio {loop['ratio']:.2f}",
            flush=True,
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
