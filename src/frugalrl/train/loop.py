"""The jitted training loop: segments of env steps, vmapped over seeds, with shared counters.

A segment is ``lax.scan`` over blocks; a block is ``train_every`` env steps for every seed, then
``gradient_steps`` updates for every seed (for blocks that start at or after ``learning_starts``),
then a target sync when one is due. Whether a segment learns is decided by the host, which
compiles a learning and a non-learning segment (DESIGN principle 4: loop structure, not a
branch on counters); only a segment that straddles ``learning_starts`` uses ``lax.cond``.
Per-seed work is ``vmap``-ed explicitly; the counters ``env_step`` and ``grad_step`` are plain
scalars shared by all seeds, so every remaining predicate is unbatched and ``lax.cond`` stays a
real branch instead of computing both sides.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from frugalrl.agents.consolidation import consolidation_lambda, make_source
from frugalrl.config.schema import first_learning_block as first_learning_step
from frugalrl.devices import rolled_threefry
from frugalrl.envs import EnvSpec, to_storage
from frugalrl.replay import fifo, prioritized
from frugalrl.train.resets import initial_reset_state, resetting

EVAL_STREAM = 0x5EED  # folded into each seed's key for evaluation, apart from training randomness
JSRL_STREAM = 0x75E1  # folded into keys for JSRL's own draws, apart from every other stream


class Carry(NamedTuple):
    """Everything a run needs to continue: the checkpointed training state."""

    agent: Any  # agent state, leading axis = seed
    replay: fifo.ReplayState
    env_state: Any
    obs: jax.Array
    key: jax.Array  # [seeds, 2] per-seed RNG streams
    episode_return: jax.Array
    episode_length: jax.Array
    episodes: jax.Array  # finished training episodes per seed
    env_step: jax.Array  # [] shared: env steps taken by each seed
    grad_step: jax.Array  # [] shared: gradient steps taken by each seed
    source: Any = ()  # per-seed state of the consolidation-state source (MeDQN(U)'s observation bounds)
    teacher: Any = ()  # per-seed copy of the frozen teacher's parameters (distillation)
    distill_lambda: Any = ()  # [seeds] QDagger's lambda, set by the host after each evaluation
    jsrl: Any = ()  # JSRLState: per-seed roll-in lengths (JSRL's teacher-guided exploration)
    priorities: Any = ()  # per-seed prioritized-replay priorities (replay/prioritized)
    resets: Any = ()  # ResetState: resets so far and the grad_step of the last (reset/every)


class JSRLState(NamedTuple):
    roll_in: jax.Array  # [seeds] roll-in length of the current episode
    max_roll_in: jax.Array  # [seeds] upper end of the roll-in draw, shrunk by the host after each evaluation


class StepOut(NamedTuple):
    """Per env step and seed; the host reads finished episodes from it."""

    episode_return: jax.Array  # return so far, including this step
    finished_length: jax.Array  # the episode's length if it ended at this step, else 0


def tree_select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Leafwise select on a shared scalar predicate.

    Used for the target sync instead of ``lax.cond``: a cond inside the scanned loop copies the
    whole (seed-batched) agent state every block (+415 us per block at 8 seeds on CPU), while a
    select costs one pass over the target parameters; leaves that the sync leaves as they are
    fold away (select(p, x, x) = x).
    """
    return jax.tree.map(lambda a, b: a if a is b else jnp.where(pred, a, b), on_true, on_false)


def seed_keys(seed: int, run: int, num_seeds: int) -> jax.Array:
    """One independent key per seed lane: fold in the run index, then the lane."""
    run_key = jax.random.fold_in(jax.random.PRNGKey(seed), run)
    return jax.vmap(lambda lane: jax.random.fold_in(run_key, lane))(jnp.arange(num_seeds))


def evaluation_keys(keys: jax.Array, stream: int) -> Any:
    """jit(step -> [seeds] keys): each seed's evaluation key at an env step, apart from training's."""
    return jax.jit(lambda step: jax.vmap(lambda key: jax.random.fold_in(jax.random.fold_in(key, stream), step))(keys))


def distilling(cfg: dict[str, Any]) -> bool:
    return cfg["distillation"]["coefficient"] > 0


def jump_starting(cfg: dict[str, Any]) -> bool:
    """JSRL: the teacher acts in part of the training steps."""
    return cfg["jsrl"]["guide_prob"] > 0 or cfg["jsrl"]["roll_in_guide"]


def needs_teacher_in_loop(cfg: dict[str, Any]) -> bool:
    return distilling(cfg) or jump_starting(cfg)


def draw_roll_in(key: jax.Array, max_roll_in: jax.Array) -> jax.Array:
    """A roll-in length uniform in 1..max_roll_in (0 when max_roll_in < 1), as JSRL's begin_episode."""
    return jnp.where(max_roll_in >= 1, jax.random.randint(key, (), 1, jnp.maximum(max_roll_in, 1) + 1), 0)


def guide_probability(cfg: dict[str, Any], steps: jax.Array) -> jax.Array:
    """JSRL's roll-out probability of a teacher action: guide_prob, decaying linearly to 0."""
    jcfg = cfg["jsrl"]
    return jcfg["guide_prob"] * jnp.clip(1.0 - steps / jcfg["decay_period"], 0.0, 1.0)


def agent_init_keys(keys: jax.Array) -> jax.Array:
    """Each seed's key for ``agent.init``, as ``init_carry`` derives it (resets with the same key reuse it)."""
    return jax.vmap(lambda key: jax.random.split(key, 3)[0])(keys)


def init_carry(
    agent: Any,
    env: Any,
    env_params: Any,
    spec: EnvSpec,
    cfg: dict[str, Any],
    keys: jax.Array,
    teacher_params: Any = None,
) -> Carry:
    """Fresh state for all seeds from their keys (and the teacher's parameters, when there is one)."""

    def one(key: jax.Array) -> tuple[Any, ...]:
        init_key, reset_key, loop_key = jax.random.split(key, 3)  # init_key: see agent_init_keys
        obs, env_state = env.reset(reset_key, env_params)
        action = jnp.zeros(spec.action_shape, jnp.int32 if spec.discrete else jnp.float32)
        replay = fifo.init(to_storage(obs, spec), action, cfg["replay"]["capacity"], spec.max_episode_steps)
        return agent.init(init_key), replay, env_state, obs, loop_key

    # lax.map, not vmap: the same values, and it compiles one seed's init (SAC's orthogonal inits: 21 -> 9 s);
    # rolled threefry: it runs once, so unrolled rounds would only cost compile time
    with rolled_threefry():
        agent_state, replay, env_state, obs, loop_key = jax.jit(lambda keys: jax.lax.map(one, keys))(keys)
    seeds = keys.shape[0]
    source = make_source(cfg, spec)
    source_state = jax.vmap(lambda _: source.init())(keys) if source is not None else ()
    carry = Carry(
        agent_state,
        replay,
        env_state,
        obs,
        loop_key,
        jnp.zeros(seeds, jnp.float32),
        jnp.zeros(seeds, jnp.int32),
        jnp.zeros(seeds, jnp.int32),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        source_state,
    )
    per_seed = lambda tree: jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds,) + x.shape), tree)
    if teacher_params is not None and cfg["teacher"]["init_student"]:
        start = per_seed(teacher_params)
        carry = carry._replace(agent=carry.agent._replace(params=start, target_params=start))
    if teacher_params is not None and needs_teacher_in_loop(cfg):
        carry = carry._replace(teacher=per_seed(teacher_params), distill_lambda=jnp.ones(seeds, jnp.float32))
    if cfg["replay"]["prioritized"]:
        carry = carry._replace(priorities=jax.vmap(lambda _: prioritized.init(cfg["replay"]["capacity"]))(keys))
    if resetting(cfg):
        carry = carry._replace(resets=initial_reset_state())
    if jump_starting(cfg):
        max_roll_in = jnp.full(seeds, cfg["jsrl"]["max_roll_in_steps"], jnp.int32)
        roll_keys = jax.vmap(lambda key: jax.random.fold_in(key, JSRL_STREAM))(keys)
        carry = carry._replace(jsrl=JSRLState(jax.vmap(draw_roll_in)(roll_keys, max_roll_in), max_roll_in))
    # every leaf its own buffer (params and target params start equal): the segment donates them
    return jax.tree.map(jnp.copy, carry)


def acting_epsilon(agent: Any, cfg: dict[str, Any], steps: jax.Array) -> jax.Array:
    """Epsilon at env steps ``steps``: 1 during the random warm-up, then the agent's schedule.

    The schedule also counts offline pretraining's gradient steps, as the reincarnation code's
    global step counter did: a student pretrained for at least ``epsilon_decay_steps`` starts
    the online phase at ``epsilon_end``.
    """
    scheduled = agent.epsilon(steps + cfg["pretraining"]["steps"])
    return jnp.where(steps < cfg["train"]["random_steps"], 1.0, scheduled)


def make_segment(
    agent: Any,
    env: Any,
    env_params: Any,
    spec: EnvSpec,
    cfg: dict[str, Any],
    num_blocks: int,
    learning: str = "mixed",
    teacher_q: Any = None,
    rehearsal_count: int = 0,
):
    """A function Carry -> (Carry, outputs) running ``num_blocks`` blocks; jit it with donation.

    ``learning``: "always" (every block updates), "never" (none does) or "mixed" (a block updates
    when it starts at or after ``first_learning_step``, through ``lax.cond``).
    ``teacher_q``: the teacher's Q-function (``apply(params, obs)``), when the config uses a teacher;
    ``rehearsal_count``: transitions written into the teacher data that rehearsal samples from.
    """
    train, agent_cfg = cfg["train"], cfg["agent"]
    k, m, epochs = train["train_every"], train["gradient_steps"], train["epochs_per_batch"]
    source = make_source(cfg, spec)
    lambda_schedule = dict(
        total_steps=cfg["total_steps"],
        lambda_start=cfg["consolidation"]["lambda_start"],
        lambda_end=cfg["consolidation"]["lambda_end"],
    )
    learning_from = first_learning_step(cfg)
    period, unit = agent_cfg["target_every"], agent_cfg["target_unit"]
    sample_kwargs = dict(
        n_step=agent_cfg["n_step"], gamma=agent_cfg["gamma"], bootstrap_truncation=agent_cfg["bootstrap_truncation"]
    )
    batch_size = cfg["replay"]["batch_size"]
    distill = distilling(cfg) and teacher_q is not None
    alpha = cfg["distillation"]["coefficient"]

    act = jax.vmap(agent.act, in_axes=(0, 0, 0, None))
    env_step_fn = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    add_block = jax.vmap(fifo.add_block, in_axes=(0, None, 1, 0))
    if cfg["replay"]["td_batch"] == "all":
        sample = jax.vmap(lambda r, key, count: fifo.get(r, count, **sample_kwargs), in_axes=(0, 0, None))
    else:
        sample = jax.vmap(
            lambda r, key, count: fifo.sample(r, key, count, batch_size, **sample_kwargs), in_axes=(0, 0, None)
        )
    td_target = jax.vmap(agent.td_target)
    update = jax.vmap(agent.update)
    update_plain = jax.vmap(agent.update, in_axes=(0, 0, 0, 0))
    jsrl_on = jump_starting(cfg) and teacher_q is not None
    per = cfg["replay"]["prioritized"]
    rehearsal = cfg["rehearsal"]
    teacher_share = round(rehearsal["fraction"] * batch_size) if rehearsal["fraction"] > 0 else 0
    if teacher_share:
        teacher_count = rehearsal_count
        student_sample = jax.vmap(
            lambda r, key, count: fifo.sample(r, key, count, batch_size - teacher_share, **sample_kwargs),
            in_axes=(0, 0, None),
        )
        teacher_sample = jax.vmap(
            lambda r, key: fifo.sample(r, key, teacher_count, teacher_share, **sample_kwargs), in_axes=(None, 0)
        )
        regularizer_period = rehearsal["regularizer_decay_period"]
    if per:
        priority_exponent, importance_exponent = (
            cfg["replay"]["priority_exponent"],
            cfg["replay"]["importance_exponent"],
        )
        per_sample = jax.vmap(prioritized.sample_ages, in_axes=(0, 0, 0, None, None))
        per_gather = jax.vmap(lambda r, count, ages: fifo.gather(r, count, ages, **sample_kwargs), in_axes=(0, None, 0))
        per_weights = jax.vmap(prioritized.importance_weights, in_axes=(0, None, None))
        per_update = jax.vmap(prioritized.update, in_axes=(0, None, None, 0, 0, None))
        per_added = jax.vmap(prioritized.on_add, in_axes=(0, None, None))
    if distill or jsrl_on:
        teacher_q_values = jax.vmap(teacher_q.apply)
    roll_in_guide = cfg["jsrl"]["roll_in_guide"]
    if source is not None:
        observe = jax.vmap(source.observe, in_axes=(0, 1))  # transitions are [time, seed, ...]
        draw = jax.vmap(source.draw, in_axes=(0, 0, None, 0))
    split2 = jax.vmap(lambda key: jax.random.split(key))
    sync = agent.sync_target  # elementwise, so it applies to seed-batched state as it is
    split3 = jax.vmap(lambda key: jax.random.split(key, 3))
    stale_obs = train["stale_obs_after_terminal"]
    priming = train["priming_updates"]

    def env_step(c: Carry, inputs: tuple[jax.Array, ...]) -> tuple[Carry, tuple[StepOut, Any]]:
        act_key, env_key, epsilon, guide = inputs
        action = act(c.agent, c.obs, act_key, epsilon)
        if jsrl_on:  # the teacher acts in the roll-in (if it guides it) and, after it, with probability guide
            jsrl_keys = jax.vmap(lambda key: jax.random.split(jax.random.fold_in(key, JSRL_STREAM)))(act_key)
            teacher_action = jnp.argmax(teacher_q_values(c.teacher, c.obs), axis=-1).astype(action.dtype)
            coin = jax.vmap(jax.random.uniform)(jsrl_keys[:, 0]) < guide
            use_teacher = jnp.where(c.episode_length < c.jsrl.roll_in, roll_in_guide, coin)
            action = jnp.where(use_teacher, teacher_action, action)
        next_obs, env_state, reward, terminated, truncated, info = env_step_fn(env_key, c.env_state, action, env_params)
        transition = fifo.Transition(
            obs=to_storage(c.obs, spec),
            action=action,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=to_storage(info["final_observation"], spec),
        )
        done = terminated | truncated
        episode_return = c.episode_return + reward
        episode_length = c.episode_length + 1
        if stale_obs:  # the original's quirk: the next action still sees the terminal step's observation
            next_obs = jnp.where(
                terminated.reshape((-1,) + (1,) * (next_obs.ndim - 1)), info["final_observation"], next_obs
            )
        c = c._replace(
            env_state=env_state,
            obs=next_obs,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
        )
        if jsrl_on:  # a new episode draws its roll-in length
            fresh = jax.vmap(draw_roll_in)(jsrl_keys[:, 1], c.jsrl.max_roll_in)
            c = c._replace(jsrl=c.jsrl._replace(roll_in=jnp.where(done, fresh, c.jsrl.roll_in)))
        return c, (StepOut(episode_return, jnp.where(done, episode_length, 0)), transition)

    def act_for_block(c: Carry) -> tuple[Carry, StepOut]:
        """``k`` env steps for every seed; their transitions go into the replay in one write.

        Keys and epsilons for the block are made up front, vectorised: on CPU each small op
        inside the step loop costs far more than its arithmetic.
        """
        keys = jax.vmap(lambda key: jax.random.split(key, 2 * k + 1))(c.key)
        step_keys = jnp.swapaxes(keys[:, 1:], 0, 1).reshape(k, 2, -1, keys.shape[-1])
        epsilon = acting_epsilon(agent, cfg, c.env_step + jnp.arange(k))
        guide = guide_probability(cfg, c.env_step + jnp.arange(k))
        first = c.env_step
        # unroll=1: unrolling the env step multiplies compile time (18 s vs 3 s at 10) for no gain
        c, (out, transitions) = jax.lax.scan(
            env_step, c._replace(key=keys[:, 0]), (step_keys[:, 0], step_keys[:, 1], epsilon, guide)
        )
        replay = add_block(c.replay, first, transitions, to_storage(c.obs, spec))
        if per:
            c = c._replace(priorities=per_added(c.priorities, first, k))
        episodes = c.episodes + jnp.sum(out.finished_length > 0, axis=0, dtype=c.episodes.dtype)
        source_state = observe(c.source, transitions.obs) if source is not None else c.source
        return c._replace(replay=replay, env_step=first + k, episodes=episodes, source=source_state), out

    def learn(operands: tuple[Any, ...]) -> tuple[Any, ...]:
        agent_state, key, grad_step, replay, env_step_count, source_state, teacher, distill_lambda = operands[:8]
        priorities, rehearsal_data = operands[8:]
        seeds = key.shape[0]
        if unit == "env_steps" and period % k:
            # a sync due inside the block (Explorer checks every env step, after its updates) comes
            # before this block's update; one due at its last step comes after it, below
            inside = (env_step_count // period > (env_step_count - k) // period) & (env_step_count % period != 0)
            agent_state = tree_select(inside, sync(agent_state), agent_state)
        if source is not None:
            weight = jnp.full(seeds, consolidation_lambda(env_step_count, **lambda_schedule))

        def optimizer_step(inner: tuple[Any, ...], epoch_key: jax.Array) -> tuple[tuple[Any, ...], Any]:
            """One optimizer step on the block's TD batch, with fresh consolidation states."""
            agent_state, grad_step, batch, target, aux = inner
            if source is not None:
                draw_keys = split2(epoch_key)
                epoch_key = draw_keys[:, 1]
                aux = {
                    **aux,
                    "consolidation_states": draw(source_state, replay, env_step_count, draw_keys[:, 0]),
                    "consolidation_lambda": weight,
                }
            if aux:
                agent_state, metrics = update(agent_state, batch, epoch_key, target, aux)
            else:
                agent_state, metrics = update_plain(agent_state, batch, epoch_key, target)
            grad_step = grad_step + 1
            if unit == "grad_steps":
                agent_state = tree_select(grad_step % period == 0, sync(agent_state), agent_state)
            return (agent_state, grad_step, batch, target, inner[4]), metrics

        def td_batch_fn(inner: tuple[Any, ...], _: None) -> tuple[tuple[Any, ...], Any]:
            """A fresh TD batch, its targets computed once, then ``epochs`` optimizer steps on it."""
            agent_state, key, grad_step, priorities = inner
            keys = split3(key)
            aux = {}
            if per:
                ages, probabilities = per_sample(priorities, replay, keys[:, 1], env_step_count, batch_size)
                batch = per_gather(replay, env_step_count, ages)
                held = fifo.size(jax.tree.map(lambda x: x[0], replay), env_step_count)
                aux = {"sample_weights": per_weights(probabilities, held, importance_exponent)}
            elif teacher_share:  # rehearsal: part of the batch from the teacher's data
                mixed_keys = split2(keys[:, 1])
                own = student_sample(replay, mixed_keys[:, 0], env_step_count)
                theirs = teacher_sample(rehearsal_data, mixed_keys[:, 1])
                batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), own, theirs)
                from_teacher = jnp.arange(batch_size) >= batch_size - teacher_share
                aux = {"teacher_sample": jnp.broadcast_to(from_teacher.astype(jnp.float32), (seeds, batch_size))}
                if regularizer_period:
                    scale = jnp.clip(1.0 - env_step_count / regularizer_period, 0.0, 1.0)
                    aux["regularizer_scale"] = jnp.full(seeds, scale)
            else:
                batch = sample(replay, keys[:, 1], env_step_count)
            target = td_target(agent_state, batch)
            if distill:  # the teacher's Q on the TD batch, once for all its epochs; skipped once every lambda is 0
                teacher_q = jax.lax.cond(
                    jnp.any(distill_lambda > 0),
                    lambda: teacher_q_values(teacher, batch.obs),
                    lambda: jnp.zeros(jax.eval_shape(teacher_q_values, teacher, batch.obs).shape, jnp.float32),
                )
                aux = {**aux, "teacher_q": teacher_q, "distillation_weight": distill_lambda * alpha}
            if epochs == 1 and source is None:
                epoch_keys = keys[:, 2][None]  # plain DQN: the update key itself
            else:
                epoch_keys = jnp.swapaxes(jax.vmap(lambda key: jax.random.split(key, epochs))(keys[:, 2]), 0, 1)
            (agent_state, grad_step, *_), metrics = jax.lax.scan(
                optimizer_step, (agent_state, grad_step, batch, target, aux), epoch_keys
            )
            if per:  # the sampled transitions' new priorities, from the last epoch's losses
                losses = metrics.pop("td_per_example")[-1]
                priorities = per_update(priorities, env_step_count, held, ages, losses, priority_exponent)
            return (agent_state, keys[:, 0], grad_step, priorities), jax.tree.map(lambda x: x.mean(0), metrics)

        inner = (agent_state, key, grad_step, priorities)
        if priming:  # once, in the first learning block, before its regular updates
            first_block = env_step_count - k == learning_from
            prime = lambda inner: jax.lax.scan(td_batch_fn, inner, None, length=priming)[0]
            inner = jax.lax.cond(first_block, prime, lambda inner: inner, inner)
        (agent_state, key, grad_step, priorities), metrics = jax.lax.scan(td_batch_fn, inner, None, length=m)
        if unit == "env_steps":
            agent_state = tree_select(env_step_count % period == 0, sync(agent_state), agent_state)
        return agent_state, key, grad_step, priorities, jax.tree.map(lambda x: x.mean(0), metrics)

    def skip(operands: tuple[Any, ...]) -> tuple[Any, ...]:
        agent_state, key, grad_step, *_ = operands
        metric_shapes = jax.eval_shape(learn, operands)[4]
        nan_metrics = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), metric_shapes)
        return agent_state, key, grad_step, operands[8], nan_metrics

    branch = {
        "always": lambda start, ops: learn(ops),
        "never": lambda start, ops: skip(ops),
        "mixed": lambda start, ops: jax.lax.cond(start >= learning_from, learn, skip, ops),
    }[learning]

    def block(c: Carry, _: None, teacher_data: Any) -> tuple[Carry, tuple[StepOut, Any]]:
        start = c.env_step
        c, steps = act_for_block(c)
        operands = (
            c.agent,
            c.key,
            c.grad_step,
            c.replay,
            c.env_step,
            c.source,
            c.teacher,
            c.distill_lambda,
            c.priorities,
            teacher_data,
        )
        agent_state, key, grad_step, priorities, metrics = branch(start, operands)
        return c._replace(agent=agent_state, key=key, grad_step=grad_step, priorities=priorities), (steps, metrics)

    def segment(c: Carry, teacher_data: Any = None) -> tuple[Carry, tuple[StepOut, Any]]:
        """``teacher_data``: the teacher's replay (no seed axis), when rehearsal mixes it in."""
        return jax.lax.scan(lambda c, x: block(c, x, teacher_data), c, None, length=num_blocks)

    return segment


def make_pretrain(agent: Any, teacher_q: Any, cfg: dict[str, Any], num_steps: int, count: int):
    """Offline pretraining on the teacher's data (QDagger's phase before any env step).

    Returns ``(agent_state[seeds], teacher[seeds], replay, keys[seeds], grad_step) ->
    (agent_state, keys, grad_step, metrics)`` running ``num_steps`` gradient steps: each samples a
    batch from the teacher's replay ``replay`` (one buffer shared by all seeds, ``count``
    transitions written), takes the TD loss (unless ``pretraining/td`` is off) plus
    ``distillation/coefficient`` times the distillation loss at lambda = 1, and syncs the target
    every ``pretraining/target_every`` gradient steps. ``agent`` must not hold loss terms that
    need the online loop's inputs (consolidation).
    """
    agent_cfg, pcfg = cfg["agent"], cfg["pretraining"]
    sample_kwargs = dict(
        n_step=agent_cfg["n_step"], gamma=agent_cfg["gamma"], bootstrap_truncation=agent_cfg["bootstrap_truncation"]
    )
    batch_size, alpha, period = cfg["replay"]["batch_size"], cfg["distillation"]["coefficient"], pcfg["target_every"]
    sample = jax.vmap(
        lambda replay, key: fifo.sample(replay, key, count, batch_size, **sample_kwargs), in_axes=(None, 0)
    )
    td_target = jax.vmap(agent.td_target)
    update = jax.vmap(agent.update)
    teacher_q_values = jax.vmap(teacher_q.apply)
    split3 = jax.vmap(lambda key: jax.random.split(key, 3))

    def pretrain(agent_state: Any, teacher: Any, replay: Any, key: jax.Array, grad_step: jax.Array) -> tuple[Any, ...]:
        seeds = key.shape[0]

        def step(inner: tuple[Any, ...], _: None) -> tuple[tuple[Any, ...], Any]:
            agent_state, key, grad_step = inner
            keys = split3(key)
            batch = sample(replay, keys[:, 1])
            target = td_target(agent_state, batch)
            aux = {"td_weight": jnp.full(seeds, 1.0 if pcfg["td"] else 0.0)}
            if alpha > 0:
                aux |= {
                    "teacher_q": teacher_q_values(teacher, batch.obs),
                    "distillation_weight": jnp.full(seeds, alpha),
                }
            agent_state, metrics = update(agent_state, batch, keys[:, 2], target, aux)
            grad_step = grad_step + 1
            # a hard copy, as the reference's pretraining did, whatever agent/tau says for online learning
            synced = agent_state._replace(target_params=agent_state.params)
            agent_state = tree_select(grad_step % period == 0, synced, agent_state)
            return (agent_state, keys[:, 0], grad_step), metrics

        (agent_state, key, grad_step), metrics = jax.lax.scan(
            step, (agent_state, key, grad_step), None, length=num_steps
        )
        return agent_state, key, grad_step, jax.tree.map(lambda x: x.mean(0), metrics)

    return pretrain


def make_evaluate(agent: Any, env: Any, env_params: Any, spec: EnvSpec, cfg: dict[str, Any]):
    """A function (agent_states[seeds], keys[seeds]) -> returns [seeds, episodes] of whole episodes."""
    episodes, epsilon = cfg["eval"]["episodes"], cfg["eval"]["epsilon"]
    max_steps = min(spec.max_episode_steps, cfg["eval"]["max_episode_steps"])
    reset = jax.vmap(jax.vmap(env.reset, in_axes=(0, None)), in_axes=(0, None))
    step = jax.vmap(jax.vmap(env.step, in_axes=(0, 0, 0, None)), in_axes=(0, 0, 0, None))
    act = jax.vmap(jax.vmap(agent.evaluation_act, in_axes=(None, 0, 0, None)), in_axes=(0, 0, 0, None))
    split_all = jax.vmap(jax.vmap(lambda key: jax.random.split(key, 3)))

    def evaluate(agent_state: Any, keys: jax.Array) -> jax.Array:
        keys = jax.vmap(lambda key: jax.random.split(key, episodes))(keys)  # [seeds, episodes, 2]
        keys = split_all(keys)
        obs, env_state = reset(keys[..., 1, :], env_params)
        seeds = keys.shape[0]
        zeros = jnp.zeros((seeds, episodes), jnp.float32)
        state = (0, obs, env_state, keys[..., 0, :], zeros, jnp.zeros((seeds, episodes), bool))

        def cond(s: tuple[Any, ...]) -> jax.Array:
            t, *_, done = s
            return (t < max_steps) & ~jnp.all(done)

        def body(s: tuple[Any, ...]) -> tuple[Any, ...]:
            t, obs, env_state, key, total, done = s
            keys = split_all(key)
            action = act(agent_state, obs, keys[..., 1, :], epsilon)
            obs, env_state, reward, terminated, truncated, _ = step(keys[..., 2, :], env_state, action, env_params)
            total = total + jnp.where(done, 0.0, reward)
            return t + 1, obs, env_state, keys[..., 0, :], total, done | terminated | truncated

        totals = jax.lax.while_loop(cond, body, state)[4]
        return totals / max_steps if cfg["eval"]["per_step"] else totals

    return evaluate
