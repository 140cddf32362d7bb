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

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from frugalrl.agents import make_agent
from frugalrl.agents.protocols import ValueAgent
from frugalrl.config.schema import first_learning_block
from frugalrl.config.sections import ReplaySection
from frugalrl.devices import placed
from frugalrl.envs import EnvSpec
from frugalrl.envs.dmc import DMCEnv
from frugalrl.errors import TrainingError
from frugalrl.replay import fifo, prioritized
from frugalrl.runs.rundir import TEST_COLUMNS, TRAIN_COLUMNS, counted, evaluation_rows
from frugalrl.train.loop import (
    BlockData,
    Learning,
    acting_epsilon,
    agent_init_keys,
    make_learner,
    seed_keys,
    unrolled_updates,
)
from frugalrl.train.resets import initial_reset_state, make_reinit, reset_if_due, resetting
from frugalrl.train.session import RunSession, check_fits, human_bytes, memory_needs

EVAL_SEED = 0xE7A1  # mixed into the evaluation envs' seeds, apart from the training envs'


class HostCarry(NamedTuple):
    """The device side of a host-env run, leading axis = seed (counters shared)."""

    agent: Any  # the agent's state, leading axis = seed
    replay: fifo.ReplayState
    obs: jax.Array  # [seeds, obs_dim] the observation the next action is taken in
    action: jax.Array  # [seeds, *action_shape] the action chosen for it
    key: jax.Array  # [seeds, 2]
    env_step: jax.Array  # [] env steps taken by each seed
    grad_step: jax.Array  # [] gradient steps taken by each seed
    resets: Any = ()
    priorities: Any = ()  # prioritized replay's per-seed priorities (replay/prioritized)
    teacher: Any = ()  # per-seed copy of a frozen teacher's parameters (distillation)
    distill_lambda: Any = ()  # [seeds] QDagger's lambda, set by the host after each evaluation


def host_copy(array: Any) -> np.ndarray:
    """``array`` on the host once computed. ``np.asarray`` of an array still being computed waits
    in a slow path: 4.7 ms against 0.2 ms after ``block_until_ready`` for the actions of one
    Atari step (jax 0.10.2, CPU; docs/notes/atari.md)."""
    return np.asarray(jax.block_until_ready(array))


def env_seed(cfg: dict[str, Any], lane: int, *extra: int) -> int:
    """A 32-bit env seed of its own for every (seed, run, lane, ...): seed j is not seed j + 1's neighbour."""
    entropy = [cfg["seed"], int(cfg.get("run", 0)), lane, *extra]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def host_spec(env: DMCEnv) -> EnvSpec:
    """The agent's view of a host env: flat float32 observations, actions in [-1, 1]."""
    s = env.spec
    return EnvSpec(env.name, (s.obs_dim,), np.dtype(np.float32), None, (s.action_dim,), -1.0, 1.0, s.max_episode_steps)


def init_host_carry(
    agent: ValueAgent,
    spec: EnvSpec,
    cfg: dict[str, Any],
    keys: jax.Array,
    obs: Any,
    empty_replay: Callable[[int], fifo.ReplayState] | None = None,
) -> HostCarry:
    """A new run's device state for first observations ``obs``; ``empty_replay(capacity)`` makes one
    seed's replay (by default float observations and actions as ``spec`` gives them)."""
    capacity = cfg["replay"]["capacity"]
    action_dtype = jnp.int32 if spec.discrete else jnp.float32
    if empty_replay is None:
        example = jnp.zeros(spec.obs_shape, jnp.float32), jnp.zeros(spec.action_shape, action_dtype)
        empty_replay = lambda capacity: fifo.init(*example, capacity, spec.max_episode_steps)  # noqa: E731

    def one(key: jax.Array) -> tuple[Any, ...]:
        init_key, _, loop_key = jax.random.split(key, 3)  # init_key as agent_init_keys derives it
        return agent.init(init_key), empty_replay(capacity), loop_key

    agent_state, replay, loop_key = jax.jit(lambda keys: jax.lax.map(one, keys))(keys)
    seeds = keys.shape[0]
    carry = HostCarry(
        agent_state,
        replay,
        jnp.asarray(obs),
        jnp.zeros((seeds,) + spec.action_shape, action_dtype),
        loop_key,
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        initial_reset_state() if resetting(cfg) else (),
    )
    if cfg["replay"]["prioritized"]:
        carry = carry._replace(priorities=jax.vmap(lambda _: prioritized.init(capacity))(keys))
    return carry  # leaves can share a buffer (params and target params): the caller places it (devices.placed)


def plain_observation(c: HostCarry, reward, terminated, truncated, final_obs, next_obs) -> tuple[Any, ...]:
    """(the transition to store, the replay's next observation, the agent's next observation)."""
    return fifo.Transition(c.obs, c.action, reward, terminated, truncated, final_obs), next_obs, next_obs


def make_host_step(
    agent: ValueAgent,
    spec: EnvSpec,
    cfg: dict[str, Any],
    learn: bool,
    observe: Callable[..., Any] = plain_observation,
    teacher_q: Any = None,
) -> Callable[..., Any]:
    """(carry, *step) -> (carry, metrics): store the step, update when ``learn`` (the flat loop's
    learner: n-step, prioritized replay, ``gradient_steps`` TD batches, target syncs), and choose
    the next actions. ``observe(carry, *step)`` says what is stored and acted on (``plain_observation``:
    ``step`` is reward, terminated, truncated, final_obs, next_obs); ``teacher_q``: the network of the
    teacher whose parameters the carry holds (distillation)."""
    add = jax.vmap(fifo.add, in_axes=(0, None, 0, 0))
    on_add = jax.vmap(prioritized.on_add, in_axes=(0, None, None)) if ReplaySection.of(cfg).prioritized else None
    unrolled = unrolled_updates(cfg)
    learner = make_learner(agent, spec, cfg, teacher_q, unrolled=unrolled)
    act = jax.vmap(agent.act, in_axes=(0, 0, 0, None))

    def step(c: HostCarry, *inputs: jax.Array) -> tuple[HostCarry, Any]:
        transition, next_row, next_obs = observe(c, *inputs)
        replay = add(c.replay, c.env_step, transition, next_row)
        priorities = on_add(c.priorities, c.env_step, 1) if on_add is not None else c.priorities
        count = c.env_step + 1
        state, metrics = Learning(c.agent, c.key, c.grad_step, priorities), {}
        if learn:
            data = BlockData(replay, count, teacher=c.teacher, distill_lambda=c.distill_lambda)
            state, metrics = learner(state, data)
        keys = jax.vmap(jax.random.split)(state.key)
        action = act(state.agent, next_obs, keys[:, 1], acting_epsilon(agent, cfg, count))
        carry = c._replace(
            agent=state.agent,
            replay=replay,
            obs=next_obs,
            action=action,
            key=keys[:, 0],
            env_step=count,
            grad_step=state.grad_step,
            priorities=state.priorities,
        )
        return carry, metrics

    return step


def make_first_action(agent: ValueAgent, cfg: dict[str, Any]) -> Callable[[HostCarry], HostCarry]:
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
            actions = host_copy(actions)
            for lane, env in enumerate(eval_envs):
                if not done[lane]:
                    obs[lane], reward, terminated, truncated = env.step(actions[lane])
                    returns[lane, episode] += reward
                    done[lane] = terminated or truncated
            if done.all():
                break
    return returns / max_steps if cfg["eval"]["per_step"] else returns


def make_evaluation_policy(agent: ValueAgent) -> Any:
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


class HostLoop:
    """The ``Loop`` of a run whose env lives on the host (dm-control): one env per seed, one step at a time."""

    train_columns, test_columns = TRAIN_COLUMNS, TEST_COLUMNS

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg, num_seeds = cfg, cfg["num_seeds"]
        self.train_envs = [DMCEnv(cfg["env"]["name"], env_seed(cfg, lane)) for lane in range(num_seeds)]
        self.eval_envs = [DMCEnv(cfg["env"]["name"], env_seed(cfg, lane, EVAL_SEED)) for lane in range(num_seeds)]
        self.spec = host_spec(self.train_envs[0])
        self.agent = make_agent(cfg, self.spec)
        self.keys = seed_keys(cfg["seed"], int(cfg.get("run", 0)), num_seeds)
        self.total = cfg["total_steps"]
        self.episode_return = np.zeros(num_seeds)
        self.episode_length = np.zeros(num_seeds, np.int64)
        self.episodes = np.zeros(num_seeds, np.int64)
        self.pending_metrics: list[Any] = []
        self.rng_before_reset: list[Any] = [None] * num_seeds

    def prepare(self, session: RunSession) -> Any:
        self.session, num_seeds = session, self.cfg["num_seeds"]
        first_obs = jnp.zeros((num_seeds, self.spec.obs_shape[0]), jnp.float32)
        shapes = jax.eval_shape(lambda k: init_host_carry(self.agent, self.spec, self.cfg, k, first_obs), self.keys)
        memory = fifo.memory_bytes(shapes.replay, num_seeds)
        session.announce(
            f"replay: {memory['bytes_per_transition']:.1f} bytes per transition, "
            f"{human_bytes(memory['total_bytes'] / num_seeds)} per seed, {human_bytes(memory['total_bytes'])} for "
            f"{num_seeds} seeds; {self.cfg['env']['name']} on the host, one env per seed"
        )
        width = self.spec.obs_shape[0] + sum(self.cfg["network"]["hidden"]) + math.prod(self.spec.action_shape)
        rows = num_seeds * self.cfg["replay"]["batch_size"]
        check_fits(self.cfg, memory_needs(self.cfg, self.spec, shapes, batch_rows=rows, eval_rows=0, width=width))
        return shapes

    def fresh(self) -> HostCarry:
        first_obs = jnp.asarray(np.stack([env.reset() for env in self.train_envs]), jnp.float32)
        carry = placed(init_host_carry(self.agent, self.spec, self.cfg, self.keys, first_obs))
        return jax.jit(make_first_action(self.agent, self.cfg))(carry)

    def resume(self, carry: HostCarry, meta: dict[str, Any]) -> HostCarry:
        self.episodes = np.asarray(meta["episodes"], np.int64)
        for env, state in zip(self.train_envs, meta["env_rng"], strict=True):
            env.set_rng_state(_rng_from_json(state))
        obs = np.stack([env.reset() for env in self.train_envs])
        if not np.array_equal(obs, np.asarray(carry.obs)):
            raise TrainingError("the restored environments do not start where the checkpoint did; rerun with --fresh")
        return carry

    def start(self, carry: HostCarry, resumed: bool) -> HostCarry:
        session, cfg, num_seeds = self.session, self.cfg, self.cfg["num_seeds"]
        obs = np.zeros((num_seeds, self.spec.obs_shape[0]), np.float32)
        flags = np.zeros(num_seeds, bool)
        example = (np.zeros(num_seeds, np.float32), flags, flags, obs, obs)
        self.steps = {
            learn: session.compile(
                f"the {'learning' if learn else 'acting'} step ({counted(num_seeds, 'seed')})",
                lambda learn=learn: jax.jit(make_host_step(self.agent, self.spec, cfg, learn), donate_argnums=0).lower(
                    carry, *example
                ),
            )
            for learn in (False, True)
        }
        self.first_action = jax.jit(make_first_action(self.agent, cfg))
        policy = make_evaluation_policy(self.agent)
        self.policy = session.compile(
            "the evaluation policy", lambda: policy.lower(carry.agent, obs, carry.key, float(cfg["eval"]["epsilon"]))
        )
        self.reinit = jax.jit(make_reinit(self.agent, cfg)) if resetting(cfg) else None
        self.learning_from = first_learning_block(cfg)
        return carry

    def advance(self, carry: HostCarry, step: int) -> tuple[HostCarry, int]:
        with self.session.phase("segments"):
            return self.env_step(carry, step)

    def env_step(self, carry: HostCarry, step: int) -> tuple[HostCarry, int]:
        """One env step of every seed, then the device's store / update / act."""
        num_seeds = self.cfg["num_seeds"]
        actions = host_copy(carry.action)
        # a diverged agent acts NaN before its next metrics row, and the physics would fail on it
        finite = np.isfinite(actions).reshape(num_seeds, -1).all(1)
        self.session.check_finite(finite, step + 1, what="actions")
        if self.session.dropped:  # a dropped seed's env goes on with zero actions (NaN would break its physics)
            actions = np.where(self.session.dropped_lanes().reshape(-1, 1), 0.0, actions).astype(actions.dtype)
        next_obs = np.empty((num_seeds, self.spec.obs_shape[0]), np.float32)
        final_obs = np.empty_like(next_obs)
        reward = np.zeros(num_seeds, np.float32)
        terminated, truncated = np.zeros(num_seeds, bool), np.zeros(num_seeds, bool)
        self.rng_before_reset = [None] * num_seeds
        for lane, env in enumerate(self.train_envs):
            obs, reward[lane], terminated[lane], truncated[lane] = env.step(actions[lane])
            final_obs[lane] = obs
            self.episode_return[lane] += reward[lane]
            self.episode_length[lane] += 1
            if terminated[lane] or truncated[lane]:
                self.end_episode(lane, step + 1)
                obs = env.reset()
            next_obs[lane] = obs
        return self.device_step(carry, step + 1, (reward, terminated, truncated, final_obs, next_obs))

    def device_step(self, carry: HostCarry, step: int, inputs: tuple[Any, ...]) -> tuple[HostCarry, int]:
        """The device's store / update / act after env step ``step``: the learning step when a block
        of ``train_every`` steps ends from ``learning_starts`` on (its metrics kept), else the acting one."""
        k = self.cfg["train"]["train_every"]
        learn = step % k == 0 and step - k >= self.learning_from
        carry, metrics = self.steps[learn](carry, *inputs)
        if learn:
            self.pending_metrics.append(metrics)
        return carry, step

    def write_row(self, lane: int, step: int, number: int, score: float, length: int) -> None:
        """result_Train.csv's row for the ``number``-th episode of ``lane``, ended at env step ``step``."""
        cfg = self.cfg
        row = [cfg["env"]["name"], cfg["agent"]["name"], self.session.seeds[lane], number, step, score, length]
        self.session.write_episodes([row])

    def end_episode(self, lane: int, step: int) -> None:
        """Write the episode's row; keep the env's random state from before its reset (for a checkpoint)."""
        self.episodes[lane] += 1
        self.write_row(lane, step, int(self.episodes[lane]), self.episode_return[lane], int(self.episode_length[lane]))
        self.episode_return[lane], self.episode_length[lane] = 0.0, 0
        self.rng_before_reset[lane] = self.train_envs[lane].rng_state()

    def write_metrics(self, at: int) -> None:
        """One metrics.csv row per seed: the mean of each update metric since the last row."""
        if not self.pending_metrics:
            return
        means = jax.tree.map(lambda *x: np.mean(np.stack([np.asarray(v) for v in x]), axis=0), *self.pending_metrics)
        self.pending_metrics = []
        finite = np.all([np.isfinite(value) for value in means.values()], axis=0)
        self.session.check_finite(finite, at, what="update metrics")
        self.session.write_metrics(at, sorted(means), means)

    def evaluation_due(self, step: int) -> bool:
        every = self.cfg["eval"]["every"]
        return bool(every and step % every == 0) or step == self.total

    def evaluate(self, carry: HostCarry, step: int) -> tuple[HostCarry, np.ndarray]:
        cfg, session = self.cfg, self.session
        returns = evaluate_host(self.policy, carry.agent, self.eval_envs, cfg, step)
        session.write_evaluations(
            evaluation_rows(cfg["env"]["name"], cfg["agent"]["name"], session.seeds, step, returns)
        )
        session.note_evaluation(step, returns)
        self.write_metrics(step)
        return carry, returns.mean(1)

    def after_segment(self, carry: HostCarry, step: int) -> HostCarry:
        if self.reinit is None:
            return carry
        before = int(carry.resets.count)
        carry = reset_if_due(carry, self.cfg, step, self.reinit, agent_init_keys(self.keys), self.session.log)
        if int(carry.resets.count) != before:  # the fresh agent picks the next actions, not the old one
            carry = self.first_action(carry)
        return carry

    def checkpoint_meta(self, carry: HostCarry, step: int, due: int) -> dict[str, Any] | None:
        """Ready only where every seed's episode has just ended: a resumed run restarts its envs from a reset."""
        if all(state is not None for state in self.rng_before_reset):
            self.write_metrics(step)  # so a resumed run's next row averages the same updates
            return {"episodes": self.episodes.tolist(), "env_rng": [_rng_to_json(s) for s in self.rng_before_reset]}
        if step - due == self.spec.max_episode_steps:
            self.session.warn(
                f"step {step}: the checkpoint due at step {due} still waits for every seed's episode to end "
                "at the same step (episodes that end early put the seeds out of step)"
            )
        return None
