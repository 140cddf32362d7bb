"""Env steps and updates per second of the Dyna DQN agents on ProcMaze-4: frugalrl vs the original's design.

Low-data regime sizes (the paper's): 3x200 ELU networks, 10 updates per env step, ER batch 320,
model agents 32 starts x 10 rollout steps, replay 100k, target copy every 10 steps. frugalrl runs
the training loop's own jitted segment (seeds vmapped and split over the CPU cores, as
``frugal run`` does) after a non-learning segment fills the replay with ``--fill`` steps. The peer
(``peer_model_based.py``, same interpreter) re-creates the original's structure in plain JAX on
the same env. Each figure is the median of ``--repeats`` timed calls (compile excluded); rates are
summed over seeds.

    python benchmarks/model_based.py --repeats 3
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
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402

from frugalrl.config import resolve  # noqa: E402
from sac_updates import segment_rates  # noqa: E402  (benchmarks/ is the script's folder)

PEER = Path(__file__).resolve().parent / "peer_model_based.py"
AGENTS = {
    "er": {"kind": "none", "batch": 320},
    "perfect": {"kind": "perfect", "batch": 32},
    "simple": {"kind": "observation", "batch": 32},
    "categorical": {"kind": "latent", "batch": 32},
}


def config(agent: str, num_seeds: int, updates: int, hidden: list[int]) -> dict:
    return resolve(
        {
            "env": {"name": "ProcMaze-4"},
            "num_seeds": num_seeds,
            "agent": {
                "gamma": 0.9,
                "exploration": "softmax",
                "softmax_temperature": 0.4,
                "epsilon_start": 0.0,
                "epsilon_end": 0.0,
                "target_every": 10,
            },
            "network": {"hidden": hidden, "activation": "elu"},
            "optimizer": {"name": "adamw_unscaled", "lr": 1e-4, "b2": 0.99, "eps": 1e-5, "weight_decay": 1e-6},
            "replay": {"capacity": 100_000, "batch_size": AGENTS[agent]["batch"]},
            "train": {"learning_starts": 0, "train_every": 1, "gradient_steps": updates},
            "model": {"kind": AGENTS[agent]["kind"], "hidden": hidden},
        }
    )


def frugal(agent_name: str, num_seeds: int, steps: int, updates: int, fill: int, hidden: list[int], repeats: int):
    rate = statistics.median(segment_rates(config(agent_name, num_seeds, updates, hidden), fill, steps, repeats))
    return {"env_steps_per_s": rate, "updates_per_s": rate * updates}


def peer(agent: str, num_seeds: int, steps: int, updates: int, fill: int, hidden: list[int], repeats: int):
    command = [sys.executable, str(PEER), "--agent", agent, "--seeds", str(num_seeds), "--steps", str(steps)]
    command += ["--updates", str(updates), "--fill", str(fill), "--repeats", str(repeats), "--hidden"]
    command += [str(h) for h in hidden]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--steps", type=int, default=10, help="timed env steps per call")
    parser.add_argument("--updates", type=int, default=10, help="updates per env step (low-data regime: 10)")
    parser.add_argument("--fill", type=int, default=1000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[200, 200, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/model_based.json")
    args = parser.parse_args()
    rows = []
    for agent in args.agents:
        for seeds in args.seeds:
            row = {"agent": agent, "seeds": seeds}
            row["frugalrl"] = frugal(agent, seeds, args.steps, args.updates, args.fill, args.hidden, args.repeats)
            if agent != "categorical":  # the peer has ER, perfect and simple
                row["peer"] = peer(agent, seeds, args.steps, args.updates, args.fill, args.hidden, args.repeats)
                row["ratio"] = row["frugalrl"]["env_steps_per_s"] / row["peer"]["env_steps_per_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {"machine": platform.processor() or platform.machine(), "cores": CORES, "jax": jax.__version__}
    Path(args.out).write_text(json.dumps({"meta": meta, "args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
