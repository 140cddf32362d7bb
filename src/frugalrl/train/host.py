"""The host-environment loop: one host env per seed (dm-control), everything else on the device.

Per env step the host steps each seed's env with the action the device chose, then makes one
jitted call for all seeds: write the transitions into the replay, run ``gradient_steps``
updates per seed when a block of ``train_every`` steps ends (each on a fresh minibatch sampled
on the device, one ``lax.scan``), and choose the next actions. As in the original, data
collection and updates interleave strictly: 1 env step, then the updates, then the next step.

Evaluations run on separate envs, one per seed, re-seeded from (seed, run, lane, step) before
each, so they are deterministic and need no saved state. Checkpoints hold the device state
(agent, replay, keys, counters) and each training env's random state, and are taken where every
seed's episode has just ended (the first such step at or after a due checkpoint, as the
original), so a resumed run restarts its envs from a reset exactly as the uninterrupted run did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from frugalrl import __version__
from frugalrl.agents import make_agent
from frugalrl.config.schema import first_learning_block
from frugalrl.envs import EnvSpec
from frugalrl.envs.dmc import DMCEnv
from frugalrl.replay import fifo
from frugalrl.runs import checkpoint
from frugalrl.runs.rundir import (
    FINISHED_PREFIX,
    TEST_COLUMNS,
    TRAIN_COLUMNS,
    CsvLog,
    RunDir,
    checkpoint_rows,
    evaluation_rows,
    peak_memory_mb,
)
from frugalrl.train.loop import acting_epsilon, agent_init_keys, seed_keys, tree_select
from frugalrl.train.resets import initial_reset_state, make_reinit, reset_if_due, resetting

EVAL_SEED = 0xE7A1  # mixed into the evaluation envs' seeds, apart from the training envs'


class HostCarry(NamedTuple):
    """The device side of a host-env run, leading axis = seed (counters shared)."""

    agent: Any
    replay: fifo.ReplayState
    obs: jax.Array  # [seeds, obs_dim] the observation the next action is taken in
    action: jax.Array  # [seeds, *action_shape] the action chosen for it
    key: jax.Array  # [seeds, 2]
    env_step: jax.Array  # [] env steps taken by each seed
    grad_step: jax.Array  # [] gradient steps taken by each seed
    resets: Any = ()


def env_seed(cfg: dict[str, Any], lane: int, *extra: int) -> int:
    """A 32-bit env seed of its own for every (seed, run, lane, ...): seed j is not seed j + 1's neighbour."""
    entropy = [cfg["seed"], int(cfg.get("run", 0)), lane, *extra]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def host_spec(env: DMCEnv) -> EnvSpec:
    """The agent's view of a host env: flat float32 observations, actions in [-1, 1]."""
    s = env.spec
    return EnvSpec(env.name, (s.obs_dim,), np.dtype(np.float32), None, (s.action_dim,), -1.0, 1.0, s.max_episode_steps)


def init_host_carry(agent: Any, spec: EnvSpec, cfg: dict[str, Any], keys: jax.Array, obs: np.ndarray) -> HostCarry:
    capacity = cfg["replay"]["capacity"]

    def one(key: jax.Array) -> tuple[Any, ...]:
        init_key, _, loop_key = jax.random.split(key, 3)  # init_key as agent_init_keys derives it
        example_obs = jnp.zeros(spec.obs_shape, jnp.float32)
        replay = fifo.init(example_obs, jnp.zeros(spec.action_shape, jnp.float32), capacity, spec.max_episode_steps)
        return agent.init(init_key), replay, loop_key

    agent_state, replay, loop_key = jax.jit(lambda keys: jax.lax.map(one, keys))(keys)
    seeds = keys.shape[0]
    carry = HostCarry(
        agent_state,
        replay,
        jnp.asarray(obs, jnp.float32),
        jnp.zeros((seeds,) + spec.action_shape, jnp.float32),
        loop_key,
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        initial_reset_state() if resetting(cfg) else (),
    )
    return jax.tree.map(jnp.copy, carry)


def make_host_step(agent: Any, spec: EnvSpec, cfg: dict[str, Any], learn: bool) -> Callable[..., Any]:
    """(carry, reward, terminated, truncated, final_obs, next_obs) -> (carry, metrics): store the step,
    update when ``learn`` (``gradient_steps`` times), and choose the actions for ``next_obs``."""
    agent_cfg, batch_size, m = cfg["agent"], cfg["replay"]["batch_size"], cfg["train"]["gradient_steps"]
    period, unit = agent_cfg["target_every"], agent_cfg["target_unit"]
    sample_kwargs = dict(n_step=1, gamma=agent_cfg["gamma"], bootstrap_truncation=agent_cfg["bootstrap_truncation"])
    add = jax.vmap(fifo.add, in_axes=(0, None, 0, 0))
    sample = jax.vmap(
        lambda r, key, count: fifo.sample(r, key, count, batch_size, **sample_kwargs), in_axes=(0, 0, None)
    )
    td_target, update = jax.vmap(agent.td_target), jax.vmap(agent.update)
    act = jax.vmap(agent.act, in_axes=(0, 0, 0, None))
    split3 = jax.vmap(lambda key: jax.random.split(key, 3))

    def updates(agent_state: Any, key: jax.Array, grad_step: jax.Array, replay: Any, count: jax.Array) -> tuple:
        def one(inner: tuple[Any, ...], _: None) -> tuple[tuple[Any, ...], Any]:
            agent_state, key, grad_step = inner
            keys = split3(key)
            batch = sample(replay, keys[:, 1], count)
            agent_state, metrics = update(agent_state, batch, keys[:, 2], td_target(agent_state, batch))
            grad_step = grad_step + 1
            if unit == "grad_steps":
                agent_state = tree_select(grad_step % period == 0, agent.sync_target(agent_state), agent_state)
            return (agent_state, keys[:, 0], grad_step), metrics

        (agent_state, key, grad_step), metrics = jax.lax.scan(one, (agent_state, key, grad_step), None, length=m)
        if unit == "env_steps":
            agent_state = tree_select(count % period == 0, agent.sync_target(agent_state), agent_state)
        return agent_state, key, grad_step, jax.tree.map(lambda x: x.mean(0), metrics)

    def step(c: HostCarry, reward: jax.Array, terminated: jax.Array, truncated: jax.Array, final_obs, next_obs):
        transition = fifo.Transition(c.obs, c.action, reward, terminated, truncated, final_obs)
        replay = add(c.replay, c.env_step, transition, next_obs)
        count = c.env_step + 1
        agent_state, key, grad_step, metrics = c.agent, c.key, c.grad_step, {}
        if learn:
            agent_state, key, grad_step, metrics = updates(agent_state, key, grad_step, replay, count)
        keys = jax.vmap(jax.random.split)(key)
        action = act(agent_state, next_obs, keys[:, 1], acting_epsilon(agent, cfg, count))
        carry = c._replace(
            agent=agent_state,
            replay=replay,
            obs=next_obs,
            action=action,
            key=keys[:, 0],
            env_step=count,
            grad_step=grad_step,
        )
        return carry, metrics

    return step


def make_first_action(agent: Any, cfg: dict[str, Any]) -> Callable[[HostCarry], HostCarry]:
    """The actions for the first observations (of a fresh run)."""
    act = jax.vmap(agent.act, in_axes=(0, 0, 0, None))

    def first(c: HostCarry) -> HostCarry:
        keys = jax.vmap(jax.random.split)(c.key)
        return c._replace(
            action=act(c.agent, c.obs, keys[:, 1], acting_epsilon(agent, cfg, c.env_step)), key=keys[:, 0]
        )

    return first


def evaluate_host(policy: Any, agent_state: Any, eval_envs: list[DMCEnv], cfg: dict[str, Any], at: int) -> np.ndarray:
    """[seeds, episodes] undiscounted returns of ``policy`` (make_evaluation_policy), seeds in lockstep."""
    episodes, epsilon = cfg["eval"]["episodes"], cfg["eval"]["epsilon"]
    max_steps = min(eval_envs[0].spec.max_episode_steps, cfg["eval"]["max_episode_steps"])
    seeds = len(eval_envs)
    for lane, env in enumerate(eval_envs):
        env.set_rng_state(np.random.RandomState(env_seed(cfg, lane, EVAL_SEED, at)).get_state())
    key = jax.vmap(lambda lane: jax.random.PRNGKey(env_seed(cfg, 0, EVAL_SEED, at) % 2**31 + lane))(jnp.arange(seeds))
    returns = np.zeros((seeds, episodes))
    for episode in range(episodes):
        obs = np.stack([env.reset() for env in eval_envs])
        done = np.zeros(seeds, bool)
        for _ in range(max_steps):
            key, actions = policy(agent_state, jnp.asarray(obs), key, epsilon)
            actions = np.asarray(actions)
            for lane, env in enumerate(eval_envs):
                if not done[lane]:
                    obs[lane], reward, terminated, truncated = env.step(actions[lane])
                    returns[lane, episode] += reward
                    done[lane] = terminated or truncated
            if done.all():
                break
    return returns / max_steps if cfg["eval"]["per_step"] else returns


def make_evaluation_policy(agent: Any) -> Any:
    """jit((agent_states, obs, keys, epsilon) -> (keys, actions)) for every seed at once."""
    act = jax.vmap(agent.evaluation_act, in_axes=(0, 0, 0, None))

    def policy(state: Any, obs: jax.Array, key: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
        keys = jax.vmap(jax.random.split)(key)
        return keys[:, 0], act(state, obs, keys[:, 1], epsilon)

    return jax.jit(policy)


def _rng_to_json(state: tuple[Any, ...]) -> list[Any]:
    name, keys, pos, has_gauss, gauss = state
    return [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(gauss)]


def _rng_from_json(saved: list[Any]) -> tuple[Any, ...]:
    name, keys, pos, has_gauss, gauss = saved
    return (name, np.asarray(keys, np.uint32), pos, has_gauss, gauss)


def run_host(cfg: dict[str, Any], rundir: RunDir, *, progress: bool, say: Callable[[str], None], began: float):
    """Train (or resume) a run whose env lives on the host; returns the run's Summary."""
    from frugalrl.train.run import Summary, _last_eval, _progress, human_bytes, refuse_if_too_big

    run_path = rundir.path
    num_seeds, total, k = cfg["num_seeds"], cfg["total_steps"], cfg["train"]["train_every"]
    run_index = int(cfg.get("run", 0))
    seeds = [run_index * num_seeds + lane for lane in range(num_seeds)]
    train_envs = [DMCEnv(cfg["env"]["name"], env_seed(cfg, lane)) for lane in range(num_seeds)]
    eval_envs = [DMCEnv(cfg["env"]["name"], env_seed(cfg, lane, EVAL_SEED)) for lane in range(num_seeds)]
    spec = host_spec(train_envs[0])
    agent = make_agent(cfg, spec)
    keys = seed_keys(cfg["seed"], run_index, num_seeds)
    rundir.write_config(cfg)
    log = rundir.logger()
    log.info("frugalrl %s, jax %s, devices %s", __version__, jax.__version__, jax.local_devices())
    log.info("config %s", json.dumps(cfg, sort_keys=True))

    first_obs = np.zeros((num_seeds, spec.obs_shape[0]), np.float32)
    shapes = jax.eval_shape(lambda k: init_host_carry(agent, spec, cfg, k, first_obs), keys)
    memory = fifo.memory_bytes(shapes.replay, num_seeds)
    message = (
        f"replay: {memory['bytes_per_transition']:.1f} bytes per transition, "
        f"{human_bytes(memory['total_bytes'] / num_seeds)} per seed, {human_bytes(memory['total_bytes'])} for "
        f"{num_seeds} seeds; {cfg['env']['name']} on the host, one env per seed"
    )
    log.info(message)
    say(message)
    refuse_if_too_big(memory["total_bytes"], "the replay buffers", "'replay/capacity' or 'num_seeds'")

    train_log = CsvLog(run_path / "result_Train.csv", TRAIN_COLUMNS)
    test_log = CsvLog(run_path / "result_Test.csv", TEST_COLUMNS)
    restored = checkpoint.restore_latest(rundir.checkpoints, shapes)
    if restored is None:
        first_obs = np.stack([env.reset() for env in train_envs])
        carry = jax.jit(make_first_action(agent, cfg))(init_host_carry(agent, spec, cfg, keys, first_obs))
        rows, elapsed_before, resumed_from = {"train": None, "test": None, "metrics": None}, 0.0, None
        episodes = np.zeros(num_seeds, np.int64)
    else:
        carry, meta = restored
        rows, elapsed_before, resumed_from = meta["rows"], meta["elapsed_seconds"], int(meta["step"])
        episodes = np.asarray(meta["episodes"], np.int64)
        for env, state in zip(train_envs, meta["env_rng"], strict=True):
            env.set_rng_state(_rng_from_json(state))
        obs = np.stack([env.reset() for env in train_envs])
        if not np.array_equal(obs, np.asarray(carry.obs)):
            raise RuntimeError("the restored environments do not start where the checkpoint did; rerun with --fresh")
        log.info("resuming from the checkpoint at step %d", resumed_from)
        say(f"resuming {run_path} from step {resumed_from}")
    train_log.open(rows["train"])
    test_log.open(rows["test"])
    metrics_log = None
    if rows.get("metrics") is not None:  # its columns are the header the run wrote
        header = (run_path / "metrics.csv").read_text().splitlines()[0].split(",")
        metrics_log = CsvLog(run_path / "metrics.csv", header)
        metrics_log.open(rows["metrics"])

    learning_from = first_learning_block(cfg)
    steps = {flag: jax.jit(make_host_step(agent, spec, cfg, flag), donate_argnums=0) for flag in (False, True)}
    first_action = jax.jit(make_first_action(agent, cfg))
    evaluation_policy = make_evaluation_policy(agent)
    reinit = jax.jit(make_reinit(agent, cfg)) if resetting(cfg) else None
    env_name, agent_name = cfg["env"]["name"], cfg["agent"]["name"]
    step = int(carry.env_step)
    episode_return = np.zeros(num_seeds)
    episode_length = np.zeros(num_seeds, np.int64)
    pending_metrics: list[Any] = []
    due_since = None  # the step a checkpoint became due, while it waits for every episode to end
    final_returns = None

    def write_metrics(at: int) -> None:
        """One metrics.csv row per seed: the mean of each update metric since the last row."""
        nonlocal metrics_log, pending_metrics
        if not pending_metrics:
            return
        means = jax.tree.map(lambda *x: np.mean(np.stack([np.asarray(v) for v in x]), axis=0), *pending_metrics)
        pending_metrics = []
        if not all(np.isfinite(v).all() for v in means.values()):
            from frugalrl.train.run import TrainingError

            raise TrainingError(
                f"a loss became NaN or inf before step {at}; lower 'optimizer/lr'. "
                "Results and checkpoints up to the last checkpoint are kept."
            )
        if metrics_log is None:
            metrics_log = CsvLog(run_path / "metrics.csv", ["seed", "step", *sorted(means)])
            metrics_log.open(None)
        metrics_log.write(
            [seeds[s], at] + [float(means[n][s]) for n in metrics_log.columns[2:]] for s in range(num_seeds)
        )

    def flush() -> None:
        for handle in (train_log, test_log, metrics_log):
            if handle is not None:
                handle.flush()

    bar = _progress(total, step, num_seeds, enabled=progress)
    run_start = time.perf_counter()
    try:
        while step < total:
            actions = np.asarray(carry.action)
            next_obs = np.empty((num_seeds, spec.obs_shape[0]), np.float32)
            final_obs = np.empty_like(next_obs)
            reward = np.zeros(num_seeds, np.float32)
            terminated, truncated = np.zeros(num_seeds, bool), np.zeros(num_seeds, bool)
            rng_before_reset: list[Any] = [None] * num_seeds
            for lane, env in enumerate(train_envs):
                obs, reward[lane], terminated[lane], truncated[lane] = env.step(actions[lane])
                final_obs[lane] = obs
                episode_return[lane] += reward[lane]
                episode_length[lane] += 1
                if terminated[lane] or truncated[lane]:
                    episodes[lane] += 1
                    row = [env_name, agent_name, seeds[lane], int(episodes[lane]), step + 1, episode_return[lane]]
                    train_log.write([row + [int(episode_length[lane])]])
                    episode_return[lane], episode_length[lane] = 0.0, 0
                    rng_before_reset[lane] = env.rng_state()
                    obs = env.reset()
                next_obs[lane] = obs
            step += 1
            learn = step % k == 0 and step - k >= learning_from
            carry, metrics = steps[learn](carry, reward, terminated, truncated, final_obs, next_obs)
            if learn:
                pending_metrics.append(metrics)
            bar.update(1)
            if (cfg["eval"]["every"] and step % cfg["eval"]["every"] == 0) or step == total:
                returns = evaluate_host(evaluation_policy, carry.agent, eval_envs, cfg, step)
                final_returns = returns.mean(1)
                test_log.write(evaluation_rows(env_name, agent_name, seeds, step, returns))
                log.info("step %d: greedy return %.2f ± %.2f over seeds", step, returns.mean(), returns.mean(1).std())
                bar.set_postfix_str(f"greedy return {final_returns.mean():.1f}", refresh=False)
                write_metrics(step)
                flush()
            if resetting(cfg):
                before = int(carry.resets.count)
                carry = reset_if_due(carry, cfg, step, reinit, agent_init_keys(keys), log)
                if int(carry.resets.count) != before:  # the fresh agent picks the next actions, not the old one
                    carry = first_action(carry)
            every = cfg["checkpoint"]["every"]
            if (every and step % every == 0 and step < total) or (cfg["checkpoint"]["final"] and step == total):
                due_since = step if due_since is None else due_since
            if due_since is not None and all(state is not None for state in rng_before_reset):
                due_since = None
                write_metrics(step)  # so a resumed run's next row averages the same updates
                flush()
                meta = {
                    "rows": checkpoint_rows(train_log, test_log, metrics_log),
                    "elapsed_seconds": elapsed_before + time.perf_counter() - began,
                    "episodes": episodes.tolist(),
                    "env_rng": [_rng_to_json(state) for state in rng_before_reset],
                }
                checkpoint.save(rundir.checkpoints, step, carry, meta, cfg["checkpoint"]["keep"])
                log.info("step %d: checkpoint (every env at an episode boundary)", step)
            elif due_since is not None and step - due_since == spec.max_episode_steps:
                warning = (
                    f"step {step}: the checkpoint due at step {due_since} still waits for every seed's episode to end "
                    "at the same step (episodes that end early put the seeds out of step)"
                )
                log.warning(warning)
                say(warning)
    finally:
        bar.close()
        for handle in (train_log, test_log, metrics_log):
            if handle is not None:
                handle.close()
    run_seconds = time.perf_counter() - run_start
    if final_returns is None:
        final_returns = _last_eval(run_path, seeds)
    done = total - (resumed_from or 0)
    log.info("run %.2f s (%.0f env steps/s per seed)", run_seconds, done / max(run_seconds, 1e-9))
    log.info("Memory usage: %.2f MB", peak_memory_mb())
    log.info("%s %.2f minutes", FINISHED_PREFIX, (elapsed_before + time.perf_counter() - began) / 60)
    return Summary(Path(run_path), final_returns, seeds, total, 0.0, run_seconds, resumed_from)
