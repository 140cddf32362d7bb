"""Writes the model-based configs: tuned (step size, temperature) per agent, env and regime from the
original README (reference sr_sac_model_based.md §B7), and their tuning grids. Run from the repo root:
python configs/model_based/make_configs.py"""

import json
from pathlib import Path

OUT = Path("configs/model_based")
ENVS = {"procmaze": "ProcMaze-4", "buttongrid": "ButtonGrid-10", "panflute": "PanFlute-5"}
AGENTS = {  # name -> model keys
    "er": {"model/kind": ["none"], "replay/batch_size": [320], "train/stale_obs_after_terminal": [True]},
    "perfect": {"model/kind": ["perfect"], "replay/batch_size": [32], "train/stale_obs_after_terminal": [False]},
    "simple": {"model/kind": ["observation"], "replay/batch_size": [32], "train/stale_obs_after_terminal": [True]},
    "categorical": {
        "model/kind": ["latent"],
        "model/latent": ["categorical"],
        "replay/batch_size": [32],
        "train/stale_obs_after_terminal": [True],
    },
    "gaussian": {
        "model/kind": ["latent"],
        "model/latent": ["gaussian"],
        "replay/batch_size": [32],
        "train/stale_obs_after_terminal": [True],
    },
}
# the README's tuned (Q step size, softmax temperature) per agent, env and regime
TUNED = {
    "simple": {
        "procmaze": [(2e-4, 0.8), (2.5e-5, 0.4)],
        "buttongrid": [(2e-4, 1.6), (5e-5, 0.4)],
        "panflute": [(1e-4, 0.4), (2e-4, 0.2)],
    },
    "perfect": {
        "procmaze": [(1e-4, 0.4), (4e-4, 0.4)],
        "buttongrid": [(2e-4, 0.0125), (2e-4, 0.0125)],
        "panflute": [(2e-4, 0.1), (1e-4, 0.1)],
    },
    "er": {
        "procmaze": [(5e-5, 0.1), (2.5e-5, 1.6)],
        "buttongrid": [(5e-5, 0.0125), (2.5e-5, 0.1)],
        "panflute": [(1e-4, 0.1), (3.125e-6, 0.8)],
    },
    "categorical": {
        "procmaze": [(2e-4, 1.6), (1e-4, 0.8)],
        "buttongrid": [(1e-4, 0.05), (2e-4, 0.1)],
        "panflute": [(8e-4, 0.05), (1.6e-3, 0.05)],
    },
    "gaussian": {
        "procmaze": [(3.125e-6, 12.8), (3.125e-6, 0.8)],
        "buttongrid": [(1.25e-5, 0.1), (2.5e-5, 0.8)],
        "panflute": [(2e-4, 0.1), (2e-4, 0.1)],
    },
}
ORDER = ["er", "perfect", "simple", "categorical", "gaussian"]
REGIMES = {
    "high": {
        "total_steps": 1_000_000,
        "gradient_steps": 1,
        "target_every": 100,
        "eval_every": 500,
        "checkpoint": 100_000,
    },
    "low": {"total_steps": 100_000, "gradient_steps": 10, "target_every": 10, "eval_every": 50, "checkpoint": 10_000},
}
STEP_SIZES = [3.125e-6 * 2**k for k in range(10)]  # 3.125e-6 .. 1.6e-3
TEMPERATURES = [0.0125 * 2**k for k in range(11)]  # 0.0125 .. 12.8


def base(env: str, regime: str) -> dict:
    r = REGIMES[regime]
    continuing = env != "procmaze"
    return {
        "env": [{"name": [ENVS[env]]}],
        "num_seeds": [30],
        "total_steps": [r["total_steps"]],
        "agent": [
            {
                "name": ["dqn"],
                "gamma": [0.9],
                "exploration": ["softmax"],
                "epsilon_start": [0.0],
                "epsilon_end": [0.0],
                "target_every": [r["target_every"]],
                "target_unit": ["env_steps"],
                "tau": [1.0],
                "loss": ["mse"],
                "double": [False],
            }
        ],
        "network": [{"name": ["mlp"], "hidden": [[200, 200, 200]], "activation": ["elu"], "init": ["haiku_default"]}],
        "optimizer": [{"name": ["adamw_unscaled"], "b1": [0.9], "b2": [0.99], "eps": [1e-5], "weight_decay": [1e-6]}],
        "replay": [{"capacity": [100_000]}],
        "train": [
            {
                "learning_starts": [1000],
                "random_steps": [0],
                "train_every": [1],
                "gradient_steps": [r["gradient_steps"]],
            }
        ],
        "model": [
            {
                "rollout_length": [10],
                "lr": [2e-4],
                "hidden": [[200, 200, 200]],
                "activation": ["elu"],
                "latent_variables": [32],
                "latent_classes": [32],
                "min_std": [0.1],
                "std_activation": ["sigmoid2"],
                "sample_with_logit": [True],
            }
        ],
        "eval": [{"every": [r["eval_every"]], "episodes": [32], "max_episode_steps": [100], "per_step": [continuing]}],
        "checkpoint": [{"every": [r["checkpoint"]], "keep": [1]}],
        "seed": [0],
    }


def dump(grid: dict, path: Path) -> None:
    lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in grid.items())
    path.write_text("{\n" + lines + "\n}\n")


for env in ENVS:
    for i, regime in enumerate(REGIMES):
        grid = base(env, regime)
        grid["with"] = [
            {**AGENTS[a], "optimizer/lr": [TUNED[a][env][i][0]], "agent/softmax_temperature": [TUNED[a][env][i][1]]}
            for a in ORDER
        ]
        dump(grid, OUT / f"{env}_{regime}.json")
        tuning = base(env, regime)
        tuning["with"] = [
            {**AGENTS[a], "optimizer/lr": STEP_SIZES, "agent/softmax_temperature": TEMPERATURES} for a in ORDER
        ]
        dump(tuning, OUT / "tuning" / f"{env}_{regime}_tuning.json")  # experiment names may not clash
