"""The loop of memory agents: whole episodes collected inside jit, then updates on episode batches.

Memory-RL's schedule: ``random_episodes`` uniformly random episodes, then ``int(ratio·steps)``
updates; then, per training episode, one episode with the exploring agent (its memory carried step
by step) followed by ``ceil(ratio·T)`` updates, each on ``replay/batch_size`` sampled sequences.
Every ``eval_every`` training episodes, ``eval/episodes`` greedy episodes without dropout. The seeds
are vmapped and split over the devices; all of them share the (episode-counting) schedule, so a
segment is ``eval_every`` iterations of a ``lax.scan`` with no branch on counters.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from frugalrl import envs
from frugalrl.agents.protocols import EpisodicAgent
from frugalrl.agents.recurrent_dqn import RecurrentDQN
from frugalrl.agents.sacd import SACD
from frugalrl.devices import placed, seed_axis_spec
from frugalrl.envs import EnvSpec
from frugalrl.replay import episodes as episode_replay
from frugalrl.runs.rundir import TEST_COLUMNS, TRAIN_COLUMNS, counted
from frugalrl.train.loop import EVAL_STREAM, evaluation_keys, seed_keys
from frugalrl.train.session import RunSession, check_fits, human_bytes, memory_needs


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


def make_agent(cfg: dict[str, Any], spec: EnvSpec) -> EpisodicAgent:
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


def make_collect(agent: EpisodicAgent, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any]) -> Any:
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


def make_learn(agent: EpisodicAgent, cfg: dict[str, Any], updates: int) -> Any:
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


def make_warmup(agent: EpisodicAgent, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any]) -> Any:
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


def make_segment(
    agent: EpisodicAgent, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any], iterations: int
) -> Any:
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


def make_evaluate(agent: EpisodicAgent, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any]) -> Any:
    """``evaluate(params, key) -> EpisodeStats [episodes]``: greedy, no dropout (one seed)."""
    collect = make_collect(agent, env, env_params, spec, cfg)
    count = cfg["eval"]["episodes"]

    def evaluate(params: Any, key: jax.Array) -> EpisodeStats:
        one = lambda k: collect(params, k, jnp.asarray(0, jnp.int32), "greedy")[1]  # noqa: E731
        return jax.vmap(one)(jax.random.split(key, count))

    return evaluate


def init_carry(agent: EpisodicAgent, spec: EnvSpec, cfg: dict[str, Any], key: jax.Array) -> EpisodicCarry:
    """One seed's starting state."""
    init_key, key = jax.random.split(key)
    length = episode_length(spec)
    capacity = episode_replay.episode_capacity(cfg["replay"]["capacity"], length, cfg["episodic"]["min_episodes"])
    replay = episode_replay.init(spec.obs_shape, spec.obs_dtype, length, capacity)
    return EpisodicCarry(agent.init(init_key), replay, key, jnp.asarray(0, jnp.int32))


def carry_shapes(agent: EpisodicAgent, spec: EnvSpec, cfg: dict[str, Any], keys: jax.Array) -> EpisodicCarry:
    """The shapes of every seed's starting state (what a checkpoint of the run restores into)."""
    return jax.eval_shape(jax.vmap(lambda k: init_carry(agent, spec, cfg, k)), keys)


def train_episodes(cfg: dict[str, Any]) -> int:
    """The config's training episodes, or Memory-RL's budget for the env and length."""
    from frugalrl.envs.memory_budget import budget_episodes

    given = cfg["episodic"]["train_episodes"]
    return given if given is not None else budget_episodes(cfg["env"]["name"])


def total_episodes(cfg: dict[str, Any]) -> int:
    return cfg["episodic"]["random_episodes"] + train_episodes(cfg)


class EpisodicLoop:
    """The ``Loop`` of a memory agent: the random episodes, then segments of (one episode, its updates)
    up to the next multiple of ``eval_every`` episodes, each followed by an evaluation."""

    train_columns = TRAIN_COLUMNS + ["success"]
    test_columns = TEST_COLUMNS + ["success"]

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.env, self.env_params, self.spec = envs.make(cfg["env"])
        self.agent = make_agent(cfg, self.spec)
        self.length = episode_length(self.spec)
        self.keys = seed_keys(cfg["seed"], int(cfg.get("run", 0)), cfg["num_seeds"])
        self.total = total_episodes(cfg) * self.length
        self.compiled_segments: dict[int, Any] = {}

    def prepare(self, session: RunSession) -> Any:
        self.session, num_seeds, length = session, self.cfg["num_seeds"], self.length
        shapes = carry_shapes(self.agent, self.spec, self.cfg, self.keys)
        memory = episode_replay.memory_bytes(shapes.replay, num_seeds)
        session.announce(
            f"episode replay: {episode_replay.capacity_of(shapes.replay)} episodes of {length} steps, "
            f"{memory['bytes_per_transition']:.1f} bytes per step, {human_bytes(memory['total_bytes'] / num_seeds)} "
            f"per seed, {human_bytes(memory['total_bytes'])} for {counted(num_seeds, 'seed')}; "
            f"{total_episodes(self.cfg)} episodes = {self.total} env steps per seed"
        )
        seq, cfg = self.cfg["sequence"], self.cfg
        width = math.prod(self.spec.obs_shape) + 4 * seq["hidden"] * seq["layers"] + sum(seq["head_hidden"])
        tokens = length + 1  # a whole episode per batch row
        check_fits(
            cfg,
            memory_needs(
                cfg,
                self.spec,
                shapes,
                batch_rows=num_seeds * cfg["replay"]["batch_size"] * tokens,
                eval_rows=num_seeds * cfg["eval"]["episodes"],
                width=width,
            ),
        )
        mesh = session.mesh()
        self.carry_specs = jax.tree.map(seed_axis_spec, shapes)
        self.carry_sharding = jax.tree.map(lambda s: NamedSharding(mesh, s), self.carry_specs)
        self.sharded = lambda fn, ins, outs: jax.jit(
            jax.shard_map(jax.vmap(fn), mesh=mesh, in_specs=ins, out_specs=outs, check_vma=False)
        )
        seed = PartitionSpec("seed")
        self.stats_spec = EpisodeStats(seed, seed, seed)
        self.metric_spec = {name: seed for name in self.agent.metric_names}
        return shapes

    def fresh(self) -> EpisodicCarry:
        carry = jax.vmap(lambda k: init_carry(self.agent, self.spec, self.cfg, k))(self.keys)
        return placed(carry, self.carry_sharding)

    def resume(self, carry: EpisodicCarry, meta: dict[str, Any]) -> EpisodicCarry:
        return jax.device_put(carry, self.carry_sharding)

    def start(self, carry: EpisodicCarry, resumed: bool) -> EpisodicCarry:
        seed = PartitionSpec("seed")
        evaluate = self.sharded(
            make_evaluate(self.agent, self.env, self.env_params, self.spec, self.cfg), (seed, seed), self.stats_spec
        )
        self.eval_keys_for = evaluation_keys(self.keys, EVAL_STREAM)
        self.acting_params = jax.jit(jax.vmap(self.agent.acting_params))
        self.compiled_eval = self.session.compile(
            "the evaluation", lambda: evaluate.lower(self.acting_params(carry.agent), self.eval_keys_for(0))
        )
        self.warmed_up = resumed
        return carry

    def advance(self, carry: EpisodicCarry, step: int) -> tuple[EpisodicCarry, int]:
        """The random episodes and their updates (at step 0), or episodes up to the next evaluation."""
        done, ep = step // self.length, self.cfg["episodic"]
        if not self.warmed_up:  # a new run: the random episodes first (a resumed run is past them)
            self.warmed_up = True
            warmup = self.sharded(
                make_warmup(self.agent, self.env, self.env_params, self.spec, self.cfg),
                (self.carry_specs,),
                (self.carry_specs, self.stats_spec),
            )
            compiled = self.session.compile("the random episodes", lambda: warmup.lower(carry))
            with self.session.phase("segments"):
                carry, stats = compiled(carry)
                jax.block_until_ready(stats)
            with self.session.phase("bookkeeping"):
                self.write_episodes(stats, 0)
            return carry, ep["random_episodes"] * self.length
        # as the original: evaluate when all episodes so far (random ones included) are a multiple
        iterations = min(ep["eval_every"] - done % ep["eval_every"], total_episodes(self.cfg) - done)
        with self.session.phase("segments"):
            carry, (stats, metrics) = self.compiled_segment(iterations, carry)(carry)
            jax.block_until_ready(stats)
        step = (done + iterations) * self.length
        with self.session.phase("bookkeeping"):
            self.write_episodes(stats, done)
            metrics = {name: np.asarray(value).reshape(self.cfg["num_seeds"], -1) for name, value in metrics.items()}
            self.session.check_finite(np.isfinite(metrics["loss"]).all(1), step)
            means = {name: value.mean(1) for name, value in metrics.items()}
            self.session.write_metrics(step, self.agent.metric_names, means)
            self.session.flush()
        return carry, step

    def compiled_segment(self, iterations: int, carry: EpisodicCarry) -> Any:
        if iterations not in self.compiled_segments:
            segment = self.sharded(
                make_segment(self.agent, self.env, self.env_params, self.spec, self.cfg, iterations),
                (self.carry_specs,),
                (self.carry_specs, (self.stats_spec, self.metric_spec)),
            )
            what = f"a segment of {iterations} episodes x {self.cfg['num_seeds']} seeds"
            self.compiled_segments[iterations] = self.session.compile(
                what, lambda: jax.jit(segment, donate_argnums=0).lower(carry)
            )
        return self.compiled_segments[iterations]

    def write_episodes(self, stats: EpisodeStats, first_episode: int) -> None:
        num_seeds, seeds, length = self.cfg["num_seeds"], self.session.seeds, self.length
        returns, lengths, success = (np.asarray(x).reshape(num_seeds, -1) for x in stats)
        env_name, agent_name = self.cfg["env"]["name"], self.cfg["agent"]["name"]
        self.session.write_episodes(
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
            for i in range(returns.shape[1])
            for s in range(num_seeds)
        )
        self.session.train_log.flush()

    def evaluation_due(self, step: int) -> bool:
        """After every segment of training episodes; not after the random ones."""
        return step > self.cfg["episodic"]["random_episodes"] * self.length

    def evaluate(self, carry: EpisodicCarry, step: int) -> tuple[EpisodicCarry, np.ndarray]:
        stats = self.compiled_eval(self.acting_params(carry.agent), self.eval_keys_for(step))
        returns, success = np.asarray(stats.episode_return), np.asarray(stats.success)
        cfg, session = self.cfg, self.session
        session.write_evaluations(
            [
                cfg["env"]["name"],
                cfg["agent"]["name"],
                session.seeds[s],
                step,
                float(returns[s].mean()),
                float(returns[s].std()),
                returns.shape[1],
                float(success[s].mean()),
            ]
            for s in range(cfg["num_seeds"])
        )
        session.log.info("step %d: greedy return %.3f ± %.3f over seeds", step, returns.mean(), returns.mean(1).std())
        return carry, returns.mean(1)

    def after_segment(self, carry: EpisodicCarry, step: int) -> EpisodicCarry:
        return carry

    def checkpoint_meta(self, carry: EpisodicCarry, step: int, due: int) -> dict[str, Any]:
        return {}


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
    "EpisodicLoop",
    "total_episodes",
    "train_episodes",
    "updates_after",
]
