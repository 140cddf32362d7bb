"""DQN on CartPole in one file, from frugalrl's own parts: a reading path into the library.

    python examples/dqn_in_one_file.py [--steps 50000] [--seeds 4] [--out dqn_in_one_file]

PureJaxRL's shape: ``make_train(cfg)`` returns pure functions of one seed's state; ``jax.vmap``
runs every seed at once and ``jax.jit`` compiles each segment (``eval/every`` env steps) as one
program. The pieces are the library's: the config schema, the environment registry (gymnax's
API), the DQN agent, the FIFO replay and the greedy evaluation. ``frugal run`` adds what a
research tool needs around the same computation (checkpoints and exact resume, seeds split over
devices, MeDQN / QDagger / resets, NaN stops, progress, analysis), and for a plain DQN config it
writes the very same ``result_Test.csv`` as this file (tests/test_examples.py checks it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from frugalrl import envs
from frugalrl.agents import make_agent
from frugalrl.config import resolve
from frugalrl.replay import fifo
from frugalrl.runs.rundir import TEST_COLUMNS, CsvLog, evaluation_rows
from frugalrl.train.loop import EVAL_STREAM, evaluation_keys, make_evaluate, seed_keys


class Runner(NamedTuple):
    """One seed's training state; the step counters are shared by every seed (plain ints in jit)."""

    agent: Any  # DQNState: online and target parameters, optimizer state
    replay: fifo.ReplayState
    env_state: Any
    obs: jax.Array
    key: jax.Array
    env_step: jax.Array  # env steps taken
    grad_step: jax.Array  # gradient steps taken


def make_train(cfg: dict[str, Any]):
    """``init(key) -> Runner`` and ``segment(runner) -> runner`` (``eval/every`` env steps) for one seed."""
    env, env_params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)  # DQN: the config switches no loss term on
    k, m = cfg["train"]["train_every"], cfg["train"]["gradient_steps"]
    learning_starts, random_steps = cfg["train"]["learning_starts"], cfg["train"]["random_steps"]
    period, batch_size = cfg["agent"]["target_every"], cfg["replay"]["batch_size"]
    agent_cfg = cfg["agent"]
    returns = {key: agent_cfg[key] for key in ("n_step", "gamma", "bootstrap_truncation")}
    # the first block whose start is at or after learning_starts learns (blocks start at multiples of k)
    learning_from = -(-learning_starts // k) * k

    def init(key: jax.Array) -> Runner:
        init_key, reset_key, loop_key = jax.random.split(key, 3)
        obs, env_state = env.reset(reset_key, env_params)
        action = jnp.zeros(spec.action_shape, jnp.int32)
        replay = fifo.init(envs.to_storage(obs, spec), action, cfg["replay"]["capacity"], spec.max_episode_steps)
        zero = jnp.zeros((), jnp.int32)
        return Runner(agent.init(init_key), replay, env_state, obs, loop_key, zero, zero)

    def env_step(runner: Runner, inputs: tuple[jax.Array, ...]) -> tuple[Runner, fifo.Transition]:
        """One env step with the epsilon-greedy action (uniform during the random warm-up)."""
        act_key, env_key, step = inputs
        epsilon = jnp.where(step < random_steps, 1.0, agent.epsilon(step))
        action = agent.act(runner.agent, runner.obs, act_key, epsilon)
        next_obs, env_state, reward, terminated, truncated, info = env.step(
            env_key, runner.env_state, action, env_params
        )
        final_obs = envs.to_storage(info["final_observation"], spec)
        obs = envs.to_storage(runner.obs, spec)
        transition = fifo.Transition(obs, action, reward, terminated, truncated, final_obs)
        return runner._replace(env_state=env_state, obs=next_obs), transition

    def update(runner: Runner, _: None) -> tuple[Runner, None]:
        """One gradient step on a fresh uniform batch; the target syncs every ``period`` env steps below."""
        next_key, sample_key, update_key = jax.random.split(runner.key, 3)
        batch = fifo.sample(runner.replay, sample_key, runner.env_step, batch_size, **returns)
        agent_state, _ = agent.update(runner.agent, batch, update_key, agent.td_target(runner.agent, batch))
        return runner._replace(agent=agent_state, key=next_key, grad_step=runner.grad_step + 1), None

    def block(runner: Runner, _: None) -> tuple[Runner, None]:
        """``k`` env steps, their transitions written at once, then ``m`` updates once learning has started."""
        keys = jax.random.split(runner.key, 2 * k + 1)
        step_keys = keys[1:].reshape(k, 2, -1)
        first = runner.env_step
        runner, transitions = jax.lax.scan(
            env_step, runner._replace(key=keys[0]), (step_keys[:, 0], step_keys[:, 1], first + jnp.arange(k))
        )
        replay = fifo.add_block(runner.replay, first, transitions, envs.to_storage(runner.obs, spec))
        runner = runner._replace(replay=replay, env_step=first + k)
        learn = lambda r: jax.lax.scan(update, r, None, length=m)[0]  # noqa: E731
        runner = jax.lax.cond(first >= learning_from, learn, lambda r: r, runner)
        synced = agent.sync_target(runner.agent)
        due = runner.env_step % period == 0
        return runner._replace(agent=jax.tree.map(lambda a, b: jnp.where(due, a, b), synced, runner.agent)), None

    def segment(runner: Runner) -> Runner:
        return jax.lax.scan(block, runner, None, length=cfg["eval"]["every"] // k)[0]

    return init, segment, make_evaluate(agent, env, env_params, spec, cfg)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--config", help="a resolved config.json to run instead (plain DQN on a JAX env)")
    parser.add_argument("--out", default="dqn_in_one_file", help="folder for result_Test.csv")
    args = parser.parse_args(argv)
    if args.config:
        cfg = resolve(json.loads(Path(args.config).read_text()))
    else:
        cfg = resolve({"total_steps": args.steps, "num_seeds": args.seeds, "eval": {"every": 5000}})
    init, segment, evaluate = make_train(cfg)
    keys = seed_keys(cfg["seed"], int(cfg.get("run", 0)), cfg["num_seeds"])
    # the step counters are shared by every seed (in_axes None): the learning branch stays a branch
    per_seed = Runner(0, 0, 0, 0, 0, None, None)
    runner = jax.jit(jax.vmap(init, out_axes=per_seed))(keys)
    segment = jax.jit(jax.vmap(segment, in_axes=(per_seed,), out_axes=per_seed))
    evaluate, eval_keys_for = jax.jit(evaluate), evaluation_keys(keys, EVAL_STREAM)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = CsvLog(out / "result_Test.csv", TEST_COLUMNS)
    results.open(None)
    seeds = list(range(cfg["num_seeds"]))
    for step in range(cfg["eval"]["every"], cfg["total_steps"] + 1, cfg["eval"]["every"]):
        runner = segment(runner)
        returns = np.asarray(evaluate(runner.agent, eval_keys_for(step)))  # [seeds, episodes]
        results.write(evaluation_rows(cfg["env"]["name"], cfg["agent"]["name"], seeds, step, returns))
        print(f"step {step:>8}: greedy return {returns.mean():8.2f} ± {returns.mean(1).std():.2f} over seeds")
    results.close()
    return out / "result_Test.csv"


if __name__ == "__main__":
    main()
