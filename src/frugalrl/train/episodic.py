"""The loop of memory agents: whole episodes collected inside jit, then updates on episode batches.

Memory-RL's schedule: ``random_episodes`` uniformly random episodes, then ``int(ratio·steps)``
updates; then, per training episode, one episode with the exploring agent (its memory carried step
by step) followed by ``ceil(ratio·T)`` updates, each on ``replay/batch_size`` sampled sequences.
Every ``eval_every`` training episodes, ``eval/episodes`` greedy episodes without dropout. The seeds
are vmapped and split over the devices; all of them share the (episode-counting) schedule, so a
segment is ``eval_every`` iterations of a ``lax.scan`` with no branch on counters.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from frugalrl import __version__, envs
from frugalrl.agents.recurrent_dqn import RecurrentDQN
from frugalrl.agents.sacd import SACD
from frugalrl.envs import EnvSpec
from frugalrl.replay import episodes as episode_replay
from frugalrl.runs import checkpoint
from frugalrl.runs.rundir import (
    FINISHED_PREFIX,
    TEST_COLUMNS,
    TRAIN_COLUMNS,
    CsvLog,
    checkpoint_rows,
    peak_memory_mb,
)
from frugalrl.train.loop import seed_keys

EVAL_STREAM = 0x5EED


class EpisodicCarry(NamedTuple):
    agent: Any  # the agent's state (RecurrentDQNState, SACDState)
    replay: episode_replay.EpisodeReplay
    key: jax.Array
    explore_steps: jax.Array  # exploring actions taken: the clock of the epsilon schedule


class EpisodeStats(NamedTuple):
    episode_return: jax.Array
    length: jax.Array
    success: jax.Array


def episode_length(spec: EnvSpec) -> int:
    return spec.max_episode_steps


def updates_after(steps: int, ratio: float, warmup: bool) -> int:
    """Memory-RL: int(ratio·steps) after the random episodes, ceil(ratio·T) after each later one."""
    return int(ratio * steps) if warmup else math.ceil(ratio * steps)


def make_agent(cfg: dict[str, Any], spec: EnvSpec) -> Any:
    """The recurrent DQN or SAC-Discrete; tokens per training sequence = window (or T) + 1."""
    window = cfg["episodic"]["sequence_length"]
    length = episode_length(spec)
    tokens = (window if 0 < window < length else length) + 1
    return SACD(spec, cfg, tokens) if cfg["agent"]["name"] == "sacd" else RecurrentDQN(spec, cfg, tokens)


def epsilon_schedule(cfg: dict[str, Any], length: int) -> Any:
    """Linear from agent/epsilon_start to epsilon_end (default 1/T) over a share of the training steps."""
    ep = cfg["episodic"]
    start = cfg["agent"]["epsilon_start"]
    end = ep["epsilon_end"] if ep["epsilon_end"] is not None else 1.0 / length
    duration = max(ep["epsilon_fraction"] * train_episodes(cfg) * length, 1.0)
    return lambda steps: start + jnp.clip(steps / duration, 0.0, 1.0) * (end - start)


def make_collect(agent: Any, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any]) -> Any:
    """``collect(params, key, explore_steps, mode) -> (Episode, stats, explore_steps)`` for one seed.

    mode 'random': uniform actions; 'explore': ε-greedy with dropout; 'greedy': argmax, no dropout.
    """
    length = episode_length(spec)
    epsilon = epsilon_schedule(cfg, length)

    def collect(params: Any, key: jax.Array, explore_steps: jax.Array, mode: str) -> Any:
        reset_key, key = jax.random.split(key)
        obs, env_state = env.reset(reset_key, env_params)

        def step(carry: Any, step_key: jax.Array) -> Any:
            env_state, obs, memory, prev_action, prev_reward, alive, explore_steps = carry
            act_key, env_key = jax.random.split(step_key)
            if mode == "random":
                action = jax.random.randint(act_key, (), 0, spec.num_actions)
            else:
                memory, action = agent.act(
                    params, memory, obs, prev_action, prev_reward, act_key, epsilon(explore_steps), mode == "explore"
                )
                explore_steps = explore_steps + int(mode == "explore")
            next_obs, env_state, reward, terminated, truncated, info = env.step(env_key, env_state, action, env_params)
            done = terminated | truncated
            shown = jnp.where(done, info["final_observation"], next_obs)
            success = info.get("success", jnp.asarray(False)) & done
            out = (envs.to_storage(shown, spec), action, reward, terminated, alive, success)
            carry = (env_state, next_obs, memory, action, reward, alive & ~done, explore_steps)
            return carry, out

        first = (
            env_state,
            obs,
            agent.initial_memory(),
            jnp.asarray(-1, jnp.int32),
            jnp.asarray(0.0),
            jnp.asarray(True),
            explore_steps,
        )
        carry, (shown, action, reward, terminated, valid, success) = jax.lax.scan(
            step, first, jax.random.split(key, length)
        )
        episode = episode_replay.Episode(
            jnp.concatenate([envs.to_storage(obs, spec)[None], shown]), action, reward, terminated, valid
        )
        stats = EpisodeStats((reward * valid).sum(), valid.sum(), (success & valid).any())
        return episode, stats, carry[-1]

    return collect


def make_learn(agent: Any, cfg: dict[str, Any], updates: int) -> Any:
    """``learn(agent_state, replay, key) -> (agent_state, mean metrics)``: ``updates`` gradient steps."""
    batch_size, window = cfg["replay"]["batch_size"], cfg["episodic"]["sequence_length"]

    def learn(state: Any, replay: Any, key: jax.Array) -> Any:
        def one(state: Any, key: jax.Array) -> Any:
            sample_key, update_key = jax.random.split(key)
            batch = episode_replay.sample(replay, sample_key, batch_size, window)
            return agent.update(state, batch, update_key)

        state, metrics = jax.lax.scan(one, state, jax.random.split(key, updates))
        return state, jax.tree.map(jnp.mean, metrics)

    return learn


def make_warmup(agent: Any, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any]) -> Any:
    """The random episodes and the updates that follow them (one seed)."""
    collect = make_collect(agent, env, env_params, spec, cfg)
    count = cfg["episodic"]["random_episodes"]
    updates = updates_after(count * episode_length(spec), cfg["episodic"]["updates_per_step"], warmup=True)
    learn = make_learn(agent, cfg, updates) if updates else None

    def warmup(carry: EpisodicCarry) -> tuple[EpisodicCarry, EpisodeStats]:
        def one(replay: Any, key: jax.Array) -> Any:
            episode, stats, _ = collect(agent.acting_params(carry.agent), key, carry.explore_steps, "random")
            return episode_replay.add(replay, episode), stats

        key, episodes_key, learn_key = jax.random.split(carry.key, 3)
        replay, stats = jax.lax.scan(one, carry.replay, jax.random.split(episodes_key, count))
        agent_state = carry.agent
        if learn is not None:
            agent_state, _ = learn(agent_state, replay, learn_key)
        return carry._replace(agent=agent_state, replay=replay, key=key), stats

    return warmup


def make_segment(agent: Any, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any], iterations: int) -> Any:
    """``iterations`` × (one exploring episode, ceil(ratio·T) updates), for one seed."""
    collect = make_collect(agent, env, env_params, spec, cfg)
    updates = updates_after(episode_length(spec), cfg["episodic"]["updates_per_step"], warmup=False)
    learn = make_learn(agent, cfg, updates)

    def segment(carry: EpisodicCarry) -> tuple[EpisodicCarry, tuple[EpisodeStats, dict[str, jax.Array]]]:
        def iteration(carry: EpisodicCarry, _: Any) -> Any:
            key, collect_key, learn_key = jax.random.split(carry.key, 3)
            episode, stats, explore_steps = collect(
                agent.acting_params(carry.agent), collect_key, carry.explore_steps, "explore"
            )
            replay = episode_replay.add(carry.replay, episode)
            agent_state, metrics = learn(carry.agent, replay, learn_key)
            return EpisodicCarry(agent_state, replay, key, explore_steps), (stats, metrics)

        return jax.lax.scan(iteration, carry, None, length=iterations)

    return segment


def make_evaluate(agent: Any, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any]) -> Any:
    """``evaluate(params, key) -> EpisodeStats [episodes]``: greedy, no dropout (one seed)."""
    collect = make_collect(agent, env, env_params, spec, cfg)
    count = cfg["eval"]["episodes"]

    def evaluate(params: Any, key: jax.Array) -> EpisodeStats:
        one = lambda k: collect(params, k, jnp.asarray(0, jnp.int32), "greedy")[1]  # noqa: E731
        return jax.vmap(one)(jax.random.split(key, count))

    return evaluate


def init_carry(agent: Any, spec: EnvSpec, cfg: dict[str, Any], key: jax.Array) -> EpisodicCarry:
    """One seed's starting state."""
    init_key, key = jax.random.split(key)
    length = episode_length(spec)
    capacity = episode_replay.episode_capacity(cfg["replay"]["capacity"], length, cfg["episodic"]["min_episodes"])
    replay = episode_replay.init(spec.obs_shape, spec.obs_dtype, length, capacity)
    return EpisodicCarry(agent.init(init_key), replay, key, jnp.asarray(0, jnp.int32))


def carry_shapes(agent: Any, spec: EnvSpec, cfg: dict[str, Any], keys: jax.Array) -> EpisodicCarry:
    """The shapes of every seed's starting state (what a checkpoint of the run restores into)."""
    return jax.eval_shape(jax.vmap(lambda k: init_carry(agent, spec, cfg, k)), keys)


def train_episodes(cfg: dict[str, Any]) -> int:
    """The config's training episodes, or Memory-RL's budget for the env and length."""
    from frugalrl.envs.memory_budget import budget_episodes

    given = cfg["episodic"]["train_episodes"]
    return given if given is not None else budget_episodes(cfg["env"]["name"])


def total_episodes(cfg: dict[str, Any]) -> int:
    return cfg["episodic"]["random_episodes"] + train_episodes(cfg)


def run_episodic(cfg: dict[str, Any], rundir: Any, *, progress: bool, say: Any, began: float) -> Any:
    """Train (or resume) a memory agent in a prepared run directory; returns a ``Summary``."""
    from frugalrl.train.run import (
        Summary,
        TrainingError,
        _leaf_spec,
        _progress,
        human_bytes,
        refuse_if_too_big,
        run_mesh,
    )

    run_path = rundir.path
    env, env_params, spec = envs.make(cfg["env"])
    agent = make_agent(cfg, spec)
    ep = cfg["episodic"]
    length = episode_length(spec)
    num_seeds = cfg["num_seeds"]
    run_index = int(cfg.get("run", 0))
    seeds = [run_index * num_seeds + lane for lane in range(num_seeds)]
    keys = seed_keys(cfg["seed"], run_index, num_seeds)
    env_name, agent_name = cfg["env"]["name"], cfg["agent"]["name"]
    total = total_episodes(cfg) * length
    rundir.write_config(cfg)
    log = rundir.logger()

    shapes = carry_shapes(agent, spec, cfg, keys)
    memory = episode_replay.memory_bytes(shapes.replay, num_seeds)
    log.info("frugalrl %s, jax %s, devices %s", __version__, jax.__version__, jax.local_devices())
    log.info("config %s", json.dumps(cfg, sort_keys=True))
    episodes_held = episode_replay.capacity_of(shapes.replay)
    message = (
        f"episode replay: {episodes_held} episodes of {length} steps, {memory['bytes_per_transition']:.1f} bytes per "
        f"step, {human_bytes(memory['total_bytes'] / num_seeds)} per seed, {human_bytes(memory['total_bytes'])} "
        f"for {num_seeds} seeds; {total_episodes(cfg)} episodes = {total} env steps per seed"
    )
    log.info(message)
    say(message)
    refuse_if_too_big(
        memory["total_bytes"], "the episode replays", "'replay/capacity', 'episodic/min_episodes' or 'num_seeds'"
    )

    mesh = run_mesh(num_seeds, log, say)
    carry_specs = jax.tree.map(_leaf_spec, shapes)
    carry_sharding = jax.tree.map(lambda s: NamedSharding(mesh, s), carry_specs)
    seed_spec = PartitionSpec("seed")

    def sharded(fn: Any, in_specs: Any, out_specs: Any) -> Any:
        return jax.jit(jax.shard_map(jax.vmap(fn), mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False))

    columns_train = TRAIN_COLUMNS + ["success"]
    columns_test = TEST_COLUMNS + ["success"]
    train_log = CsvLog(run_path / "result_Train.csv", columns_train)
    test_log = CsvLog(run_path / "result_Test.csv", columns_test)
    metric_names = list(agent.metric_names)
    metrics_log = CsvLog(run_path / "metrics.csv", ["seed", "step", *metric_names])
    restored = checkpoint.restore_latest(rundir.checkpoints, shapes)
    if restored is None:
        carry = jax.vmap(lambda k: init_carry(agent, spec, cfg, k))(keys)
        rows, elapsed_before, resumed_from = {"train": None, "test": None, "metrics": None}, 0.0, None
        episodes_done = 0
    else:
        carry, meta = restored
        rows, elapsed_before, resumed_from = meta["rows"], meta["elapsed_seconds"], int(meta["step"])
        episodes_done = resumed_from // length
        log.info("resuming from the checkpoint at step %d", resumed_from)
        say(f"resuming {run_path} from step {resumed_from}")
    carry = jax.device_put(carry, carry_sharding)
    for handle, kept in ((train_log, rows["train"]), (test_log, rows["test"]), (metrics_log, rows["metrics"])):
        handle.open(kept)

    stats_spec = EpisodeStats(seed_spec, seed_spec, seed_spec)
    compile_seconds = 0.0
    tick = time.perf_counter()
    evaluate = sharded(make_evaluate(agent, env, env_params, spec, cfg), (seed_spec, seed_spec), stats_spec)
    eval_keys_for = jax.jit(
        lambda at: jax.vmap(lambda key: jax.random.fold_in(jax.random.fold_in(key, EVAL_STREAM), at))(keys)
    )
    acting_params = jax.jit(jax.vmap(agent.acting_params))
    compiled_eval = evaluate.lower(acting_params(carry.agent), eval_keys_for(0)).compile()
    compile_seconds += time.perf_counter() - tick

    def write_episodes(stats: EpisodeStats, first_episode: int) -> None:
        returns, lengths, success = (np.asarray(x).reshape(num_seeds, -1) for x in stats)
        count = returns.shape[1]
        train_log.write(
            [
                env_name,
                agent_name,
                seeds[s],
                first_episode + i + 1,
                (first_episode + i + 1) * length,
                float(returns[s, i]),
                int(lengths[s, i]),
                int(success[s, i]),
            ]
            for i in range(count)
            for s in range(num_seeds)
        )
        train_log.flush()

    def evaluate_now(at: int) -> np.ndarray:
        stats = compiled_eval(acting_params(carry.agent), eval_keys_for(at))
        returns, success = np.asarray(stats.episode_return), np.asarray(stats.success)
        test_log.write(
            [
                env_name,
                agent_name,
                seeds[s],
                at,
                float(returns[s].mean()),
                float(returns[s].std()),
                returns.shape[1],
                float(success[s].mean()),
            ]
            for s in range(num_seeds)
        )
        test_log.flush()
        log.info("step %d: greedy return %.3f ± %.3f over seeds", at, returns.mean(), returns.mean(1).std())
        return returns.mean(1)

    def save(at: int) -> None:
        meta = {
            "rows": checkpoint_rows(train_log, test_log, metrics_log),
            "elapsed_seconds": elapsed_before + time.perf_counter() - began,
        }
        checkpoint.save(rundir.checkpoints, at, carry, meta, cfg["checkpoint"]["keep"])

    bar = _progress(total, episodes_done * length, num_seeds, enabled=progress)
    run_start = time.perf_counter()
    final_returns = None
    try:
        if episodes_done == 0:
            tick = time.perf_counter()
            warmup = sharded(make_warmup(agent, env, env_params, spec, cfg), (carry_specs,), (carry_specs, stats_spec))
            compiled = warmup.lower(carry).compile()
            compile_seconds += time.perf_counter() - tick
            carry, stats = compiled(carry)
            write_episodes(stats, 0)
            episodes_done = ep["random_episodes"]
            bar.update(episodes_done * length)
        compiled_segments: dict[int, Any] = {}
        metric_spec = {name: seed_spec for name in metric_names}
        while episodes_done < total_episodes(cfg):
            # as the original: evaluate when all episodes so far (random ones included) are a multiple
            iterations = min(ep["eval_every"] - episodes_done % ep["eval_every"], total_episodes(cfg) - episodes_done)
            if iterations not in compiled_segments:
                tick = time.perf_counter()
                segment = sharded(
                    make_segment(agent, env, env_params, spec, cfg, iterations),
                    (carry_specs,),
                    (carry_specs, (stats_spec, metric_spec)),
                )
                compiled_segments[iterations] = jax.jit(segment, donate_argnums=0).lower(carry).compile()
                compile_seconds += time.perf_counter() - tick
                log.info(
                    "compiled a segment of %d episodes x %d seeds in %.2f s",
                    iterations,
                    num_seeds,
                    time.perf_counter() - tick,
                )
            carry, (stats, metrics) = compiled_segments[iterations](carry)
            write_episodes(stats, episodes_done)
            episodes_done += iterations
            step = episodes_done * length
            metrics = {name: np.asarray(value).reshape(num_seeds, -1) for name, value in metrics.items()}
            if not np.isfinite(metrics["loss"]).all():
                bad = [seeds[s] for s in np.nonzero(~np.isfinite(metrics["loss"]).all(1))[0]]
                raise TrainingError(
                    f"the loss of seed(s) {bad} became NaN or inf before step {step}; lower 'optimizer/lr' or set "
                    "'optimizer/max_grad_norm'. Results and checkpoints up to the last checkpoint are kept."
                )
            metrics_log.write(
                [seeds[s], step] + [float(metrics[n][s].mean()) for n in metric_names] for s in range(num_seeds)
            )
            metrics_log.flush()
            final_returns = evaluate_now(step)
            bar.set_postfix_str(f"greedy return {final_returns.mean():.2f}", refresh=False)
            bar.update(iterations * length)
            every = cfg["checkpoint"]["every"]
            crossed = every and (step // every) > ((step - iterations * length) // every)
            done = episodes_done >= total_episodes(cfg)
            if (crossed and not done) or (done and cfg["checkpoint"]["final"]):
                save(step)
    finally:
        bar.close()
        for handle in (train_log, test_log, metrics_log):
            handle.close()
    jax.block_until_ready(carry)
    run_seconds = time.perf_counter() - run_start - compile_seconds
    if final_returns is None:
        from frugalrl.train.run import _last_eval

        final_returns = _last_eval(run_path, seeds)
    log.info(
        "compile %.2f s, run %.2f s (%.0f env steps/s per seed)",
        compile_seconds,
        run_seconds,
        (total - (resumed_from or 0)) / max(run_seconds, 1e-9),
    )
    log.info("Memory usage: %.2f MB", peak_memory_mb())
    log.info("%s %.2f minutes", FINISHED_PREFIX, (elapsed_before + time.perf_counter() - began) / 60)
    return Summary(run_path, final_returns, seeds, total, compile_seconds, run_seconds, resumed_from)


__all__ = [
    "EpisodeStats",
    "EpisodicCarry",
    "epsilon_schedule",
    "init_carry",
    "make_agent",
    "make_collect",
    "make_evaluate",
    "make_learn",
    "make_segment",
    "make_warmup",
    "run_episodic",
    "total_episodes",
    "train_episodes",
    "updates_after",
]
